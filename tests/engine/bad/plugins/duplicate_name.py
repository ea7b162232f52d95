"""A plugin that registers a kernel under a built-in's name (a registration error)."""

from numba import njit

from tickflow.kernels.base import kernel


@kernel("ewma", inputs=("price",), outputs=("my_ewma",))
@njit(nogil=True, cache=True)
def my_ewma(key, ts, x, out):
    """Not registered: the name is taken."""
    return key.shape[0]
