"""Float buffers for logits: NumPy arrays when NumPy is importable, array('f') otherwise."""

import array
import ctypes

try:
    import numpy
except ImportError:  # the binding works without it; logits come back as array('f')
    numpy = None

HAVE_NUMPY = numpy is not None


class FloatBuffer:
    """rows x cols float32s the library writes into through `.pointer`."""

    def __init__(self, rows, cols):
        self.rows, self.cols = rows, cols
        if numpy is not None:
            self.data = numpy.empty((rows, cols), dtype=numpy.float32)
            self.pointer = self.data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        else:
            self.data = array.array("f", bytes(4 * rows * cols))
            address, _ = self.data.buffer_info()
            self.pointer = ctypes.cast(address, ctypes.POINTER(ctypes.c_float))

    def matrix(self):
        """[rows, cols]: a 2-D ndarray, or a list of array('f') rows."""
        if numpy is not None:
            return self.data
        c = self.cols
        return [self.data[i * c:(i + 1) * c] for i in range(self.rows)]

    def row(self):
        """The single row: a 1-D ndarray or an array('f')."""
        if numpy is not None:
            return self.data.reshape(-1)
        return self.data


def copy_floats(pointer, n):
    """n floats at a C pointer, copied (ndarray or array('f'))."""
    raw = ctypes.string_at(pointer, 4 * n)
    if numpy is not None:
        return numpy.frombuffer(raw, dtype=numpy.float32).copy()
    out = array.array("f")
    out.frombytes(raw)
    return out
