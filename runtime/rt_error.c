/* rt_error.c: names for OpenCL error codes and CLBlast statuses, so that every failure
 * message says which call failed and how, not just a number. */
#include <clblast_c.h>

#include "rt.h"

const char *rt_cl_error_name(cl_int code) {
    switch (code) {
#define RT_NAME(c) case c: return #c;
        RT_NAME(CL_SUCCESS)
        RT_NAME(CL_DEVICE_NOT_FOUND)
        RT_NAME(CL_DEVICE_NOT_AVAILABLE)
        RT_NAME(CL_COMPILER_NOT_AVAILABLE)
        RT_NAME(CL_MEM_OBJECT_ALLOCATION_FAILURE)
        RT_NAME(CL_OUT_OF_RESOURCES)
        RT_NAME(CL_OUT_OF_HOST_MEMORY)
        RT_NAME(CL_PROFILING_INFO_NOT_AVAILABLE)
        RT_NAME(CL_MEM_COPY_OVERLAP)
        RT_NAME(CL_IMAGE_FORMAT_MISMATCH)
        RT_NAME(CL_IMAGE_FORMAT_NOT_SUPPORTED)
        RT_NAME(CL_BUILD_PROGRAM_FAILURE)
        RT_NAME(CL_MAP_FAILURE)
        RT_NAME(CL_MISALIGNED_SUB_BUFFER_OFFSET)
        RT_NAME(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        RT_NAME(CL_COMPILE_PROGRAM_FAILURE)
        RT_NAME(CL_LINKER_NOT_AVAILABLE)
        RT_NAME(CL_LINK_PROGRAM_FAILURE)
        RT_NAME(CL_DEVICE_PARTITION_FAILED)
        RT_NAME(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
        RT_NAME(CL_INVALID_VALUE)
        RT_NAME(CL_INVALID_DEVICE_TYPE)
        RT_NAME(CL_INVALID_PLATFORM)
        RT_NAME(CL_INVALID_DEVICE)
        RT_NAME(CL_INVALID_CONTEXT)
        RT_NAME(CL_INVALID_QUEUE_PROPERTIES)
        RT_NAME(CL_INVALID_COMMAND_QUEUE)
        RT_NAME(CL_INVALID_HOST_PTR)
        RT_NAME(CL_INVALID_MEM_OBJECT)
        RT_NAME(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
        RT_NAME(CL_INVALID_IMAGE_SIZE)
        RT_NAME(CL_INVALID_SAMPLER)
        RT_NAME(CL_INVALID_BINARY)
        RT_NAME(CL_INVALID_BUILD_OPTIONS)
        RT_NAME(CL_INVALID_PROGRAM)
        RT_NAME(CL_INVALID_PROGRAM_EXECUTABLE)
        RT_NAME(CL_INVALID_KERNEL_NAME)
        RT_NAME(CL_INVALID_KERNEL_DEFINITION)
        RT_NAME(CL_INVALID_KERNEL)
        RT_NAME(CL_INVALID_ARG_INDEX)
        RT_NAME(CL_INVALID_ARG_VALUE)
        RT_NAME(CL_INVALID_ARG_SIZE)
        RT_NAME(CL_INVALID_KERNEL_ARGS)
        RT_NAME(CL_INVALID_WORK_DIMENSION)
        RT_NAME(CL_INVALID_WORK_GROUP_SIZE)
        RT_NAME(CL_INVALID_WORK_ITEM_SIZE)
        RT_NAME(CL_INVALID_GLOBAL_OFFSET)
        RT_NAME(CL_INVALID_EVENT_WAIT_LIST)
        RT_NAME(CL_INVALID_EVENT)
        RT_NAME(CL_INVALID_OPERATION)
        RT_NAME(CL_INVALID_GL_OBJECT)
        RT_NAME(CL_INVALID_BUFFER_SIZE)
        RT_NAME(CL_INVALID_MIP_LEVEL)
        RT_NAME(CL_INVALID_GLOBAL_WORK_SIZE)
        RT_NAME(CL_INVALID_PROPERTY)
        RT_NAME(CL_INVALID_IMAGE_DESCRIPTOR)
        RT_NAME(CL_INVALID_COMPILER_OPTIONS)
        RT_NAME(CL_INVALID_LINKER_OPTIONS)
        RT_NAME(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef RT_NAME
        /* cl_khr_icd: the loader found no platform at all. */
        case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    }
    return "CL_UNKNOWN_ERROR";
}

const char *rt_clblast_status_name(int status) {
    if (status > -1000) return rt_cl_error_name(status);  /* CLBlast reuses OpenCL's codes */
    switch (status) {
#define RT_NAME(c) case c: return #c;
        RT_NAME(CLBlastNotImplemented)
        RT_NAME(CLBlastInvalidMatrixA)
        RT_NAME(CLBlastInvalidMatrixB)
        RT_NAME(CLBlastInvalidMatrixC)
        RT_NAME(CLBlastInvalidVectorX)
        RT_NAME(CLBlastInvalidVectorY)
        RT_NAME(CLBlastInvalidDimension)
        RT_NAME(CLBlastInvalidLeadDimA)
        RT_NAME(CLBlastInvalidLeadDimB)
        RT_NAME(CLBlastInvalidLeadDimC)
        RT_NAME(CLBlastInvalidIncrementX)
        RT_NAME(CLBlastInvalidIncrementY)
        RT_NAME(CLBlastInsufficientMemoryA)
        RT_NAME(CLBlastInsufficientMemoryB)
        RT_NAME(CLBlastInsufficientMemoryC)
        RT_NAME(CLBlastInsufficientMemoryX)
        RT_NAME(CLBlastInsufficientMemoryY)
        RT_NAME(CLBlastInsufficientMemoryTemp)
        RT_NAME(CLBlastInvalidBatchCount)
        RT_NAME(CLBlastInvalidOverrideKernel)
        RT_NAME(CLBlastMissingOverrideParameter)
        RT_NAME(CLBlastInvalidLocalMemUsage)
        RT_NAME(CLBlastNoHalfPrecision)
        RT_NAME(CLBlastNoDoublePrecision)
        RT_NAME(CLBlastInvalidVectorScalar)
        RT_NAME(CLBlastInsufficientMemoryScalar)
        RT_NAME(CLBlastDatabaseError)
        RT_NAME(CLBlastUnknownError)
        RT_NAME(CLBlastUnexpectedError)
#undef RT_NAME
    }
    return "CLBlastUnknownStatus";
}

rn_status rt_cl_fail(rn_error *err, cl_int code, const char *call) {
    bool memory = code == CL_MEM_OBJECT_ALLOCATION_FAILURE || code == CL_OUT_OF_RESOURCES ||
                  code == CL_OUT_OF_HOST_MEMORY || code == CL_INVALID_BUFFER_SIZE;
    /* On NVIDIA CL_OUT_OF_RESOURCES also reports a kernel that touched memory outside its
     * buffers; say so rather than let it read as a plain shortage. */
    const char *hint = code == CL_OUT_OF_RESOURCES
                           ? " (out of device resources, or a kernel accessed memory outside a buffer)"
                           : "";
    return rn_fail(err, memory ? RN_ERR_DEVICE_MEMORY : RN_ERR_OPENCL, "%s failed: %s (%d)%s",
                   call, rt_cl_error_name(code), (int)code, hint);
}
