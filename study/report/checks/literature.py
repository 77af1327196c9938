"""Published findings about optimizers, checked against this sweep with criteria declared in conf/claims.yaml.

Each row: the source, the finding, the criterion, the number behind it, the verdict: agrees, disagrees or cannot
tell (study.report.judge.decide's words, from its decisions), and the ``evidence`` the verdict rests on with the
``threshold`` it was held against. A verdict needs positive evidence both ways (issue 19): "agrees" only when the
finding's direction is significant (p < alpha) or, for a finding of "at least as good" or "as good", P >= sure
within the declared tolerance; "disagrees" only on the same kind of evidence against; anything else "cannot tell".
Absence of a significant violation is no agreement. The tests are the verdict's (validation chooses,
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
from study.schema.report import Literature, Report, Statistics
from study.schema.report import Verdict as Rules


COLUMNS = ["source", "finding", "criterion", "number", "verdict", "evidence", "threshold", "scope"]


def _row(source, finding, criterion, number, verdict, scope, evidence=math.nan, threshold=math.nan) -> dict:
    return {"source": source, "finding": finding, "criterion": criterion, "number": number, "verdict": verdict,
            "evidence": evidence, "threshold": threshold, "scope": scope}


def _includes(general: str, special: str, spaces: dict) -> str | None:
    """Why ``general`` does not include ``special`` in the spaces swept (None when it does). Momentum and NAG are
    GD at gamma = 0; Adam is momentum only as eps grows without bound, so only when eps is tuned; RMSProp has no
    momentum term and includes neither momentum nor NAG."""
    if special == "gd" and general in ("momentum", "nag"):
        return None
    if general == "adam" and special in ("momentum", "nag"):
        eps = spaces.get("adam", {}).get("eps", {})
        return None if isinstance(eps, dict) and eps.get("fixed") is None and eps else \
            "Adam includes momentum only as eps grows without bound, and eps is fixed in this sweep"
    if general == "rmsprop" and special in ("momentum", "nag"):
        return "RMSProp has no momentum term"
    return f"{general} is not a generalisation of {special}"


def schmidt(epochs, several, scope: str, st: Statistics) -> list[dict]:
    """Schmidt et al. 2021, "Descending through a crowded valley"."""
    source = "Schmidt et al. 2021"
    rows = []
    if epochs is None or not epochs.measured:
        return rows
    j = epochs.judgement
    pairs = [epochs.family.pair(epochs.recommended, o) for o in j.equivalent + j.unresolved]
    p_same = max((p["p_equivalent"] for p in pairs), default=math.nan)
    # against: validation's pick is a winner on test (every other significantly behind); for: some optimizer is
    # practically equivalent to it (P >= sure) and none ahead of it; else no evidence either way
    dominates = False if is_the_pick(j, j.chosen) else (True if j.equivalent and not j.ahead else None)
    rows.append(_row(source, "tuned, no optimizer dominates the others",
                     "at equal epochs, tuned: agrees when some optimizer is practically equivalent to validation's "
                     "pick on test (P(within the tolerance) >= sure) and none is ahead of it; disagrees when every "
                     "other is significantly behind the pick (Holm)", f"{epochs.recommended}: {j.status}"
                     + (f"; equivalent: {fmt.names(j.equivalent)}" if j.equivalent else ""), FINDING.word(dominates),
                     scope, *((max((epochs.family.pair(epochs.recommended, o)["holm_p"] for o in j.behind),
                                   default=math.nan), st.alpha) if dominates is False else (p_same, st.sure))))
    if "adam" in epochs.family.mean_ranks.index:
        competitive = is_the_pick(j, "adam", alone=False)
        evidence = (epochs.family.pair(epochs.recommended, "adam")["holm_p"], st.alpha) if competitive is False \
            else ((epochs.family.pair(epochs.recommended, "adam")["p_equivalent"], st.sure)
                  if epochs.recommended != "adam" else (math.nan, math.nan))
        rows.append(_row(source, "Adam stays competitive",
                         "at equal epochs, tuned: Adam (at its chosen batch size) is validation's pick or practically "
                         "equivalent to it on test; significantly behind it disagrees",
                         "Adam is the pick" if epochs.recommended == "adam" else
                         f"Adam against {epochs.recommended}: " + (BEHIND if "adam" in j.behind else
                                                                   SAME if "adam" in j.equivalent else
                                                                   UNRESOLVED), FINDING.word(competitive), scope,
                         *evidence))
    if several is not None:
        chosen = "several defaults"
        # the comparator is the tuned optimizer validation picks at equal epochs, never the one first on test
        best = f"{epochs.recommended} tuned"
        if best in several.result.scores.columns:
            pair = several.result.pair(chosen, best)
            where = standing(several.result, chosen, best, st.alpha, st.sure)
            number = (f"the defaults' pick against {best} (validation's tuned pick): median "
                      f"{fmt.num(pair['median'])} loss units, Holm {fmt.p(pair['holm_p'])}, P(equivalent) "
                      f"{fmt.prob(pair['p_equivalent'])}")
            # for: equivalent (P >= sure) or the tuned one significantly behind; against: significantly ahead
            as_good = {SAME: True, BEHIND: True, AHEAD: False}.get(where)
            evidence = (pair["p_equivalent"], st.sure) if where in (SAME, UNSEPARATED) else (pair["holm_p"],
                                                                                             st.alpha)
            rows.append(_row(source, "several optimizers at their defaults are about as good as one tuned",
                             "per dataset, the best of the optimizers at their defaults (picked on validation) "
                             "against the optimizer tuned that validation picks: practically equivalent or better "
                             "agrees, significantly behind it disagrees", number, FINDING.word(as_good), scope,
                             *evidence))
    return rows


def sivaprasad(budget_families: dict, small: int, scope: str, alpha: float) -> list[dict]:
    """Sivaprasad et al. 2020, "Optimizer benchmarking needs to account for hyperparameter tuning"."""
    family = budget_families.get(small)
    if family is None:
        return [_row("Sivaprasad et al. 2020", "Adam is the best choice at small tuning budgets",
                     f"with {small} random trial(s)", "no random-search arm in this sweep", CANNOT_TELL, scope)]
    j = family.judgement
    adam = is_the_pick(j, "adam")
    others = [o for o in family.result.scores.columns if o != "adam"]
    # the evidence: the weakest Holm p of Adam against the others (for), of the pick against Adam (against)
    evidence = (family.result.pair(j.chosen, "adam")["holm_p"] if adam is False else
                max((family.result.pair("adam", o)["holm_p"] for o in others), default=math.nan)
                if "adam" in family.result.scores.columns else math.nan)
    return [_row("Sivaprasad et al. 2020", "Adam is the best choice at small tuning budgets",
                 f"with {small} random trial(s) (expected test loss of validation's pick), validation picks Adam and "
                 f"every other optimizer is significantly behind it; Adam significantly behind the pick disagrees. "
                 f"The outcome depends on the priors (search spaces) this project wrote", f"pick {j.chosen}: "
                 f"{j.status}", FINDING.word(adam), scope, evidence, alpha)]


def choi(epochs, pairs, spaces: dict, rope: float, scope: str, st: Statistics) -> list[dict]:
    """Choi et al. 2019, "On empirical comparisons of optimizers for deep learning": the inclusion hierarchy, for
    the inclusions that hold in the spaces swept (``_includes``). Per pair, positive evidence that the more general
    optimizer is at least as good: P(the difference is within the tolerance or in its favour) >= sure (the Bayesian
    signed-rank test at the declared tolerance); against: the one it includes significantly better (Holm, after a
    significant omnibus test)."""
    source, finding = "Choi et al. 2019", ("tuned thoroughly, an optimizer is at least as good as the optimizers it "
                                           "includes (momentum and NAG include GD; Adam includes momentum and NAG "
                                           "only with eps tuned)")
    criterion = ("at equal epochs, tuned: agrees when every testable inclusion has P(the more general optimizer at "
                 "least as good, within the tolerance) >= sure; disagrees when in some one the included optimizer is "
                 "significantly better (Holm); inclusions that do not hold in the spaces swept are not testable")
    if epochs is None or not epochs.measured:
        return []
    present = set(epochs.family.mean_ranks.index)
    family = epochs.family
    support, violated, untestable, p_holm = [], [], [], []
    for general, special in pairs:
        if general not in present or special not in present:
            continue
        why = _includes(general, special, spaces)
        if why:
            untestable.append(f"{general} >= {special} ({why})")
            continue
        d = np.asarray(family.differences(family.scores[special], family.scores[general]), float)  # > 0: general
        _, same, better = stats.bayesian_signed_rank(d, rope, st.bayes_samples, st.seed)
        support.append((f"{general} >= {special}", same + better))
        if standing(family, general, special, st.alpha, st.sure) == AHEAD:
            p_holm.append(family.pair(general, special)["holm_p"])
            violated.append(f"{special} better than {general} (Holm {fmt.p(p_holm[-1])})")
    if not support:
        return [_row(source, finding, criterion, "not testable with these spaces: " + "; ".join(untestable),
                     CANNOT_TELL, scope)]
    weakest = min(support, key=lambda x: x[1])
    if violated:
        verdict, evidence = False, (min(p_holm), st.alpha)
    else:
        verdict, evidence = (True if weakest[1] >= st.sure else None), (weakest[1], st.sure)
    number = ("; ".join(violated) + "; " if violated else "") + (
        f"weakest of {len(support)} inclusions: {weakest[0]} with P(at least as good) {fmt.prob(weakest[1])}")
    if untestable:
        number += "; not testable: " + "; ".join(untestable)
    return [_row(source, finding, criterion, number, FINDING.word(verdict), scope, *evidence)]


def _one_sided(d: np.ndarray) -> tuple[float, float]:
    """The median of ``d`` and the one-sided p-value of the signed-rank test that it is > 0 (half the two-sided
    one in the observed direction, 1 minus that in the other)."""
    if not len(d):
        return math.nan, math.nan
    median, p = float(np.median(d)), stats.wilcoxon_signed_rank(d)[1]
    if not np.isfinite(p):
        return median, math.nan
    return median, p / 2 if median > 0 else 1 - p / 2


def wilson(runs: pd.DataFrame, epochs, spread: pd.Series, adaptive, non_adaptive, alpha: float,
           scope: str) -> list[dict]:
    """Wilson et al. 2017, "The marginal value of adaptive gradient methods": adaptive methods generalise worse.
    Per dataset, the best adaptive and the best non-adaptive optimizer (each at its chosen batch size, best chosen
    on validation), then on test, one-sided: is the adaptive one's test loss (in loss units) higher, and its test
    error (classification sets) higher? Both significant agrees (an intersection of two one-sided tests at alpha);
    the adaptive one significantly lower on either (at alpha / 2 each) disagrees; else cannot tell."""
    source = "Wilson et al. 2017"
    finding = "adaptive methods generalise worse: a higher test error and loss than the best non-adaptive method"
    if epochs is None or not epochs.measured:
        return [_row(source, finding, "", "not measured at equal epochs", CANNOT_TELL, scope)]
    cells = runs[runs["track"] == epochs.track].groupby(["dataset", "optimizer", "batch_size"], sort=False)[
        ["val_epochs", "test_epochs", "test_accuracy"]].mean().reset_index()
    chosen = cells[[epochs.chosen_batch.get(o) == b for o, b in zip(cells["optimizer"], cells["batch_size"])]]
    val = chosen.pivot_table(index="dataset", columns="optimizer", values="val_epochs").dropna()
    groups = [[o for o in group if o in val] for group in (adaptive, non_adaptive)]
    if not all(groups) or val.empty:
        return [_row(source, finding, "", "an optimizer group is missing", CANNOT_TELL, scope)]
    best_a, best_n = val[groups[0]].idxmin(axis=1), val[groups[1]].idxmin(axis=1)  # chosen on validation
    test = chosen.pivot_table(index="dataset", columns="optimizer", values="test_epochs").reindex(val.index)
    error = 1 - chosen.pivot_table(index="dataset", columns="optimizer", values="test_accuracy").reindex(val.index)
    pick = lambda table, best: pd.Series([table.loc[d, best[d]] for d in table.index], table.index)  # noqa: E731
    loss = stats.scaled_difference(pick(test, best_a), pick(test, best_n), spread.reindex(val.index))
    points = (pick(error, best_a) - pick(error, best_n)).dropna() * 100
    (loss_median, loss_p), (err_median, err_p) = _one_sided(np.asarray(loss, float)), _one_sided(points.to_numpy())
    measured = [(m, p) for m, p in ((loss_median, loss_p), (err_median, err_p)) if np.isfinite(p)]
    worse = bool(measured) and all(p < alpha for _, p in measured)
    better = any(1 - p < alpha / 2 for _, p in measured)
    verdict = True if worse and not better else (False if better else None)
    evidence = max(p for _, p in measured) if measured and verdict is not False else (
        min(1 - p for _, p in measured) if measured else math.nan)
    number = (f"best adaptive minus best non-adaptive (chosen on validation): test loss {fmt.num(loss_median)} "
              f"loss units (one-sided p {fmt.p(loss_p)}), test error {fmt.num(err_median)} points (one-sided p "
              f"{fmt.p(err_p)})")
    return [_row(source, finding, "per dataset at equal epochs, tuned: the best adaptive and the best non-adaptive "
                 "optimizer by validation loss, compared on test (Wilcoxon, one-sided): higher test loss and test "
                 "error both significant agrees; significantly lower disagrees", number, FINDING.word(verdict), scope,
                 evidence, alpha if verdict is not False else alpha / 2)]


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
    threshold = rules.contradict if verdict == FINDING.fails else rules.support
    return [_row("Shallue et al. 2019", "updates to the target fall with batch size, about in proportion at first, "
                 "then level off",
                 f"per optimizer (tuned), the median over datasets of the log-log slope of updates to the target: "
                 f"between the two smallest batch sizes in [{fmt.num(proportional[0])}, {fmt.num(proportional[1])}]"
                 f", between the two largest at most {fmt.num(level_off)} as steep; agrees when that holds for "
                 f"{rules.support:.0%} of the optimizers", f"holds for {sum(holds)}/{len(holds)}: "
                 + "; ".join(slopes), verdict, scope, share, threshold)]


def findings(lit: Literature, rules: Rules, report: Report, results: SweepResults, grid: Grid, scores: Scores,
             verdict: Verdict, tuning: Tuning) -> pd.DataFrame:
    """Every published finding, in a fixed order (``lit``: conf/claims.yaml's criteria; ``rules``: its verdict
    thresholds; ``report``: the statistics and the declared tolerance)."""
    scope, st = lit.scope, report.statistics
    epochs = verdict.answer("epochs", lit.track)
    n_train = results.evals.groupby("dataset")["n_train"].first()
    rows = (schmidt(epochs, tuning.several_defaults, scope, st)
            + sivaprasad(tuning.winners if tuning.random_arm else {}, int(lit.small_budget), scope, st.alpha)
            + choi(epochs, lit.hierarchy, results.search_spaces, report.tolerance.on_scale("epochs"), scope, st)
            + wilson(scores.runs, epochs, scores.spread, lit.adaptive, lit.non_adaptive, st.alpha, scope)
            + shallue(scores.cells, n_train, grid.datasets, grid.optimizers, grid.batches, lit.proportional,
                      lit.level_off, rules, scope))
    return pd.DataFrame(rows, columns=COLUMNS)
