/*
 * rn_status.h: the status every retnet-cl call returns. RN_OK is zero and every error is
 * negative; rn_status_str (retnet.h) names them. Installed beside retnet.h, which includes it;
 * every layer of the library shares it, so it depends on nothing.
 */
#ifndef RN_STATUS_H
#define RN_STATUS_H


typedef enum rn_status {
    RN_OK = 0,

    /* misuse and arguments */
    RN_ERR_INVALID_ARGUMENT = -1,    /* NULL handle, bad option, token id outside the vocabulary */
    RN_ERR_OUT_OF_HOST_MEMORY = -2,  /* malloc failed */
    RN_ERR_LIMIT = -3,               /* a size above what the runtime accepts (prompt, file, dims) */

    /* files */
    RN_ERR_IO = -10,                 /* missing, unreadable, a directory, short read */
    RN_ERR_JSON = -11,               /* JSON syntax, invalid UTF-8, nesting, duplicate keys */
    RN_ERR_TRUNCATED = -12,          /* file shorter than its header says */
    RN_ERR_HEADER_SIZE = -13,        /* safetensors header length zero, over the cap or past the end */
    RN_ERR_TENSOR_ENTRY = -14,       /* safetensors entry malformed: keys, shape, offsets types */
    RN_ERR_OFFSETS = -15,            /* data offsets overlap, leave gaps, or disagree with the shape */
    RN_ERR_UNKNOWN_DTYPE = -16,      /* dtype string not in the safetensors list */
    RN_ERR_UNSUPPORTED_DTYPE = -17,  /* a known dtype this runtime does not load (F64, I8, ...) */
    RN_ERR_DUPLICATE = -18,          /* a name given twice */

    /* model description */
    RN_ERR_CONFIG = -20,             /* config value missing, of the wrong type or out of range */
    RN_ERR_UNSUPPORTED_CONFIG = -21, /* a valid torchscale setting this runtime does not implement */
    RN_ERR_MISSING_TENSOR = -22,     /* a tensor the config requires is not in the checkpoint */
    RN_ERR_TENSOR_SHAPE = -23,       /* a tensor's shape disagrees with the config */
    RN_ERR_TOKENIZER = -24,          /* tokenizer.json valid JSON but not a usable tokenizer */
    RN_ERR_STATE_FILE = -25,         /* a saved session state that is corrupt or from another model */

    /* device */
    RN_ERR_NO_PLATFORM = -30,        /* no OpenCL platform (no ICD installed) */
    RN_ERR_NO_DEVICE = -31,          /* no device, or none matches the requested one */
    RN_ERR_BUILD = -32,              /* kernel build failed; the message holds the build log */
    RN_ERR_DEVICE_MEMORY = -33,      /* the device cannot hold what is asked of it */
    RN_ERR_OPENCL = -34,             /* any other OpenCL error; the message names call and code */
    RN_ERR_CLBLAST = -35,            /* a CLBlast routine failed; the message names it and its code */
    RN_ERR_NUMERIC = -36,            /* non-finite values appeared in the output */

    /* the caller */
    RN_ERR_CANCELLED = -40           /* stopped by rn_context_cancel before the work was done */
} rn_status;

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* A fixed, static name for a status ("RN_ERR_TENSOR_SHAPE"). Never NULL. */
const char *rn_status_str(rn_status status);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif

#endif /* RN_STATUS_H */
