"""Tokenizer and streaming Detokenizer: Hugging Face tokenizer.json (BPE), no device needed."""

import ctypes

from . import _lib
from ._handle import _Handle
from ._lib import check, library


class Tokenizer(_Handle):
    """dir/tokenizer.json (and tokenizer_config.json when present), as rn_tokenizer_load."""

    _what = "tokenizer"
    _free = "rn_tokenizer_free"

    def __init__(self, model_dir):
        lib = library()
        handle = ctypes.c_void_p()
        check(lib.rn_tokenizer_load(_lib.to_bytes(model_dir, "model_dir"), ctypes.byref(handle)))
        self._handle = handle
        self.path = model_dir

    @property
    def bos(self):
        """The beginning-of-sequence id, or -1."""
        return library().rn_tokenizer_bos(self._h())

    @property
    def eos(self):
        """The end-of-sequence id, or -1."""
        return library().rn_tokenizer_eos(self._h())

    @property
    def vocab_size(self):
        """The largest id + 1."""
        return library().rn_tokenizer_vocab_size(self._h())

    def encode(self, text, add_special=True):
        """Text (str, or UTF-8 bytes; invalid UTF-8 becomes U+FFFD) to a list of ids.
        add_special: the BOS/EOS the tokenizer's files ask for."""
        lib = library()
        data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
        ids = ctypes.POINTER(ctypes.c_int32)()
        n = ctypes.c_size_t()
        check(lib.rn_tokenizer_encode(self._h(), data, len(data), 1 if add_special else 0,
                                      ctypes.byref(ids), ctypes.byref(n)))
        try:
            return ids[:n.value] if n.value else []
        finally:
            lib.rn_free(ids)

    def decode(self, ids, skip_special=False):
        """Ids to text (always whole UTF-8 characters). An id outside the vocabulary raises
        RetNetError RN_ERR_INVALID_ARGUMENT."""
        lib = library()
        arr, n = _lib.id_array(ids)
        text = ctypes.c_void_p()
        length = ctypes.c_size_t()
        check(lib.rn_tokenizer_decode(self._h(), arr, n, 1 if skip_special else 0,
                                      ctypes.byref(text), ctypes.byref(length)))
        try:
            return ctypes.string_at(text, length.value).decode("utf-8") if length.value else ""
        finally:
            lib.rn_free(text)


class Detokenizer(_Handle):
    """Streaming decoding (rn_detokenizer_*): push ids, get complete UTF-8 text pieces.
    continue_text: the ids continue a text already shown (keep a leading space);
    skip_special: drop special tokens."""

    _what = "detokenizer"
    _free = "rn_detokenizer_free"

    def __init__(self, tokenizer, continue_text=True, skip_special=True):
        lib = library()
        flags = ((_lib.RN_DETOKENIZE_CONTINUE if continue_text else 0) |
                 (_lib.RN_DETOKENIZE_SKIP_SPECIAL if skip_special else 0))
        handle = ctypes.c_void_p()
        check(lib.rn_detokenizer_init(tokenizer._h(), flags, ctypes.byref(handle)))
        self._handle = handle
        self._tokenizer = tokenizer  # the detokenizer reads the tokenizer: keep it alive

    @staticmethod
    def _piece(ptr, length):
        return ctypes.string_at(ptr, length.value).decode("utf-8") if length.value else ""

    def push(self, token):
        ptr, length = ctypes.c_void_p(), ctypes.c_size_t()
        check(library().rn_detokenizer_push(self._h(), _lib.int32(token), ctypes.byref(ptr),
                                            ctypes.byref(length)))
        return self._piece(ptr, length)

    def flush(self):
        ptr, length = ctypes.c_void_p(), ctypes.c_size_t()
        check(library().rn_detokenizer_flush(self._h(), ctypes.byref(ptr), ctypes.byref(length)))
        return self._piece(ptr, length)
