"""Devices, Context, Model and Session over rn_context, rn_model and rn_session.

Lifetimes follow the C rules: a session needs its model, a model its context. Each child holds
its parent, so garbage collection frees children first; an explicit close() of a parent closes
its children first.
"""

import ctypes
import threading
import weakref

from . import _lib
from ._arrays import FloatBuffer, copy_floats
from ._handle import _Handle
from ._lib import RetNetError, check, library


_MATRIX_ENGINES = {0: None, 1: "nvidia-mma", 2: "intel-dpas", 3: "amd"}
_PRECISIONS = {"f32": 0, "f16": 1, "bf16": 2, "auto": 3}


def _device_dict(info):
    def s(raw):
        return raw.decode("utf-8", "replace")
    return {
        "id": "%d:%d" % (info.platform_index, info.device_index),
        "platform": s(info.platform),
        "vendor": s(info.vendor),
        "name": s(info.name),
        "version": s(info.version),
        "driver": s(info.driver),
        "is_gpu": bool(info.is_gpu),
        "compute_units": info.compute_units,
        "global_mem_bytes": info.global_mem_bytes,
        "max_alloc_bytes": info.max_alloc_bytes,
        "local_mem_bytes": info.local_mem_bytes,
        "max_work_group": info.max_work_group,
        "has_fp16": bool(info.has_fp16),
        "platform_index": info.platform_index,
        "device_index": info.device_index,
        "nv_compute_capability": "%d.%d" % (info.nv_cc_major, info.nv_cc_minor) if info.nv_cc_major else None,
        "matrix_engine": _MATRIX_ENGINES.get(info.matrix_engine, "unknown"),
    }


def devices():
    """Every OpenCL device of every platform, as dicts of rn_device_info's fields (plus "id",
    the "P:D" a Context's device= accepts)."""
    lib = library()
    count = ctypes.c_size_t()
    check(lib.rn_devices_list(None, 0, ctypes.byref(count)))
    while True:
        capacity = count.value
        if capacity == 0:
            return []
        infos = (_lib.rn_device_info * capacity)()
        check(lib.rn_devices_list(infos, capacity, ctypes.byref(count)))
        if count.value <= capacity:
            return [_device_dict(infos[i]) for i in range(count.value)]


def version():
    """The library's version, "MAJOR.MINOR.PATCH"."""
    return library().rn_version().decode()


class Context(_Handle):
    """One OpenCL device (rn_context).

    device           -- "P:D", a name substring, or None ($RETNET_DEVICE, else the first GPU,
                        else the first device)
    program_cache    -- None: auto (on, except on PoCL, which caches itself); True/False
    cache_dir        -- None: $RETNET_CACHE_DIR, else $XDG_CACHE_HOME/retnet-cl, else ~/.cache/retnet-cl
    work_group       -- work-items of the reducing kernels (0: default)
    project_max_rows -- rows up to which products take the project kernel (0: default)
    precision        -- "f32" (default, exact), "f16", "bf16" or "auto": how the products'
                        inputs may be rounded to reach a matrix engine (rn_precision)
    max_allocation   -- bytes: the largest single buffer to allocate when below the device's
                        limit (0: the device's); larger weight matrices are held in pieces
    """

    _what = "context"
    _free = "rn_context_free"

    def __init__(self, device=None, program_cache=None, work_group=0, project_max_rows=0, cache_dir=None,
                 precision="f32", max_allocation=0):
        lib = library()
        opts = _lib.rn_context_options()
        lib.rn_context_options_default(ctypes.byref(opts))
        if device is not None:
            opts.device = _lib.to_bytes(device, "device")
        if program_cache is not None:
            opts.program_cache = 1 if program_cache else 0
        if cache_dir is not None:
            opts.cache_dir = _lib.to_bytes(cache_dir, "cache_dir")
        opts.work_group = int(work_group)
        opts.project_max_rows = int(project_max_rows)
        opts.max_allocation = int(max_allocation)
        if precision not in _PRECISIONS:
            raise ValueError("precision must be f32, f16, bf16 or auto, not %r" % (precision,))
        opts.precision = _PRECISIONS[precision]
        handle = ctypes.c_void_p()
        message = ctypes.create_string_buffer(4096)
        st = lib.rn_context_init(ctypes.byref(handle), ctypes.byref(opts), message, len(message))
        check(st, message=message.value.decode("utf-8", "replace") or None)
        self._handle = handle
        self._models = weakref.WeakSet()
        # Cancellation: the C flag is seen only by model loads and prompts. generate() checks
        # this event between tokens as well; the lock keeps the two in step.
        self._cancel_lock = threading.RLock()
        self._cancel_event = threading.Event()

    def _check(self, st):
        """check() with this context's message; a cancellation seen by C is consumed here."""
        if st == _lib.RN_ERR_CANCELLED:
            with self._cancel_lock:
                self._cancel_event.clear()
        check(st, self._handle)

    @property
    def device(self):
        """The device this context runs on (a dict, as devices() gives)."""
        return _device_dict(library().rn_context_device(self._h()).contents)

    def memory(self):
        """(current, peak) bytes of device memory this context has allocated."""
        cur, peak = ctypes.c_uint64(), ctypes.c_uint64()
        library().rn_context_memory(self._h(), ctypes.byref(cur), ctypes.byref(peak))
        return cur.value, peak.value

    @property
    def last_error(self):
        return _lib._text(library().rn_context_last_error(self._h()))

    def cancel(self, cancel=True):
        """Asks the work running on this context to stop; callable from any thread (or a signal
        handler). A model load or prompt then raises RetNetError RN_ERR_CANCELLED, and so does a
        generate() iterator before its next token. A request that nothing has seen yet stays
        pending for the next such call; cancel(False) withdraws it."""
        with self._cancel_lock:
            library().rn_context_cancel(self._h(), 1 if cancel else 0)
            if cancel:
                self._cancel_event.set()
            else:
                self._cancel_event.clear()

    def _take_cancel(self):
        """True (and the request withdrawn) when a cancel() is pending."""
        if not self._cancel_event.is_set():
            return False
        with self._cancel_lock:
            if not self._cancel_event.is_set():
                return False
            self._cancel_event.clear()
            library().rn_context_cancel(self._handle, 0)
            return True

    def _close_children(self):
        for model in list(self._models):
            model.close()


def _model_info_dict(info):
    return {
        "family": _lib._text(info.family),
        "embed_dim": info.embed_dim,
        "value_embed_dim": info.value_embed_dim,
        "heads": info.heads,
        "ffn_dim": info.ffn_dim,
        "layers": info.layers,
        "vocab_size": info.vocab_size,
        "chunk_size": info.chunk_size,
        "activation": _lib.ACTIVATIONS.get(info.activation, info.activation),
        "layernorm_eps": info.layernorm_eps,
        "scale_embedding": bool(info.scale_embedding),
        "layernorm_embedding": bool(info.layernorm_embedding),
        "tied_embeddings": bool(info.tied_embeddings),
        "normalize_before": bool(info.normalize_before),
        "deepnorm": bool(info.deepnorm),
        "parameters": info.parameters,
        "file_bytes": info.file_bytes,
        "device_bytes": info.device_bytes,
        "file_dtype": _lib._text(info.file_dtype),
        "device_dtype": _lib._text(info.device_dtype),
        "kv_heads": info.kv_heads,
        "key_embed_dim": info.key_embed_dim,
        "batch_work_group": info.batch_work_group,
    }


class Model(_Handle):
    """A checkpoint directory loaded onto a context (rn_model_load).

    weights  -- "file" (the checkpoint's precision), "f32", "f16", "bf16", "q8" or "q4"
    progress -- None, or progress(done_bytes, total_bytes) called while weights upload; it runs
                with the context's lock held and must not call into the library
    """

    _what = "model"
    _free = "rn_model_free"

    def __init__(self, ctx, path, weights="file", progress=None):
        if weights not in _lib.WEIGHTS:
            raise ValueError("weights must be one of %s, not %r" % (", ".join(_lib.WEIGHTS), weights))
        lib = library()
        opts = _lib.rn_model_options()
        lib.rn_model_options_default(ctypes.byref(opts))
        opts.weights = _lib.WEIGHTS[weights]
        callback = None
        if progress is not None:
            callback = _lib.rn_progress_fn(lambda user, done, total: progress(done, total))
            opts.progress = callback
        handle = ctypes.c_void_p()
        ctx._check(lib.rn_model_load(ctx._h(), _lib.to_bytes(path, "path"), ctypes.byref(opts),
                                     ctypes.byref(handle)))
        self._handle = handle
        self._progress = callback  # kept alive with the model
        self.context = ctx
        self.path = path
        self._sessions = weakref.WeakSet()
        self._tokenizer = None
        info = _lib.rn_model_info()
        ctx._check(lib.rn_model_info_get(handle, ctypes.byref(info)))
        self.info = _model_info_dict(info)
        self.vocab_size = int(info.vocab_size)
        ctx._models.add(self)

    @property
    def tokenizer(self):
        """The directory's tokenizer.json, loaded on first use (RetNetError RN_ERR_IO when the
        directory has none)."""
        self._h()
        if self._tokenizer is None:
            from .tokenizer import Tokenizer
            self._tokenizer = Tokenizer(self.path)
        return self._tokenizer

    def session(self):
        """A new, empty Session on this model."""
        return Session(self)

    def _close_children(self):
        for session in list(self._sessions):
            session.close()
        if self._tokenizer is not None:
            self._tokenizer.close()


class Session(_Handle):
    """The recurrent state of one sequence on a model (rn_session)."""

    _what = "session"
    _free = "rn_session_free"

    def __init__(self, model, _handle=None):
        handle = _handle
        if handle is None:
            handle = ctypes.c_void_p()
            model.context._check(library().rn_session_init(model._h(), ctypes.byref(handle)))
        self._handle = handle
        self.model = model
        self.context = model.context
        model._sessions.add(self)

    @property
    def position(self):
        """The number of tokens the session has consumed."""
        return int(library().rn_session_position(self._h()))

    @property
    def logits(self):
        """The logits after the last token consumed ([V]), also after load(); None when empty."""
        h = self._h()
        lib = library()
        if lib.rn_session_position(h) == 0:
            return None
        logits = lib.rn_session_logits(h)
        if not logits:  # left on the device by decode_greedy, and reading them back failed
            raise RetNetError("RN_ERR_OPENCL", _lib.RN_ERR_OPENCL, self.context.last_error)
        return copy_floats(logits, self.model.vocab_size)

    def recent(self, capacity=_lib.RECENT_TOKENS):
        """The last min(capacity, position, 256) tokens consumed, oldest first."""
        buf = (ctypes.c_int32 * max(int(capacity), 1))()
        n = library().rn_session_recent(self._h(), buf, int(capacity))
        return buf[:n]

    def prefill(self, ids, mode="chunkwise", chunk_size=0, all_logits=False):
        """Feeds token ids. "parallel" and "chunkwise" start from an empty session; "recurrent"
        feeds them one at a time (and also continues a session). Returns the logits of every
        position ([n, V]) with all_logits, else those of the last ([V]); NumPy float32 arrays,
        or array('f') (a list of rows for [n, V]) without NumPy."""
        if mode not in _lib.MODES:
            raise ValueError("mode must be parallel, chunkwise or recurrent, not %r" % (mode,))
        arr, n = _lib.id_array(ids)
        if n == 0:
            raise ValueError("prefill needs at least one token")
        V = self.model.vocab_size
        out = FloatBuffer(n, V) if all_logits else None
        self.context._check(library().rn_session_prefill(self._h(), arr, n, _lib.MODES[mode], int(chunk_size),
                                                          out.pointer if out else None))
        return out.matrix() if out else self.logits

    def decode(self, token):
        """Feeds one token in the recurrent form; returns the logits after it ([V])."""
        out = FloatBuffer(1, self.model.vocab_size)
        self.context._check(library().rn_session_decode(self._h(), _lib.int32(token), out.pointer))
        return out.row()

    def decode_greedy(self, token):
        """Feeds one token in the recurrent form and returns the greedy next token (the largest
        logit, the lowest id on ties), chosen on the device: the step reads back that id alone.
        The logits stay on the device until `logits` asks for them."""
        arr, _ = _lib.id_array([token])
        nxt = (ctypes.c_int32 * 1)()
        self.context._check(library().rn_session_decode_greedy(self._h(), 1, arr, nxt))
        return int(nxt[0])

    def generate_greedy(self, token, steps):
        """Feeds `token` and then each greedy choice for `steps` steps in all; returns the
        `steps` choices. The choices go from step to step on the device and come back once at the
        end (rn_session_generate_greedy); the last choice is not yet fed."""
        arr, _ = _lib.id_array([token])
        out = (ctypes.c_int32 * int(steps))()
        done = ctypes.c_size_t(0)
        self.context._check(library().rn_session_generate_greedy(self._h(), 1, arr, int(steps), out,
                                                                  ctypes.byref(done)))
        return [int(t) for t in out]

    def reset(self):
        """Forgets every token."""
        self.context._check(library().rn_session_reset(self._h()))

    def save(self, path):
        """Writes the state to `path` (atomically)."""
        self.context._check(library().rn_session_save(self._h(), _lib.to_bytes(path, "path")))

    def load(self, path):
        """Replaces the state with the one in `path` (RN_ERR_STATE_FILE for another model's or a
        corrupt file, leaving the session as it was)."""
        self.context._check(library().rn_session_load(self._h(), _lib.to_bytes(path, "path")))

    def save_bytes(self):
        """The bytes save() would write, as a bytes object."""
        size = library().rn_session_state_bytes(self._h())
        buf = ctypes.create_string_buffer(size)
        self.context._check(library().rn_session_save_buffer(self._h(), ctypes.cast(buf, ctypes.c_void_p), size))
        return buf.raw

    def load_bytes(self, data):
        """Replaces the state with one from save_bytes() (the checks of load())."""
        data = bytes(data)
        buf = ctypes.create_string_buffer(data, len(data))
        self.context._check(library().rn_session_load_buffer(self._h(), ctypes.cast(buf, ctypes.c_void_p), len(data)))

    def copy(self):
        """A new Session holding a copy of this one's state."""
        handle = ctypes.c_void_p()
        self.context._check(library().rn_session_copy(self._h(), ctypes.byref(handle)))
        return Session(self.model, _handle=handle)


__all__ = ["Context", "Model", "Session", "RetNetError", "devices", "version"]
