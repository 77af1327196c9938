"""A cell's two tables for the report, written as artifacts of its cell run: curves.parquet (one row per run and
checkpoint: every trial of every tuning run and arm, every evaluation) and trials.parquet (every tuning trial, with
its final test loss). Built from a ``study.sweep.record.Mirror``'s runs and curves."""
from __future__ import annotations

import math

import numpy as np

from study.sweep import names
from study.sweep.tuning import ledger

# curves.parquet; an evaluation's test curve is there only: what validation chose is scored on it at every budget.
# train_loss, grad_norm and seconds are epoch-end values (NaN at a checkpoint inside an epoch)
CURVE_COLUMNS = ("train_loss", "val_loss", "val_accuracy", "grad_norm", "seconds", "test_loss", "test_accuracy")
EPOCH_END_COLUMNS = ("train_loss", "grad_norm", "seconds")
RUN_COLUMNS = (names.ROLE, names.ARM, names.TUNING_RUN, names.TRIAL_NUMBER, names.TRACK, "budgets", names.SEED,
               "run_id")
TRIAL_TABLE_COLUMNS = (names.TUNING_RUN, names.ARM, "number", names.STATE, "value")  # then hyper, then test_loss


def curve_table(mirror, updates_per_epoch: int):
    """curves.parquet: every checkpoint value of every run of the cell, one row per run and checkpoint (epoch
    = updates / updates_per_epoch, whole at epoch ends), with the runs' MLflow ids."""
    import pandas as pd

    runs, frames = mirror.runs(), []
    budgets = {(names.EVAL, *k): ",".join(p.get("budgets", ledger.ALL_BUDGETS))
               for k, p in mirror.book.eval_payloads().items()}
    for key in sorted(runs, key=lambda k: (k[0] != names.TRIAL, tuple(map(str, k[1:])))):
        columns = _checkpoint_columns(mirror.curves.get(key, {}), updates_per_epoch)
        if columns is None:
            continue
        trial = key[0] == names.TRIAL
        n = len(columns["updates"])
        frames.append(pd.DataFrame({
            names.ROLE: key[0], names.ARM: key[2] if trial else "",
            names.TUNING_RUN: key[1] if trial else key[2], names.TRIAL_NUMBER: key[3] if trial else -1,
            names.TRACK: "" if trial else key[1], "budgets": "" if trial else budgets.get(key, ""),
            names.SEED: -1 if trial else key[4], "run_id": runs[key],
            "epoch": columns["updates"] / updates_per_epoch, "updates": columns["updates"].astype(np.int64),
            **{c: columns.get(c, np.full(n, np.nan)) for c in CURVE_COLUMNS}}))
    empty = pd.DataFrame(columns=[*RUN_COLUMNS, "epoch", "updates", *CURVE_COLUMNS])
    return pd.concat(frames, ignore_index=True) if frames else empty


def trial_table(mirror):
    """trials.parquet: every finished tuning trial of every run and arm (a trial failed by an interruption and
    asked again is its retry), its state, value, hyperparameters and final test loss."""
    import pandas as pd

    rows = []
    for run, arm, t in sorted(mirror.finished_trials(), key=lambda x: (x[0], x[1] != names.TPE, x[2].number)):
        payload = ledger.trial_payload(t) or {}
        state = ledger.trial_state(t)
        rows.append({names.TUNING_RUN: run, names.ARM: arm, "number": t.number, names.STATE: state,
                     "value": t.value if state in (names.COMPLETE, names.DIVERGED) else math.nan,
                     **{h: float(v) for h, v in payload.get("hyper", {}).items()},
                     "test_loss": float(payload.get("final", {}).get("test_loss", math.nan))})
    hyper = list(mirror.ctx.cfg.spaces[mirror.cell[1]])
    return pd.DataFrame(rows, columns=[*TRIAL_TABLE_COLUMNS, *hyper, "test_loss"])


def unpacked(payload: dict) -> dict:
    packed = payload.get("checkpoints")
    return {"curves": ledger.unpack_curves(payload["curves"]),
            "checkpoints": ledger.unpack_curves(packed) if packed else None}


def _checkpoint_columns(run: dict, updates_per_epoch: int) -> dict | None:
    """A run's rows: its checkpoints (epoch-end columns filled in at epoch ends), or for a run recorded before
    checkpoints its epoch ends; the rows after it stopped left out. None for a run without values."""
    curves, checkpoints = run.get("curves") or {}, run.get("checkpoints")
    epochs = max((len(v) for v in curves.values()), default=0)
    if checkpoints:
        updates = np.asarray(checkpoints["updates"], float)
        columns = {c: np.asarray(v, float) for c, v in checkpoints.items() if c != "updates"}
    elif epochs:
        updates = updates_per_epoch * np.arange(1, epochs + 1, dtype=float)
        columns = {c: np.asarray(curves[c], float) for c in CURVE_COLUMNS if c in curves}
    else:
        return None
    n = len(updates)
    whole = np.isclose(updates % updates_per_epoch, 0)
    index = (updates // updates_per_epoch).astype(int) - 1
    for c in EPOCH_END_COLUMNS:
        if checkpoints and c in curves:
            column, values = np.full(n, np.nan), np.asarray(curves[c], float)
            ok = whole & (index >= 0) & (index < len(values))
            column[ok] = values[index[ok]]
            columns[c] = column
    stacked = np.vstack([columns[c] for c in CURVE_COLUMNS if c in columns]) if columns else np.full((1, n), np.nan)
    keep = ~np.isnan(stacked).all(axis=0)  # the run had stopped
    return {"updates": updates[keep], **{c: v[keep] for c, v in columns.items()}}
