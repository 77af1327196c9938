"""Optimisation apart from generalisation, and the published findings checked against this sweep."""
from __future__ import annotations

import numpy as np
import pandas as pd

from study.report import fmt
from study.report.analysis import Analysis
from study.report.document.blocks import Heading, Paragraph, Table
from study.report.document.tables import Tables
from study.report.judge import stats


def generalisation_rows(a: Analysis) -> pd.DataFrame:
    """Per optimizer (equal epochs, tuned, at its chosen batch size): mean ranks of final training loss and of
    test loss over the datasets, and the median generalisation gap (test - train) in loss units."""
    ans = a.verdict.answer("epochs", "tuned")
    columns = ["optimizer", "batch_size", "train_mean_rank", "test_mean_rank", "median_gap", "datasets"]
    if ans is None or a.scores.runs["train_final"].isna().all():
        return pd.DataFrame(columns=columns)
    cells = a.scores.cells[a.scores.cells["track"] == "tuned"]
    chosen = cells[[ans.chosen_batch.get(o) == b for o, b in zip(cells["optimizer"], cells["batch_size"])]]
    train = chosen.pivot_table(index="dataset", columns="optimizer", values="train_final").dropna()
    test = chosen.pivot_table(index="dataset", columns="optimizer", values="test_epochs").reindex(train.index)
    train_ranks, test_ranks = stats.mean_ranks(train), stats.mean_ranks(test)
    spread = a.scores.unit.reindex(train.index)
    rows = []
    for o in [o for o in a.grid.optimizers if o in train.columns]:
        gap = ((test[o] - train[o]) / spread).to_numpy(float)
        rows.append({"optimizer": o, "batch_size": ans.chosen_batch[o], "train_mean_rank": train_ranks[o],
                     "test_mean_rank": test_ranks[o], "median_gap": float(np.nanmedian(gap)),
                     "datasets": len(train)})
    return pd.DataFrame(rows, columns=columns)


def generalisation_section(a: Analysis, tables: Tables) -> list:
    g = generalisation_rows(a)
    csv = tables.add("generalisation", g)
    if g.empty:
        return []
    shown = pd.DataFrame({"optimizer": [f"{o} ({b})" for o, b in zip(g["optimizer"], g["batch_size"])],
                          "train loss: mean rank": [fmt.cell(v) for v in g["train_mean_rank"]],
                          "test loss: mean rank": [fmt.cell(v) for v in g["test_mean_rank"]],
                          "gap (test - train), loss units": [fmt.cell(v) for v in g["median_gap"]]})
    return [Heading("Optimisation and generalisation"), Paragraph(
        "Fitting the training set and doing well on new data are different things (Wilson et al. 2017). Every "
        "evaluation records its final network's loss on its own training set beside its test loss. Ranked "
        "separately over the datasets (1 = lowest), each optimizer at the batch size chosen for it at equal epochs, "
        "tuned; the gap is test minus training loss in loss units (median over datasets). An optimizer "
        "that ranks well on training loss and less well on test fits more than it generalises."),
        Table(shown, "Training against test loss, tuned, equal epochs.", csv)]


def literature_section(a: Analysis, tables: Tables) -> list:
    lit = a.checks.literature
    csv = tables.add("literature", lit)
    if lit.empty:
        return []
    shown = pd.DataFrame({"source": lit["source"], "finding": lit["finding"], "verdict": [f"**{v}**" for v in
                                                                                          lit["verdict"]],
                          "the number": lit["number"],
                          "evidence (threshold)": [f"{fmt.cell(e)} ({fmt.cell(t)})" if np.isfinite(e) else "-"
                                                   for e, t in zip(lit["evidence"], lit["threshold"])],
                          "criterion": lit["criterion"]})
    scope = lit["scope"].iloc[0]
    return [Heading("The published findings, checked"), Paragraph(
        f"What the literature on optimizer benchmarks found, checked against this sweep with criteria written into "
        f"`conf/claims.yaml` before looking, using the tests of the verdict (validation chooses, test judges, "
        f"Holm's correction, the ROPE). Each finding **agrees** only on positive evidence "
        f"for it (its direction significant, or P >= {fmt.num(a.settings.report.statistics.sure)} within the "
        f"declared tolerance for an \"at least as good\"), **disagrees** only on such evidence against it, else we "
        f"**cannot tell**: no significant violation is no agreement. The evidence column gives the number each "
        f"verdict rests on and the threshold it was held against. Scope of every row: {scope}."),
        Table(shown, "Published findings against this sweep.", csv)]
