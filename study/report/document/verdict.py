"""Sections 1 to 3: the verdict (first and short), how stable it is, and the statistics it rests on."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study.report import fmt
from study.report.analysis import Analysis
from study.report.document import figures
from study.report.document.blocks import Bullets, Details, Figure, Heading, Paragraph, Table
from study.report.document.sentences import BUDGET_WORDS, SCOPE, rope_words, short_status, status_sentence, what_to_do
from study.report.document.tables import Tables
from study.report.judge.answer import effects
from study.report.judge.decide import survival
from study.report.judge.scoring import BUDGET_NAMES, BUDGETS

CHOICES = ("**How each choice was made.** Every choice is made on the validation split; test only scores what was "
           "chosen. Each optimizer's batch size is the one with the best mean rank over the datasets of its "
           "validation score at that budget (final validation loss; updates or seconds until the validation loss "
           "first reaches the dataset's target); the recommended optimizer is the one whose chosen cell has the "
           "best mean rank of validation score; the batch size recommended is that optimizer's chosen one. Test "
           "then scores the same cells: final test loss at equal epochs; updates and seconds until the *test* "
           "loss first reaches the same target at the other budgets. A run that diverged scores the untrained "
           "network's loss; one that never reaches the target is infinitely slow (it ranks last).")


def _p_best(a: Analysis, budget: str, track: str, optimizer: str) -> float:
    s = a.verdict.stability
    row = s[(s["budget"] == budget) & (s["track"] == track) & (s["kind"] == "optimizer")
            & (s["optimizer"] == optimizer)] if len(s) else s
    return float(row["p_best"].iloc[0]) if len(row) else math.nan


def _tested(ans) -> bool:
    """Whether a test ran: measured, and more than one dataset and treatment (a Friedman p of one block is no
    test's)."""
    return ans.measured and not ans.judgement.why


def verdict_rows(a: Analysis) -> pd.DataFrame:
    rows = []
    for (budget, track), ans in a.verdict.answers.items():
        j = ans.judgement
        rows.append({"budget": budget, "track": track, "status": j.status, "recommended": ans.recommended,
                     "batch_size": ans.batch, "p_value": ans.family.omnibus.pvalue if _tested(ans) else math.nan,
                     "omnibus": ans.family.omnibus.test if _tested(ans) else "",
                     "p_best": _p_best(a, budget, track, ans.recommended),
                     "p_same_headline": a.verdict.same_headline.get((budget, track), math.nan),
                     "equivalent": " ".join(j.equivalent), "cannot_separate": " ".join(j.unresolved),
                     "behind": " ".join(j.behind), "ahead_on_test": " ".join(j.ahead),
                     "diverged_share": ans.failures.get(ans.recommended, math.nan),
                     "datasets": ans.family.n_blocks if ans.measured else 0, "rope": ans.rope,
                     "rope_scale": ans.scale,
                     "batch_status": ans.batch_judgement.status,
                     "batch_equivalent": " ".join(ans.batch_judgement.equivalent),
                     "batch_cannot_separate": " ".join(ans.batch_judgement.unresolved)})
    return pd.DataFrame(rows)


def _changes(a: Analysis) -> list[str]:
    items = []
    for budget in BUDGETS:
        d = a.verdict.answer(budget, "default")
        if d is not None and d.recommended is not None:
            items.append(f"**With default hyperparameters, {BUDGET_WORDS[budget].lower()}**: validation picks "
                         f"{d.recommended} at batch size {d.batch}. " + status_sentence(
                             d.judgement, {}, p_value=d.family.omnibus.pvalue if d.measured else math.nan))
    per_batch = [f"{f.fixed}: {short_status(f.judgement)}" for (t, kind, _), f in a.verdict.families.items()
                 if t == "tuned" and kind == "optimizers"]
    if per_batch:
        items.append("**By batch size** (tuned, equal epochs, the optimizers at one batch size): "
                     + "; ".join(per_batch) + ".")
    if a.tuning.winners:
        items.append("**By tuning budget** (best validation loss after k trials, each optimizer at its chosen "
                     "batch size): " + "; ".join(f"{k} trial{'s' if k > 1 else ''}: {short_status(f.judgement)}"
                                                 for k, f in a.tuning.winners.items()) + ".")
    tuned = a.scores.cells[a.scores.cells["track"] == "tuned"]
    if len(tuned):
        best = tuned.loc[tuned.groupby("dataset", sort=False)["val_epochs"].idxmin()]
        counts = best["optimizer"].value_counts()
        items.append(f"**By dataset** (the cell with the lowest validation loss of all "
                     f"{len(a.grid.optimizers) * len(a.grid.batches)}, tuned): " + ", ".join(
                         f"{o} {counts[o]}" for o in a.grid.optimizers if o in counts.index) + " datasets.")
    return items


def _answer_table(a: Analysis) -> pd.DataFrame:
    rows = []
    for (budget, track), ans in a.verdict.answers.items():
        rows.append({"budget": BUDGET_NAMES[budget], "track": track, "use": ans.recommended or "",
                     "batch size": ans.batch or "", "on test": short_status(ans.judgement),
                     "omnibus": fmt.p(ans.family.omnibus.pvalue) if _tested(ans) else
                                ("no test" if ans.judgement.why else ""),
                     "P(picked)": fmt.share(_p_best(a, budget, track, ans.recommended)),
                     "same headline": fmt.share(a.verdict.same_headline.get((budget, track), math.nan)),
                     "diverged": fmt.share(ans.failures.get(ans.recommended, math.nan))})
    return pd.DataFrame(rows)


def verdict_section(a: Analysis, tables: Tables) -> list:
    csv = tables.add("verdict", verdict_rows(a))
    resamples = a.settings.report.stability.resamples
    blocks = [Heading("The verdict")]
    for budget in BUDGETS:
        ans = a.verdict.answer(budget, "tuned")
        if ans is not None:
            blocks.append(Paragraph(what_to_do(ans, a.results.evals, a.results.search_spaces,
                                               a.verdict.defaults_enough.get(budget),
                                               _p_best(a, budget, "tuned", ans.recommended),
                                               a.verdict.same_headline.get((budget, "tuned"), math.nan), resamples)))
    ans = a.verdict.answer("epochs", "tuned")
    if ans is not None and ans.batch_family is not None:
        blocks.append(Paragraph(f"**Batch size for {ans.recommended}** (equal epochs): validation picks "
                                f"{ans.batch}. " + status_sentence(ans.batch_judgement, {}, "batch size",
                                                                   ans.batch_family.omnibus.pvalue)))
    blocks += [Paragraph(SCOPE), Table(_answer_table(a), "Every budget and track: what validation recommends, what "
                                       "the test tests say about it, how often the bootstrap picks it, and how "
                                       "often its runs diverged.", csv),
               Paragraph(CHOICES), Paragraph("**When the answer changes.**"), Bullets(_changes(a))]
    return blocks


# --- stability -----------------------------------------------------------------------------------------------------
def stability_section(a: Analysis, tables: Tables) -> list:
    csv = tables.add("stability", a.verdict.stability)
    s = a.verdict.stability
    if s.empty:
        return []
    rows = []
    for (budget, track), ans in a.verdict.answers.items():
        mine = s[(s["budget"] == budget) & (s["track"] == track)]
        optimizers = mine[mine["kind"] == "optimizer"].sort_values("p_best", ascending=False, kind="stable")
        batches = mine[mine["kind"] == "batch_size"].sort_values("p_best", ascending=False, kind="stable")
        # those that print as 0% are left out (the table lists optimizers with P > 0)
        listed = lambda names, ps: ", ".join(f"{n} {fmt.share(p)}" for n, p in zip(names, ps) if p >= 0.005)  # noqa
        rows.append({"budget": BUDGET_NAMES[budget], "track": track, "recommended": ans.recommended or "",
                     "P(validation picks it)": listed(optimizers["optimizer"], optimizers["p_best"]),
                     "P(first on test)": listed(optimizers["optimizer"], optimizers["p_best_test"]),
                     "P(batch size), recommended optimizer": listed(batches["batch_size"], batches["p_best"]),
                     "same headline": fmt.share(a.verdict.same_headline.get((budget, track), math.nan))})
    statements = []
    for (budget, track), ans in a.verdict.answers.items():
        same = a.verdict.same_headline.get((budget, track), math.nan)
        if track != "tuned" or math.isnan(same):
            continue
        word = survival(same, a.settings.report.stability)
        statements.append(f"{BUDGET_WORDS[budget]}, \"{ans.recommended} at batch size {ans.batch}\" {word} "
                          f"resampling ({fmt.share(same)} of resamples; {ans.recommended} alone "
                          f"{fmt.share(_p_best(a, budget, track, ans.recommended))}).")
    fig = figures.stability(s, a.grid.optimizers, [b for b in BUDGETS if any(k[0] == b for k in a.verdict.answers)])
    return [Heading("How stable the answer is"), Paragraph(
        f"The verdict's choices recomputed on {a.settings.report.stability.resamples:,} bootstrap resamples: the "
        f"datasets drawn with replacement, and within each the evaluation seeds drawn with replacement (Sivaprasad "
        f"et al. 2020 report the probability that each optimizer ranks first). In each resample, exactly as above: "
        f"each optimizer's batch size and the recommended optimizer by validation mean ranks; and, for comparison, "
        f"which optimizer ranks first on test among the chosen cells. One sweep's details move with floating-"
        f"point noise between machines; a statement that holds in most resamples of its own datasets and seeds "
        f"is one to lean on, one that holds in half of them is not."), Bullets(statements),
        Table(pd.DataFrame(rows), "Probability of being picked, per budget and track (optimizers with P > 0).", csv),
        Figure("stability", figures.png_bytes(fig, a.settings.report.figures.dpi),
               "P(validation picks the optimizer) over the bootstrap resamples, per budget, tuned and default.")]


# --- statistics ----------------------------------------------------------------------------------------------------
def method(a: Analysis) -> str:
    s, rope = a.settings.report.statistics, a.settings.report.rope
    pairs = len(a.grid.optimizers) * (len(a.grid.optimizers) - 1) // 2
    return (
        f"Declared in `conf/report.yaml` before looking. Blocks are datasets; a cell's score is the mean over its "
        f"evaluation seeds (losses) or the median (costs). Per budget and track: the omnibus **Friedman test in "
        f"Iman and Davenport's F form** (Demšar 2006), then **all pairs** by the **Wilcoxon signed-rank test** "
        f"with **Holm's** correction over the {pairs} pairs (García & "
        f"Herrera 2008), read only if the omnibus test is significant (alpha = {s.alpha}). The paired differences "
        f"are on a scale comparable across datasets, so that no test, table or figure divides by a loss near "
        f"zero: a loss difference in units of the dataset's **seed-to-seed spread** (the median over its tuned "
        f"cells of the standard deviation of test loss over seeds), and for costs the log2 ratio (a target never "
        f"reached counts as twice the dataset's largest finite cost). Effect sizes: the median paired difference "
        f"over datasets with a {s.confidence:.0%} bootstrap interval; on classification sets also the median "
        f"accuracy difference in points. **Practical equivalence** (Benavoli et al. 2017): the Bayesian "
        f"signed-rank test gives P(better), P(within the ROPE), P(worse); the ROPE is {fmt.num(rope.loss_spread[0])} "
        f"seed-to-seed spreads of test loss at equal epochs and a cost ratio of {fmt.num(rope.cost_ratio[0])} at the "
        f"other budgets (accuracy: {fmt.num(rope.accuracy_points[0])} point); P >= {s.sure} within it is an answer: "
        f"\"practically equivalent\". The sensitivity table repeats the verdict at the other declared widths.")


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
    unit = "spreads" if ans.budget == "epochs" else "log2"
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
        "P(accuracy within the ROPE)": [fmt.prob(p) for p in e["acc_p_equivalent"]],
        "classification sets": e["acc_datasets"].astype(str)})


def statistics_section(a: Analysis, tables: Tables) -> list:
    blocks = [Heading("Statistics"), Paragraph(method(a))]
    csv_pairs = tables.add("pairs", pair_rows(a))
    csv_choices = tables.add("choices", choice_rows(a))
    csv_rope = tables.add("rope_sensitivity", a.verdict.sensitivity)
    tables.add("loss_spread", a.scores.spread.rename("seed_to_seed_spread").reset_index())
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
                                    + status_sentence(ans.judgement, {}, p_value=r.omnibus.pvalue)
                                    + f" ROPE: {rope_words(ans)}."))
        if len(r.pairs) and not ans.judgement.why:  # untested: p-values on one dataset would read as a test
            blocks.append(Table(_pairs_shown(ans), "All pairs, a ranked above b on test; median paired difference "
                                                   "> 0 means a is better.", csv_pairs))
        if budget == "epochs":
            e = effects(ans, a.scores.cells, a.scores.spread, a.settings.report)
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
    if len(a.verdict.sensitivity):
        sens = a.verdict.sensitivity
        rows = []
        for (budget, track, width), g in sens.groupby(["budget", "track", "width"], sort=False):
            rows.append({"budget": budget, "track": track, "ROPE width": fmt.num(width),
                         "P(equivalent) per optimizer": ", ".join(f"{o} {fmt.prob(p)}" for o, p in
                                                                  zip(g["optimizer"], g["p_equivalent"])),
                         "status": g["status"].iloc[0]})
        blocks.append(Table(pd.DataFrame(rows), "ROPE sensitivity: the recommended optimizer against each other at "
                                                "the three declared widths (loss: seed-to-seed spreads; costs: "
                                                "ratio).", csv_rope))
    details = []
    for (track, kind, fixed), f in a.verdict.families.items():
        details.append(Paragraph(f"**{f.title}, {track}** — validation picks {f.judgement.chosen}. "
                                 + status_sentence(f.judgement, f.labels, "treatment", f.result.omnibus.pvalue)))
    if details:
        blocks.append(Details("Secondary families at equal epochs: the optimizers at each batch size, the batch "
                              "sizes of each optimizer", details, level=4))
    return blocks
