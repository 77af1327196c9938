"""Sections 1 and 2: the verdict (first and short: what holds across budgets, then each budget's headline, as sure
as its evidence) and how stable it is."""
from __future__ import annotations

import math

import pandas as pd

from study.report import fmt
from study.report.analysis import Analysis
from study.report.document import figures
from study.report.document.blocks import Bullets, Figure, Heading, Paragraph, Table
from study.report.document.sentences import (BUDGET_WORDS, SCOPE, batch_range, headline_words, robust_sentence,
                                             short_status, status_sentence, what_to_do)
from study.report.document.tables import Tables
from study.report.judge.decide import survival
from study.report.judge.scoring import BUDGET_NAMES, BUDGETS

CHOICES = ("**How each choice was made.** Every choice is made on the validation split; test only scores what was "
           "chosen. Each budget has its own hyperparameters, chosen on validation at that budget from the tuning "
           "trials' checkpoint curves, and one cap per dataset for every cell (`tables/budgets.csv`): E_d epochs; "
           "U_d updates (what full batch makes in its E_d epochs); T_d = E_d times the dataset's slowest full-batch "
           "epoch. "
           "A run's cost is read at the first checkpoint (every epoch end, and 8 per decade of updates inside "
           "epochs) at or below the dataset's target, factor x the validation loss at E_d of its best full-batch "
           "cell; a run that does not get there within the cap, or diverges, is censored: ranked last, tied with "
           "the other censored runs, and counted at the cap by the tests (\"> cap\" in the tables). A cell's score "
           "pools its runs, every tuning run and seed: the mean of the losses, the median of the costs. Each "
           "optimizer's batch size is the one with the best mean rank over the datasets of its validation score at "
           "that budget; the recommended optimizer is the one whose chosen cell has the best mean rank. Test then "
           "scores the same cells: the test loss at E_d, and updates or seconds until the *test* loss reaches the "
           "same target. A run that diverged scores the untrained network's loss.")


def _p_best(a: Analysis, budget: str, track: str, optimizer: str, kind: str = "optimizer") -> float:
    s = a.verdict.stability
    column = "status" if kind == "status" else "optimizer"
    row = s[(s["budget"] == budget) & (s["track"] == track) & (s["kind"] == kind) & (s[column] == optimizer)] \
        if len(s) else s
    return float(row["p_best"].iloc[0]) if len(row) else math.nan


def _status_share(a: Analysis, budget: str, track: str) -> float:
    ans = a.verdict.answer(budget, track)
    return _p_best(a, budget, track, ans.judgement.status, "status") if ans is not None else math.nan


def _tested(ans) -> bool:
    """Whether a test ran: measured, and more than one dataset and treatment (a Friedman p of one block is no
    test's)."""
    return ans.measured and not ans.judgement.why


def _headline(a: Analysis, key) -> tuple[str, float]:
    h = a.verdict.headlines.get(key)
    if h is None:
        return "", math.nan
    return f"{'|'.join(h.optimizers)} @ {batch_range(h.batches)}", h.share


def verdict_rows(a: Analysis) -> pd.DataFrame:
    rows = []
    for (budget, track), ans in a.verdict.answers.items():
        j = ans.judgement
        head, held = _headline(a, (budget, track))
        rows.append({"budget": budget, "track": track, "status": j.status, "recommended": ans.recommended,
                     "batch_size": ans.batch, "headline": head, "headline_stability": held,
                     "p_value": ans.family.omnibus.pvalue if _tested(ans) else math.nan,
                     "primary": ans.primary, "p_value_holm": ans.omnibus_p if ans.primary else math.nan,
                     "omnibus": ans.family.omnibus.test if _tested(ans) else "",
                     "p_best": _p_best(a, budget, track, ans.recommended),
                     "p_same_headline": a.verdict.same_headline.get((budget, track), math.nan),
                     "p_status": _status_share(a, budget, track),
                     "equivalent": " ".join(j.equivalent), "cannot_separate": " ".join(j.unresolved),
                     "behind": " ".join(j.behind), "ahead_on_test": " ".join(j.ahead),
                     "diverged_share": ans.failures.get(ans.recommended, math.nan),
                     "datasets": ans.family.n_blocks if ans.measured else 0, "tolerance": ans.rope,
                     "tolerance_scale": ans.scale,
                     "batch_status": ans.batch_judgement.status,
                     "batch_equivalent": " ".join(ans.batch_judgement.equivalent),
                     "batch_cannot_separate": " ".join(ans.batch_judgement.unresolved)})
    return pd.DataFrame(rows)


def _changes(a: Analysis) -> list[str]:
    items = []
    for budget in BUDGETS:
        d = a.verdict.answer(budget, "default")
        if d is not None and d.recommended is not None:
            h = a.verdict.headlines.get((budget, "default"))
            said = f" ({headline_words(h)}, {fmt.share(h.share)} of resamples)" if h is not None else ""
            items.append(f"**With default hyperparameters, {BUDGET_WORDS[budget].lower()}**: validation picks "
                         f"{d.recommended} at batch size {d.batch}{said}. " + status_sentence(
                             d.judgement, {}, p_value=d.family.omnibus.pvalue if d.measured else math.nan))
    runs = a.tuning.picks_per_run
    if len(runs) and runs["tuning_run"].nunique() > 1:
        parts = []
        for budget, g in runs.groupby("budget", sort=False):
            parts.append(f"{budget}: " + ", ".join(f"run {r} {o} at {b}" for r, o, b in
                                                   zip(g["tuning_run"], g["optimizer"], g["batch_size"])))
        items.append("**By tuning run** (what validation picks from one tuning run's evaluations alone): "
                     + "; ".join(parts) + ".")
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
        h = a.verdict.headlines.get((budget, track))
        rows.append({"budget": BUDGET_NAMES[budget], "track": track, "use": ans.recommended or "",
                     "batch size": ans.batch or "", "on test": short_status(ans.judgement),
                     "omnibus": (fmt.p(ans.omnibus_p) + (" (Holm)" if ans.primary else "")) if _tested(ans) else
                                ("no test" if ans.judgement.why else ""),
                     "headline": headline_words(h) if h is not None else "",
                     "headline holds": fmt.share(h.share) if h is not None else "",
                     "P(picked)": fmt.share(_p_best(a, budget, track, ans.recommended)),
                     "same status": fmt.share(_status_share(a, budget, track)),
                     "diverged": fmt.share(ans.failures.get(ans.recommended, math.nan))})
    return pd.DataFrame(rows)


def verdict_section(a: Analysis, tables: Tables) -> list:
    csv = tables.add("verdict", verdict_rows(a))
    resamples = a.settings.report.stability.resamples
    budgets = [b for b in BUDGETS if a.verdict.answer(b, "tuned") is not None]
    defaults = {b: a.verdict.headlines.get((b, "default")) for b in BUDGETS}
    blocks = [Heading("The verdict"), Paragraph(robust_sentence(a.verdict.robust, defaults, budgets))]
    for budget in budgets:
        ans = a.verdict.answer(budget, "tuned")
        blocks.append(Paragraph(what_to_do(ans, a.verdict.headlines.get((budget, "tuned")), a.results.evals,
                                           a.results.search_spaces, a.verdict.defaults_enough.get(budget),
                                           _p_best(a, budget, "tuned", ans.recommended),
                                           a.verdict.same_headline.get((budget, "tuned"), math.nan),
                                           _status_share(a, budget, "tuned"), resamples)))
    ans = a.verdict.answer("epochs", "tuned")
    if ans is not None and ans.batch_family is not None:
        blocks.append(Paragraph(f"**Batch size for {ans.recommended}** (equal epochs, exploratory): validation "
                                f"picks {ans.batch}. " + status_sentence(ans.batch_judgement, {}, "batch size",
                                                                         ans.batch_family.omnibus.pvalue)))
    blocks += [Paragraph(SCOPE), Table(_answer_table(a), "Every budget and track: what validation recommends, what "
                                       "the tests say about it (the tuned rows are the primary families, their "
                                       "omnibus p-values Holm-corrected together; the default rows are "
                                       "exploratory), what the bold line may name and the share of resamples it "
                                       "holds, how often the bootstrap picks the recommendation and gives the "
                                       "same status, and how often its runs diverged.", csv, primary=True),
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
        statuses = mine[mine["kind"] == "status"].sort_values("p_best", ascending=False, kind="stable")
        # those that print as 0% are left out (the table lists optimizers with P > 0)
        listed = lambda names, ps: ", ".join(f"{n} {fmt.share(p)}" for n, p in zip(names, ps) if p >= 0.005)  # noqa
        rows.append({"budget": BUDGET_NAMES[budget], "track": track, "recommended": ans.recommended or "",
                     "P(validation picks it)": listed(optimizers["optimizer"], optimizers["p_best"]),
                     "P(first on test)": listed(optimizers["optimizer"], optimizers["p_best_test"]),
                     "P(batch size), recommended optimizer": listed(batches["batch_size"], batches["p_best"]),
                     # one optimizer has no status against others: said so, not left blank
                     "P(status)": listed(statuses["status"], statuses["p_best"]) or "n/a (nothing to compare)",
                     "same headline": fmt.share(a.verdict.same_headline.get((budget, track), math.nan))})
    statements = []
    for (budget, track), ans in a.verdict.answers.items():
        same = a.verdict.same_headline.get((budget, track), math.nan)
        if track != "tuned" or math.isnan(same):
            continue
        word = survival(same, a.settings.report.stability)
        h = a.verdict.headlines.get((budget, track))
        widened = "" if h is None or h.single else f"; the headline names {headline_words(h)} ({fmt.share(h.share)})"
        statements.append(f"{BUDGET_WORDS[budget]}, \"{ans.recommended} at batch size {ans.batch}\" {word} "
                          f"resampling ({fmt.share(same)} of resamples; {ans.recommended} alone "
                          f"{fmt.share(_p_best(a, budget, track, ans.recommended))}{widened}).")
    st = a.settings.report.stability
    fig = figures.stability(s, a.grid.optimizers, [b for b in BUDGETS if any(k[0] == b for k in a.verdict.answers)])
    return [Heading("How stable the answer is"), Paragraph(
        f"The whole verdict recomputed on {st.resamples:,} bootstrap resamples: the datasets drawn with "
        f"replacement; within each, the evaluation seeds (the same draw for every cell, so comparisons stay "
        f"paired); within each cell, its {a.results.tuning_runs} tuning run(s) (each its own TPE study on its own "
        f"split). In each resample, from the resampled runs alone: every dataset's target and loss unit, every "
        f"cell's score at every budget, each optimizer's batch size and the recommended optimizer by validation "
        f"mean ranks, and the tests (Iman-Davenport, Wilcoxon-Holm over all pairs with the normal approximation, "
        f"the primary families' omnibus p-values Holm-corrected together, the Bayesian test with "
        f"{st.bayes_samples:,} posterior draws): so the share of resamples with the verdict's status too. For "
        f"comparison, which optimizer ranks first on test among the chosen cells. A bold line names one optimizer "
        f"and batch size only when that pair is picked in at least {st.survives:.0%} of the resamples; else the "
        f"fewest optimizers, and the narrowest range of batch sizes, that together are. What holds in most "
        f"resamples of the sweep's own datasets, seeds and tuning runs is what a second sweep with other tuning "
        f"seeds should say; what holds in half of them is not."), Bullets(statements),
        Table(pd.DataFrame(rows), "Probability of being picked, and of each status, per budget and track (entries "
                                  "with P > 0).", csv),
        Figure("stability", figures.png_bytes(fig, a.settings.report.figures.dpi),
               "P(validation picks the optimizer) over the bootstrap resamples, per budget, tuned and default.")]
