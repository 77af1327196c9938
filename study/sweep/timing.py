"""The timing pre-phase and the budgets' caps (issue 18): measured once per sweep, before any cell is tuned.

Every cell's ``seconds_per_epoch`` (one network alone, K = 1, the optimizer's defaults, no validation: the median of
``TIMED_EPOCHS`` epochs after the first, which loads the kernel) is measured by one worker while the others wait,
and kept in the sweep's meta record with the caps computed from it, per dataset d:
  - epochs  E_d, the profile's epochs;
  - updates U_d, what a reference-batch cell (full batch, else the largest) makes in its E_d epochs (E_d at full batch);
  - seconds T_d = E_d x the slowest epoch among d's reference-batch cells, so every one of them (the best among them
    sets the target) has its whole E_d epochs at this cap too and reaches the target at every budget.
A resumed sweep reads them back and measures nothing: its checkpoints, and so its per-budget choices, are those of
the sweep it continues. A cell's run at the seconds cap has made T_d x updates_per_epoch / seconds_per_epoch updates.
Every cap fits in the E_d epochs a reference-batch cell trains; a smaller batch's cell makes more updates per epoch and
takes longer per epoch, and where the timing says otherwise its run stops at its E_d epochs (cap_updates).
"""
from __future__ import annotations

import math
import time

import numpy as np

from study.core import batches, train
from study.schema.sweep import Sweep
from study.sweep import tuning

TIMED_EPOCHS = 5
BUDGETS = ("epochs", "updates", "seconds")  # the report's budgets, in its order
POLL_SECONDS = 0.5  # a worker waiting for another's timing looks again this often


def cell_key(cell: tuple) -> str:
    """How the meta record names a cell: ``<dataset>/<optimizer>/<batch>``."""
    return "/".join(map(str, cell))


def seconds_per_epoch(cfg: Sweep, cell: tuple) -> float:
    """Wall time of one training epoch of one network alone (K = 1, the optimizer's defaults, no validation): the
    median over the timed epochs after the first. Machine-dependent, like every time."""
    from study.sweep.cell import network, tuning_split  # the cell's own split and network

    dataset, optimizer, batch = cell
    split = tuning_split(cfg, dataset)
    net = network(cfg, split)
    seed = cfg.profile.tuning_seed
    result = train.train(net, split, optimizer, cfg.defaults(optimizer), batch, TIMED_EPOCHS + 1, seed,
                         net.init(seed, 1), validate=False)
    per_epoch = np.diff(result.history["seconds"][0, :int(result.epochs_run[0])])  # drops the first epoch
    return float(np.median(per_epoch)) if len(per_epoch) else math.nan


def reference_batch(cfg: Sweep) -> str:
    """The batch size the caps are tied to: full batch, else the largest (the fewest updates per epoch)."""
    sizes = [str(b) for b in cfg.profile.batch_sizes]
    return batches.FULL if batches.FULL in sizes else max(sizes, key=int)


def caps_of(cfg: Sweep, timing: dict[str, float], n_train: dict[str, int] | None = None) -> dict[str, dict[str, float]]:
    """{dataset: {"epochs": E_d, "updates": U_d, "seconds": T_d}} from the measured seconds per epoch and, when the
    reference batch is not full, the datasets' training sizes (``n_train``: its updates per epoch)."""
    reference, caps = reference_batch(cfg), {}
    for d in cfg.profile.datasets:
        e = cfg.epochs_of(d)
        per_epoch = 1 if reference == batches.FULL else batches.steps_per_epoch(n_train[d], reference)
        slowest = [timing[cell_key(c)] for c in cfg.cells()
                   if c[0] == d and str(c[2]) == reference and math.isfinite(timing[cell_key(c)])]
        caps[d] = {"epochs": float(e), "updates": float(e * per_epoch),
                   "seconds": e * max(slowest) if slowest else math.nan}
    return caps


def train_sizes(cfg: Sweep) -> dict[str, int]:
    """Each dataset's training rows (the tuning split's: every split of a dataset has as many)."""
    from study.sweep.cell import tuning_split

    return {d: int(tuning_split(cfg, d).X_train.shape[0]) for d in cfg.profile.datasets}


def measure(cfg: Sweep, check_stop=lambda: None) -> dict[str, float]:
    """Every cell's seconds per epoch, in the config's order (``check_stop`` between cells: Ctrl-C)."""
    timing = {}
    for cell in cfg.cells():
        check_stop()
        timing[cell_key(cell)] = seconds_per_epoch(cfg, cell)
    return timing


def ensure(cfg: Sweep, storage, locks, check_stop=lambda: None) -> tuple[dict, dict]:
    """(timing, caps) of the sweep: read from its meta record, else measured here (under a lock, so one worker
    measures and the others wait for it) and kept there in one write."""
    while True:
        found = tuning.sweep_timing(storage, cfg.name)
        if found is not None:
            return found
        handle = locks.try_lock(f"{cfg.name}/_timing")
        if handle is None:  # another worker is measuring
            check_stop()
            time.sleep(POLL_SECONDS)
            continue
        try:
            found = tuning.sweep_timing(storage, cfg.name)  # it may have finished between our look and our lock
            if found is not None:
                return found
            timing = measure(cfg, check_stop)
            caps = caps_of(cfg, timing, train_sizes(cfg))
            tuning.record_sweep_timing(storage, cfg.name, timing, caps)
            return timing, caps
        finally:
            locks.unlock(handle)


def cap_updates(cfg: Sweep, cell: tuple, n_train: int, timing: dict, caps: dict) -> dict[str, int]:
    """{budget: the update count of the cell's run at that budget's cap}: E_d epochs, U_d updates and T_d seconds'
    worth of its updates, each at least 1 and at most its E_d epochs' updates (every cap fits in them by construction;
    the bound keeps a noisy timing inside the run)."""
    dataset, _, batch = cell
    per_epoch = batches.steps_per_epoch(n_train, batch)
    total = cfg.epochs_of(dataset) * per_epoch
    spe, cap = timing.get(cell_key(cell), math.nan), caps[dataset]
    seconds = cap["seconds"] * per_epoch / spe if math.isfinite(spe) and spe > 0 and math.isfinite(cap["seconds"]) \
        else total
    counts = {"epochs": total, "updates": cap["updates"], "seconds": math.floor(seconds + 1e-9)}
    return {b: int(min(max(v, 1), total)) for b, v in counts.items()}
