"""The hyperparameters each budget is served with, chosen on validation at that budget's cap (issue 18).

Per tuning run r and budget b: the trial with the lowest validation loss at the checkpoint of b's cap (E_d epochs,
U_d updates, T_d seconds' worth of the cell's updates: ``study.sweep.timing.cap_updates``), read off the trials'
checkpoint curves. Run 0 pools its TPE trials with the random arm's (both on run 0's split, so their validation
losses compare); a run r >= 1 has its own split, whose losses do not compare with run 0's, and chooses among its own
TPE trials only (sharing the random arm would also tie the runs together, which are meant to be independent). A trial
pruned (or diverged) before a checkpoint has no value there. Ties go to TPE, then to the earlier trial. No test
score is read here. Each distinct choice is then evaluated once per evaluation seed, serving every budget that chose
it (``plan``).
"""
from __future__ import annotations

import math

import numpy as np

from study.schema.sweep import Sweep
from study.sweep import names, tuning
from study.sweep.timing import BUDGETS
from study.sweep.tuning import ledger


def _value_at(payload: dict, count: int) -> float:
    packed = payload.get("checkpoints")
    if not packed:
        return math.nan
    columns = ledger.unpack_curves(packed)
    updates, values = np.asarray(columns.get("updates", [])), np.asarray(columns.get("val_loss", []))
    where = np.flatnonzero(updates == count)
    return float(values[where[0]]) if len(where) else math.nan


def choose(cfg: Sweep, cell: tuple, studies: dict, caps: dict[str, int]) -> dict[str, dict]:
    """{"<run>:<budget>": choice} for every tuning run and budget; a choice is {"trial", "arm", "number", "value",
    "hyper"}, "trial" ``ledger.DEFAULTS`` (the registry's defaults) where no trial has a value at that cap.
    ``studies``: (run, arm) -> study; ``caps``: budget -> the cap's update count."""
    out = {}
    for run in range(cfg.profile.tuning_runs):
        scored = []
        for (r, arm), study in studies.items():
            if r != run:
                continue
            for t in tuning.finished(study):
                payload = ledger.trial_payload(t)
                if payload:
                    scored.append((arm, t.number, payload))
        for budget in BUDGETS:
            best = None
            for arm, number, payload in scored:
                value = _value_at(payload, caps[budget])
                if math.isfinite(value):
                    rank = (value, arm != names.TPE, number)
                    if best is None or rank < best[0]:
                        best = (rank, arm, number, payload["hyper"])
            if best is None:
                out[f"{run}:{budget}"] = {"trial": ledger.DEFAULTS, "arm": "", "number": -1, "value": None,
                                          "hyper": cfg.defaults(cell[1])}
            else:
                (value, _, _), arm, number, hyper = best
                out[f"{run}:{budget}"] = {"trial": f"{arm}-{number}", "arm": arm, "number": number, "value": value,
                                          "hyper": dict(hyper)}
    return out


def plan(cfg: Sweep, cell: tuple, chosen: dict[str, dict]) -> list[tuple[tuple, dict, list[str]]]:
    """The evaluations a cell runs per seed: ((track, run, trial), hyper, budgets served), the tuned track's
    distinct choices of every run, then the default track (serving every budget)."""
    evaluations: dict[tuple, tuple[dict, list]] = {}
    for run in range(cfg.profile.tuning_runs):
        for budget in BUDGETS:
            choice = chosen[f"{run}:{budget}"]
            key = (names.TUNED, run, choice["trial"])
            evaluations.setdefault(key, (choice["hyper"], []))[1].append(budget)
    evaluations[(names.DEFAULT, -1, ledger.DEFAULTS)] = (cfg.defaults(cell[1]), list(BUDGETS))
    return [(key, hyper, budgets) for key, (hyper, budgets) in evaluations.items()]
