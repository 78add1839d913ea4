"""_Handle: the base of the classes that own one C handle (context, model, session, tokenizer,
detokenizer)."""

from ._lib import library


class _Handle:
    """An owned C handle, freed once by close() (also on garbage collection).

    A subclass names its C free function in _free and what it is in _what (for the "closed"
    error); one that owns children closes them in _close_children(), which close() calls
    before the free.
    """

    _handle = None
    _what = "object"
    _free = None  # the name of the C function that frees the handle, e.g. "rn_tokenizer_free"

    def _h(self):
        if not self._handle:
            raise ValueError("the %s is closed" % self._what)
        return self._handle

    @property
    def closed(self):
        return not self._handle

    def _close_children(self):
        """Closes what depends on this handle; called by close() while the handle is still live."""

    def close(self):
        if getattr(self, "_handle", None):
            self._close_children()
            getattr(library(), self._free)(self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
