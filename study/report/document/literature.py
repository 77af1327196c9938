"""Optimisation apart from generalisation, and the published findings checked against this sweep."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study.report import fmt
from study.report.analysis import Analysis
from study.report.checks.shallue import slope_text
from study.report.document.blocks import Details, Heading, Paragraph, Table
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
                     # no measured gap (a one-cell sweep's unit is 0): no median, and no All-NaN warning
                     "test_mean_rank": test_ranks[o],
                     "median_gap": stats.finite_median(gap),
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


def _censored(updates: float, cap: float) -> str:
    return f"> {fmt.count(cap)}" if math.isinf(updates) else fmt.count(updates)


def _schmidt_blocks(table: pd.DataFrame, alpha: float, csv: str) -> list:
    """Per dataset: validation's best, the optimizers significantly beyond the tolerance of it, those within."""
    if table.empty:
        return []
    rows = []
    for dataset, g in table.groupby("dataset", sort=False):
        rows.append({"dataset": dataset, "validation's best": g["best"].iloc[0],
                     "beyond the tolerance of it": " ".join(g.loc[g["p_beyond"] < alpha, "optimizer"]),
                     "within it of every other": " ".join(g.loc[g["p_within"] < alpha, "optimizer"])})
    return [Table(pd.DataFrame(rows), "Schmidt et al. 2021: per dataset, the optimizer validation picks there, the "
                                      "optimizers whose test loss is significantly beyond the declared tolerance of "
                                      "it, and those significantly within it of every other optimizer (one-sided "
                                      "t-tests over the runs at alpha, before Holm; the row's verdict corrects "
                                      "them).", csv)]


def _sivaprasad_blocks(curve: pd.DataFrame, csv: str) -> list:
    """Adam's row at every k: how often validation picks it, and its test against the best other optimizer."""
    adam = curve[curve["optimizer"] == "adam"] if len(curve) else curve
    if adam.empty:
        return []
    shown = pd.DataFrame({"k": [str(int(k)) for k in adam["k"]],
                          "P(validation picks Adam)": [f"{fmt.prob(p)} [{fmt.prob(lo)}, {fmt.prob(hi)}]" for p, lo, hi
                                                       in zip(adam["p_picked"], adam["p_low"], adam["p_high"])],
                          "best other minus Adam, loss units": [fmt.cell(v) for v in adam["comparator_median"]],
                          "p": [fmt.p(v) for v in adam["comparator_p"]], "verdict": list(adam["verdict"])})
    return [Table(shown, "Sivaprasad et al. 2020 over the whole curve: with k random trials per optimizer, the "
                         "probability that validation picks Adam (mean over datasets, bootstrap interval over them) "
                         "and the expected test loss of the best other optimizer (lowest on validation) minus Adam's "
                         "(> 0: Adam lower).", csv)]


def _shallue_blocks(costs: pd.DataFrame, slopes: pd.DataFrame, batches, csv_costs: str, csv_slopes: str) -> list:
    """Every batch size's updates to the target (censored ones as "> cap"), and every slope with its interval."""
    if costs.empty:
        return []
    order = [b for b in batches if b in set(costs["batch_size"])]
    grouped = costs.groupby(["optimizer", "batch_size"], sort=False)
    cells = pd.DataFrame([{"optimizer": o, "batch_size": b, "shown": f"{fmt.num(float(np.median(g['updates'])))} "
                           f"({int(g['censored'].sum())}/{len(g)} > cap)"} for (o, b), g in grouped])
    matrix = cells.pivot(index="optimizer", columns="batch_size", values="shown").reindex(
        index=list(dict.fromkeys(costs["optimizer"])), columns=order).fillna("").reset_index()
    blocks = [Table(matrix, "Shallue et al. 2019: updates until the test loss reaches the target, tuned for the "
                            "updates budget, per batch size: the median over datasets ('never' when most of them are "
                            "censored) and how many datasets never get there within the cap U_d (censored, kept).",
                    csv_costs)]
    if len(slopes):
        shown = pd.DataFrame({"optimizer": slopes["optimizer"],
                              "batch sizes": [f"{a} -> {b}" for a, b in zip(slopes["from_batch"], slopes["to_batch"])],
                              "slope": [slope_text(v) for v in slopes["slope"]],
                              "interval": [f"[{slope_text(lo)}, {slope_text(hi)}]" for lo, hi in
                                           zip(slopes["low"], slopes["high"])],
                              "datasets (censored)": [f"{d} ({c})" for d, c in zip(slopes["datasets"],
                                                                                     slopes["censored"])]})
        blocks.append(Table(shown, "Log-log slopes of updates to the target between consecutive batch sizes (-1: "
                                   "twice the batch, half the updates), median over datasets with censored costs at "
                                   "the cap; the interval takes censoring at its worst (-inf or inf for an end "
                                   "censoring leaves open).", csv_slopes))
    return blocks


def literature_section(a: Analysis, tables: Tables) -> list:
    lit = a.checks.literature
    csv = tables.add("literature", lit)
    detail = {name: tables.add(name, frame) for name, frame in a.checks.literature_tables.items()}
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
        f"Holm's correction, the declared tolerance). Each finding **agrees** only on positive evidence "
        f"for it (its direction significant, or P >= {fmt.num(a.settings.report.statistics.sure)} within the "
        f"declared tolerance for an \"at least as good\"), **disagrees** only on such evidence against it, else we "
        f"**cannot tell**: no significant violation is no agreement. The evidence column gives the number each "
        f"verdict rests on and the threshold it was held against. Scope of every row: {scope}."),
        Table(shown, "Published findings against this sweep.", csv)] + _details(a, detail)


def _details(a: Analysis, csv: dict) -> list:
    """The tables behind the findings, in a closed section; every choice in them made on validation
    (`tables/literature_choices.csv`)."""
    found = a.checks.literature_tables
    if not found:
        return []
    blocks = (_schmidt_blocks(found["schmidt_datasets"], a.settings.report.statistics.alpha, csv["schmidt_datasets"])
              + _sivaprasad_blocks(found["sivaprasad_k"], csv["sivaprasad_k"])
              + _shallue_blocks(found["shallue_costs"], found["shallue_slopes"], a.grid.batches,
                                csv["shallue_costs"], csv["shallue_slopes"]))
    blocks.append(Paragraph(f"Every choice these checks make (the dataset's best, each group's best, the comparator "
                            f"at each k) is made on validation: `tables/{csv['literature_choices']}.csv`."))
    return [Details("The numbers behind the published findings", blocks, level=3)]
