"""The verdict in words: what to do at each budget, how sure, and what the tests allow (study.report.judge.answer).

Absence of evidence is worded as such ("the data cannot separate them"); practical equivalence is an answer ("are
practically equivalent"); neither is ever "within what chance produces".
"""
from __future__ import annotations

import math

import pandas as pd

from study.core.hyperparams import search_value, searched_as
from study.report import fmt
from study.report.judge.answer import Answer
from study.report.judge.decide import DISAGREE, EQUIVALENT, NOT_MEASURED, NOT_TESTED, UNRESOLVED, WINNER, Judgement

SCOPE = ("Scope: small MLPs (one hidden layer) on small tabular and 2-D datasets, 60 to 1,100 training samples; "
         "not deep networks, large data or long training.")
BUDGET_WORDS = {"epochs": "At equal epochs (equal samples processed)", "updates": "At equal updates",
                "seconds": "At equal wall time (this machine)"}


def rope_words(a: Answer) -> str:
    if a.budget == "epochs":
        return f"{fmt.num(a.rope)} seed-to-seed spreads of test loss"
    return f"a factor {fmt.num(2 ** a.rope)} in {a.budget} to the target"


def status_sentence(j: Judgement, labels: dict, what: str = "optimizer", p_value: float = math.nan) -> str:
    """What the test family says about the choice, in one sentence."""
    name = lambda t: labels.get(t, t)  # noqa: E731
    chosen = name(j.chosen)
    omnibus = f" (Iman-Davenport {fmt.p(p_value)})" if not math.isnan(p_value) else ""
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


def hyper_ranges(evals: pd.DataFrame, search_spaces: dict, optimizer: str, batch: str) -> str:
    """The tuned values that worked for an optimizer at a batch size, over the datasets ("eta 0.0012-0.031")."""
    rows = evals[(evals["track"] == "tuned") & (evals["optimizer"] == optimizer) & (evals["batch_size"] == batch)]
    rows = rows.drop_duplicates("dataset")
    parts = []
    for param, space in search_spaces.get(optimizer, {}).items():
        if space.get("fixed") is not None or param not in rows or rows[param].isna().all():
            continue
        one_minus = bool(space.get("one_minus"))
        values, shown = search_value(rows[param].astype(float), one_minus), searched_as(param, one_minus)
        parts.append(f"{shown} {fmt.num(values.min(), 2)}-{fmt.num(values.max(), 2)} "
                     f"(median {fmt.num(values.median(), 2)})")
    return "; ".join(parts)


def what_to_do(a: Answer, evals: pd.DataFrame, search_spaces: dict, defaults: dict | None, p_best: float,
               same: float, resamples: int) -> str:
    """The first lines of the verdict for one budget (tuned track): what to use, what to tune, how sure."""
    if a.recommended is None:
        return f"**{BUDGET_WORDS[a.budget]}**: no answer: the sweep has no tuned evaluation runs."
    head = f"**{BUDGET_WORDS[a.budget]}: use {a.recommended} at batch size {a.batch}.**"
    if a.judgement.status == NOT_MEASURED:
        return f"{head} (Validation's choice; {status_sentence(a.judgement, {})})"
    if defaults and defaults.get("enough"):
        tune = (f"The defaults of {a.recommended} are enough: tuned and default are practically equivalent on test "
                f"(P = {fmt.prob(defaults['p_equivalent'])} within {rope_words(a)}).")
    else:
        ranges = hyper_ranges(evals, search_spaces, a.recommended, a.batch)
        gain = f" (tuning beats its defaults: P = {fmt.prob(defaults['p_a_better'])})" if defaults else ""
        tune = f"Tune it{gain}; the tuned values that worked: {ranges}." if ranges else f"Tune it{gain}."
    sure = (f"How sure: validation picks {a.recommended} in {fmt.share(p_best)} of {resamples:,} bootstrap "
            f"resamples of datasets and seeds, and the same optimizer at the same batch size in {fmt.share(same)}.")
    fails = a.failures.get(a.recommended, math.nan)
    failures = f" Its runs diverged: {fmt.share(fails)}." if not math.isnan(fails) and fails > 0 else ""
    return f"{head} {tune} {status_sentence(a.judgement, {}, p_value=a.family.omnibus.pvalue)} {sure}{failures}"


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


