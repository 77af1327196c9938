"""Section 3: the statistics the verdict rests on: the declared tests, each family's pairs, the effect sizes, the
critical difference diagrams, and how each comparison moves as the tolerance shrinks."""
from __future__ import annotations

import numpy as np
import pandas as pd

from study.report import fmt
from study.report.analysis import Analysis
from study.report.document import figures
from study.report.document.blocks import Details, Figure, Heading, Paragraph, Table
from study.report.document.sentences import tolerance_words, status_sentence
from study.report.document.tables import Tables
from study.report.judge.answer import effects
from study.report.judge.scoring import BUDGET_NAMES


def method(a: Analysis) -> str:
    s, tol = a.settings.report.statistics, a.settings.report.tolerance
    pairs = len(a.grid.optimizers) * (len(a.grid.optimizers) - 1) // 2
    primary = ", ".join(a.settings.report.primary.families)
    return (
        f"Declared in `conf/report.yaml` before looking. Blocks are datasets; a cell's score pools its runs (every "
        f"tuning run and evaluation seed): the mean of the losses, the median of the costs. Per budget and track: "
        f"the omnibus **Friedman test in Iman and Davenport's F form** (Demšar 2006), then **all pairs** by the "
        f"**Wilcoxon signed-rank test** with **Holm's** correction over the {pairs} pairs (García & Herrera 2008), "
        f"read only if the omnibus test is significant (alpha = {s.alpha}). **Primary and exploratory**: the "
        f"primary families are the tuned verdict at {primary} (conf/report.yaml); their omnibus p-values are "
        f"corrected together with Holm's procedure, and their pairs read only when the corrected p is below alpha. "
        f"Every other family and table is exploratory: no multiplicity control across them, and each says so. The "
        f"paired differences are on a scale comparable across datasets, so that nothing divides by a loss near "
        f"zero: a loss difference in **loss units**, the dataset's standard deviation of paired, same-seed (same "
        f"split) differences of *validation* loss between two tuned cells (the median over every pair of its "
        f"tuned cells; test data never sets it); for costs the log2 ratio, a censored cost counted at the cap. "
        f"Effect sizes: the median paired difference over datasets with a {s.confidence:.0%} bootstrap interval; "
        f"on classification sets also the median accuracy difference in points. **Practical equivalence** "
        f"(Benavoli et al. 2017): the Bayesian signed-rank test gives P(better), P(within the tolerance), P(worse); "
        f"the tolerance, declared per budget, is {fmt.num(tol.epochs.paired_sd)} loss units at equal epochs and a "
        f"cost ratio of {fmt.num(tol.updates.ratio)} (updates) and {fmt.num(tol.seconds.ratio)} (seconds) "
        f"(accuracy: {fmt.num(tol.epochs.accuracy_points)} point); P >= {s.sure} within it is an answer: "
        f"\"practically equivalent\". The sensitivity table repeats every comparison as the tolerance shrinks to "
        f"{fmt.num(min(tol.sensitivity))} of the declared one.")


def pair_rows(a: Analysis) -> pd.DataFrame:
    parts = []
    for (budget, track), ans in a.verdict.answers.items():
        if not ans.measured:
            continue
        p = ans.family.pairs.copy()
        p.insert(0, "scale", ans.scale)
        p.insert(0, "track", track)
        p.insert(0, "budget", budget)
        parts.append(p)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def choice_rows(a: Analysis) -> pd.DataFrame:
    rows = []
    for (budget, track), ans in a.verdict.answers.items():
        test_ranks = ans.family.mean_ranks if ans.measured else pd.Series(dtype=float)
        for o in a.grid.optimizers:
            if o not in ans.chosen_batch:
                continue
            rows.append({"budget": budget, "track": track, "optimizer": o, "batch_size": ans.chosen_batch[o],
                         "val_mean_rank": ans.val_ranks.get(o, np.nan), "test_mean_rank": test_ranks.get(o, np.nan),
                         "diverged_share": ans.failures.get(o, np.nan),
                         **{f"val_rank_{b}": ans.batch_val_ranks.loc[o, b] for b in a.grid.batches
                            if b in ans.batch_val_ranks.columns}})
    return pd.DataFrame(rows)


def _pairs_shown(ans) -> pd.DataFrame:
    unit = "loss units" if ans.budget == "epochs" else "log2"
    rows = []
    for _, r in ans.family.pairs.iterrows():
        rows.append({"a": r["a"], "b": r["b"], f"median (b - a), {unit}": fmt.cell(r["median"]),
                     "interval": f"[{fmt.cell(r['low'])}, {fmt.cell(r['high'])}]",
                     "Wilcoxon p": fmt.cell(r["wilcoxon_p"]), "Holm p": fmt.cell(r["holm_p"]),
                     "P(a better)": fmt.prob(r["p_a_better"]), "P(equivalent)": fmt.prob(r["p_equivalent"]),
                     "P(b better)": fmt.prob(r["p_b_better"])})
    return pd.DataFrame(rows)


def _effects_shown(e: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "against": e["optimizer"],
        "median relative test loss difference": [f"{fmt.pct(m)} [{fmt.pct(lo)}, {fmt.pct(hi)}]" for m, lo, hi in
                                                 zip(e["rel_median"], e["rel_low"], e["rel_high"])],
        "accuracy points": [f"{fmt.num(m, 2)} [{fmt.num(lo, 2)}, {fmt.num(hi, 2)}]" if m == m else "n/a"
                            for m, lo, hi in zip(e["acc_median"], e["acc_low"], e["acc_high"])],
        "P(accuracy within the tolerance)": [fmt.prob(p) for p in e["acc_p_equivalent"]],
        "classification sets": e["acc_datasets"].astype(str)})


def statistics_section(a: Analysis, tables: Tables) -> list:
    blocks = [Heading("Statistics"), Paragraph(method(a))]
    csv_pairs = tables.add("pairs", pair_rows(a))
    csv_choices = tables.add("choices", choice_rows(a))
    csv_rope = tables.add("rope_sensitivity", a.verdict.sensitivity)
    tables.add("loss_unit", a.scores.unit.rename("paired_sd_validation").reset_index())
    shown = choice_rows(a)
    if len(shown):
        blocks.append(Table(pd.DataFrame({
            "budget": shown["budget"], "track": shown["track"], "optimizer": shown["optimizer"],
            "batch size (validation)": shown["batch_size"],
            "validation mean rank": [fmt.cell(v) for v in shown["val_mean_rank"]],
            "test mean rank": [fmt.cell(v) for v in shown["test_mean_rank"]],
            "diverged": [fmt.share(v) for v in shown["diverged_share"]]}),
            "Each optimizer's batch size, chosen by its validation mean rank, and the mean ranks of the chosen "
            "cells on validation and test (1 = best), with the share of their runs that diverged.", csv_choices))
    panels, effect_rows = [], []
    for (budget, track), ans in a.verdict.answers.items():
        if not ans.measured:
            continue
        r = ans.family
        blocks.append(Heading(f"{BUDGET_NAMES[budget].capitalize()}, {track} track", 3))
        if ans.judgement.why:  # one dataset or one optimizer: no test ran, so no statistic to show
            blocks.append(Paragraph(f"Recommended (validation): {ans.recommended} at batch size {ans.batch}. "
                                    + status_sentence(ans.judgement, {})))
        else:
            blocks.append(Paragraph(f"{r.omnibus.test}: statistic {fmt.num(r.omnibus.statistic)}, "
                                    f"{fmt.p(r.omnibus.pvalue)} over {r.n_blocks} datasets. Recommended "
                                    f"(validation): {ans.recommended} at batch size {ans.batch}. "
                                    + status_sentence(ans.judgement, {}, p_value=r.omnibus.pvalue,
                                                      corrected=ans.omnibus_p if ans.primary else np.nan)
                                    + f" Tolerance: {tolerance_words(ans)}."))
        if len(r.pairs) and not ans.judgement.why:  # untested: p-values on one dataset would read as a test
            blocks.append(Table(_pairs_shown(ans), "All pairs, a ranked above b on test; median paired difference "
                                                   "> 0 means a is better.", csv_pairs, primary=ans.primary))
        if budget == "epochs":
            e = effects(ans, a.scores.cells, a.scores.unit, a.settings.report)
            effect_rows.append(e)
            if len(e):
                blocks.append(Table(_effects_shown(e), f"Effect sizes, {track}: {ans.recommended} against each "
                                                       f"other optimizer (each at its chosen batch size).",
                                    "effects"))
        panels.append((f"{budget}, {track}", r, {o: f"{o} ({b})" for o, b in ans.chosen_batch.items()},
                       set(ans.judgement.behind)))
    tables.add("effects", pd.concat(effect_rows, ignore_index=True) if effect_rows else pd.DataFrame())
    if panels:
        picture = figures.png_bytes(figures.cd_diagrams(panels), a.settings.report.figures.dpi)
        blocks.append(Figure("cd_budgets", picture,
                             "Critical difference diagrams of the test scores, per budget and track: mean rank "
                             "(1 = best), a bar joins treatments closer than the Nemenyi CD; a hollow marker is "
                             "significantly behind the recommended optimizer (Holm-corrected Wilcoxon)."))
    blocks += sensitivity_blocks(a, csv_rope)
    details = []
    for (track, kind, fixed), f in a.verdict.families.items():
        details.append(Paragraph(f"**{f.title}, {track}** — validation picks {f.judgement.chosen}. "
                                 + status_sentence(f.judgement, f.labels, "treatment", f.result.omnibus.pvalue)))
    if details:
        blocks.append(Details("Secondary families at equal epochs: the optimizers at each batch size, the batch "
                              "sizes of each optimizer", details, level=4))
    return blocks


def sensitivity_blocks(a: Analysis, csv: str) -> list:
    """P(equivalent) of each comparison as the tolerance shrinks from the declared one to a tenth of it."""
    sens = a.verdict.sensitivity
    if not len(sens):
        return []
    rows = []
    for (budget, track, multiple), g in sens.groupby(["budget", "track", "multiple"], sort=False):
        rows.append({"budget": budget, "track": track, "x declared": fmt.num(multiple),
                     "tolerance": f"{fmt.num(g['width'].iloc[0])} {g['scale'].iloc[0]}",
                     "P(equivalent) per optimizer": ", ".join(f"{o} {fmt.prob(p)}" for o, p in
                                                              zip(g["optimizer"], g["p_equivalent"])),
                     "status": g["status"].iloc[0]})
    fig = figures.tolerance_sensitivity(sens[sens["track"] == "tuned"], a.grid.optimizers,
                                        a.settings.report.statistics.sure)
    return [Table(pd.DataFrame(rows), "Tolerance sensitivity: the recommended optimizer against each other, from "
                                      "the declared tolerance down to a tenth of it (loss units at equal epochs, a "
                                      "cost ratio at the other budgets), and the status each width gives.", csv),
            Figure("tolerance_sensitivity", figures.png_bytes(fig, a.settings.report.figures.dpi),
                   "P(practically equivalent to the recommended optimizer) against the tolerance, from the declared "
                   "one (right) to a tenth of it, tuned track, a panel per budget, a line per optimizer; the dashed "
                   "line is the sure threshold.")]
