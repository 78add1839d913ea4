"""retnet_cl: Python bindings (ctypes) for retnet-cl, RetNet inference on any OpenCL device.

    import retnet_cl as rn
    with rn.Context() as ctx, rn.Model(ctx, "examples/kjv-retnet") as model:
        for piece in rn.generate(model, "And God said,", max_tokens=64, seed=1):
            print(piece, end="", flush=True)

The library is found through $RETNET_LIBRARY (a path to libretnet.so.0), else the default
loader. Every failure raises RetNetError (status, code, message). NumPy is optional: logits are
float32 ndarrays with it, array('f') without.
"""

from ._arrays import HAVE_NUMPY
from ._lib import LibraryNotFoundError, RetNetError, library
from .core import Context, Model, Session, devices, version
from .generate import Generation, Sampler, generate
from .tokenizer import Detokenizer, Tokenizer

__all__ = [
    "Context", "Detokenizer", "Generation", "HAVE_NUMPY", "LibraryNotFoundError", "Model", "RetNetError",
    "Sampler", "Session", "Tokenizer", "devices", "generate", "library", "version",
]
