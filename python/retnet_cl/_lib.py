"""The ctypes layer: finding libretnet, mirroring retnet.h's structs, declaring every function.

Everything here follows host/retnet.h and common/rn_status.h exactly; the classes in the other
modules are the Pythonic face. The library is loaded on first use, so `import retnet_cl` works
(and documents itself) on a machine without it.
"""

import ctypes
import ctypes.util
import os
import threading

# ---- errors -------------------------------------------------------------------------------------


class RetNetError(Exception):
    """A failed call into libretnet.

    status  -- the status's name, e.g. "RN_ERR_IO" (rn_status_str)
    code    -- the status as an int (negative)
    message -- the library's detailed message: rn_context_last_error(ctx) for calls on a
               context, its models and sessions; rn_last_error() for the others
    """

    def __init__(self, status, code, message):
        self.status = status
        self.code = code
        self.message = message
        super().__init__("%s: %s" % (status, message) if message else status)


class LibraryNotFoundError(OSError):
    """libretnet could not be loaded (see RETNET_LIBRARY)."""


# ---- enums and flags (retnet.h) ------------------------------------------------------------------

RN_OK = 0
RN_ERR_INVALID_ARGUMENT = -1
RN_ERR_OPENCL = -34
RN_ERR_CANCELLED = -40

MODES = {"parallel": 0, "chunkwise": 1, "recurrent": 2}
WEIGHTS = {"file": 0, "f32": 1, "f16": 2, "bf16": 3, "q8": 4, "q4": 5}
ACTIVATIONS = {0: "gelu", 1: "swish"}

RN_DETOKENIZE_SKIP_SPECIAL = 1
RN_DETOKENIZE_CONTINUE = 2

RECENT_TOKENS = 256  # rn_session_recent keeps at most this many

# ---- structs (retnet.h, field for field) ---------------------------------------------------------


class rn_device_info(ctypes.Structure):
    _fields_ = [
        ("platform", ctypes.c_char * 128),
        ("vendor", ctypes.c_char * 128),
        ("name", ctypes.c_char * 128),
        ("version", ctypes.c_char * 64),
        ("driver", ctypes.c_char * 64),
        ("is_gpu", ctypes.c_int),
        ("compute_units", ctypes.c_uint32),
        ("global_mem_bytes", ctypes.c_uint64),
        ("max_alloc_bytes", ctypes.c_uint64),
        ("local_mem_bytes", ctypes.c_uint64),
        ("max_work_group", ctypes.c_size_t),
        ("has_fp16", ctypes.c_int),
        ("platform_index", ctypes.c_uint32),
        ("device_index", ctypes.c_uint32),
        ("nv_cc_major", ctypes.c_int),
        ("nv_cc_minor", ctypes.c_int),
        ("matrix_engine", ctypes.c_int),  # rn_matrix_engine
    ]


class rn_context_options(ctypes.Structure):
    _fields_ = [
        ("device", ctypes.c_char_p),
        ("program_cache", ctypes.c_int),
        ("cache_dir", ctypes.c_char_p),
        ("work_group", ctypes.c_size_t),
        ("project_max_rows", ctypes.c_size_t),
        ("precision", ctypes.c_int),  # rn_precision
        ("max_allocation", ctypes.c_uint64),
        ("build_options", ctypes.c_char_p),
        ("build_log", ctypes.c_void_p),  # rn_build_log_fn; the binding sets none
        ("build_log_user", ctypes.c_void_p),
        ("batch_work_group", ctypes.c_int),
    ]


rn_progress_fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64)


class rn_model_options(ctypes.Structure):
    _fields_ = [
        ("weights", ctypes.c_int),  # rn_weights
        ("progress", rn_progress_fn),
        ("progress_user", ctypes.c_void_p),
    ]


class rn_model_info(ctypes.Structure):
    _fields_ = [
        ("family", ctypes.c_char_p),
        ("embed_dim", ctypes.c_int64),
        ("value_embed_dim", ctypes.c_int64),
        ("heads", ctypes.c_int64),
        ("ffn_dim", ctypes.c_int64),
        ("layers", ctypes.c_int64),
        ("vocab_size", ctypes.c_int64),
        ("chunk_size", ctypes.c_int64),
        ("activation", ctypes.c_int),  # rn_activation
        ("layernorm_eps", ctypes.c_double),
        ("scale_embedding", ctypes.c_int),
        ("layernorm_embedding", ctypes.c_int),
        ("tied_embeddings", ctypes.c_int),
        ("normalize_before", ctypes.c_int),
        ("deepnorm", ctypes.c_int),
        ("parameters", ctypes.c_uint64),
        ("file_bytes", ctypes.c_uint64),
        ("device_bytes", ctypes.c_uint64),
        ("file_dtype", ctypes.c_char_p),
        ("device_dtype", ctypes.c_char_p),
        ("kv_heads", ctypes.c_int64),
        ("key_embed_dim", ctypes.c_int64),
        ("batch_work_group", ctypes.c_int),
    ]


class rn_sampling(ctypes.Structure):
    _fields_ = [
        ("temperature", ctypes.c_float),
        ("top_k", ctypes.c_int32),
        ("top_p", ctypes.c_float),
        ("min_p", ctypes.c_float),
        ("repeat_penalty", ctypes.c_float),
        ("repeat_last_n", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
    ]


# ---- prototypes ---------------------------------------------------------------------------------

_vp = ctypes.c_void_p  # every opaque handle
_st = ctypes.c_int  # rn_status
_sz = ctypes.c_size_t
_i32p = ctypes.POINTER(ctypes.c_int32)
_f32p = ctypes.POINTER(ctypes.c_float)

_PROTOTYPES = {
    # name: (restype, argtypes)
    "rn_version": (ctypes.c_char_p, []),
    "rn_last_error": (ctypes.c_char_p, []),
    "rn_status_str": (ctypes.c_char_p, [_st]),
    "rn_devices_list": (_st, [ctypes.POINTER(rn_device_info), _sz, ctypes.POINTER(_sz)]),
    "rn_context_options_default": (None, [ctypes.POINTER(rn_context_options)]),
    "rn_context_init": (_st, [ctypes.POINTER(_vp), ctypes.POINTER(rn_context_options), ctypes.c_char_p, _sz]),
    "rn_context_free": (None, [_vp]),
    "rn_context_cancel": (None, [_vp, ctypes.c_int]),
    "rn_context_last_error": (ctypes.c_char_p, [_vp]),
    "rn_context_device": (ctypes.POINTER(rn_device_info), [_vp]),
    "rn_context_memory": (None, [_vp, ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_uint64)]),
    "rn_model_options_default": (None, [ctypes.POINTER(rn_model_options)]),
    "rn_model_load": (_st, [_vp, ctypes.c_char_p, ctypes.POINTER(rn_model_options), ctypes.POINTER(_vp)]),
    "rn_model_free": (None, [_vp]),
    "rn_model_info_get": (_st, [_vp, ctypes.POINTER(rn_model_info)]),
    "rn_session_init": (_st, [_vp, ctypes.POINTER(_vp)]),
    "rn_session_free": (None, [_vp]),
    "rn_session_reset": (_st, [_vp]),
    "rn_session_position": (ctypes.c_uint64, [_vp]),
    "rn_session_prefill": (_st, [_vp, _i32p, _sz, ctypes.c_int, _sz, _f32p]),
    "rn_session_decode": (_st, [_vp, ctypes.c_int32, _f32p]),
    "rn_session_decode_greedy": (_st, [_vp, _sz, _i32p, _i32p]),
    "rn_session_generate_greedy": (_st, [_vp, _sz, _i32p, _sz, _i32p, ctypes.POINTER(_sz)]),
    "rn_session_logits": (_f32p, [_vp]),
    "rn_session_recent": (_sz, [_vp, _i32p, _sz]),
    "rn_session_save": (_st, [_vp, ctypes.c_char_p]),
    "rn_session_load": (_st, [_vp, ctypes.c_char_p]),
    "rn_session_copy": (_st, [_vp, ctypes.POINTER(_vp)]),
    "rn_session_state_bytes": (_sz, [_vp]),
    "rn_session_save_buffer": (_st, [_vp, _vp, _sz]),
    "rn_session_load_buffer": (_st, [_vp, _vp, _sz]),
    "rn_session_init_batch": (_st, [_vp, _sz, ctypes.POINTER(_vp)]),
    "rn_session_decode_batch": (_st, [_vp, _i32p, _f32p]),
    "rn_session_decode_rows": (_st, [_vp, _sz, _i32p, _f32p]),
    "rn_session_batch": (_sz, [_vp]),
    "rn_session_row_position": (ctypes.c_uint64, [_vp, _sz]),
    "rn_session_copy_row": (_st, [_vp, _sz, _vp, _sz]),
    "rn_session_reset_row": (_st, [_vp, _sz]),
    "rn_tokenizer_load": (_st, [ctypes.c_char_p, ctypes.POINTER(_vp)]),
    "rn_tokenizer_free": (None, [_vp]),
    "rn_tokenizer_encode": (_st, [_vp, ctypes.c_char_p, _sz, ctypes.c_int, ctypes.POINTER(_i32p),
                                  ctypes.POINTER(_sz)]),
    "rn_tokenizer_decode": (_st, [_vp, _i32p, _sz, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p),
                                  ctypes.POINTER(_sz)]),
    "rn_tokenizer_bos": (ctypes.c_int32, [_vp]),
    "rn_tokenizer_eos": (ctypes.c_int32, [_vp]),
    "rn_tokenizer_vocab_size": (_sz, [_vp]),
    "rn_free": (None, [_vp]),
    "rn_detokenizer_init": (_st, [_vp, ctypes.c_uint, ctypes.POINTER(_vp)]),
    "rn_detokenizer_push": (_st, [_vp, ctypes.c_int32, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(_sz)]),
    "rn_detokenizer_flush": (_st, [_vp, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(_sz)]),
    "rn_detokenizer_free": (None, [_vp]),
    "rn_sampling_default": (None, [ctypes.POINTER(rn_sampling)]),
    "rn_sampling_is_argmax": (ctypes.c_int, [ctypes.POINTER(rn_sampling)]),
    "rn_sampler_init": (_st, [ctypes.POINTER(rn_sampling), _sz, ctypes.POINTER(_vp)]),
    "rn_sampler_free": (None, [_vp]),
    "rn_sampler_sample": (_st, [_vp, _f32p, _i32p, _sz, ctypes.c_uint64, ctypes.POINTER(ctypes.c_int32)]),
}

_loaded = None
_load_lock = threading.Lock()


def _candidates():
    path = os.environ.get("RETNET_LIBRARY")
    if path:
        return [path], "RETNET_LIBRARY=%s" % path
    names = ["libretnet.so.0"]
    found = ctypes.util.find_library("retnet")
    if found and found not in names:
        names.append(found)
    return names, "the default library search path (ldconfig, LD_LIBRARY_PATH)"


def library():
    """The loaded libretnet CDLL, every function's argtypes and restype declared."""
    global _loaded
    if _loaded is not None:
        return _loaded
    with _load_lock:
        if _loaded is not None:
            return _loaded
        names, where = _candidates()
        errors = []
        lib = None
        for name in names:
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError as e:
                errors.append(str(e))
        if lib is None:
            raise LibraryNotFoundError(
                "retnet_cl: cannot load libretnet from %s (%s). Build it (cmake target `retnet`, "
                "libretnet.so.0) and set RETNET_LIBRARY to its path, or install it."
                % (where, "; ".join(errors)))
        missing = []
        for fname, (restype, argtypes) in _PROTOTYPES.items():
            try:
                fn = getattr(lib, fname)
            except AttributeError:
                missing.append(fname)
                continue
            fn.restype = restype
            fn.argtypes = argtypes
        if missing:
            raise LibraryNotFoundError("retnet_cl: %s lacks %s: not a compatible libretnet"
                                       % (lib._name, ", ".join(missing)))
        _loaded = lib
        return lib


def status_name(code):
    name = library().rn_status_str(code)
    return name.decode() if name else "RN_ERR_%d" % code


def _text(raw):
    return raw.decode("utf-8", "replace") if raw else ""


def check(code, ctx_handle=None, message=None):
    """Raises RetNetError for a failed status; the message from the context when given."""
    if code == RN_OK:
        return
    lib = library()
    if message is None:
        message = _text(lib.rn_context_last_error(ctx_handle) if ctx_handle else lib.rn_last_error())
    raise RetNetError(status_name(code), code, message)


def to_bytes(s, what):
    if isinstance(s, bytes):
        return s
    if isinstance(s, os.PathLike):
        s = os.fspath(s)
        if isinstance(s, bytes):
            return s
    if isinstance(s, str):
        return s.encode("utf-8")
    raise TypeError("%s must be str, bytes or a path, not %s" % (what, type(s).__name__))


INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def int32(v, what="token id"):
    """An int as int32, refusing values ctypes would silently wrap."""
    v = int(v) if not isinstance(v, int) else v
    if not INT32_MIN <= v <= INT32_MAX:
        raise OverflowError("%s %d does not fit in int32" % (what, v))
    return v


def id_array(ids):
    """Token ids as a ctypes int32 array (n, pointer)."""
    values = [int32(t) for t in ids]
    arr = (ctypes.c_int32 * max(len(values), 1))(*values)
    return arr, len(values)
