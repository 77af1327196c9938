"""The order the test modules run in: the slowest first.

`make test` runs the suite on two processes, a module at a time each (``-n 2 --dist loadfile
--no-loadscope-reorder``): a module is handed to whichever process is free, in the order collected. Started last,
a long module would keep one process busy while the other has nothing left to do; started first, the many short
modules fill in beside it. Within a module, and among the modules not listed, the order is pytest's own.
"""
from __future__ import annotations

# Ranked by serial wall time per module (`--durations=0` under `make test`); the order matters, not the figures
SLOWEST_FIRST = (
    "test_resume.py",
    "test_stores.py",
    "test_mirror.py",
    "test_sweep.py",
    "test_sweep_ui.py",
    "test_kernels.py",
    "test_jit.py",
    "test_faults.py",
    "test_services.py",
    "test_report_partial.py",
    "test_report_document.py",
    "test_figures_legible.py",
    "test_lecture.py",
    "test_config.py",
    "test_bad_input.py",
    "test_tracking.py",
    "test_claims.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: place for place, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each module's own order is kept
