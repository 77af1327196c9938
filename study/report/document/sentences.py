"""The verdict in words: what to do at each budget, how sure, and what the tests allow (study.report.judge.answer).

Absence of evidence is worded as such ("the data cannot separate them"); practical equivalence is an answer ("are
practically equivalent"); neither is ever "within what chance produces". A bold line names one optimizer and batch
size only when that pair survives resampling (``decide.headline``); else the set that does.
"""
from __future__ import annotations

import math

import pandas as pd

from study.core.hyperparams import search_value, searched_as
from study.report import fmt
from study.report.judge.answer import Answer
from study.report.judge.decide import (DISAGREE, EQUIVALENT, NOT_MEASURED, NOT_TESTED, UNRESOLVED, WINNER, Headline,
                                       Judgement)

SCOPE = ("Scope: small MLPs (one hidden layer) on small tabular and 2-D datasets, 60 to 1,100 training samples; "
         "not deep networks, large data or long training.")
BUDGET_WORDS = {"epochs": "At equal epochs (equal samples processed)", "updates": "At equal updates",
                "seconds": "At equal wall time (this machine)"}
EXPLORATORY, PRIMARY = "Exploratory", "Primary"


def tolerance_words(a: Answer) -> str:
    if a.budget == "epochs":
        return (f"{fmt.num(a.rope)} loss units (a loss unit: the dataset's SD of paired, same-seed differences of "
                f"validation loss)")
    return f"a factor {fmt.num(2 ** a.rope)} in {a.budget} to the target"


def batch_range(batches) -> str:
    """Batch sizes as a range, smallest first ("32-128", "128-full", "32")."""
    order = sorted(batches, key=lambda b: math.inf if b == "full" else int(b))
    return order[0] if len(order) == 1 else f"{order[0]}-{order[-1]}"


def headline_words(h: Headline) -> str:
    """What a bold line names: "use adam at batch size 32", or "any of adam, rmsprop or adagrad at batch 32-128;
    we cannot single one out"."""
    if h.single:
        return f"use {h.optimizers[0]} at batch size {h.batches[0]}"
    who = h.optimizers[0] if len(h.optimizers) == 1 else "any of " + fmt.names(h.optimizers).replace(" and ", " or ")
    where = f"batch size {h.batches[0]}" if len(h.batches) == 1 else f"batch {batch_range(h.batches)}"
    single = "one batch size" if len(h.optimizers) == 1 else "one"
    return f"{who} at {where}; we cannot single {single} out"


def status_sentence(j: Judgement, labels: dict, what: str = "optimizer", p_value: float = math.nan,
                    corrected: float = math.nan) -> str:
    """What the test family says about the choice, in one sentence (``corrected``: its omnibus p-value
    Holm-corrected across the primary families)."""
    name = lambda t: labels.get(t, t)  # noqa: E731
    chosen = name(j.chosen)
    omnibus = f" (Iman-Davenport {fmt.p(p_value)}" if not math.isnan(p_value) else ""
    if omnibus:
        omnibus += (f", Holm-corrected across the primary families {fmt.p(corrected)})" if not math.isnan(corrected)
                    else ")")
    if j.status == NOT_MEASURED:
        return f"Not tested: {j.why}" if j.why else "Not measured: the sweep did not record what this budget needs."
    if j.status == WINNER:
        return f"On test, every other {what} is significantly behind {chosen}{omnibus}."
    parts = []
    if j.status == DISAGREE:
        parts.append(f"**Validation and test disagree**: on test {fmt.names(name(t) for t in j.ahead)} "
                     f"{'is' if len(j.ahead) == 1 else 'are'} significantly better than {chosen}; the verdict "
                     f"follows validation, where every choice is made")
    if j.equivalent:
        parts.append(f"{fmt.names([chosen] + [name(t) for t in j.equivalent])} are practically equivalent")
    if j.unresolved:
        parts.append(f"the data cannot separate {chosen} from {fmt.names(name(t) for t in j.unresolved)}")
    if j.behind:
        parts.append(f"{fmt.names(name(t) for t in j.behind)} {'is' if len(j.behind) == 1 else 'are'} "
                     f"significantly behind")
    text = "; ".join(parts)
    if j.too_few:
        text += (f" (with {j.too_few} datasets no Holm-corrected signed-rank test can reach p < {fmt.num(j.alpha)} "
                 f"at all: run more datasets to separate them)")
    return f"On test{omnibus}: {text}."


def hyper_ranges(evals: pd.DataFrame, search_spaces: dict, optimizer: str, batch: str, budget: str = "epochs") -> str:
    """The tuned values chosen for a budget for an optimizer at a batch size, over the datasets and tuning runs
    ("eta 0.0012-0.031")."""
    rows = evals[(evals["track"] == "tuned") & (evals["optimizer"] == optimizer) & (evals["batch_size"] == batch)
                 & (evals["budget"] == budget)]
    rows = rows.drop_duplicates(["dataset", "tuning_run"])
    parts = []
    for param, space in search_spaces.get(optimizer, {}).items():
        if space.get("fixed") is not None or param not in rows or rows[param].isna().all():
            continue
        one_minus = bool(space.get("one_minus"))
        values, shown = search_value(rows[param].astype(float), one_minus), searched_as(param, one_minus)
        parts.append(f"{shown} {fmt.num(values.min(), 2)}-{fmt.num(values.max(), 2)} "
                     f"(median {fmt.num(values.median(), 2)})")
    return "; ".join(parts)


def advice(a: Answer, defaults: dict | None, evals: pd.DataFrame, search_spaces: dict) -> str:
    """"The defaults are enough" or "tune it", as decided on validation; then what test says of it."""
    if not defaults:
        return ""
    on_test = (f"on test, tuned and default are practically equivalent with P = {fmt.prob(defaults['p_equivalent'])}"
               f" and tuning is better with P = {fmt.prob(defaults['p_a_better'])}")
    if defaults.get("enough"):
        return (f"The defaults of {a.recommended} are enough: on validation they are practically equivalent to "
                f"the tuned hyperparameters or better (P = {fmt.prob(defaults['val_p_equivalent'])} within "
                f"{tolerance_words(a)}); {on_test}.")
    ranges = hyper_ranges(evals, search_spaces, a.recommended, a.batch, a.budget)
    found = f" The tuned values that worked: {ranges}." if ranges else ""
    return (f"Tune it: on validation tuning beats its defaults with P = {fmt.prob(defaults['val_p_tuned_better'])}; "
            f"{on_test}.{found}")


def what_to_do(a: Answer, head: Headline | None, evals: pd.DataFrame, search_spaces: dict, defaults: dict | None,
               p_best: float, same: float, status_share: float, resamples: int) -> str:
    """The lines of the verdict for one budget (tuned track): what survives resampling in bold, then validation's
    pick, what to tune, what test says and how sure."""
    if a.recommended is None:
        return f"**{BUDGET_WORDS[a.budget]}**: no answer: the sweep has no tuned evaluation runs."
    if a.judgement.status == NOT_MEASURED:
        return (f"**{BUDGET_WORDS[a.budget]}: use {a.recommended} at batch size {a.batch}.** (Validation's choice; "
                f"{status_sentence(a.judgement, {})})")
    if head is None or head.single:
        bold = f"**{BUDGET_WORDS[a.budget]}: use {a.recommended} at batch size {a.batch}.**"
        pick = ""
    else:
        bold = f"**{BUDGET_WORDS[a.budget]}, tuned: {headline_words(head)}.**"
        pick = (f" Together they hold {fmt.share(head.share)} of the resamples; validation's pick on the whole sweep "
                f"is {a.recommended} at batch size {a.batch}, picked in {fmt.share(same)} of them.")
    sure = (f"How sure: in {resamples:,} bootstrap resamples of datasets, seeds and tuning runs, with the targets, "
            f"loss unit, choices and tests recomputed in each, validation picks {a.recommended} in "
            f"{fmt.share(p_best)}, {a.recommended} at batch size {a.batch} in {fmt.share(same)}, and the tests say "
            f"\"{a.judgement.status}\" in {fmt.share(status_share)}.")
    fails = a.failures.get(a.recommended, math.nan)
    failures = f" Its runs diverged: {fmt.share(fails)}." if not math.isnan(fails) and fails > 0 else ""
    test = status_sentence(a.judgement, {}, p_value=a.family.omnibus.pvalue,
                           corrected=a.omnibus_p if a.primary else math.nan)
    tune = advice(a, defaults, evals, search_spaces)
    return " ".join(part for part in (bold + pick, tune, test, sure + failures) if part)


def robust_sentence(robust: tuple, defaults: dict[str, Headline], budgets) -> str:
    """What holds across budgets, first: the optimizers every tuned headline names, and any default-track pair that
    survives resampling."""
    if robust:
        tuned = (f"tuned, {fmt.names(robust)} {'is' if len(robust) == 1 else 'are'} in every budget's headline "
                 f"({fmt.names(budgets)})")
    else:
        tuned = "tuned, no optimizer is in every budget's headline: the answer depends on the budget"
    single = [(b, h) for b, h in defaults.items() if h is not None and h.single]
    if single:
        kept = "; ".join(f"{h.optimizers[0]} at batch size {h.batches[0]} at equal {b}" for b, h in single)
        tuned += f"; with default hyperparameters, {kept} survive{'s' if len(single) == 1 else ''} resampling"
    return f"**What holds across budgets:** {tuned}."


def short_status(j: Judgement) -> str:
    if j.status == WINNER:
        return f"{j.chosen} wins"
    if j.status == EQUIVALENT:
        return f"{'/'.join([j.chosen, *j.equivalent])} practically equivalent"
    if j.status == DISAGREE:
        return f"validation picks {j.chosen}, test prefers {'/'.join(j.ahead)}"
    if j.status == UNRESOLVED:
        return f"{j.chosen} leads; cannot separate {'/'.join(j.unresolved)}"
    return NOT_TESTED if j.why else NOT_MEASURED


def capped(value: float, cap: float) -> str:
    """A cost to the target: "> cap" when it was never reached within the cap."""
    return f"> {fmt.num(cap)}" if math.isinf(float(value)) and math.isfinite(float(cap)) else fmt.num(value)
