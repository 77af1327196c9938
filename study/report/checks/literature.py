"""Published findings about optimizers, checked against this sweep with criteria declared in conf/claims.yaml.

Each row: the source, the finding, the criterion, the number behind it, and the verdict: agrees, disagrees or
cannot tell (study.report.judge.decide's words, from its decisions). The tests are the verdict's (validation chooses,
test judges); the scope (small MLPs on small tabular and 2-D sets) is part of every row: none of this speaks for the
papers' deep networks.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study.report import fmt
from study.report.inputs import Grid, SweepResults
from study.report.judge import stats
from study.report.judge.answer import score_table
from study.report.judge.decide import (AHEAD, BEHIND, CANNOT_TELL, FINDING, SAME, UNRESOLVED, UNSEPARATED, by_share,
                                       is_the_pick, standing)
from study.report.judge.scoring import Scores
from study.report.judge.tuning import Tuning
from study.report.judge.verdict import Verdict
from study.schema.report import Literature, Statistics
from study.schema.report import Verdict as Rules


def _row(source, finding, criterion, number, verdict, scope) -> dict:
    return {"source": source, "finding": finding, "criterion": criterion, "number": number, "verdict": verdict,
            "scope": scope}


def schmidt(epochs, several, scope: str, st: Statistics) -> list[dict]:
    """Schmidt et al. 2021, "Descending through a crowded valley"."""
    source = "Schmidt et al. 2021"
    rows = []
    if epochs is None or not epochs.measured:
        return rows
    j = epochs.judgement
    # one optimizer the pick alone disagrees; one shown practically equivalent to the pick, none ahead, agrees;
    # nothing shown equivalent is absence of evidence either way
    dominates = FINDING.word(False if is_the_pick(j, j.chosen) else (True if j.equivalent and not j.ahead else None))
    rows.append(_row(source, "tuned, no optimizer dominates the others",
                     "at equal epochs, tuned: validation's pick is not a winner on test, and some optimizer is shown "
                     "practically equivalent to it (P(ROPE) >= sure)", f"{epochs.recommended}: {j.status}"
                     + (f"; equivalent: {fmt.names(j.equivalent)}" if j.equivalent else ""), dominates, scope))
    if "adam" in epochs.family.mean_ranks.index:
        competitive = FINDING.word(is_the_pick(j, "adam", alone=False))
        rows.append(_row(source, "Adam stays competitive",
                         "at equal epochs, tuned: Adam (at its chosen batch size) is validation's pick or practically "
                         "equivalent to it on test; significantly behind it disagrees",
                         "Adam is the pick" if epochs.recommended == "adam" else
                         f"Adam against {epochs.recommended}: " + (BEHIND if "adam" in j.behind else
                                                                   SAME if "adam" in j.equivalent else
                                                                   UNRESOLVED), competitive, scope))
    if several is not None:
        s, chosen = several.judgement, "several defaults"
        best = several.result.mean_ranks.index[0]
        pair = several.result.pair(chosen, best) if best != chosen else None
        number = (f"the defaults' pick against the best-ranked tuned ({best}): median "
                  f"{fmt.num(pair['median'])} spreads, Holm {fmt.p(pair['holm_p'])}, P(equivalent) "
                  f"{fmt.prob(pair['p_equivalent'])}" if pair else "the defaults' pick ranks first")
        # any tuned optimizer ahead disagrees; the best-ranked tuned one equivalent to the defaults' pick, or
        # behind it, agrees (as good, or better); unresolved is absence of evidence
        as_good = best == chosen or standing(several.result, chosen, best, st.alpha, st.sure) != UNSEPARATED
        verdict = FINDING.word(False if s.ahead else (True if as_good else None))
        rows.append(_row(source, "several optimizers at their defaults are about as good as one tuned",
                         "per dataset, the best of the optimizers at their defaults (picked on validation) is "
                         "practically equivalent to the best-ranked optimizer tuned, or better; significantly behind "
                         "any optimizer tuned disagrees", number, verdict, scope))
    return rows


def sivaprasad(budget_families: dict, small: int, scope: str) -> list[dict]:
    """Sivaprasad et al. 2020, "Optimizer benchmarking needs to account for hyperparameter tuning"."""
    family = budget_families.get(small)
    if family is None:
        return [_row("Sivaprasad et al. 2020", "Adam is the best choice at small tuning budgets",
                     f"with {small} random trial(s)", "no random-search arm in this sweep", CANNOT_TELL, scope)]
    j = family.judgement
    verdict = FINDING.word(is_the_pick(j, "adam"))
    return [_row("Sivaprasad et al. 2020", "Adam is the best choice at small tuning budgets",
                 f"with {small} random trial(s) (expected test loss of validation's pick), validation picks Adam and "
                 f"every other optimizer is significantly behind it", f"pick {j.chosen}: {j.status}", verdict,
                 scope)]


def choi(epochs, pairs, scope: str, st: Statistics) -> list[dict]:
    """Choi et al. 2019, "On empirical comparisons of optimizers for deep learning": the inclusion hierarchy."""
    if epochs is None or not epochs.measured:
        return []
    present = set(epochs.family.mean_ranks.index)
    checked, violated = [], []
    for general, special in pairs:
        if general in present and special in present:
            checked.append(f"{general} >= {special}")
            if standing(epochs.family, general, special, st.alpha, st.sure) == AHEAD:
                holm = epochs.family.pair(general, special)["holm_p"]
                violated.append(f"{special} better than {general} (Holm {fmt.p(holm)})")
    number = "; ".join(violated) if violated else f"no violation among {len(checked)} pairs"
    if epochs.judgement.too_few and not violated:  # no test could have found a violation
        number += f" (with {epochs.judgement.too_few} datasets no corrected test can reach significance)"
    verdict = FINDING.word(False if violated else (None if epochs.judgement.too_few else True))
    return [_row("Choi et al. 2019", "tuned thoroughly, the inclusion hierarchy holds: Adam and RMSProp at least as "
                 "good as momentum and NAG, which are at least as good as GD",
                 "at equal epochs, tuned: no more general optimizer is significantly behind one it includes "
                 "(Holm, after a significant omnibus test)", number, verdict, scope)]


def wilson(runs: pd.DataFrame, epochs, spread: pd.Series, adaptive, non_adaptive, alpha: float,
           scope: str) -> list[dict]:
    """Wilson et al. 2017, "The marginal value of adaptive gradient methods": per dataset, the best adaptive
    method (of the chosen cells) against the best non-adaptive one, on the final training loss and on test."""
    source = "Wilson et al. 2017"
    finding = "adaptive methods reach a lower training loss but not a lower test loss"
    if epochs is None or not epochs.measured or runs["train_final"].isna().all():
        return [_row(source, finding, "", "no final training loss recorded", CANNOT_TELL, scope)]
    cells = runs[runs["track"] == epochs.track].groupby(["dataset", "optimizer", "batch_size"], sort=False)[
        ["train_final", "test_epochs"]].mean().reset_index()
    chosen = cells[[epochs.chosen_batch.get(o) == b for o, b in zip(cells["optimizer"], cells["batch_size"])]]
    out = {}
    for column in ("train_final", "test_epochs"):
        table = chosen.pivot_table(index="dataset", columns="optimizer", values=column).dropna()
        a = table[[o for o in adaptive if o in table]].min(axis=1)
        n = table[[o for o in non_adaptive if o in table]].min(axis=1)
        d = stats.scaled_difference(n, a, spread.reindex(table.index))  # > 0: adaptive lower
        out[column] = (float(np.median(d)), stats.wilcoxon_signed_rank(d)[1])
    (train_median, train_p), (test_median, test_p) = out["train_final"], out["test_epochs"]
    lower_train = train_median > 0 and train_p < alpha
    lower_test = test_median > 0 and test_p < alpha
    against = lower_test or (train_median <= 0 and train_p < alpha)
    verdict = FINDING.word(True if lower_train and not lower_test else (False if against else None))
    number = (f"best adaptive minus best non-adaptive: train {fmt.num(-train_median)} spreads ({fmt.p(train_p)}), "
              f"test {fmt.num(-test_median)} spreads ({fmt.p(test_p)})")
    return [_row(source, finding, "per dataset at equal epochs, tuned (each optimizer at its chosen batch size): the "
                 "best adaptive method's final training loss is significantly lower than the best non-adaptive "
                 "one's (Wilcoxon), and its test loss is not", number, verdict, scope)]


def shallue(cells: pd.DataFrame, n_train: pd.Series, datasets, optimizers, batches, proportional, level_off,
            rules: Rules, scope: str) -> list[dict]:
    """Shallue et al. 2019, "Measuring the effects of data parallelism": updates to the target fall with batch
    size, about in proportion at first, then level off. Per optimizer (tuned, validation curves), the median over
    datasets of the log-log slope of updates to the target between the two smallest and the two largest batch
    sizes (the full batch at the training-set size)."""
    val = score_table(cells, "val_updates", "tuned", datasets)
    order = sorted(batches, key=lambda b: math.inf if b == "full" else int(b))
    holds, slopes = [], []
    for optimizer in optimizers:
        first, last = [], []
        for dataset in val.index:
            sizes = [min(int(b), n_train[dataset]) if b != "full" else n_train[dataset] for b in order]
            updates = [val.loc[dataset].get((optimizer, b), np.nan) for b in order]
            points = [(s, u) for s, u in zip(sizes, updates) if np.isfinite(u) and u > 0]
            distinct = sorted(dict(points).items())
            if len(distinct) >= 3:
                (s0, u0), (s1, u1) = distinct[0], distinct[1]
                (s2, u2), (s3, u3) = distinct[-2], distinct[-1]
                first.append(math.log(u1 / u0) / math.log(s1 / s0))
                last.append(math.log(u3 / u2) / math.log(s3 / s2))
        if first:
            f, l_ = float(np.median(first)), float(np.median(last))
            slopes.append(f"{optimizer} {fmt.num(f, 2)} then {fmt.num(l_, 2)}")
            holds.append(proportional[0] <= f <= proportional[1] and abs(l_) <= level_off * abs(f))
    share = float(np.mean(holds)) if holds else math.nan
    verdict = FINDING.word(by_share(share, len(holds), rules))
    return [_row("Shallue et al. 2019", "updates to the target fall with batch size, about in proportion at first, "
                 "then level off",
                 f"per optimizer (tuned), the median over datasets of the log-log slope of updates to the target: "
                 f"between the two smallest batch sizes in [{fmt.num(proportional[0])}, {fmt.num(proportional[1])}]"
                 f", between the two largest at most {fmt.num(level_off)} as steep; agrees when that holds for "
                 f"{rules.support:.0%} of the optimizers", f"holds for {sum(holds)}/{len(holds)}: "
                 + "; ".join(slopes), verdict, scope)]


def findings(lit: Literature, rules: Rules, st: Statistics, results: SweepResults, grid: Grid, scores: Scores,
             verdict: Verdict, tuning: Tuning) -> pd.DataFrame:
    """Every published finding, in a fixed order (``lit``: conf/claims.yaml's criteria; ``rules``: its verdict
    thresholds)."""
    scope = lit.scope
    epochs = verdict.answer("epochs", lit.track)
    n_train = results.evals.groupby("dataset")["n_train"].first()
    rows = (schmidt(epochs, tuning.several_defaults, scope, st)
            + sivaprasad(tuning.winners if tuning.random_arm else {}, int(lit.small_budget), scope)
            + choi(epochs, lit.hierarchy, scope, st)
            + wilson(scores.runs, epochs, scores.spread, lit.adaptive, lit.non_adaptive, st.alpha, scope)
            + shallue(scores.cells, n_train, grid.datasets, grid.optimizers, grid.batches, lit.proportional,
                      lit.level_off, rules, scope))
    return pd.DataFrame(rows, columns=["source", "finding", "criterion", "number", "verdict", "scope"])
