"""Section 4: tuning — budgets, winners at small budgets, loss against hyperparameters, importances, warnings."""
from __future__ import annotations

import pandas as pd

from study.report import budget, figures, fmt
from study.report.analysis import Analysis
from study.report.blocks import Figure, Heading, Paragraph, Table
from study.report.tables import Tables
from study.report.verdict import short_status, status_sentence

AVERAGING = {"momentum": ["gamma"], "nag": ["gamma"], "rmsprop": ["beta"], "adam": ["beta1", "beta2"]}


def _budget_blocks(a: Analysis, tables: Tables) -> list:
    curves = a.budget_curves
    methods = sorted(curves["method"].unique())
    tables.add("budget_curves", curves)
    described = " and ".join(methods)
    if budget.RANDOM_METHOD in methods:
        how = ("the expected best-of-k over the sweep's unpruned random-search arm (Dodge et al. 2019; Sivaprasad "
               "et al. 2020): the mean, over all ways of drawing k of its trials with replacement, of the best of "
               "them — computed exactly, so it has no resampling noise.")
    else:
        how = ("TPE's best-so-far in trial order. This sweep has no random-search arm (only the `full` profile "
               "runs one), so the expected best-of-k (Dodge et al. 2019; Sivaprasad et al. 2020) cannot be "
               "computed: the curve is one realisation, and TPE's later trials depend on its earlier ones.")
    blocks = [Paragraph(f"Best validation loss after k trials, per cell: {how} Values are relative to the best "
                        f"trial on the dataset, then the median over datasets."),
        Figure("tuning_budget", figures.png_bytes(figures.budget_curves(curves, a.batches, a.optimizers),
                                                  a.settings.dpi),
               f"Best validation loss after k trials relative to the dataset's best trial ({described}), median over "
               f"datasets, a panel per batch size.")]
    rows, shown = [], []
    for k, family in a.budget_families.items():
        j, r = family.judgement, family.result
        rows.append({"trials": k, "status": j.status, "best": j.chosen, "p": r.omnibus.pvalue,
                     "equivalent": " ".join(j.equivalent), "cannot_separate": " ".join(j.unresolved),
                     "behind": " ".join(j.behind)})
        shown.append({"trials": k, "best mean rank": family.labels.get(j.chosen, ""), "in short": short_status(j),
                      "what the tests allow": status_sentence(j, family.labels, p_value=r.omnibus.pvalue)})
    if rows:
        blocks.append(Table(pd.DataFrame(shown), "Which optimizer wins with a budget of k trials (each at its best "
                                                 "tuned batch size; blocks = datasets, score = best validation loss "
                                                 "after k trials).", tables.add("budget_winners", pd.DataFrame(rows))))
    return blocks


def _edge_table(edges: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (optimizer, param, edge), g in edges.groupby(["optimizer", "param", "edge"], sort=False):
        cells = ", ".join(f"{d}/{b}" for d, b in zip(g["dataset"], g["batch_size"]))
        rows.append({"optimizer": optimizer, "parameter": g["searched_as"].iloc[0], "edge": edge,
                     "bound": f"{g['bound'].iloc[0]:g}", "cells": len(g), "which (dataset/batch)": cells})
    return pd.DataFrame(rows, columns=["optimizer", "parameter", "edge", "bound", "cells", "which (dataset/batch)"])


def tuning_section(a: Analysis, tables: Tables) -> list:
    blocks = [Heading("Tuning")]
    trials = a.results.trials.assign(batch_size=a.results.trials["batch_size"].astype(str))
    if trials.empty:
        return blocks + [Paragraph("The sweep recorded no tuning trials.")]
    blocks += _budget_blocks(a, tables)
    panels = [(o, "eta", False) for o in a.optimizers if trials.loc[trials["optimizer"] == o, "eta"].notna().any()]
    blocks.append(Figure("tuning_eta", figures.png_bytes(figures.loss_against(trials, panels, a.batches),
                                                         a.settings.dpi),
                         "Final validation loss of every trial (relative to the dataset's best trial) against eta; "
                         "colour = batch size, crosses at the top = diverged trials."))
    panels = [(o, p, True) for o in a.optimizers for p in AVERAGING.get(o, [])
              if p in trials.columns and trials.loc[trials["optimizer"] == o, p].notna().any()]
    if panels:
        blocks.append(Figure("tuning_averaging", figures.png_bytes(figures.loss_against(trials, panels, a.batches),
                                                                   a.settings.dpi),
                             "The same against the averaging constants, drawn as 1 - value (searched log-uniformly "
                             "that way): 0.1 is 0.9, 0.01 is 0.99."))
    importance = a.importance
    csv = tables.add("importances_mean", importance)
    tables.add("importances", a.results.importances)
    if len(importance):
        names = [p.replace("one_minus_", "1 - ") for p in importance["param"]]  # Optuna's name for 1 - gamma
        blocks.append(Table(pd.DataFrame({"optimizer": importance["optimizer"], "parameter": names,
                                          "mean importance": [fmt.cell(v, 2) for v in importance["mean_importance"]],
                                          "cells": importance["cells"]}),
                            "Parameter importances (Optuna's default evaluator), mean over cells.", csv))
    edges = a.edges
    csv = tables.add("edge_warnings", edges)
    if len(edges):
        blocks.append(Paragraph(f"**Warning: {len(edges)} tuned value(s) lie on the edge of their search range** "
                                f"(within {a.settings.edge_margin:.0%} of its width; log width for log ranges). The "
                                f"best value there may lie outside the range, so those cells may be under-tuned."))
        blocks.append(Table(_edge_table(edges), "Tuned values on the edge of the search range.", csv))
    else:
        blocks.append(Paragraph("No tuned value lies on the edge of its search range."))
    d = a.divergence
    csv = tables.add("divergence", d)
    per_cell = trials.groupby(["optimizer", "batch_size"], sort=False)["state"].apply(
        lambda s: float((s == "DIVERGED").mean())).rename("diverged_share").reset_index()
    tables.add("divergence_by_batch", per_cell)
    blocks.append(Table(pd.DataFrame({"optimizer": d["optimizer"], "trials": d["trials"], "diverged": d["diverged"],
                                      "share diverged": [fmt.share(v) for v in d["diverged_share"]],
                                      "pruned": d["pruned"], "failed": d["fail"]}),
                        "Tuning trials per optimizer: how many diverged (recorded with a finite penalty, never a "
                        "crash), were pruned or failed.", csv))
    return blocks

