"""The kernels' cache (study/core/jit.py): where it lives, that it follows every file a kernel is built from, that
two processes may fill it at once, and that importing the core changes nothing in the process.

Every case runs in a fresh interpreter on a copy of study/ (numba's settings and caches are per process and per
tree).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

STUDY = Path(__file__).resolve().parents[1] / "study"

_CACHE_DIR = """
from study.core import jit
print(jit.cache_dir())
"""

_ONE_EPOCH = """
import numpy as np
from study.core import jit, kernels, nn
net = nn.MLP((3, 4, 2))
rng = np.random.default_rng(0)
X = rng.standard_normal((8, 3)); Y = np.eye(2)[rng.integers(0, 2, 8)]
compiled = kernels.CompiledEpochs(net, "momentum", X, Y, batch=4, epochs=1)
theta = np.array(net.init(0), dtype=float).reshape(1, -1)
state = kernels.optim.OPTIMIZERS["momentum"].init({"theta": theta})
compiled.epoch(theta, state, {"eta": np.array([0.1]), "gamma": np.array([0.9])}, None)
print(jit.cache_dir(), repr(float(theta.sum())))
"""

_NO_SIDE_EFFECTS = """
import importlib, os, pkgutil, sys
import numba, numpy, scipy.special, sklearn, threadpoolctl  # the libraries' own import effects (sklearn sets KMP_*)
import study.core
environ, cache_dir = dict(os.environ), numba.config.CACHE_DIR
threads = [(i["internal_api"], i["num_threads"]) for i in threadpoolctl.threadpool_info()]
modules = [m.name for m in pkgutil.iter_modules(study.core.__path__, "study.core.")]
for name in modules:
    importlib.import_module(name)
assert "study.core.kernels" in sys.modules and len(modules) >= 8, modules
assert dict(os.environ) == environ, "an import changed the environment"
assert numba.config.CACHE_DIR == cache_dir, "an import left numba's cache directory changed"
after = [(i["internal_api"], i["num_threads"]) for i in threadpoolctl.threadpool_info()]
assert after[:len(threads)] == threads, (threads, after)  # no thread limit set on import
assert "matplotlib" not in sys.modules, "the numeric core imports matplotlib"
print("ok")
"""


@pytest.fixture
def tree(tmp_path):
    """A copy of study/ without its caches."""
    shutil.copytree(STUDY, tmp_path / "tree" / "study", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "tree"


def _python(script: str, tree: Path, cache: Path | None = None) -> subprocess.Popen:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree), "HOME": str(tree),
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    if cache is not None:
        env["NUMBA_CACHE_DIR"] = str(cache)
    return subprocess.Popen([sys.executable, "-c", script], env=env, cwd=tree, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _output(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=900)
    assert process.returncode == 0, err[-3000:]
    return out.strip()


def _files(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns for p in directory.rglob("*.nb[ic]")}


def test_without_numba_cache_dir_the_kernels_cache_in_the_tree_under_the_hash_of_their_sources(tree):
    first = Path(_output(_python(_CACHE_DIR, tree)))
    assert first.parent == tree / "study" / "core" / "__pycache__" and first.name.startswith("kernels-")
    assert _output(_python(_CACHE_DIR, tree)) == str(first), "the same sources must give the same directory"
    for edited in ("optim.py", "mlp_kernels.py", "jit.py"):  # every file a kernel is built from
        path = tree / "study" / "core" / edited
        text = path.read_text()
        path.write_text(text + "\n# edited\n")
        assert _output(_python(_CACHE_DIR, tree)) != str(first), f"editing {edited} kept the cache directory"
        path.write_text(text)
    nn = tree / "study" / "core" / "nn.py"  # Python-side only: not compiled into a kernel
    nn.write_text(nn.read_text() + "\n# edited\n")
    assert _output(_python(_CACHE_DIR, tree)) == str(first)


def test_importing_the_core_changes_no_environment_numba_setting_or_thread_limit(tree):
    assert _output(_python(_NO_SIDE_EFFECTS, tree)) == "ok"
    assert _output(_python(_NO_SIDE_EFFECTS, tree, tree / "user-cache")) == "ok"


def test_two_processes_compiling_at_once_share_the_users_cache_and_a_third_loads_it(tree, tmp_path):
    """Two sweep workers on a fresh machine: both compile into an empty NUMBA_CACHE_DIR at the same time and get
    the same numbers; the kernels land below that directory (not in the tree); a third process loads them, writing
    nothing."""
    cache = tmp_path / "user-cache"
    both = [_python(_ONE_EPOCH, tree, cache) for _ in range(2)]
    outputs = {_output(p) for p in both}
    assert len(outputs) == 1, outputs
    directory, value = outputs.pop().split()
    assert Path(directory).parent == cache and Path(directory).name.startswith("kernels-")
    written = _files(cache)
    assert any(name.endswith(".nbc") for name in written) and all(n.startswith(Path(directory).name) for n in written)
    assert not list((tree / "study").rglob("*.nb[ic]")), "a kernel was cached outside NUMBA_CACHE_DIR"
    assert _output(_python(_ONE_EPOCH, tree, cache)) == f"{directory} {value}"
    assert _files(cache) == written, "the third process compiled again instead of loading the cache"


def test_editing_a_rule_recompiles_the_cached_kernels(tree, tmp_path):
    """numba keys a cached function on its own file, but the kernels compile study/core/optim.py's rules (and
    mlp_kernels.py's network) into themselves: an edited rule must never run as the stale cached kernel."""
    cache = tmp_path / "user-cache"
    first = _output(_python(_ONE_EPOCH, tree, cache))
    assert list(cache.rglob("*.nbi")), "the kernels were not cached"
    assert _output(_python(_ONE_EPOCH, tree, cache)) == first  # loaded from the cache: the same numbers
    rules = tree / "study" / "core" / "optim.py"
    line = "    v = gamma * v + eta * g  #"
    assert line in rules.read_text()
    rules.write_text(rules.read_text().replace(line, "    v = gamma * v + 2.0 * eta * g  #"))
    edited = _output(_python(_ONE_EPOCH, tree, cache))
    assert edited.split()[1] != first.split()[1]  # the edited rule ran: the cached kernel was not reused
    assert edited.split()[0] != first.split()[0]  # in a directory of its own
