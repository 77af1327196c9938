"""The answer at each budget: which optimizer and batch size to use, chosen on validation, judged on test.

For a budget (epochs, updates, seconds) and a track (tuned, default):

1. **Each optimizer's batch size** is the one with the best mean rank over the datasets of its validation score at
   that budget (final validation loss; updates or seconds to the validation target). Ties go to the first in the
   sweep's order.
2. **The recommended optimizer** is the one whose chosen cell has the best mean rank of validation score.
3. **Test scores what was chosen**: the datasets x optimizers table of test scores at the chosen batch sizes goes
   through the declared tests (Iman-Davenport, all pairs by Wilcoxon with Holm, the Bayesian signed-rank test with
   the ROPE), and the recommendation is judged against every other optimizer:
   - *winner*: every other optimizer is significantly behind it;
   - *practically equivalent*: every other one is significantly behind or, with P(within the ROPE) >= sure,
     practically the same: an answer, not a failure to find one;
   - *cannot separate*: some are neither behind nor shown equivalent: the data cannot tell them apart;
   - *validation and test disagree*: some optimizer is significantly better on test than the one validation chose
     (the verdict still follows validation, and says so).
The batch-size answer is the same procedure over the recommended optimizer's batch sizes. The statuses and the rule
that gives them: study.report.judge.decide.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from study.report.inputs import TRACKS
from study.report.judge import stats
from study.report.judge.decide import NOT_MEASURED, Judgement, judge, status
from study.report.judge.scoring import BUDGETS, measured
from study.schema.report import Report, Statistics


@dataclass(frozen=True)
class Answer:
    """One budget and track: the choices (validation), the test family and what it says."""
    budget: str
    track: str
    chosen_batch: dict  # optimizer -> batch size with the best validation mean rank
    batch_val_ranks: pd.DataFrame  # optimizers x batch sizes: mean rank of validation score within the optimizer
    val_ranks: pd.Series  # optimizers at their chosen batch size: mean rank of validation score, best first
    recommended: str | None
    family: stats.FamilyResult | None  # test scores, optimizers at their chosen batch sizes
    judgement: Judgement
    batch_family: stats.FamilyResult | None  # test scores, the recommended optimizer's batch sizes
    batch_judgement: Judgement
    rope: float  # the verdict's ROPE on the family's difference scale
    scale: str  # what a difference means: "spreads" (loss / seed-to-seed spread) or "log2 ratio"
    failures: dict = field(default_factory=dict)  # optimizer -> share of its chosen cell's runs that diverged

    @property
    def batch(self) -> str | None:
        return self.chosen_batch.get(self.recommended)

    @property
    def measured(self) -> bool:
        return self.family is not None


def score_table(cells: pd.DataFrame, column: str, track: str, datasets) -> pd.DataFrame:
    """Datasets x (optimizer, batch size) of one cell score column."""
    rows = cells[cells["track"] == track]
    table = rows.pivot_table(index="dataset", columns=["optimizer", "batch_size"], values=column, aggfunc="first",
                             sort=False, dropna=False)
    return table.reindex([d for d in datasets if d in table.index])


def differences(budget: str, spread: pd.Series, never: pd.Series):
    """The paired differences a budget's tests rank: a loss difference in the dataset's seed-to-seed spreads, or
    the log2 ratio of two costs (never reached = twice the dataset's largest finite cost)."""
    if budget == "epochs":
        return lambda other, reference: stats.scaled_difference(other, reference, spread.reindex(other.index))
    return lambda other, reference: stats.log2_ratio(other, reference, never.reindex(other.index))


def family_tests(scores: pd.DataFrame, differences, rope: float, st: Statistics, focus: str | None = None):
    """The declared tests of a family (``stats.compare_family``) with conf/report.yaml's statistics."""
    return stats.compare_family(scores, differences, rope=rope, alpha=st.alpha, nsamples=st.bayes_samples,
                                seed=st.seed, confidence=st.confidence, focus=focus, resamples=st.bootstrap_resamples)


def mean_ranks(table: pd.DataFrame) -> pd.Series:
    """Mean ranks over the datasets with every treatment scored (NaN for all when there is none)."""
    complete = table.dropna(axis=0, how="any")
    return stats.mean_ranks(complete) if len(complete) else pd.Series(np.nan, index=table.columns)


def best(ranks: pd.Series) -> str | None:
    """The best mean rank; ties to the first listed."""
    finite = ranks.dropna()
    return None if finite.empty else min(finite.index, key=lambda t: (finite[t], list(ranks.index).index(t)))


def validation_pick(val: pd.DataFrame) -> str | None:
    """What validation chooses among a family's treatments (datasets x treatments): the best mean rank."""
    return best(mean_ranks(val))


def choose(val: pd.DataFrame, optimizers, batches) -> tuple[dict, pd.DataFrame]:
    """Each optimizer's batch size by the best mean rank of validation score over the datasets."""
    chosen, rows = {}, {}
    for o in optimizers:
        sub = pd.DataFrame({b: val[(o, b)] for b in batches if (o, b) in val.columns})
        ranks = mean_ranks(sub)
        rows[o] = ranks
        pick = best(ranks)
        if pick is not None:
            chosen[o] = pick
    return chosen, pd.DataFrame(rows).T.reindex(columns=list(batches))


def answer(cells: pd.DataFrame, budget: str, track: str, datasets, optimizers, batches, spread: pd.Series,
           report: Report, runs: pd.DataFrame | None = None) -> Answer:
    rope = report.rope.on_scale(budget)
    st = report.statistics
    scale = "spreads" if budget == "epochs" else "log2 ratio"
    val = score_table(cells, f"val_{budget}", track, datasets)
    test = score_table(cells, f"test_{budget}", track, datasets)
    chosen, batch_ranks = choose(val, optimizers, batches)
    val_at = pd.DataFrame({o: val[(o, b)] for o, b in chosen.items()})
    val_ranks = mean_ranks(val_at).sort_values(kind="stable") if len(val_at.columns) else pd.Series(dtype=float)
    recommended = validation_pick(val_at) if len(val_at.columns) else None
    empty = Judgement(NOT_MEASURED, recommended)
    if not measured(cells[cells["track"] == track], budget) or recommended is None:
        return Answer(budget, track, chosen, batch_ranks, val_ranks, recommended, None, empty, None,
                      Judgement(NOT_MEASURED, chosen.get(recommended)), rope, scale)
    never = 2 * test.replace(np.inf, np.nan).max(axis=1)
    diff = differences(budget, spread, never)
    test_at = pd.DataFrame({o: test[(o, b)] for o, b in chosen.items()})
    family = family_tests(test_at, diff, rope, st, focus=recommended)
    judgement = judge(family, recommended, st.alpha, st.sure)
    test_batches = pd.DataFrame({b: test[(recommended, b)] for b in batches if (recommended, b) in test.columns})
    batch_family = family_tests(test_batches, diff, rope, st, focus=chosen[recommended])
    batch_judgement = judge(batch_family, chosen[recommended], st.alpha, st.sure)
    failures = {}
    if runs is not None:
        rows = runs[runs["track"] == track]
        for o, b in chosen.items():
            mine = rows[(rows["optimizer"] == o) & (rows["batch_size"] == b)]
            failures[o] = float(mine["diverged"].mean()) if len(mine) else math.nan
    return Answer(budget, track, chosen, batch_ranks, val_ranks, recommended, family, judgement, batch_family,
                  batch_judgement, rope, scale, failures)


def answers(cells: pd.DataFrame, runs: pd.DataFrame, spread: pd.Series, datasets, optimizers, batches,
            report: Report) -> dict[tuple[str, str], Answer]:
    """Every budget and track, keyed (budget, track), in a stable order."""
    tracks = [t for t in TRACKS if (cells["track"] == t).any()]
    return {(b, t): answer(cells, b, t, datasets, optimizers, batches, spread, report, runs)
            for b in BUDGETS for t in tracks}


def rope_sensitivity(a: Answer, report: Report) -> pd.DataFrame:
    """P(practically equivalent) of the recommended optimizer against each other at each declared ROPE width,
    and the status that width gives (the tests other than the ROPE do not change)."""
    if not a.measured:
        return pd.DataFrame(columns=["budget", "track", "width", "optimizer", "p_equivalent", "status"])
    rows = []
    scores = a.family.scores
    st = report.statistics
    for width in report.rope.widths(a.budget):
        rope = report.rope.on_scale(a.budget, width)
        probabilities = {}
        for other in scores.columns:
            if other == a.recommended:
                continue
            d = pair_differences(a, other)
            probabilities[other] = stats.bayesian_signed_rank(d, rope, st.bayes_samples, st.seed)[1] \
                if len(d) else math.nan
        at_width = _status_with(a, probabilities, st.sure)
        for other, p in probabilities.items():
            rows.append({"budget": a.budget, "track": a.track, "width": width, "optimizer": other,
                         "p_equivalent": p, "status": at_width})
    return pd.DataFrame(rows)


def pair_differences(a: Answer, other: str) -> np.ndarray:
    """The recommended optimizer's paired differences against ``other`` (> 0: the recommended one is better)."""
    return np.asarray(a.family.differences(a.family.scores[other], a.family.scores[a.recommended]), float)


def _status_with(a: Answer, p_equivalent: dict, sure: float) -> str:
    """The answer's status had the ROPE been another width (the tests other than the ROPE do not change)."""
    j = a.judgement
    undecided = j.equivalent + j.unresolved
    equivalent = [o for o in undecided if p_equivalent.get(o, 0) >= sure]
    return status(j.behind, equivalent, [o for o in undecided if o not in equivalent], j.ahead)


def effects(a: Answer, cells: pd.DataFrame, spread: pd.Series, report: Report) -> pd.DataFrame:
    """At equal epochs, the recommended optimizer against each other one (each at its chosen cell), per dataset:
    the relative difference of test loss, (other - recommended) / max(recommended, seed-to-seed spread), so that a
    loss near zero never makes it explode; and on classification sets the difference of test accuracy in points
    (recommended - other) with the Bayesian P(within the accuracy ROPE). Medians over datasets with bootstrap
    intervals."""
    columns = ["budget", "track", "optimizer", "rel_median", "rel_low", "rel_high", "acc_median", "acc_low",
               "acc_high", "acc_p_equivalent", "acc_datasets"]
    if not a.measured or a.budget != "epochs":
        return pd.DataFrame(columns=columns)
    datasets = list(a.family.scores.index)
    loss = score_table(cells, "test_epochs", a.track, datasets)
    accuracy = score_table(cells, "test_accuracy", a.track, datasets)
    rec = (a.recommended, a.batch)
    st = report.statistics
    rows = []
    for other, batch in a.chosen_batch.items():
        if other == a.recommended:
            continue
        denominator = np.maximum(loss[rec].abs(), spread.reindex(datasets).fillna(0.0))
        rel = ((loss[(other, batch)] - loss[rec]) / denominator).to_numpy(float)
        acc = (100 * (accuracy[rec] - accuracy[(other, batch)])).dropna().to_numpy(float)
        p_eq = stats.bayesian_signed_rank(acc, report.rope.accuracy_points[0], st.bayes_samples,
                                          st.seed)[1] if len(acc) else math.nan
        rows.append({"budget": a.budget, "track": a.track, "optimizer": other,
                     "rel_median": float(np.nanmedian(rel)) if np.isfinite(rel).any() else math.nan,
                     **dict(zip(("rel_low", "rel_high"), stats.bootstrap_median_ci(
                         rel, st.confidence, st.bootstrap_resamples, st.seed))),
                     "acc_median": float(np.median(acc)) if len(acc) else math.nan,
                     **dict(zip(("acc_low", "acc_high"), stats.bootstrap_median_ci(
                         acc, st.confidence, st.bootstrap_resamples, st.seed))),
                     "acc_p_equivalent": p_eq, "acc_datasets": len(acc)})
    return pd.DataFrame(rows, columns=columns)
