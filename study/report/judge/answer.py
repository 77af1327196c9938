"""The answer at each budget: which optimizer and batch size to use, chosen on validation, judged on test.

For a budget (epochs, updates, seconds) and a track (tuned, default):

1. **Each optimizer's batch size** is the one with the best mean rank over the datasets of its validation score at
   that budget (validation loss at E_d; updates or seconds to the validation target, censored at the cap), each
   cell scored on the evaluations of the hyperparameters chosen for that budget, pooled over tuning runs and
   seeds. Ties go to the first in the sweep's order.
2. **The recommended optimizer** is the one whose chosen cell has the best mean rank of validation score.
3. **Test scores what was chosen**: the datasets x optimizers table of test scores at the chosen batch sizes goes
   through the declared tests (Iman-Davenport, all pairs by Wilcoxon with Holm, the Bayesian signed-rank test with
   the declared tolerance, ``tolerance``), and the recommendation is judged against every other optimizer:
   - *winner*: every other optimizer is significantly behind it;
   - *practically equivalent*: every other one is significantly behind or, with P(within tolerance) >= sure,
     practically the same: an answer, not a failure to find one;
   - *cannot separate*: some are neither behind nor shown equivalent: the data cannot tell them apart;
   - *validation and test disagree*: some optimizer is significantly better on test than the one validation chose
     (the verdict still follows validation, and says so).
The batch-size answer is the same procedure over the recommended optimizer's batch sizes. The tuned verdict at the
primary budgets (conf/report.yaml) reads its pairs only when its omnibus p-value, Holm-corrected across those
families, is significant. The statuses and the rule that gives them: study.report.judge.decide.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from study.report.inputs import TRACKS
from study.report.judge import stats, tolerance
from study.report.judge.decide import NOT_MEASURED, Judgement, judge
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
    rope: float  # the declared tolerance on the family's difference scale
    scale: str  # what a difference means: "loss units" (paired SDs of validation loss) or "log2 ratio"
    failures: dict = field(default_factory=dict)  # optimizer -> share of its chosen cell's runs that diverged
    primary: bool = False  # a primary family (conf/report.yaml): its omnibus p corrected across them (Holm)
    omnibus_p: float = math.nan  # the omnibus p-value its pairs were gated on (the corrected one when primary)

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


def differences(budget: str, unit: pd.Series, caps: pd.DataFrame):
    """The paired differences a budget's tests rank (``tolerance.differences``), with the budget's caps."""
    return tolerance.differences(budget, unit, tolerance.cap_series(caps, budget))


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
    """What validation chooses among a family's treatments (datasets x treatments of VALIDATION scores): the best
    mean rank. Every choice of the judge goes through here or ``choose``; neither is ever given a test score."""
    return best(mean_ranks(val))


def choose(val: pd.DataFrame, optimizers, batches) -> tuple[dict, pd.DataFrame]:
    """Each optimizer's batch size by the best mean rank of its VALIDATION score over the datasets."""
    chosen, rows = {}, {}
    for o in optimizers:
        sub = pd.DataFrame({b: val[(o, b)] for b in batches if (o, b) in val.columns})
        ranks = mean_ranks(sub)
        rows[o] = ranks
        pick = best(ranks)
        if pick is not None:
            chosen[o] = pick
    return chosen, pd.DataFrame(rows).T.reindex(columns=list(batches))


def answer(cells: pd.DataFrame, budget: str, track: str, datasets, optimizers, batches, unit: pd.Series,
           caps: pd.DataFrame, report: Report, runs: pd.DataFrame | None = None) -> Answer:
    rope = report.tolerance.on_scale(budget)
    st = report.statistics
    scale = "loss units" if budget == "epochs" else "log2 ratio"
    val = score_table(cells, f"val_{budget}", track, datasets)
    chosen, batch_ranks = choose(val, optimizers, batches)
    val_at = pd.DataFrame({o: val[(o, b)] for o, b in chosen.items()})
    val_ranks = mean_ranks(val_at).sort_values(kind="stable") if len(val_at.columns) else pd.Series(dtype=float)
    recommended = validation_pick(val_at) if len(val_at.columns) else None
    empty = Judgement(NOT_MEASURED, recommended)
    if not measured(cells[cells["track"] == track], budget) or recommended is None:
        return Answer(budget, track, chosen, batch_ranks, val_ranks, recommended, None, empty, None,
                      Judgement(NOT_MEASURED, chosen.get(recommended)), rope, scale)
    # test enters here, after every choice: it scores the chosen cells
    test = score_table(cells, f"test_{budget}", track, datasets)
    diff = differences(budget, unit, caps)
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
                  batch_judgement, rope, scale, failures, omnibus_p=family.omnibus.pvalue)


def answers(cells: pd.DataFrame, runs: pd.DataFrame, unit: pd.Series, caps: pd.DataFrame, datasets, optimizers,
            batches, report: Report) -> dict[tuple[str, str], Answer]:
    """Every budget and track, keyed (budget, track), in a stable order; the primary families (conf/report.yaml:
    the tuned verdict at its budgets) judged with their omnibus p-values corrected together (Holm)."""
    tracks = [t for t in TRACKS if (cells["track"] == t).any()]
    found = {(b, t): answer(cells, b, t, datasets, optimizers, batches, unit, caps, report, runs)
             for b in BUDGETS for t in tracks}
    return primary(found, report)


def primary(found: dict, report: Report) -> dict:
    """The primary families' judgements gated on their Holm-corrected omnibus p-values."""
    keys = [(b, "tuned") for b in report.primary.families if (b, "tuned") in found and found[(b, "tuned")].measured]
    if not keys:
        return found
    st = report.statistics
    corrected = stats.holm([found[k].family.omnibus.pvalue for k in keys])
    out = dict(found)
    for key, p in zip(keys, corrected):
        a = found[key]
        out[key] = dataclasses.replace(a, judgement=judge(a.family, a.recommended, st.alpha, st.sure, float(p)),
                                       primary=True, omnibus_p=float(p))
    return out


def effects(a: Answer, cells: pd.DataFrame, unit: pd.Series, report: Report) -> pd.DataFrame:
    """At equal epochs, the recommended optimizer against each other one (each at its chosen cell), per dataset:
    the relative difference of test loss, (other - recommended) / max(recommended, loss unit), so that a loss
    near zero never makes it explode; and on classification sets the difference of test accuracy in points
    (recommended - other) with the Bayesian P(within the accuracy tolerance). Medians over datasets with bootstrap
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
        denominator = np.maximum(loss[rec].abs(), unit.reindex(datasets).fillna(0.0))
        rel = ((loss[(other, batch)] - loss[rec]) / denominator).to_numpy(float)
        acc = (100 * (accuracy[rec] - accuracy[(other, batch)])).dropna().to_numpy(float)
        rows.append({"budget": a.budget, "track": a.track, "optimizer": other,
                     "rel_median": float(np.nanmedian(rel)) if np.isfinite(rel).any() else math.nan,
                     **dict(zip(("rel_low", "rel_high"), stats.bootstrap_median_ci(
                         rel, st.confidence, st.bootstrap_resamples, st.seed))),
                     "acc_median": float(np.median(acc)) if len(acc) else math.nan,
                     **dict(zip(("acc_low", "acc_high"), stats.bootstrap_median_ci(
                         acc, st.confidence, st.bootstrap_resamples, st.seed))),
                     "acc_p_equivalent": tolerance.accuracy_equivalence(acc, report), "acc_datasets": len(acc)})
    return pd.DataFrame(rows, columns=columns)
