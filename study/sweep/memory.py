"""How much memory a sweep's worker needs, worked out from the profile before anything is written.

Each bound of a profile (study.schema.sweep) is a sane size alone, but their products are not: a population of
1,024 networks of two hidden layers of 4,096 units is 1.4 TB of weights, and ten thousand trials of ten thousand
epochs is terabytes of curves. So the sweep works out what one worker holds while it runs the largest cell, and
refuses, in one line naming the keys that drive it, a profile that would not fit in the memory this machine has.

A worker running a cell holds (every number float64, 8 bytes, unless said otherwise):

- ``networks``: the cell's K networks of P parameters, as ``PARAMETER_COPIES`` arrays of (K, P) (the initial
  weights, the weights trained, the weights kept where each member stopped, the gradient, the look-ahead point or
  the update) and the optimizer's state, twice (the readable path's update returns new state beside the old);
- ``activations``: every layer's activations of the K networks over the whole training part (it is scored whole
  after training), ``ACTIVATION_COPIES`` times (the activations, their pre-activations or derivatives, the deltas);
- ``history``: the training loop's per-epoch history, K x epochs x ``HISTORY_METRICS``;
- ``curves``: the cell's record of every run's curves (every trial of every arm, both tracks of every evaluation
  seed), epochs x ``HISTORY_METRICS`` per run, as Python floats in lists (``PY_FLOAT``) and then as curves.parquet's
  float64 table;
- ``journal``: Optuna's journal storage replays the whole sweep into memory: every trial of every cell, with its
  pruning reports and its validation curve (its MLflow payload), ``JOURNAL_TRIAL_EPOCH`` bytes per trial and
  epoch (measured: the file's text, its parsed lines and the replayed trials, all held while a worker first reads
  it); nothing for a database (``OPTUNA_STORAGE``), which a worker reads one study at a time;
- ``dataset``: the dataset, ``DATASET_COPIES`` times (as loaded, split, scaled, and the compiled path's copy);
- ``process``: the interpreter with numpy, scikit-learn, numba, Optuna and MLflow loaded.

The estimate errs on the generous side (every copy counted at once); its purpose is to refuse what cannot work,
not to predict a peak to the megabyte. Measured on this machine (2026-12-06): iris/adam/full with K = 64 networks
of two hidden layers of 1,024 units, 3 epochs: peak 4.0 GB resident, estimated 5.1 GB (GB here: 2**30 bytes).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from study.core import data, optim, train
from study.errors import BadInput
from study.schema.sweep import Sweep

FLOAT = 8
PY_FLOAT = 32  # a float in a Python list: the 24-byte object and its 8-byte slot
# 371 MB above the interpreter for a copy of a default sweep's journal a third done (6,044 trials, 661,200 trials
# x epochs as configured; pruned trials stop early, in the same proportion as in any sweep with a pruner)
JOURNAL_TRIAL_EPOCH = 600
PARAMETER_COPIES = 5
ACTIVATION_COPIES = 3
HISTORY_METRICS = len(train.METRICS) + 2  # and an evaluation's watched test_loss and test_accuracy
DATASET_COPIES = 4
PROCESS = 300 * 2**20  # measured 257 MB resident after importing study.sweep.cell, Optuna and MLflow (2026-12-06)

# What each part grows with, as the profile's keys: the keys a refusal names.
DRIVERS = {
    "networks": ("population", "network.hidden"),
    "activations": ("population", "network.hidden"),
    "history": ("population", "epochs"),
    "curves": ("trials", "epochs", "seeds"),
    "journal": ("trials", "epochs"),
    "dataset": ("datasets",),
    "process": (),
}


@dataclass(frozen=True)
class Shape:
    """What the estimate needs to know of a dataset: its samples, its training part, its inputs and outputs."""
    n_samples: int
    n_train: int
    n_features: int
    n_outputs: int


@functools.lru_cache(maxsize=64)
def dataset_shape(name: str, val_fraction: float, test_fraction: float) -> Shape:
    """The dataset's shape under a split (seed 0: the parts' sizes do not depend on the seed)."""
    split = data.load(name, 0, val_fraction, test_fraction)
    n_samples = sum(getattr(split, f"X_{part}").shape[0] for part in ("train", "val", "test"))
    return Shape(n_samples, split.X_train.shape[0], split.n_features, split.n_outputs)


@dataclass(frozen=True)
class Estimate:
    """Bytes one worker holds while it runs ``cell``, by part (``DRIVERS`` names the parts)."""
    cell: tuple
    parts: dict

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def largest(self) -> str:
        return max(self.parts, key=self.parts.get)

    def describe(self) -> str:
        """The total and its three largest parts: ``2.1 TB (networks 2.0 TB, activations 90 GB, ...)``."""
        top = sorted(self.parts, key=self.parts.get, reverse=True)[:3]
        return f"{size(self.total)} ({', '.join(f'{part} {size(self.parts[part])}' for part in top)})"


def n_params(sizes: tuple) -> int:
    """Weights and biases of an MLP of layer ``sizes`` (inputs, hidden..., outputs), as study.core.nn lays them."""
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:]))


def cell_estimate(cfg: Sweep, cell: tuple, shapes: dict, journal: bool = True) -> Estimate:
    """What one worker holds while it runs ``cell`` of the sweep ``cfg``; ``journal``: whether the Optuna storage
    is a journal file (see the module's docstring)."""
    dataset, optimizer, batch = cell
    shape = shapes[dataset]
    k, epochs, trials = cfg.population_of(batch), cfg.epochs_of(dataset), cfg.profile.trials
    sizes = (shape.n_features, *cfg.profile.network.hidden, shape.n_outputs)
    slots = len(optim.OPTIMIZERS[optimizer].state)
    arms = 2 if cfg.profile.random_arm else 1
    runs = trials * arms + 2 * len(cfg.seeds)
    sweep_trial_epochs = sum(trials * arms * cfg.epochs_of(d) for d, _, _ in cfg.cells())
    parts = {
        "networks": k * n_params(sizes) * FLOAT * (PARAMETER_COPIES + 2 * slots),
        "activations": k * shape.n_train * sum(sizes[1:]) * FLOAT * ACTIVATION_COPIES,
        "history": k * epochs * HISTORY_METRICS * FLOAT,
        "curves": runs * epochs * HISTORY_METRICS * (PY_FLOAT + FLOAT),
        "journal": sweep_trial_epochs * JOURNAL_TRIAL_EPOCH if journal else 0,
        "dataset": shape.n_samples * (shape.n_features + shape.n_outputs) * FLOAT * DATASET_COPIES,
        "process": PROCESS,
    }
    return Estimate(cell, parts)


def largest_cell(cfg: Sweep, shapes: dict | None = None, journal: bool = True) -> Estimate:
    """The cell of the sweep that needs the most memory, and what it needs."""
    if shapes is None:
        split = cfg.profile.split
        shapes = {d: dataset_shape(d, split.val, split.test) for d in cfg.profile.datasets}
    return max((cell_estimate(cfg, cell, shapes, journal) for cell in cfg.cells()), key=lambda e: e.total)


def available() -> tuple[int, str]:
    """(bytes, where the figure comes from): the memory this machine can give without swapping: Linux's
    MemAvailable, else the physical memory; never more than a cgroup's (a container's) limit leaves."""
    found, source = None, ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found, source = int(line.split()[1]) * 1024, "available (MemAvailable in /proc/meminfo)"
    except (OSError, ValueError, IndexError):
        pass
    if found is None:
        found, source = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "of physical memory"
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            left = int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            if left < found:
                found, source = max(left, 0), "left under this cgroup's memory.max"
    except (OSError, ValueError):
        pass
    return found, source


def size(n: float) -> str:
    """Bytes for a reader: ``512 B``, ``3.4 MB``, ``1.4 TB`` (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PB"


def refuse_if_too_large(cfg: Sweep, where: str, shapes: dict | None = None, journal: bool = True) -> Estimate:
    """The largest cell's estimate, or one BadInput line naming the keys that drive it when it does not fit."""
    estimate = largest_cell(cfg, shapes, journal)
    have, source = available()
    if estimate.total > have:
        keys = DRIVERS[estimate.largest]
        raise BadInput(f"{where}: {', '.join(keys)}" if keys else where,
                       f"the largest cell ({'/'.join(map(str, estimate.cell))}) needs about {estimate.describe()} "
                       f"of memory, more than the {size(have)} {source}")
    return estimate


def refuse_too_many_workers(cfg: Sweep, workers: int, flag: str = "--workers", journal: bool = True) -> None:
    """``workers`` processes each running a cell as large as the largest, beside the parent: refused in one line
    naming ``flag`` when they would not fit together (one worker alone is the profile's check)."""
    workers = min(workers, len(cfg.cells()))  # a second worker for one cell only starts and stops
    if workers <= 1:
        return
    estimate = largest_cell(cfg, journal=journal)
    have, source = available()
    need = workers * estimate.total + PROCESS + estimate.parts["journal"]  # the parent reads the journal too
    if need > have:
        fits = max(1, (have - PROCESS - estimate.parts["journal"]) // estimate.total)
        raise BadInput(flag, f"{workers} workers need about {size(need)} of memory ({size(estimate.total)} each "
                             f"for a cell like {'/'.join(map(str, estimate.cell))}), more than the {size(have)} "
                             f"{source}; at most {fits} fit")
