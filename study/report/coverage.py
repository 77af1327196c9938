"""What a report rests on when the sweep is not all there: an interrupted sweep, an MLflow store that lost cell
runs, a sweep of one cell.

Every test of the report compares treatments within each dataset (complete blocks), and every choice ranks one
cell against the others of its dataset. So a report of a partial sweep rests on the largest complete grid of
finished cells: datasets x optimizers x batch sizes with every cell finished. A finished cell outside that grid
is set aside, not mixed in (it would be compared on other datasets than the rest), and the report says so near its
top, with the cells that are not finished and why. On a complete sweep the grid is the whole sweep and the results
pass through unchanged.

A cell is finished when it has every evaluation the sweep makes (each track, tuning run, budget and seed) and its
checkpoint curves (the cell run's curves.parquet), which every choice on validation reads.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import pandas as pd

from study.errors import BadInput
from study.report.inputs import BUDGETS, DEFAULT_RUN, TRACKS, SweepResults

CELL = ["dataset", "optimizer", "batch_size"]
NOT_FINISHED, NOT_RECORDED, SET_ASIDE, USED = "not finished", "curves missing", "set aside", "in the report"
MAX_SEARCH = 16  # optimizers + batch sizes up to which the largest grid is searched exactly (2^16 subsets)


@dataclass(frozen=True)
class Coverage:
    cells: pd.DataFrame  # one row per cell of the sweep's config: dataset, optimizer, batch_size, status, detail
    datasets: tuple[str, ...]  # the grid the report rests on
    optimizers: tuple[str, ...]
    batches: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return bool((self.cells["status"] == USED).all())

    def listed(self, status: str, details: bool = True) -> list[str]:
        """'dataset/optimizer/batch (detail)' of every cell with ``status``, in the sweep's order."""
        rows = self.cells[self.cells["status"] == status]
        return [f"{d}/{o}/{b}" + (f" ({why})" if why and details else "")
                for d, o, b, why in zip(rows["dataset"], rows["optimizer"], rows["batch_size"], rows["detail"])]


def _why_not_finished(results: SweepResults, cell: tuple, evals: set, expected: set, has_curves: bool) -> str:
    """Why a cell is not finished, in words ('' if it is)."""
    if evals >= expected and has_curves:
        return ""
    if evals >= expected:
        return "its MLflow cell run and its curves.parquet are missing"
    if evals:
        return f"{len(evals & expected)} of {len(expected)} evaluations (tracks, tuning runs, budgets, seeds)"
    t = results.trials
    mine = t[(t["dataset"] == cell[0]) & (t["optimizer"] == cell[1]) & (t["batch_size"].astype(str) == cell[2])
             & (t["arm"] == "tpe")] if len(t) else t
    trials = results.trials_per_cell * results.tuning_runs if results.trials_per_cell else None
    if len(mine):
        return f"tuning: {len(mine)} of {trials} trials done" if trials else f"tuning: {len(mine)} trials done"
    return "not started"


def _with_extras(order, values) -> list[str]:
    """The config's order, then anything the stores hold beyond it, sorted."""
    order = [str(v) for v in order]
    return order + sorted({str(v) for v in values} - set(order))


def _largest_grid(done: set, datasets, optimizers, batches) -> tuple[list, list, list]:
    """The datasets x optimizers x batch sizes grid of finished cells with the most cells; ties go to more
    optimizers (the question is which optimizer), then more datasets (more blocks for every test), then the
    sweep's order."""
    def grid(opts, bs):
        return [d for d in datasets if all((d, o, b) in done for o in opts for b in bs)]

    if len(optimizers) + len(batches) > MAX_SEARCH:  # an unusual config: every treatment on the datasets that
        everywhere = grid(optimizers, batches)        # have them all, else the first finished cell alone
        first = next(c for c in itertools.product(datasets, optimizers, batches) if c in done)
        return (everywhere, list(optimizers), list(batches)) if everywhere else ([first[0]], [first[1]], [first[2]])
    best, best_key = ([], [], []), None
    for n_o in range(1, len(optimizers) + 1):
        for opts in itertools.combinations(optimizers, n_o):
            for n_b in range(1, len(batches) + 1):
                for bs in itertools.combinations(batches, n_b):
                    ds = grid(opts, bs)
                    key = (len(ds) * n_o * n_b, n_o, len(ds), n_b)
                    if ds and (best_key is None or key > best_key):
                        best, best_key = (ds, list(opts), list(bs)), key
    return best


def _listed(table: pd.DataFrame):
    return (f"{d}/{o}/{b} ({why})" for d, o, b, why in table[[*CELL, "detail"]].itertuples(index=False, name=None))


def restrict(results: SweepResults) -> tuple[SweepResults, Coverage]:
    """The results the report can rest on (the largest complete grid of finished cells) and what was left out.
    Bad input if no cell is finished at all."""
    evals, curves = results.evals, results.curves
    datasets = _with_extras(results.datasets, evals["dataset"])
    optimizers = _with_extras(results.optimizers, evals["optimizer"])
    batches = _with_extras(results.batch_sizes, evals["batch_size"])
    tracks = [t for t in TRACKS if (evals["track"] == t).any()]
    seeds = list(results.seeds) or sorted(int(s) for s in evals["seed"].unique())
    tuning_runs = {"tuned": range(results.tuning_runs), "default": (DEFAULT_RUN,)}
    expected = {(t, u, b, s) for t in tracks for u in tuning_runs[t] for b in BUDGETS for s in seeds}
    runs = {key: set(zip(g["track"], g["tuning_run"].astype(int), g["budget"], g["seed"].astype(int)))
            for key, g in evals.assign(batch_size=evals["batch_size"].astype(str)).groupby(CELL, sort=False)}
    with_curves = set(curves.assign(batch_size=curves["batch_size"].astype(str))[CELL].itertuples(index=False,
                                                                                                 name=None))
    rows, done = [], set()
    for cell in itertools.product(datasets, optimizers, batches):
        why = _why_not_finished(results, cell, runs.get(cell, set()), expected, cell in with_curves)
        if not why:
            done.add(cell)
        status = USED if not why else (NOT_RECORDED if runs.get(cell, set()) >= expected else NOT_FINISHED)
        rows.append({"dataset": cell[0], "optimizer": cell[1], "batch_size": cell[2], "status": status,
                     "detail": why})
    table = pd.DataFrame(rows, columns=[*CELL, "status", "detail"])
    if not done:
        raise BadInput("--sweep", f"sweep {results.name!r} has no finished cell yet (0 of {len(table)}; a cell is "
                                  f"finished when every evaluation run and its curves are recorded): "
                                  f"{', '.join(list(_listed(table))[:3])}"
                                  f"{' ...' if len(table) > 3 else ''}")
    if len(done) == len(table):
        return results, Coverage(table, tuple(datasets), tuple(optimizers), tuple(batches))
    ds, opts, bs = _largest_grid(done, datasets, optimizers, batches)
    inside = [(d in ds) and (o in opts) and (b in bs) for d, o, b in zip(table["dataset"], table["optimizer"],
                                                                        table["batch_size"])]
    finished = table["status"] == USED
    table.loc[finished & ~pd.Series(inside), "status"] = SET_ASIDE
    table.loc[table["status"] == SET_ASIDE, "detail"] = "finished, outside the complete grid"
    keep = {(d, o, b) for d in ds for o in opts for b in bs}

    def within(frame: pd.DataFrame) -> pd.DataFrame:
        if not len(frame):
            return frame
        key = zip(frame["dataset"], frame["optimizer"], frame["batch_size"].astype(str))
        return frame[[k in keep for k in key]].reset_index(drop=True)

    restricted = dataclasses.replace(results, **{name: within(getattr(results, name)) for name in
                                                 ("evals", "curves", "trials", "importances", "cells")},
                                     caps=results.caps[results.caps["dataset"].isin(ds)].reset_index(drop=True))
    return restricted, Coverage(table, tuple(ds), tuple(opts), tuple(bs))
