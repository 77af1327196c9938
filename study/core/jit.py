"""How the kernels are compiled: numba's decorator flavours and a cache that knows every file a kernel is built from.

numba keys a cached function on its own file only, but a kernel here compiles other files' functions into itself
(study/core/optim.py's rules, study/core/mlp_kernels.py's network): so that editing any of them recompiles instead of
loading a stale kernel, the cache's stamp covers all of SOURCES.
"""
from __future__ import annotations

import hashlib
import os

import numba as nb
from numba.core import caching

_HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = tuple(os.path.join(_HERE, name) for name in ("kernels.py", "mlp_kernels.py", "optim.py"))
_COMPILED = frozenset(SOURCES[:2])  # the files whose functions are cached


def _sources_stamp(self):
    digest = hashlib.sha256()
    for path in SOURCES:
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


class InTreeLocator(caching.InTreeCacheLocator):
    get_source_stamp = _sources_stamp

    @classmethod
    def from_function(cls, py_func, py_file):
        return super().from_function(py_func, py_file) if os.path.abspath(py_file) in _COMPILED else None


class UserLocator(caching.UserProvidedCacheLocator):  # NUMBA_CACHE_DIR, when set, wins as in numba
    get_source_stamp = _sources_stamp

    @classmethod
    def from_function(cls, py_func, py_file):
        return super().from_function(py_func, py_file) if os.path.abspath(py_file) in _COMPILED else None


for _locator in (InTreeLocator, UserLocator):  # numba tries these in order; ours only claim the kernels' files
    if _locator not in caching.CacheImpl._locator_classes:
        caching.CacheImpl._locator_classes.insert(0, _locator)

jit = nb.njit(cache=True, error_model="numpy")  # numpy's error model: 1/0 is inf and no exception, as in numpy
# The small matrix products may fuse multiply-adds and regroup their sums, as BLAS does: they are sums in some
# order either way (the update rules never get these flags: they must be the readable rules' exact arithmetic).
jit_products = nb.njit(cache=True, error_model="numpy", fastmath={"contract", "reassoc"})
inline = nb.njit(inline="always", error_model="numpy")
jit_inline = nb.njit(cache=True, inline="always", error_model="numpy")  # inlined where called: no call overhead
# A metric's sum, its terms added in any order (vectorised): only the sum matters, not the order.
jit_sum = nb.njit(cache=True, error_model="numpy", fastmath={"reassoc"})
