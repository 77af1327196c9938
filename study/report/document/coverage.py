"""Near the top of a report on partial data: what it rests on (cells finished of the sweep's, the grid used), what is
missing (cells not finished and why, cells set aside) and what could not be measured. A complete sweep of more
than one cell whose every budget was measured (if only for most cells) gets no such section: its report is
unchanged."""
from __future__ import annotations

import numpy as np
import pandas as pd

from study.report import fmt
from study.report.analysis import Analysis
from study.report.coverage import NOT_FINISHED, NOT_RECORDED, SET_ASIDE, USED, Coverage
from study.report.document.blocks import Bullets, Heading, Paragraph
from study.report.document.sentences import BUDGET_WORDS
from study.report.document.tables import Tables
from study.report.judge.scoring import BUDGETS

LISTED = 12  # cells named in a bullet before "and N more"


def _cells(items: list[str]) -> str:
    more = f" and {len(items) - LISTED} more (`tables/coverage.csv`)" if len(items) > LISTED else ""
    return ", ".join(items[:LISTED]) + more


def _name(key) -> str:
    return "/".join(str(k) for k in key)


def unmeasured(a: Analysis) -> tuple[list[str], list[str]]:
    """The budgets the report could not measure at all, and those it could not measure for some cells, each with
    what the sweep did not record."""
    grid = a.scores.cells[a.scores.cells["track"] == "tuned"][["dataset", "optimizer", "batch_size"]]
    keys = list(grid.itertuples(index=False, name=None))
    cost = a.results.cells.assign(batch_size=a.results.cells["batch_size"].astype(str)).set_index(
        ["dataset", "optimizer", "batch_size"])["seconds_per_epoch"] if len(a.results.cells) else pd.Series()
    no_cost = [_name(k) for k in keys if not np.isfinite(float(cost.get(k, np.nan)))]
    curves = a.results.curves
    with_test = set(curves[np.isfinite(curves["test_loss"].astype(float))][["dataset", "optimizer", "batch_size"]]
                    .astype(str).itertuples(index=False, name=None)) if len(curves) else set()
    no_test = [_name(k) for k in keys if k not in with_test]
    wholly, partly = [], []
    for budget in BUDGETS:
        ans = a.verdict.answer(budget, "tuned")
        if ans is not None and not ans.measured:
            lacking = ("cost per epoch (seconds_per_epoch)" if budget == "seconds" and len(no_test) < len(keys)
                       else "test-loss curves")  # a cost to the target is counted on the test curve
            wholly.append(f"{BUDGET_WORDS[budget]}: not measured at all (the sweep recorded no {lacking} for the "
                         f"cells this report rests on).")
    tuned = {b: a.verdict.answer(b, "tuned") for b in BUDGETS}
    measured = [b for b, ans in tuned.items() if ans is not None and ans.measured]
    if no_test and len(no_test) < len(keys) and {"updates", "seconds"} & set(measured):
        partly.append(f"Equal updates and equal wall time: not measured for {len(no_test)} cell(s) without a "
                     f"test-loss curve ({_cells(no_test)}); they rank last there.")
    if no_cost and len(no_cost) < len(keys) and "seconds" in measured:
        partly.append(f"Equal wall time: not measured for {len(no_cost)} cell(s) without a measured cost per epoch "
                     f"({_cells(no_cost)}).")
    return wholly, partly


def _too_small(a: Analysis) -> list[str]:
    """What a grid this small cannot compare."""
    g = a.grid
    if len(g.datasets) * len(g.optimizers) * len(g.batches) == 1:
        return [f"One cell only ({g.datasets[0]}/{g.optimizers[0]}/{g.batches[0]}): there is nothing to compare "
                f"it with, so every verdict below is that cell, and no test was run; the tables describe it."]
    items = []
    if len(a.grid.datasets) == 1:
        items.append(f"One dataset only ({a.grid.datasets[0]}): every test compares treatments over at least two "
                     f"datasets, so the verdicts below are validation's choices, untested.")
    if len(a.grid.optimizers) == 1:
        items.append(f"One optimizer only ({a.grid.optimizers[0]}): no optimizer comparison; the batch sizes are "
                     f"compared for it.")
    if len(a.grid.batches) == 1:
        items.append(f"One batch size only ({a.grid.batches[0]}): no batch-size comparison.")
    return items


def coverage_section(a: Analysis, coverage: Coverage, tables: Tables) -> list:
    """The section, or nothing for a complete sweep of more than one cell with every budget measured. A few cells
    without a cost (a complete sweep's odd cell: they rank last at that budget, as the tables show) are named
    here only when the section is there anyway: a complete sweep's report stays what it was."""
    wholly, partly = unmeasured(a)
    one_cell = len(a.grid.datasets) * len(a.grid.optimizers) * len(a.grid.batches) == 1
    if coverage.complete and not wholly and not one_cell:
        return []
    csv = tables.add("coverage", coverage.cells)
    cells = coverage.cells
    used = int((cells["status"] == USED).sum())
    done = used + int(cells["status"].isin([SET_ASIDE, NOT_RECORDED]).sum())
    grid = (f"{fmt.names(coverage.datasets)} x {fmt.names(coverage.optimizers)} x batch "
            f"{fmt.names(coverage.batches)}")
    if coverage.complete:
        lead = f"**Every cell of the sweep finished ({used} of {len(cells)}).** The report rests on {grid}."
    else:
        lead = (f"**The sweep is incomplete: this report rests on {used} of its {len(cells)} cells** ({done} "
                f"finished): {grid}, the largest grid of datasets x optimizers x batch sizes in which every cell "
                f"finished and is recorded (every test compares the treatments within each dataset). Every number "
                f"below is about these cells only.")
    items = []
    if coverage.listed(NOT_FINISHED):
        items.append(f"Not finished ({len(coverage.listed(NOT_FINISHED))}): {_cells(coverage.listed(NOT_FINISHED))}.")
    if coverage.listed(NOT_RECORDED):
        items.append(f"Finished, but missing from the MLflow store ({len(coverage.listed(NOT_RECORDED))}): "
                     f"{_cells(coverage.listed(NOT_RECORDED))}: without their curves no choice on validation can "
                     f"rank them.")
    if coverage.listed(SET_ASIDE):
        items.append(f"Finished but set aside, outside that grid ({len(coverage.listed(SET_ASIDE))}): "
                     f"{_cells(coverage.listed(SET_ASIDE, details=False))}.")
    items += wholly + partly + _too_small(a)
    if not coverage.complete:
        items.append("To complete it: run the same sweep command again (it resumes where it stopped), then rebuild "
                     "this report (`make report`).")
    return [Heading("What this report rests on"), Paragraph(lead), Bullets(items),
            Paragraph(f"Every cell of the sweep's config and its state: `tables/{csv}.csv`.")]
