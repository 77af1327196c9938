"""Published findings about optimizers, checked against this sweep with criteria declared in conf/claims.yaml.

Each row: the source, the finding, the criterion, the number behind it, the verdict: agrees, disagrees or cannot
tell (study.report.judge.decide's words, from its decisions), and the ``evidence`` the verdict rests on with the
``threshold`` it was held against. A verdict needs positive evidence both ways (issue 19): "agrees" only when the
finding's direction is significant (p < alpha) or, for a finding of "at least as good" or "as good", P >= sure
within the declared tolerance; "disagrees" only on the same kind of evidence against; anything else "cannot tell".
Absence of a significant violation is no agreement. The tests are the verdict's (validation chooses,
test judges); the scope (small MLPs on small tabular and 2-D sets) is part of every row: none of this speaks for the
papers' deep networks.

Every choice a check makes (the dataset's best for Schmidt, each group's best for Wilson, Sivaprasad's comparator)
is made on validation and listed in the ``literature_choices`` table. Sivaprasad's curve over k and Shallue's
slopes have modules of their own (``sivaprasad``, ``shallue``); this one holds the rows and the other findings.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from study.report import fmt
from study.report.checks import shallue as shallue_
from study.report.checks import sivaprasad as sivaprasad_
from study.report.inputs import Grid, SweepResults
from study.report.judge import stats
from study.report.judge.decide import (AHEAD, BEHIND, CANNOT_TELL, FINDING, SAME, UNRESOLVED, UNSEPARATED,
                                       standing)
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


def _against_tolerance(d: np.ndarray, tolerance: float) -> tuple[float, float]:
    """One-sided t-tests of the mean of paired differences ``d`` against the tolerance: (p that it is beyond,
    p that it is within); NaN with fewer than two differences. Differences that do not vary decide by their value."""
    d = np.asarray(d, float)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return math.nan, math.nan
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0:
        return (0.0 if mean > tolerance else 1.0), (0.0 if mean < tolerance else 1.0)
    t = (mean - tolerance) / (sd / math.sqrt(len(d)))
    return float(scipy_stats.t.sf(t, len(d) - 1)), float(scipy_stats.t.cdf(t, len(d) - 1))


DOMINANCE_COLUMNS = ["dataset", "optimizer", "batch_size", "best", "mean_difference", "runs", "p_beyond",
                     "p_within"]


def dominance(runs: pd.DataFrame, chosen_batch: dict, unit: pd.Series, tolerance: float, datasets) -> pd.DataFrame:
    """Per dataset and optimizer (equal epochs, tuned, at its chosen batch size), its test loss against the others',
    paired by tuning run and seed, in the dataset's loss units, with one-sided t-tests against the tolerance
    (``_against_tolerance``):

    - ``p_beyond``: that its mean difference from the dataset's best is beyond the tolerance, the best being the
      optimizer validation picks there (the lowest mean validation loss over its runs, ties to the sweep's order);
      1 for the best itself;
    - ``p_within``: that it is within the tolerance of every other optimizer (the largest of those p-values), so
      of the best whichever that is: no choice, and the best on validation earns no "within" by being chosen."""
    optimizers = list(chosen_batch)
    tuned = runs[runs["track"] == "tuned"]
    mine = tuned[[chosen_batch.get(o) == b for o, b in zip(tuned["optimizer"], tuned["batch_size"])]]
    rows = []
    for dataset in datasets:
        here = mine[mine["dataset"] == dataset]
        val = here.groupby("optimizer")["val_epochs"].mean().reindex(optimizers)
        if val.isna().any() or len(optimizers) < 2:
            continue
        best = min(optimizers, key=lambda o: (val[o], optimizers.index(o)))  # chosen on validation
        test = here.pivot_table(index=["tuning_run", "seed"], columns="optimizer", values="test_epochs")
        scale = unit.get(dataset, math.nan)
        gap = lambda o, other: ((test[o] - test[other]) / scale).dropna().to_numpy(float)  # noqa: E731
        for o in optimizers:
            d = gap(o, best)
            p_within = max(_against_tolerance(gap(o, other), tolerance)[1] for other in optimizers if other != o)
            rows.append({"dataset": dataset, "optimizer": o, "batch_size": chosen_batch[o], "best": best,
                         "mean_difference": float(d.mean()) if len(d) else math.nan, "runs": len(d),
                         "p_beyond": 1.0 if o == best else _against_tolerance(d, tolerance)[0],
                         "p_within": p_within})
    return pd.DataFrame(rows, columns=DOMINANCE_COLUMNS)


def no_dominance(table: pd.DataFrame, tolerance: float, scope: str, alpha: float) -> dict:
    """Schmidt et al. 2021's "no optimizer dominates": agrees when every optimizer is significantly beyond the
    tolerance of the dataset's best on some dataset (Holm over its datasets; all of them: an intersection, no
    correction across optimizers); disagrees when some optimizer is significantly within it of every other on every
    dataset (the largest of its p-values, Holm across the optimizers, since any one of them would do); else cannot
    tell. Both cannot hold at once: beyond the best on a dataset and within it there exclude each other."""
    finding = "tuned, no optimizer dominates: the best optimizer varies across tasks"
    criterion = (f"per dataset at equal epochs, tuned: the dataset's best is the optimizer validation picks there; "
                 f"test losses paired by tuning run and seed, in loss units, against the declared tolerance "
                 f"({fmt.num(tolerance)} units) by one-sided t-tests over the runs: agrees when every optimizer is "
                 f"significantly beyond the tolerance of the dataset's best on at least one dataset (Holm over its "
                 f"datasets), disagrees when some optimizer is significantly within it of every other optimizer on "
                 f"every dataset (Holm across the optimizers), else cannot tell (`tables/schmidt_datasets.csv`)")
    if table.empty or table["dataset"].nunique() < 2:
        return _row("Schmidt et al. 2021", finding, criterion, "fewer than two complete datasets", CANNOT_TELL, scope)
    beyond, within = {}, {}
    for optimizer, rows in table.groupby("optimizer", sort=False):
        beyond[optimizer] = float(np.min(stats.holm(rows["p_beyond"].fillna(1.0).to_numpy())))
        within[optimizer] = float(rows["p_within"].fillna(1.0).max())
    within_holm = dict(zip(within, stats.holm(list(within.values()))))
    weakest = max(beyond, key=beyond.get)
    closest = min(within_holm, key=within_holm.get)
    agrees, disagrees = beyond[weakest] < alpha, within_holm[closest] < alpha
    verdict = True if agrees and not disagrees else (False if disagrees and not agrees else None)
    bests = table.drop_duplicates("dataset")["best"].value_counts()
    number = (f"validation's best per dataset: " + ", ".join(f"{o} {n}" for o, n in bests.items())
              + f"; significantly beyond the tolerance of the best somewhere: "
              f"{sum(p < alpha for p in beyond.values())}/{len(beyond)} optimizers (the weakest, {weakest}: Holm "
              f"{fmt.p(beyond[weakest])}); within it on every dataset: closest {closest} (Holm "
              f"{fmt.p(within_holm[closest])})")
    evidence = within_holm[closest] if verdict is False else beyond[weakest]
    return _row("Schmidt et al. 2021", finding, criterion, number, FINDING.word(verdict), scope, evidence, alpha)


def _competitive(epochs, st: Statistics) -> tuple:
    """Whether Adam stays competitive, on test: (number, verdict word, evidence, threshold). Adam being
    validation's pick is no evidence by itself: then every other optimizer must be significantly behind it or
    practically equivalent to it (the weakest of those the evidence), and one significantly ahead disagrees."""
    j, family = epochs.judgement, epochs.family
    if epochs.recommended != "adam":
        pair = family.pair(epochs.recommended, "adam")
        where = BEHIND if "adam" in j.behind else AHEAD if "adam" in j.ahead else SAME if "adam" in j.equivalent \
            else UNRESOLVED
        verdict = False if where == BEHIND else (True if where in (SAME, AHEAD) else None)
        evidence = (pair["holm_p"], st.alpha) if where in (BEHIND, AHEAD) else (pair["p_equivalent"], st.sure)
        return f"Adam against {epochs.recommended}: {where}", FINDING.word(verdict), *evidence
    pairs = {o: family.pair("adam", o) for o in family.mean_ranks.index if o != "adam"}
    if not pairs:  # Adam alone in the sweep: nothing to be competitive with
        return "Adam is the only optimizer swept", FINDING.word(None), float("nan"), st.alpha
    if j.ahead:
        return (f"Adam is the pick; significantly ahead of it: {fmt.names(j.ahead)}", FINDING.word(False),
                min(pairs[o]["holm_p"] for o in j.ahead), st.alpha)
    undecided = list(j.equivalent) + list(j.unresolved)
    if undecided:  # the weakest: the smallest P(equivalent) among those not behind
        weakest = min(undecided, key=lambda o: pairs[o]["p_equivalent"])
        verdict = True if not j.unresolved else None
        return (f"Adam is the pick; {j.status}; least sure: {weakest} with P(equivalent) "
                f"{fmt.prob(pairs[weakest]['p_equivalent'])}", FINDING.word(verdict),
                pairs[weakest]["p_equivalent"], st.sure)
    if not j.behind:  # the others placed nowhere (too few datasets for the tests): no evidence either way
        return "Adam is the pick; no test could place the others", FINDING.word(None), float("nan"), st.alpha
    return ("Adam is the pick; every other significantly behind it", FINDING.word(True),
            max(pairs[o]["holm_p"] for o in j.behind), st.alpha)


def schmidt(epochs, several, runs: pd.DataFrame, unit: pd.Series, tolerance: float, datasets, scope: str,
            st: Statistics) -> tuple[list[dict], pd.DataFrame]:
    """Schmidt et al. 2021, "Descending through a crowded valley": its rows and the per-dataset table behind the
    first (``dominance``)."""
    source = "Schmidt et al. 2021"
    if epochs is None or not epochs.measured:
        return [], pd.DataFrame(columns=DOMINANCE_COLUMNS)
    j = epochs.judgement
    table = dominance(runs, epochs.chosen_batch, unit, tolerance, datasets)
    rows = [no_dominance(table, tolerance, scope, st.alpha)]
    if "adam" in epochs.family.mean_ranks.index:
        number, word, evidence, threshold = _competitive(epochs, st)
        rows.append(_row(source, "Adam stays competitive",
                         "at equal epochs, tuned: Adam (at its chosen batch size) against validation's pick on test, "
                         "or, when Adam is the pick, every other against it: practically equivalent (P >= sure within "
                         "the tolerance) or significantly behind agrees; significantly ahead of Adam (Holm) "
                         "disagrees", number, word, scope, evidence, threshold))
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
    return rows, table


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


def wilson_groups(runs: pd.DataFrame, epochs, adaptive, non_adaptive):
    """Wilson's choice: per dataset, the best adaptive and the best non-adaptive optimizer, each at its chosen
    batch size, by mean VALIDATION loss (ties to the group's order in conf/claims.yaml). (cells at the chosen
    batch sizes, best adaptive, best non-adaptive), or None when a group or the epochs answer is missing."""
    if epochs is None or not epochs.measured:
        return None
    cells = runs[runs["track"] == epochs.track].groupby(["dataset", "optimizer", "batch_size"], sort=False)[
        ["val_epochs", "test_epochs", "test_accuracy"]].mean().reset_index()
    chosen = cells[[epochs.chosen_batch.get(o) == b for o, b in zip(cells["optimizer"], cells["batch_size"])]]
    val = chosen.pivot_table(index="dataset", columns="optimizer", values="val_epochs").dropna()
    groups = [[o for o in group if o in val] for group in (adaptive, non_adaptive)]
    if not all(groups) or val.empty:
        return None
    return chosen, val[groups[0]].idxmin(axis=1), val[groups[1]].idxmin(axis=1)


def wilson_picks(runs: pd.DataFrame, epochs, adaptive, non_adaptive) -> list[dict]:
    """Wilson's picks as rows of the choices table (source, choice, k, dataset, chosen)."""
    found = wilson_groups(runs, epochs, adaptive, non_adaptive)
    if found is None:
        return []
    return [{"source": "Wilson et al. 2017", "choice": choice, "k": math.nan, "dataset": d, "chosen": o}
            for choice, best in (("best adaptive", found[1]), ("best non-adaptive", found[2]))
            for d, o in best.items()]


def wilson(runs: pd.DataFrame, epochs, spread: pd.Series, adaptive, non_adaptive, alpha: float,
           scope: str) -> list[dict]:
    """Wilson et al. 2017, "The marginal value of adaptive gradient methods": adaptive methods generalise worse.
    Per dataset, the best adaptive and the best non-adaptive optimizer (``wilson_groups``: chosen on validation),
    then on test, one-sided: is the adaptive one's test loss (in loss units) higher, and its test error
    (classification sets) higher? Both significant agrees (an intersection of two one-sided tests at alpha); the
    adaptive one significantly lower on either (at alpha / 2 each) disagrees; else cannot tell."""
    source = "Wilson et al. 2017"
    finding = "adaptive methods generalise worse: a higher test error and loss than the best non-adaptive method"
    criterion = ("per dataset at equal epochs, tuned: the best adaptive and the best non-adaptive optimizer by "
                 "validation loss, compared on test (Wilcoxon, one-sided): higher test loss and test error both "
                 "significant agrees; significantly lower disagrees")
    if epochs is None or not epochs.measured:
        return [_row(source, finding, criterion, "not measured at equal epochs", CANNOT_TELL, scope)]
    found = wilson_groups(runs, epochs, adaptive, non_adaptive)
    if found is None:
        return [_row(source, finding, criterion, "an optimizer group is missing", CANNOT_TELL, scope)]
    chosen, best_a, best_n = found
    datasets = best_a.index
    test = chosen.pivot_table(index="dataset", columns="optimizer", values="test_epochs").reindex(datasets)
    error = 1 - chosen.pivot_table(index="dataset", columns="optimizer", values="test_accuracy").reindex(datasets)
    pick = lambda table, best: pd.Series([table.loc[d, best[d]] for d in table.index], table.index)  # noqa: E731
    loss = stats.scaled_difference(pick(test, best_a), pick(test, best_n), spread.reindex(datasets))
    points = (pick(error, best_a) - pick(error, best_n)).dropna() * 100
    (loss_median, loss_p), (err_median, err_p) = _one_sided(np.asarray(loss, float)), _one_sided(points.to_numpy())
    measured = [(m, p) for m, p in ((loss_median, loss_p), (err_median, err_p)) if np.isfinite(p)]
    worse = bool(measured) and all(p < alpha for _, p in measured)
    better = any(1 - p < alpha / 2 for _, p in measured)
    verdict = True if worse and not better else (False if better else None)
    evidence = max(p for _, p in measured) if measured and verdict is not False else (
        min(1 - p for _, p in measured) if measured else math.nan)
    number = (f"best adaptive minus best non-adaptive (chosen on validation): test loss {fmt.num(loss_median)} "
              f"loss units (one-sided, {fmt.p(loss_p)}), test error {fmt.num(err_median)} points (one-sided, "
              f"{fmt.p(err_p)})")
    return [_row(source, finding, criterion, number, FINDING.word(verdict), scope, evidence,
                 alpha if verdict is not False else alpha / 2)]


CHOICE_COLUMNS = ["source", "choice", "k", "dataset", "chosen"]


def sivaprasad(trials: pd.DataFrame, random_curves: pd.DataFrame, epochs, datasets, unit: pd.Series, small: int,
               spaces: dict, scope: str, st: Statistics) -> tuple[list[dict], pd.DataFrame, pd.DataFrame]:
    """Sivaprasad et al. 2020 over the whole curve of k (``study.report.checks.sivaprasad``): the row, the curve,
    the comparators chosen on validation."""
    if epochs is None or not len(random_curves):
        table, picks = pd.DataFrame(columns=sivaprasad_.CURVE_COLUMNS), pd.DataFrame(columns=CHOICE_COLUMNS)
    else:
        table, picks = sivaprasad_.curve(trials, random_curves, epochs.chosen_batch, datasets, unit, st)
    found = sivaprasad_.finding(table, small, spaces, st.alpha)
    return [_row("Sivaprasad et al. 2020", scope=scope, **found)], table, picks


def shallue(scores: Scores, n_train: pd.Series, grid: Grid, lit: Literature, rules: Rules, scope: str,
            st: Statistics) -> tuple[list[dict], pd.DataFrame, pd.DataFrame]:
    """Shallue et al. 2019 from the updates budget (``study.report.checks.shallue``): the row, every cell's cost,
    every slope."""
    if "test_updates" not in scores.runs:
        costs, table = pd.DataFrame(columns=shallue_.COST_COLUMNS), pd.DataFrame(columns=shallue_.SLOPE_COLUMNS)
    else:
        caps = scores.caps[scores.caps["budget"] == "updates"].set_index("dataset")["cap"].astype(float)
        costs, table = shallue_.slopes(scores.runs, caps, n_train, grid.datasets, grid.optimizers, grid.batches, st)
    found = shallue_.finding(table, lit.proportional, lit.level_off, rules, st.confidence)
    return [_row("Shallue et al. 2019", scope=scope, **found)], costs, table


def findings(lit: Literature, rules: Rules, report: Report, results: SweepResults, grid: Grid, scores: Scores,
             verdict: Verdict, tuning: Tuning) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Every published finding, in a fixed order (``lit``: conf/claims.yaml's criteria; ``rules``: its verdict
    thresholds; ``report``: the statistics and the declared tolerance); and the tables behind them, by the name of
    their tables/*.csv: schmidt_datasets, sivaprasad_k, shallue_costs, shallue_slopes, and literature_choices
    (every choice the checks made, each on validation)."""
    scope, st = lit.scope, report.statistics
    tolerance = report.tolerance.on_scale("epochs")
    epochs = verdict.answer("epochs", lit.track)
    n_train = results.evals.groupby("dataset")["n_train"].first()
    schmidt_rows, per_dataset = schmidt(epochs, tuning.several_defaults, scores.runs, scores.unit, tolerance,
                                        grid.datasets, scope, st)
    siva_rows, curve, siva_picks = sivaprasad(results.trials, tuning.random_curves, epochs, grid.datasets,
                                              scores.unit, int(lit.small_budget), results.search_spaces, scope, st)
    wilson_rows = wilson(scores.runs, epochs, scores.spread, lit.adaptive, lit.non_adaptive, st.alpha, scope)
    shallue_rows, costs, slopes = shallue(scores, n_train, grid, lit, rules, scope, st)
    rows = (schmidt_rows + siva_rows + choi(epochs, lit.hierarchy, results.search_spaces, tolerance, scope, st)
            + wilson_rows + shallue_rows)
    choices = [{"source": "Schmidt et al. 2021", "choice": "the dataset's best", "k": math.nan, "dataset": d,
                "chosen": b} for d, b in per_dataset.drop_duplicates("dataset")[["dataset", "best"]].itertuples(
                    index=False)]
    if epochs is not None and epochs.recommended is not None:
        choices.append({"source": "Schmidt et al. 2021", "choice": "the tuned comparator of several defaults",
                        "k": math.nan, "dataset": "", "chosen": epochs.recommended})
    choices += wilson_picks(scores.runs, epochs, lit.adaptive, lit.non_adaptive)
    choices = pd.concat([pd.DataFrame(choices, columns=CHOICE_COLUMNS), siva_picks],
                        ignore_index=True)
    tables = {"schmidt_datasets": per_dataset, "sivaprasad_k": curve, "shallue_costs": costs,
              "shallue_slopes": slopes, "literature_choices": choices}
    return pd.DataFrame(rows, columns=COLUMNS), tables
