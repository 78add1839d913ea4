/* rt_device.c: platforms and devices, choosing one, and opening a context and queue on it. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

#define RT_MAX_PLATFORMS 16

static void get_string(cl_device_id dev, cl_device_info what, char *out, size_t cap) {
    out[0] = '\0';
    if (clGetDeviceInfo(dev, what, cap, out, NULL) != CL_SUCCESS) out[0] = '\0';
    out[cap - 1] = '\0';
}

/* CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV / _MINOR_NV of cl_nv_device_attribute_query. */
#define RT_CL_DEVICE_CC_MAJOR_NV 0x4000
#define RT_CL_DEVICE_CC_MINOR_NV 0x4001

/* gfx908/90a/94x (CDNA: MFMA) and gfx11xx/12xx (RDNA 3/4: WMMA), from the device name AMD's
 * driver reports (e.g. "gfx90a:sramecc+:xnack-"). */
static bool amd_has_matrix(const char *name) {
    if (strncmp(name, "gfx", 3) != 0) return false;
    const char *v = name + 3;
    if (!strncmp(v, "908", 3) || !strncmp(v, "90a", 3) || !strncmp(v, "94", 2) || !strncmp(v, "95", 2)) return true;
    return (v[0] == '1' && (v[1] == '1' || v[1] == '2') && isdigit((unsigned char)v[2]));
}

/* Which matrix engine the device has, from its extension list `ext`. */
static void detect_matrix_engine(cl_device_id dev, const char *ext, rt_device_info *info) {
    if (strstr(ext, "cl_nv_device_attribute_query")) {
        cl_uint major = 0, minor = 0;
        if (clGetDeviceInfo(dev, RT_CL_DEVICE_CC_MAJOR_NV, sizeof major, &major, NULL) == CL_SUCCESS &&
            clGetDeviceInfo(dev, RT_CL_DEVICE_CC_MINOR_NV, sizeof minor, &minor, NULL) == CL_SUCCESS) {
            info->nv_cc_major = (int)major;
            info->nv_cc_minor = (int)minor;
        }
        if (info->nv_cc_major >= 8) info->matrix_engine = RT_MATRIX_NV_MMA;
    } else if (strstr(ext, "cl_intel_subgroup_matrix_multiply_accumulate")) {
        info->matrix_engine = RT_MATRIX_INTEL_DPAS;
    } else if (strstr(ext, "cl_amd_device_attribute_query") && amd_has_matrix(info->name)) {
        info->matrix_engine = RT_MATRIX_AMD;
    }
}

static void describe(cl_platform_id platform, cl_device_id dev, rt_device_info *info) {
    memset(info, 0, sizeof *info);
    if (clGetPlatformInfo(platform, CL_PLATFORM_NAME, sizeof info->platform, info->platform, NULL) !=
        CL_SUCCESS)
        info->platform[0] = '\0';
    info->platform[sizeof info->platform - 1] = '\0';
    get_string(dev, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor);
    get_string(dev, CL_DEVICE_NAME, info->name, sizeof info->name);
    get_string(dev, CL_DEVICE_OPENCL_C_VERSION, info->version, sizeof info->version);
    get_string(dev, CL_DRIVER_VERSION, info->driver, sizeof info->driver);
    cl_device_type type = 0;
    cl_uint units = 0;
    cl_ulong global = 0, max_alloc = 0, local = 0;
    size_t group = 0;
    clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    clGetDeviceInfo(dev, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL);
    clGetDeviceInfo(dev, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof global, &global, NULL);
    clGetDeviceInfo(dev, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc, NULL);
    clGetDeviceInfo(dev, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local, &local, NULL);
    clGetDeviceInfo(dev, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof group, &group, NULL);
    info->is_gpu = (type & CL_DEVICE_TYPE_GPU) != 0;
    info->compute_units = units;
    info->global_mem_bytes = global;
    info->max_alloc_bytes = max_alloc;
    info->local_mem_bytes = local;
    info->max_work_group = group;

    size_t ext_size = 0;
    if (clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, 0, NULL, &ext_size) == CL_SUCCESS && ext_size) {
        char *ext = malloc(ext_size + 1);
        if (ext && clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, ext_size, ext, NULL) == CL_SUCCESS) {
            ext[ext_size] = '\0';
            info->has_fp16 = strstr(ext, "cl_khr_fp16") != NULL;
            detect_matrix_engine(dev, ext, info);
        }
        free(ext);
    }
}

rn_status rt_devices_enumerate(rt_device_entry *entries, size_t capacity, size_t *count,
                               rn_error *err) {
    *count = 0;
    cl_platform_id platforms[RT_MAX_PLATFORMS];
    cl_uint n_platforms = 0;
    cl_int rc = clGetPlatformIDs(RT_MAX_PLATFORMS, platforms, &n_platforms);
    if (rc == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (rc == CL_SUCCESS && n_platforms == 0))
        return rn_fail(err, RN_ERR_NO_PLATFORM,
                       "no OpenCL platform found: install a vendor driver or PoCL "
                       "(pocl-opencl-icd) and check /etc/OpenCL/vendors");
    if (rc != CL_SUCCESS) return rt_cl_fail(err, rc, "clGetPlatformIDs");
    /* The count is the number available, which may exceed what we asked for. */
    if (n_platforms > RT_MAX_PLATFORMS) n_platforms = RT_MAX_PLATFORMS;

    for (cl_uint p = 0; p < n_platforms; p++) {
        cl_device_id devices[RT_MAX_DEVICES];
        cl_uint n_devices = 0;
        rc = clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, RT_MAX_DEVICES, devices, &n_devices);
        if (rc == CL_DEVICE_NOT_FOUND) continue;  /* a platform without devices is skipped */
        if (rc != CL_SUCCESS) continue;
        if (n_devices > RT_MAX_DEVICES) n_devices = RT_MAX_DEVICES;
        for (cl_uint d = 0; d < n_devices; d++) {
            if (*count < capacity) {
                rt_device_entry *e = &entries[*count];
                e->platform = platforms[p];
                e->device = devices[d];
                describe(platforms[p], devices[d], &e->info);
                e->info.platform_index = p;
                e->info.device_index = d;
            }
            (*count)++;
        }
    }
    if (*count > capacity) *count = capacity;
    return RN_OK;
}

static bool contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n) return true;
    }
    return n == 0;
}

static void list_devices(char *out, size_t cap, const rt_device_entry *e, size_t n) {
    size_t at = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && at < cap; i++) {
        int w = snprintf(out + at, cap - at, "\n  %u:%u  %s (%s)", e[i].info.platform_index,
                         e[i].info.device_index, e[i].info.name, e[i].info.platform);
        if (w < 0) break;
        at += (size_t)w;
    }
}

rn_status rt_device_select(const char *spec, rt_device_entry *out, rn_error *err) {
    rt_device_entry entries[RT_MAX_DEVICES];
    size_t n = 0;
    rn_status st = rt_devices_enumerate(entries, RT_MAX_DEVICES, &n, err);
    if (st != RN_OK) return st;
    if (n == 0)
        return rn_fail(err, RN_ERR_NO_DEVICE, "OpenCL platforms exist but none has a device");

    const char *source = "--device";
    if (!spec || !*spec) {
        spec = getenv("RETNET_DEVICE");
        source = "RETNET_DEVICE";
    }
    if (!spec || !*spec) {
        for (size_t i = 0; i < n; i++)
            if (entries[i].info.is_gpu) {
                *out = entries[i];
                return RN_OK;
            }
        *out = entries[0];
        return RN_OK;
    }

    unsigned p, d;
    char tail;
    if (sscanf(spec, "%u:%u%c", &p, &d, &tail) == 2) {
        for (size_t i = 0; i < n; i++)
            if (entries[i].info.platform_index == p && entries[i].info.device_index == d) {
                *out = entries[i];
                return RN_OK;
            }
    } else {
        for (size_t i = 0; i < n; i++)
            if (contains_ci(entries[i].info.name, spec)) {
                *out = entries[i];
                return RN_OK;
            }
    }
    char listing[2048];
    list_devices(listing, sizeof listing, entries, n);
    return rn_fail(err, RN_ERR_NO_DEVICE, "%s '%s' matches no OpenCL device; the devices are:%s",
                   source, spec, listing);
}

static bool is_pocl(const rt_device_entry *dev) {
    return strstr(dev->info.platform, "Portable Computing Language") != NULL;
}

static char *default_cache_dir(void) {
    const char *env = getenv("RETNET_CACHE_DIR");
    if (env && *env) return strdup(env);
    const char *xdg = getenv("XDG_CACHE_HOME");
    if (xdg && *xdg) return rn_path_join(xdg, "retnet-cl");
    const char *home = getenv("HOME");
    if (home && *home) return rn_path_join(home, ".cache/retnet-cl");
    return NULL;
}

rn_status rt_init(rt_runtime *rt, const char *device_spec, rt_cache_mode cache_mode,
                  const char *cache_dir, rn_error *err) {
    memset(rt, 0, sizeof *rt);
    rt->err = err;
    rn_status st = rt_device_select(device_spec, &rt->dev, err);
    if (st != RN_OK) return st;

    cl_int rc;
    rt->context = clCreateContext(NULL, 1, &rt->dev.device, NULL, NULL, &rc);
    if (rc != CL_SUCCESS) return rt_cl_fail(err, rc, "clCreateContext");
    rt->queue = clCreateCommandQueue(rt->context, rt->dev.device, 0, &rc);
    if (rc != CL_SUCCESS) {
        st = rt_cl_fail(err, rc, "clCreateCommandQueue");
        clReleaseContext(rt->context);
        rt->context = NULL;
        return st;
    }

    /* PoCL keeps its own kernel cache (POCL_CACHE_DIR), and asking it for binaries costs an
     * extra compile, so "auto" leaves caching to it. */
    const char *env = getenv("RETNET_PROGRAM_CACHE");
    if (cache_mode == RT_CACHE_AUTO && env && *env) cache_mode = atoi(env) ? RT_CACHE_ON : RT_CACHE_OFF;
    if (cache_mode == RT_CACHE_AUTO) cache_mode = is_pocl(&rt->dev) ? RT_CACHE_OFF : RT_CACHE_ON;
    rt->cache_mode = cache_mode;
    if (cache_mode == RT_CACHE_ON) rt->cache_dir = cache_dir ? strdup(cache_dir) : default_cache_dir();
    return RN_OK;
}

void rt_release(rt_runtime *rt) {
    if (!rt) return;
    rt_profile_release(rt);
    if (rt->queue) {
        clFinish(rt->queue);
        clReleaseCommandQueue(rt->queue);
    }
    if (rt->context) clReleaseContext(rt->context);
    free(rt->cache_dir);
    free(rt->build_options);
    memset(rt, 0, sizeof *rt);
}

rn_status rt_finish(rt_runtime *rt) {
    cl_int rc = clFinish(rt->queue);
    return rc == CL_SUCCESS ? RN_OK : rt_cl_fail(rt->err, rc, "clFinish");
}

rn_status rt_marker(rt_runtime *rt, cl_event *done) {
    cl_int rc = clEnqueueMarkerWithWaitList(rt->queue, 0, NULL, done);
    if (rc == CL_SUCCESS) return RN_OK;
    *done = NULL;
    return rt_cl_fail(rt->err, rc, "clEnqueueMarkerWithWaitList");
}

rn_status rt_event_wait(rt_runtime *rt, cl_event *event) {
    if (!*event) return RN_OK;
    cl_int rc = clWaitForEvents(1, event), status = CL_COMPLETE;
    if (rc == CL_SUCCESS)
        rc = clGetEventInfo(*event, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status, NULL);
    clReleaseEvent(*event);
    *event = NULL;
    if (rc == CL_SUCCESS && status < 0) rc = status;  /* the command itself failed */
    return rc == CL_SUCCESS ? RN_OK : rt_cl_fail(rt->err, rc, "clWaitForEvents");
}

rn_status rt_flush(rt_runtime *rt) {
    cl_int rc = clFlush(rt->queue);
    return rc == CL_SUCCESS ? RN_OK : rt_cl_fail(rt->err, rc, "clFlush");
}
