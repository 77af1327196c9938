"""The timing pre-phase (issue 18): every cell's seconds per epoch measured once, before any cell is tuned, kept
in the sweep's meta record with the caps; read back, never measured again, on resume."""
from __future__ import annotations

import math

from study.sweep import config, timing, tuning


def test_timing_is_measured_once_and_the_caps_follow_from_it(tmp_path):
    cfg = config.load_sweep("smoke", ["datasets=iris", "optimizers=gd,adam", "batch_sizes=full,32", "epochs=7"])
    url = str(tmp_path / "optuna" / "t.journal")
    storage = tuning.open_storage(url)
    locks = tuning.cell_locks(url, 60)
    assert tuning.sweep_timing(storage, cfg.name) is None
    measured, caps = timing.ensure(cfg, storage, locks)
    assert set(measured) == {timing.cell_key(c) for c in cfg.cells()} and all(v > 0 for v in measured.values())
    slowest_full = max(measured["iris/gd/full"], measured["iris/adam/full"])  # every full-batch cell: all E_d epochs
    assert caps == {"iris": {"epochs": 7.0, "updates": 7.0, "seconds": 7 * slowest_full}}
    # a second worker (or a resumed sweep) reads what the first kept: the same numbers, bit for bit
    again = timing.ensure(cfg, tuning.open_storage(url), locks)
    assert again == (measured, caps)
    # the caps as each cell's update counts: all of a full-batch cell's epochs at the epochs and updates caps
    full = timing.cap_updates(cfg, ("iris", "gd", "full"), 90, measured, caps)
    assert full["epochs"] == 7 and full["updates"] == 7 and 1 <= full["seconds"] <= 7
    for optimizer in ("gd", "adam"):  # each full-batch cell has its whole E_d epochs within the seconds cap too
        assert timing.cap_updates(cfg, ("iris", optimizer, "full"), 90, measured, caps)["seconds"] == 7
    mini = timing.cap_updates(cfg, ("iris", "gd", "32"), 90, measured, caps)
    assert mini["epochs"] == 21 and mini["updates"] == 7
    expected = math.floor(7 * slowest_full * 3 / measured["iris/gd/32"] + 1e-9)
    assert mini["seconds"] == min(max(expected, 1), 21)


def test_without_full_batch_the_largest_batch_sets_the_caps():
    cfg = config.load_sweep("smoke", ["datasets=iris", "optimizers=gd", "batch_sizes=32,64", "epochs=5"])
    measured = {"iris/gd/32": 0.004, "iris/gd/64": 0.002}
    caps = timing.caps_of(cfg, measured, {"iris": 100})
    # batch 64 makes ceil(100/64) = 2 updates per epoch: U_d = 5 x 2; T_d = 5 epochs of the batch-64 cell
    assert caps == {"iris": {"epochs": 5.0, "updates": 10.0, "seconds": 5 * 0.002}}
