"""How the kernels are compiled: numba's decorator flavours and a cache that knows every file a kernel is built from.

numba keys a cached function on its own file only, but a kernel here compiles other files' functions into itself
(the registry's rules from study/core/optim.py, the network from study/core/mlp_kernels.py). So that editing any of
them recompiles instead of loading a stale kernel, the kernels are cached in a directory named by the hash of all
the files they are built from (``sources()``): an edited file is a new directory, hence an empty cache.

numba fixes a function's cache directory when the function is decorated, from ``numba.config.CACHE_DIR`` (the
setting behind NUMBA_CACHE_DIR). The decorators below set it to the hashed directory for that moment only and put
it back: nothing else in the process sees a changed numba setting, and no environment variable is touched. Where
the directory lives:
- below the user's NUMBA_CACHE_DIR when it is set (numba's own convention, honoured);
- else in study/core/__pycache__ (where numba itself would cache these files) when it is writable;
- else in the user's cache directory ($XDG_CACHE_HOME or ~/.cache, under optstudy/).
An edit leaves the previous directory behind (another checkout at that version may share the cache): `make clean`
or deleting the directory removes them.

Two processes compiling the same kernel at once (two sweep workers on a fresh machine) are fine: numba writes every
cache file under a unique temporary name and renames it into place, so each finds a whole file or none.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import os

import numba as nb

from study.core import optim

_HERE = os.path.dirname(os.path.abspath(__file__))
_KERNEL_FILES = ("jit.py", "kernels.py", "mlp_kernels.py")  # jit.py too: its compile flags shape the code


def sources() -> tuple[str, ...]:
    """Every file a kernel is built from: the kernels' own and those of the registry's rules and look-aheads."""
    rules = {inspect.getsourcefile(f) for o in optim.OPTIMIZERS.values() for f in (o.rule, o.lookahead_rule) if f}
    return tuple(sorted({os.path.join(_HERE, name) for name in _KERNEL_FILES} | {os.path.abspath(p) for p in rules}))


def _writable(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


@functools.cache
def cache_dir() -> str:
    """The directory the kernels are cached in: ``kernels-<hash of sources()>`` below the base described above."""
    digest = hashlib.sha256()
    for path in sources():
        with open(path, "rb") as f:
            digest.update(path.encode() + b"\0" + hashlib.sha256(f.read()).digest())
    name = f"kernels-{digest.hexdigest()[:16]}"
    if nb.config.CACHE_DIR:  # the user's NUMBA_CACHE_DIR, as numba read it
        return os.path.join(nb.config.CACHE_DIR, name)
    in_tree = os.path.join(_HERE, "__pycache__")
    if _writable(in_tree):
        return os.path.join(in_tree, name)
    user = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(user, "optstudy", name)


@contextlib.contextmanager
def _caching_in(directory: str):
    before = nb.config.CACHE_DIR
    nb.config.CACHE_DIR = directory
    try:
        yield
    finally:
        nb.config.CACHE_DIR = before


def _cached(**options):
    """numba.njit(cache=True, **options), the cache in ``cache_dir()``."""
    decorator = nb.njit(cache=True, **options)

    def decorate(func):
        with _caching_in(cache_dir()):
            return decorator(func)
    return decorate


jit = _cached(error_model="numpy")  # numpy's error model: 1/0 is inf and no exception, as in numpy
# The small matrix products may fuse multiply-adds and regroup their sums, as BLAS does: they are sums in some
# order either way (the update rules never get these flags: they must be the readable rules' exact arithmetic).
jit_products = _cached(error_model="numpy", fastmath={"contract", "reassoc"})
inline = nb.njit(inline="always", error_model="numpy")  # compiled into its caller, cached with it
jit_inline = _cached(inline="always", error_model="numpy")  # inlined where called: no call overhead
# A metric's sum, its terms added in any order (vectorised): only the sum matters, not the order.
jit_sum = _cached(error_model="numpy", fastmath={"reassoc"})
