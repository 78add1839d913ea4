"""generate(): text generation as `retnet generate` does it, as an iterator of text pieces."""

import ctypes

from . import _lib
from ._lib import RetNetError, check, library
from .core import Model, Session
from .tokenizer import Detokenizer


class Sampler:
    """rn_sampler: the next token from a row of logits (see rn_sampling in retnet.h)."""

    def __init__(self, vocab_size, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1,
                 repeat_last_n=64, seed=0):
        lib = library()
        s = _lib.rn_sampling()
        lib.rn_sampling_default(ctypes.byref(s))
        s.temperature = float(temperature)
        s.top_k = _lib.int32(top_k, "top_k")
        s.top_p = float(top_p)
        s.min_p = float(min_p)
        s.repeat_penalty = float(repeat_penalty)
        s.repeat_last_n = _lib.int32(repeat_last_n, "repeat_last_n")
        if not 0 <= int(seed) < (1 << 64):
            raise OverflowError("seed must be in [0, 2^64)")
        s.seed = int(seed)
        handle = ctypes.c_void_p()
        check(lib.rn_sampler_init(ctypes.byref(s), int(vocab_size), ctypes.byref(handle)))
        self.is_argmax = bool(lib.rn_sampling_is_argmax(ctypes.byref(s)))
        self._handle = handle
        self._token = ctypes.c_int32()

    def sample_pointer(self, logits, recent, n_recent, position):
        """The token that follows `position` tokens, from a C float pointer of vocab floats."""
        check(library().rn_sampler_sample(self._handle, logits, recent, n_recent, position,
                                          ctypes.byref(self._token)))
        return self._token.value

    def sample(self, logits, recent=(), position=0):
        """The same from a sequence of floats (ndarray, array('f') or list)."""
        buf = (ctypes.c_float * len(logits))(*[float(x) for x in logits])
        arr, n = _lib.id_array(recent)
        return self.sample_pointer(buf, arr, n, int(position))

    def close(self):
        if getattr(self, "_handle", None):
            library().rn_sampler_free(self._handle)
            self._handle = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class Generation:
    """The iterator generate() returns. Besides the text pieces it keeps:

    tokens      -- the ids generated so far (each one already fed to the session)
    text        -- the text yielded so far
    stop_reason -- None while running, then "eos", "length" or "stop"
    session     -- the Session it runs on (one it made itself is closed at the end)

    Closing it (close(), a with block, or exhausting it) frees what it holds.
    """

    def __init__(self, target, prompt, max_tokens, sampling, stop):
        if isinstance(target, Model):
            self.session, self._own_session = Session(target), True
        elif isinstance(target, Session):
            self.session, self._own_session = target, False
        else:
            raise TypeError("generate() takes a Model or a Session, not %s" % type(target).__name__)
        try:
            self._setup(prompt, max_tokens, sampling, stop)
        except BaseException:
            self.close()
            raise

    def _setup(self, prompt, max_tokens, sampling, stop):
        session = self.session
        model = session.model
        self.context = model.context
        self.tokenizer = model.tokenizer
        self.tokens = []
        self.text = ""
        self.stop_reason = None
        self._max = int(max_tokens)
        if self._max < 0:
            raise ValueError("max_tokens must be >= 0")
        self._stops = [stop] if isinstance(stop, str) else list(stop or [])
        if any(not isinstance(s, str) or not s for s in self._stops):
            raise ValueError("stop must be a non-empty string or a list of them")
        self._sampler = Sampler(model.vocab_size, **sampling)
        # As `retnet generate`: greedy without a repeat penalty takes the argmax on the device
        # (Session.decode_greedy) and reads back only the token; _next_token holds its choice.
        self._device_greedy = self._sampler.is_argmax
        self._next_token = None
        # The prompt: a BOS only at the start of a session, as the CLI encodes it.
        if prompt is None:
            ids = []
        elif isinstance(prompt, (str, bytes)):
            ids = self.tokenizer.encode(prompt, add_special=session.position == 0)
        else:
            ids = [_lib.int32(t) for t in prompt]
        if not ids and session.position == 0:
            raise ValueError("the prompt is empty (and the session holds no tokens)")
        self._prompt = ids
        self._eos = self.tokenizer.eos
        self._detok = Detokenizer(self.tokenizer, continue_text=True, skip_special=True)
        self._recent = (ctypes.c_int32 * _lib.RECENT_TOKENS)()
        self._started = False
        self._finished = False

    def __iter__(self):
        return self

    def _feed_prompt(self):
        if self._prompt:
            # The parallel and chunkwise forms start from an empty state.
            mode = "chunkwise" if self.session.position == 0 else "recurrent"
            lib = library()
            arr, n = _lib.id_array(self._prompt)
            self.context._check(lib.rn_session_prefill(self.session._h(), arr, n, _lib.MODES[mode], 0, None))
        self._started = True

    def _finish(self, reason):
        """Ends the text: the detokenizer's held-back bytes; then everything is freed."""
        self.stop_reason = reason
        self._finished = True
        try:
            tail = self._detok.flush()
        finally:
            self.close()
        self.text += tail
        return tail

    def __next__(self):
        if self._finished:
            raise StopIteration
        try:
            return self._next()
        except BaseException:
            self._finished = True
            self.close()
            raise

    def _next(self):
        lib = library()
        if not self._started:
            if self.context._take_cancel():
                raise RetNetError("RN_ERR_CANCELLED", _lib.RN_ERR_CANCELLED,
                                  "the generation was cancelled (Context.cancel)")
            self._feed_prompt()
        h = self.session._h()
        while True:
            if len(self.tokens) >= self._max:
                tail = self._finish("length")
                if tail:
                    return tail
                raise StopIteration
            if self.context._take_cancel():
                raise RetNetError("RN_ERR_CANCELLED", _lib.RN_ERR_CANCELLED,
                                  "the generation was cancelled (Context.cancel) after %d tokens"
                                  % len(self.tokens))
            # What `retnet generate` samples from: the session's last logits, its recent
            # tokens (up to 256; the sampler penalises the last repeat_last_n) and position.
            if self._next_token is not None:
                token = self._next_token
            else:
                n_recent = lib.rn_session_recent(h, self._recent, _lib.RECENT_TOKENS)
                token = self._sampler.sample_pointer(lib.rn_session_logits(h), self._recent, n_recent,
                                                     lib.rn_session_position(h))
            if token == self._eos:
                tail = self._finish("eos")
                if tail:
                    return tail
                raise StopIteration
            if self._device_greedy:
                self._next_token = self.session.decode_greedy(token)
            else:
                self.context._check(lib.rn_session_decode(h, token, None))
            self.tokens.append(token)
            piece = self._detok.push(token)
            if not piece:
                continue
            self.text += piece
            if self._stops and self._stop_reached(len(piece)):
                return piece + self._finish("stop")
            return piece

    def _stop_reached(self, fresh):
        """Whether a stop string ends within the last `fresh` characters (as the CLI checks)."""
        for s in self._stops:
            start = max(0, len(self.text) - fresh - len(s))
            if s in self.text[start:]:
                return True
        return False

    def close(self):
        """Frees the sampler and detokenizer, and the session when generate() made it."""
        for name in ("_sampler", "_detok"):
            obj = getattr(self, name, None)
            if obj is not None:
                obj.close()
        if getattr(self, "_own_session", False) and self.session is not None:
            self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._finished = True
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def generate(session_or_model, prompt, max_tokens=128, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
             repeat_penalty=1.1, repeat_last_n=64, seed=0, stop=None):
    """Generates text after `prompt`, yielding it in pieces of whole UTF-8 characters.

    session_or_model -- a Session to continue (its state advances with every token), or a
                        Model (a fresh session, freed at the end)
    prompt           -- text (encoded with the model's tokenizer; a BOS only when the session is
                        empty), a list of token ids, or None/"" to continue a session as it is
    The prompt is prefilled chunkwise when the session is empty, recurrently otherwise; then each
    token is sampled from the session's logits (temperature 0: greedy) and fed. It stops at the
    tokenizer's end-of-sequence token (not fed), after max_tokens, or after the piece in which
    a `stop` string (a str or a list of them) ends; that piece is yielded. Same seed, same
    settings: the same tokens as `retnet generate`. Context.cancel() from another thread makes
    the next step raise RetNetError RN_ERR_CANCELLED (tokens already generated stay fed).
    The sampler settings are checked, and the prompt encoded, before this returns.
    """
    sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                    repeat_penalty=repeat_penalty, repeat_last_n=repeat_last_n, seed=seed)
    return Generation(session_or_model, prompt, max_tokens, sampling, stop)
