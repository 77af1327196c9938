"""Batch, mini-batch and stochastic: the lecture's table of updates per epoch, measured, and how noise changes.

Updates per epoch are read from the cumulative ``updates`` count at the epoch ends of every equal-epochs evaluation
run (``progress.epoch_ends``). Noise is read from
``grad_norm`` (the RMS norm of the gradients that fed the epoch's updates): a mini-batch gradient's expected squared
norm is the full gradient's plus the sampling variance / B, so at equal parameters a smaller batch has a larger
RMS norm. Runs at different batch sizes do not pass through the same parameters, so the ratio is a symptom of
noise, not a clean measurement of it; the toy-problem claim measures gradient error at equal parameters.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study.report.judge.progress import RUN


def expected_updates(n_train: int, batch_size: str) -> int:
    """The lecture's table: batch 1, mini-batch ceil(N / B), stochastic N."""
    return 1 if batch_size == "full" else math.ceil(n_train / min(int(batch_size), n_train))


def lecture_formula(batch_size: str) -> str:
    return {"full": "1", "1": "N"}.get(batch_size, f"N/{batch_size}")


def updates_per_epoch(curves: pd.DataFrame, evals: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, batch size): N, the expected updates per epoch and the measured ones (min and max over
    every epoch of every evaluation run that has a count)."""
    c = curves[RUN + ["dataset", "batch_size", "epoch", "updates"]].sort_values(RUN + ["epoch"])
    per_epoch = c.groupby(RUN, sort=False)["updates"].diff().fillna(c["updates"].astype(float))
    c = c.assign(per_epoch=per_epoch).dropna(subset=["per_epoch"])
    measured = c.groupby(["dataset", "batch_size"], sort=False)["per_epoch"].agg(["min", "max"]).reset_index()
    n_train = evals.groupby("dataset", sort=False)["n_train"].first()
    measured["n_train"] = measured["dataset"].map(n_train).astype(int)
    measured["expected"] = [expected_updates(n, b) for n, b in zip(measured["n_train"], measured["batch_size"])]
    measured["matches"] = (measured["min"] == measured["expected"]) & (measured["max"] == measured["expected"])
    # rows in the data's order, not the run ids' (random: two sweeps that agree would list them differently)
    measured = measured.sort_values(["dataset", "batch_size"], kind="stable", ignore_index=True)
    return measured.rename(columns={"min": "measured_min", "max": "measured_max"})


def noise(curves: pd.DataFrame) -> pd.DataFrame:
    """Per run (at its epoch ends): the mean grad_norm over the second half of its epochs, its ratio to the
    full-batch run of the same (dataset, optimizer, track, tuning run, seed), and the share of epochs whose
    validation loss went up (oscillation)."""
    keys = ["run_id", "dataset", "optimizer", "batch_size", "track", "tuning_run", "seed"]
    c = curves.sort_values(RUN + ["epoch"])
    last_epoch = c.groupby("dataset")["epoch"].transform("max")
    late = c[c["epoch"] > last_epoch / 2]
    out = late.groupby(keys, sort=False)["grad_norm"].mean().rename("late_grad_norm").reset_index()
    rose = c.groupby(RUN, sort=False)["val_loss"].diff() > 0
    steps = c.groupby(RUN, sort=False)["val_loss"].diff().notna()
    share = (rose.groupby(c["run_id"], sort=False).sum()
             / steps.groupby(c["run_id"], sort=False).sum().replace(0, np.nan))
    out = out.merge(share.rename("val_rise_share").reset_index(), on="run_id", how="left")
    same = ["dataset", "optimizer", "track", "tuning_run", "seed"]
    full = out[out["batch_size"] == "full"].drop_duplicates(same).set_index(same)["late_grad_norm"]
    key = pd.MultiIndex.from_frame(out[same])
    reference = full.reindex(key).to_numpy()
    # a full-batch run whose late gradient norm is 0 (it converged exactly, or stopped at once) has no ratio
    out["grad_norm_vs_full"] = np.divide(out["late_grad_norm"].to_numpy(float), reference,
                                         out=np.full(len(out), np.nan), where=reference > 0)
    return out.sort_values(keys[1:], kind="stable", ignore_index=True)  # the data's order, not the run ids'



def summary(noise_runs: pd.DataFrame, updates: pd.DataFrame, batch_order: list[str]) -> pd.DataFrame:
    """Per batch size: the lecture's formula, measured updates per epoch (range over datasets), whether every
    dataset matched, and the medians of the noise measures."""
    rows = []
    for batch in batch_order:
        u = updates[updates["batch_size"] == batch]
        n = noise_runs[noise_runs["batch_size"] == batch]
        rows.append({"batch_size": batch, "formula": lecture_formula(batch),
                     "expected_min": u["expected"].min(), "expected_max": u["expected"].max(),
                     "measured_min": u["measured_min"].min(), "measured_max": u["measured_max"].max(),
                     "datasets_matching": int(u["matches"].sum()), "datasets": len(u),
                     "grad_norm_vs_full": float(n["grad_norm_vs_full"].median()),
                     "val_rise_share": float(n["val_rise_share"].median())})
    return pd.DataFrame(rows)
