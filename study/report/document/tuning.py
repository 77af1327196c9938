"""Section 4: tuning — budgets, winners at small budgets, loss against hyperparameters, importances, warnings."""
from __future__ import annotations

import pandas as pd

from study.core.hyperparams import lecture_name, searched_as
from study.core.optim import OPTIMIZERS
from study.report import fmt
from study.report.analysis import Analysis
from study.report.document import figures, tuning_figures
from study.report.document.blocks import Figure, Heading, Paragraph, Table
from study.report.document.protocol import pruning_blocks
from study.report.document.sentences import short_status, status_sentence
from study.report.document.tables import Tables
from study.report.judge.tuning_value import within


def _budget_blocks(a: Analysis, tables: Tables) -> list:
    curves, dpi = a.tuning.best_after_k, a.settings.report.figures.dpi
    band = f"{a.settings.report.stability.band_level:.0%}"
    tables.add("budget_curves", curves)
    tables.add("best_of_k", a.tuning.random_curves)
    epochs = a.verdict.answer("epochs", "tuned")
    blocks = []
    if a.tuning.random_arm and epochs is not None:
        picture = tuning_figures.best_of_k(a.tuning.random_curves, epochs.chosen_batch, a.scores.unit, a.grid.optimizers)
        blocks += [Paragraph(
            "**What k trials buy.** Every cell also ran an unpruned random search with the same number of trials, "
            "each trial scored on test too (tag `scored_on_test=true`; no choice reads it). The expected best-of-k "
            "(Dodge et al. 2019; Sivaprasad et al. 2020): the expected test loss of the trial that validation would "
            "pick among k drawn at random, computed exactly over all draws with replacement, with a " + band +
            " band from resampling the arm's trials. Shown above the dataset's best value in loss units, "
            "median over datasets; each optimizer at the batch size chosen for it at equal epochs."),
            Figure("best_of_k", figures.png_bytes(picture, dpi),
                   "Expected test loss of validation's pick among k random trials (median over datasets, band: "
                   f"median of the cells' {band} bands).")]
        how = "the expected test loss of validation's pick among k random trials (chosen by the expected best-of-k " \
              "validation loss)"
    else:
        how = ("TPE's best validation loss after k trials: the mean of a few realisations, one per tuning run (this "
               "sweep has no random arm)")
    rows, shown = [], []
    for k, family in a.tuning.winners.items():
        j, r = family.judgement, family.result
        rows.append({"trials": k, "status": j.status, "best": j.chosen, "p": r.omnibus.pvalue,
                     "equivalent": " ".join(j.equivalent), "cannot_separate": " ".join(j.unresolved),
                     "behind": " ".join(j.behind)})
        shown.append({"trials": k, "validation picks": family.labels.get(j.chosen, ""), "in short": short_status(j),
                      "what the tests allow": status_sentence(j, family.labels, p_value=r.omnibus.pvalue)})
    if rows:
        blocks.append(Table(pd.DataFrame(shown), f"Which optimizer wins with a budget of k trials: {how}, each "
                                                 f"optimizer at its chosen batch size.",
                            tables.add("budget_winners", pd.DataFrame(rows))))
    picture = tuning_figures.budget_curves(curves, a.grid.batches, a.grid.optimizers)
    blocks.append(Figure("tuning_budget", figures.png_bytes(picture, dpi),
                         "Best validation loss after k trials above the dataset's best trial, in loss units, "
                         "median over datasets, a panel per batch size (random arm: expected best-of-k; "
                         "else TPE's best so far, the mean over tuning runs)."))
    return blocks


def _value_blocks(a: Analysis, tables: Tables) -> list:
    """Tunability, tuning gain, several defaults against one tuned."""
    blocks = []
    t, margins = a.tuning.tunability, a.settings.report.tunability.margins
    csv = tables.add("tunability", t)
    if len(t):
        shares = {f"within {m:.0%}" + (" of the cell's best" if i == 0 else ""): [fmt.share(v) for v in t[within(m)]]
                  for i, m in enumerate(margins)}
        blocks.append(Table(pd.DataFrame({"optimizer": t["optimizer"], "random trials": t["trials"], **shares}),
                            f"Tunability: the share of an optimizer's random trials whose validation loss is within "
                            f"{fmt.names(f'{m:.0%}' for m in margins)} of its cell's best (both arms): how forgiving "
                            f"it is of hyperparameters drawn at random.", csv))
    g = a.tuning.gain
    csv = tables.add("tuning_gain", g)
    if len(g):
        blocks.append(Table(pd.DataFrame({
            "optimizer": [f"{o} ({b})" for o, b in zip(g["optimizer"], g["batch_size"])],
            "default - tuned, loss units": [f"{fmt.num(m)} [{fmt.num(lo)}, {fmt.num(hi)}]" for m, lo, hi in
                                         zip(g["median_gain"], g["low"], g["high"])],
            "P(tuned better)": [fmt.prob(p) for p in g["p_tuned_better"]],
            "P(equivalent)": [fmt.prob(p) for p in g["p_equivalent"]]}),
            "Tuning gain (Schmidt et al. 2021): the default track's test loss minus the tuned one's per dataset, in "
            "loss units (median with its bootstrap interval; > 0: tuning helps).", csv))
    f = a.tuning.several_defaults
    if f is not None:
        tables.add("defaults_vs_tuned", f.result.pairs)
        blocks.append(Paragraph("**Several defaults against one tuned** (Schmidt et al. 2021): per dataset, try "
                                "every optimizer at its defaults and keep the one validation prefers; against each "
                                "optimizer tuned. " + status_sentence(f.judgement, f.labels, "treatment",
                                                                       f.result.omnibus.pvalue)))
    return blocks


def _edge_table(edges: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (optimizer, param, edge), g in edges.groupby(["optimizer", "param", "edge"], sort=False):
        cells = ", ".join(f"{d}/{b}" for d, b in zip(g["dataset"], g["batch_size"]))
        rows.append({"optimizer": optimizer, "parameter": g["searched_as"].iloc[0], "edge": edge,
                     "bound": f"{g['bound'].iloc[0]:g}", "cells": len(g), "which (dataset/batch)": cells})
    return pd.DataFrame(rows, columns=["optimizer", "parameter", "edge", "bound", "cells", "which (dataset/batch)"])


def hyperparameter_panels(trials: pd.DataFrame, optimizers, averaging: bool) -> list[tuple[str, str, bool]]:
    """(optimizer, hyperparameter, drawn as 1 - x) of every panel of the loss against a hyperparameter figures: the
    learning rate, or each averaging constant of the optimizer's registry entry (drawn as 1 - x, as it is searched),
    where the trials hold a value."""
    def tried(o, p):
        return p in trials.columns and trials.loc[trials["optimizer"] == o, p].notna().any()

    wanted = [(o, p) for o in optimizers for p in (OPTIMIZERS[o].averaging if averaging else ("eta",))]
    return [(o, p, averaging) for o, p in wanted if tried(o, p)]


def tuning_section(a: Analysis, tables: Tables) -> list:
    blocks = [Heading("Tuning")]
    trials, dpi = a.results.trials, a.settings.report.figures.dpi
    if trials.empty:
        return blocks + [Paragraph("The sweep recorded no tuning trials.")]
    blocks += _budget_blocks(a, tables)
    blocks += pruning_blocks(a, tables)
    blocks += _value_blocks(a, tables)
    picture = tuning_figures.loss_against(trials, hyperparameter_panels(trials, a.grid.optimizers, False), a.grid.batches,
                                   a.scores.unit)
    blocks.append(Figure("tuning_eta", figures.png_bytes(picture, dpi),
                         "Final validation loss of every trial above the dataset's best trial, in loss units, "
                         "against eta; "
                         "colour = batch size, crosses at the top = diverged trials."))
    panels = hyperparameter_panels(trials, a.grid.optimizers, True)
    if panels:
        picture = tuning_figures.loss_against(trials, panels, a.grid.batches, a.scores.unit)
        blocks.append(Figure("tuning_averaging", figures.png_bytes(picture, dpi),
                             "The same against the averaging constants, drawn as 1 - value (searched log-uniformly "
                             "that way): 0.1 is 0.9, 0.01 is 0.99."))
    importance = a.tuning.importance
    csv = tables.add("importances_mean", importance)
    tables.add("importances", a.results.importances)
    if len(importance):
        names = [searched_as(*lecture_name(p)) for p in importance["param"]]  # Optuna's one_minus_gamma: 1 - gamma
        blocks.append(Table(pd.DataFrame({"optimizer": importance["optimizer"], "parameter": names,
                                          "mean importance": [fmt.cell(v, 2) for v in importance["mean_importance"]],
                                          "cells": importance["cells"]}),
                            "Parameter importances (Optuna's default evaluator), mean over cells.", csv))
    edges = a.tuning.edges
    csv = tables.add("edge_warnings", edges)
    if len(edges):
        blocks.append(Paragraph(f"**Warning: {len(edges)} tuned value(s) lie on the edge of their search range** "
                                f"(within {a.settings.report.edge.margin:.0%} of its width; log width for log "
                                f"ranges). The best value there may lie outside the range, so those cells may be "
                                f"under-tuned."))
        blocks.append(Table(_edge_table(edges), "Tuned values on the edge of the search range.", csv))
    else:
        blocks.append(Paragraph("No tuned value lies on the edge of its search range."))
    natural = a.tuning.natural_edges
    if len(natural):
        counts = ", ".join(f"{o} {n}" for o, n in natural.groupby("optimizer", sort=False).size().items())
        blocks.append(Paragraph(f"{len(natural)} tuned value(s) sit near a natural limit of their range, an averaging "
                                f"constant near 0 ({counts}): the optimizer did best with little or no momentum or "
                                f"averaging there. No wider range could move them, so they are not counted as "
                                f"warnings."))
    d = a.tuning.divergence
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

