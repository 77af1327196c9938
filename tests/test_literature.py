"""The published findings judged with evidence both ways, on planted data where the truth is known (issue 19.3):
Schmidt's "no optimizer dominates" per dataset against the declared tolerance, Sivaprasad's whole curve over k with
P(Adam picked) exact, Shallue's slopes from the updates budget with censored costs kept and intervals that take
censoring at its worst. And the lecture's claims labelled honestly (issue 19.5): a claim whose outcome is the same
whatever data it is judged on says "by construction", and only such a claim does."""
from __future__ import annotations

import itertools
import math
import types

import numpy as np
import pandas as pd
import pytest

from report_fixtures import DATASETS, fast_settings, make_results
from study.lecture import evidence
from study.report import settings as settings_
from study.report.checks import claims as claims_
from study.report.checks import literature, shallue, sivaprasad
from study.report.inputs import canonical, grid
from study.report.judge import answer, batchmodes, decide, progress, scoring, tuning_value

SETTINGS = fast_settings(bayes_samples=2000, bootstrap_resamples=400, stability_resamples=50, band_resamples=20)
ST = SETTINGS.report.statistics
RULES = SETTINGS.claims.verdict
ADAPTIVE = ("adagrad", "rmsprop", "adam")


# --- Schmidt et al. 2021: no optimizer dominates ------------------------------------------------------------------
def _scored(results):
    results = canonical(results)
    g = grid(results)
    scores = scoring.score(results, g, SETTINGS.report)
    epochs = answer.answer(scores.cells, "epochs", "tuned", g.datasets, g.optimizers, g.batches, scores.unit,
                           scores.caps, SETTINGS.report)
    return results, g, scores, epochs


def _schmidt(**planted):
    results = make_results(batch_sizes=("full", "32"), seeds=5, trials=4, epochs=10, random_arm=False,
                           default_gap=False, diverged_evals=0, **planted)
    _, g, scores, epochs = _scored(results)
    tolerance = SETTINGS.report.tolerance.on_scale("epochs")
    table = literature.dominance(scores.runs, epochs.chosen_batch, scores.unit, tolerance, g.datasets)
    return literature.no_dominance(table, tolerance, "scope", ST.alpha), table


def test_one_optimizer_better_everywhere_disagrees_with_no_optimizer_dominates():
    row, table = _schmidt(optimizer_effect={"adam": -0.3})
    assert row["verdict"] == decide.DISAGREES and row["evidence"] < row["threshold"] == ST.alpha, row
    assert set(table["best"]) == {"adam"} and len(table) == len(DATASETS) * 6


def test_a_different_best_on_every_dataset_agrees_with_no_optimizer_dominates():
    """Each cell 30% up or down at random (a large dataset-by-optimizer interaction): every optimizer is far behind
    the best somewhere."""
    row, table = _schmidt(interaction_sd=0.3)
    assert row["verdict"] == decide.AGREES and row["evidence"] < ST.alpha, row
    assert table.drop_duplicates("dataset")["best"].nunique() >= 3


def test_no_difference_at_all_cannot_tell_whether_an_optimizer_dominates():
    """Equal up to seed noise: nothing is shown beyond the tolerance everywhere, and five seeds cannot show a
    difference within a quarter of a loss unit: no evidence either way."""
    row, _ = _schmidt(interaction_sd=0.0)
    assert row["verdict"] == decide.CANNOT_TELL and np.isfinite(row["evidence"]), row


def test_the_best_chosen_on_validation_earns_no_within_by_being_chosen():
    """adam looks best on validation only: it is every dataset's best, yet on test it is 30% behind; "within the
    tolerance of every other" must be earned on test, so adam does not dominate."""
    row, table = _schmidt(val_effect={"adam": -0.5}, optimizer_effect={"adam": 0.3})
    assert set(table["best"]) == {"adam"}
    assert (table.loc[table["optimizer"] == "adam", "p_within"] > 0.5).all()
    assert row["verdict"] != decide.DISAGREES, row


# --- Sivaprasad et al. 2020: the whole curve over k ------------------------------------------------------------------
def test_p_picked_is_exact_by_enumerating_every_draw():
    values = [np.array([0.3, 0.5, 0.5]), np.array([0.5, 0.2]), np.array([0.4])]  # ties within and across
    for k in (1, 2, 3):
        counts = np.zeros(3)
        draws = [list(itertools.product(v, repeat=k)) for v in values]
        for combo in itertools.product(*draws):
            kept = [min(c) for c in combo]
            counts[min(range(3), key=lambda i: (kept[i], i))] += 1  # the lowest kept; a tie to the first listed
        expected = counts / counts.sum()
        np.testing.assert_allclose(sivaprasad.picked(values, k), expected, atol=1e-12)


def _sivaprasad(**planted):
    results = canonical(make_results(batch_sizes=("32",), seeds=2, trials=12, epochs=6, default_gap=False,
                                     diverged_evals=0, **planted))
    g = grid(results)
    # no diverged trial: at k = 1 the expected loss is the mean over the arm, and one diverged trial (the untrained
    # network's loss, 7x the trained one's) would swamp the planted difference
    trials = results.trials[results.trials["state"] != "DIVERGED"]
    curves = tuning_value.random_arm_curves(trials, 12, 20, 0, 0.9)
    unit = scoring.score(results, g, SETTINGS.report).unit
    epochs = types.SimpleNamespace(chosen_batch={o: "32" for o in g.optimizers})  # one batch size: no choice
    rows, table, picks = literature.sivaprasad(trials, curves, epochs, g.datasets, unit, 1, results.search_spaces,
                                               "scope", ST)
    return rows[0], table, picks


def test_adam_planted_better_agrees_with_sivaprasad_and_worse_disagrees_the_same_way():
    better, table, picks = _sivaprasad(optimizer_effect={"adam": -0.6})
    assert better["verdict"] == decide.AGREES and better["evidence"] < better["threshold"] == ST.alpha, better
    worse, _, _ = _sivaprasad(optimizer_effect={"adam": 0.6})
    assert worse["verdict"] == decide.DISAGREES and worse["evidence"] < ST.alpha, worse
    assert sorted(table["k"].unique()) == list(range(1, 13))  # the whole curve, k = 1 .. trials
    assert table.groupby("k")["p_picked"].sum().to_numpy() == pytest.approx(1.0)
    adam = table[table["optimizer"] == "adam"].set_index("k")
    assert (adam["p_low"] <= adam["p_picked"]).all() and (adam["p_picked"] <= adam["p_high"]).all()
    assert adam.loc[12, "p_picked"] > adam.loc[1, "p_picked"] > 1 / 6  # more trials: the better one more often
    assert set(picks["chosen"]) <= {"gd", "momentum", "nag", "adagrad", "rmsprop"} and picks["k"].nunique() == 12


def test_sivaprasad_states_the_priors_role_and_cannot_tell_without_a_random_arm():
    row, _, _ = _sivaprasad()
    assert "The prior's role" in row["criterion"] and "1 - beta2 in [" in row["criterion"]
    assert "eps fixed at" in row["criterion"]
    none = literature.sivaprasad(pd.DataFrame(), pd.DataFrame(), None, [], pd.Series(dtype=float), 1, {}, "s", ST)
    assert none[0][0]["verdict"] == decide.CANNOT_TELL and "no random-search arm" in none[0][0]["number"]


# --- Shallue et al. 2019: updates to the target against batch size ---------------------------------------------------
BATCHES = ("1", "8", "32", "128", "full")
N_TRAIN = 1024


def _runs(cost, datasets=12, slots=6, seed=0):
    """Per dataset, optimizer, batch size and run: the updates budget's test cost, ``cost(b)`` (b the effective
    batch size) x a dataset level x 5% run noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(datasets):
        level = float(np.exp(rng.normal(0, 0.3)))
        for o in ("gd", "adam", "rmsprop"):
            for b in BATCHES:
                size = N_TRAIN if b == "full" else int(b)
                for s in range(slots):
                    rows.append({"dataset": f"d{d}", "optimizer": o, "batch_size": b, "track": "tuned",
                                 "tuning_run": s % 2, "seed": s // 2,
                                 "test_updates": cost(size) * level * math.exp(rng.normal(0, 0.05))})
    return pd.DataFrame(rows)


def _shallue(runs, cap=1e9):
    datasets = sorted(runs["dataset"].unique())
    costs, slopes = shallue.slopes(runs, pd.Series(cap, index=datasets), pd.Series(N_TRAIN, index=datasets),
                                   datasets, ["gd", "adam", "rmsprop"], BATCHES, ST)
    lit = SETTINGS.claims.literature
    return shallue.finding(slopes, lit.proportional, lit.level_off, RULES, ST.confidence), costs, slopes


def test_perfect_scaling_then_a_plateau_agrees_with_shallue():
    row, costs, slopes = _shallue(_runs(lambda b: 4096 / min(b, 32)))  # -1 up to batch 32, then flat
    assert row["verdict"] == decide.AGREES and row["evidence"] >= row["threshold"] == RULES.support, row
    first = slopes[slopes["from_batch"] == "1"]
    assert (first["slope"] - -1).abs().max() < 0.05 and (first["high"] - first["low"] < 0.2).all()
    assert len(costs) == 12 * 3 * len(BATCHES) and not costs["censored"].any()


def test_updates_that_do_not_fall_disagree_with_shallue():
    row, _, slopes = _shallue(_runs(lambda b: 500.0))
    assert row["verdict"] == decide.DISAGREES and row["evidence"] >= RULES.support, row
    assert (slopes["high"] < -0.5).sum() == 0


def test_censored_batch_sizes_are_kept_and_leave_the_slope_open():
    """Batch 1 never reaches the target within the cap on any dataset: its cells stay (as censored), the slope
    from it is only bounded above (its lower end is -inf), so "in proportion at first" cannot be told."""
    runs = _runs(lambda b: 4096 / min(b, 32))
    runs.loc[runs["batch_size"] == "1", "test_updates"] = math.inf
    row, costs, slopes = _shallue(runs, cap=3000)
    assert row["verdict"] == decide.CANNOT_TELL, row
    censored = costs[costs["batch_size"] == "1"]
    assert len(censored) == 36 and censored["censored"].all() and np.isinf(censored["updates"]).all()
    first = slopes[slopes["from_batch"] == "1"]
    assert np.isneginf(first["low"]).all() and (first["high"] < 0).all() and (first["censored"] == 12).all()
    assert list(dict.fromkeys(slopes["from_batch"] + ">" + slopes["to_batch"])) == [
        "1>8", "8>32", "32>128", "128>full"]


def test_slope_bounds_take_censoring_at_its_worst():
    value, low, high = shallue.slope_bounds([100.0, math.inf, 100.0, math.inf, math.nan],
                                            [50.0, 50.0, math.inf, math.inf, 50.0], 1.0, 2.0, 400.0)
    assert value[:4] == pytest.approx([-1.0, math.log2(50 / 400), 2.0, 0.0])
    assert list(low[:4]) == [-1.0, -math.inf, 2.0, -math.inf] and list(high[:4]) == [-1.0, value[1], math.inf,
                                                                                       math.inf]
    assert np.isnan([value[4], low[4], high[4]]).all()


# --- the whole table, on one analysed sweep -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def analysed():
    from study.report import analysis

    results = make_results(datasets=DATASETS[:8], batch_sizes=("full", "128", "32"), seeds=3, trials=8, epochs=12,
                           optimizer_effect={"adam": -0.15})
    return analysis.analyse(results, SETTINGS)


def test_every_finding_has_its_evidence_and_threshold_and_its_tables(analysed):
    lit = analysed.checks.literature
    assert lit["evidence"].notna().all() and lit["threshold"].notna().all(), lit[["source", "finding", "number"]]
    tables = analysed.checks.literature_tables
    assert set(tables) == {"schmidt_datasets", "sivaprasad_k", "shallue_costs", "shallue_slopes",
                           "literature_choices"}
    assert sorted(tables["sivaprasad_k"]["k"].unique()) == list(range(1, 9))
    assert set(tables["shallue_costs"]["batch_size"]) == {"full", "128", "32"}
    assert set(tables["literature_choices"]["source"]) == {"Schmidt et al. 2021", "Wilson et al. 2017",
                                                           "Sivaprasad et al. 2020"}


def test_the_literature_section_shows_the_tables_behind_the_findings(analysed):
    from study.report.document.blocks import Details, Table, walk
    from study.report.document.literature import literature_section
    from study.report.document.tables import Tables

    tables = Tables()
    blocks = literature_section(analysed, tables)
    assert {"literature", "schmidt_datasets", "sivaprasad_k", "shallue_costs", "shallue_slopes",
            "literature_choices"} <= set(tables.frames)
    details = [b for b in blocks if isinstance(b, Details)]
    shown = {b.csv for b in walk(details) if isinstance(b, Table)}
    assert shown == {"schmidt_datasets", "sivaprasad_k", "shallue_costs", "shallue_slopes"}
    costs = next(b for b in walk(details) if isinstance(b, Table) and b.csv == "shallue_costs").frame
    assert list(costs.columns) == ["optimizer", "full", "128", "32"] or list(costs.columns) == [
        "optimizer", "32", "128", "full"]
    assert costs.iloc[:, 1:].apply(lambda c: c.str.contains("> cap")).all().all()


# --- the lecture's claims: "by construction" exactly where the data cannot move the outcome -------------------------
LECTURE = settings_.load()
# The data each claim is judged on, varied: the lecture's own other initializations on its toy problem
# (conf/lecture.yaml: "do we observe the same behaviour from a different initialization?"); other splits of the
# sparse set (data with rare features: a dense set has none, its rare and common quartiles are the same features);
# other classification sets for the mini-batch claims; and sweeps planted in opposite directions for the practice
# claims.
STARTS = [tuple(s) for s in LECTURE.lecture.figures.initializations]
SPARSE_SEEDS = (0, 1, 2)
MINIBATCH_SETS = (("clf_easy", 0), ("moons", 0), ("iris", 0))


def _trajectory_outcomes() -> dict[str, list]:
    claims, base = LECTURE.claims, LECTURE.toy
    sparse = [claims.sparse.model_copy(update={"seed": s}) for s in SPARSE_SEEDS]
    minibatch = [claims.minibatch.model_copy(update={"dataset": d, "seed": s}) for d, s in MINIBATCH_SETS]
    min_update = float(base.criteria.min_update)
    measured_sparse = [evidence.sparse_features(c) for c in sparse]
    measured_minibatch = [evidence.minibatch(c, min_update) for c in minibatch]
    out: dict[str, list] = {}
    for i, start in enumerate(STARTS):  # each start with one of the sparse and mini-batch variants, in turn
        problem = base.model_copy(update={"start": start})
        s, m = i % len(sparse), i % len(minibatch)
        varied = claims.model_copy(update={"sparse": sparse[s], "minibatch": minibatch[m]})
        measured = {"toy": evidence.lecture_toy(problem), "sparse": measured_sparse[s],
                    "minibatch": measured_minibatch[m]}
        assert (measured["sparse"]["rare"] != measured["sparse"]["common"]).any()  # the sets have rare features
        for c in claims_.trajectory_checks(measured, varied, problem):
            out.setdefault(c.claim, []).append(c)
    return out


def _practice_outcomes() -> dict[str, list]:
    """Two sweeps planted in opposite directions: Adam's defaults best / worst, momentum faster / slower than GD,
    AdaGrad missing the target where RMSProp reaches it / both missing it."""
    plants = [dict(optimizer_effect={"adagrad": 0.6}, speed_effect={"momentum": 0.3},
                   default_gap=True, seed=1),
              dict(optimizer_effect={"adagrad": 0.6, "rmsprop": 0.6, "adam": 0.5}, speed_effect={"momentum": 3.0},
                   default_gap=False, seed=2)]
    out: dict[str, list] = {}
    for plant in plants:
        results = canonical(make_results(batch_sizes=("full", "32", "1"), seeds=3, trials=4, epochs=12,
                                         random_arm=False, diverged_evals=0, **plant))
        g = grid(results)
        scores = scoring.score(results, g, SETTINGS.report)
        default = answer.answer(scores.cells, "epochs", "default", g.datasets, g.optimizers, g.batches, scores.unit,
                                scores.caps, SETTINGS.report)
        to_target = progress.cells_to_target(scores.runs)
        curves = progress.epoch_ends(results.curves, scores.budget_runs["epochs"].runs["run_id"])
        updates = batchmodes.updates_per_epoch(curves, results.evals)
        for c in claims_.practice_checks(default, to_target[to_target["track"] == "tuned"], updates, RULES):
            out.setdefault(c.claim, []).append(c)
    return out


def mislabelled(outcomes: dict[str, list]) -> dict[str, str]:
    """The claims whose label does not match how they respond to the data: "by construction" on some input but an
    outcome that moves (or another verdict elsewhere), or an outcome (verdict and share) identical on every input
    without the label. The share counts, not only the verdict: a claim "inconclusive" on every start while its
    share moves from 0.29 to 0.6 is the data speaking."""
    wrong = {}
    for claim, checks in outcomes.items():
        seen = {(c.verdict, None if math.isnan(c.share) else round(c.share, 9)) for c in checks}
        labelled = {c.verdict == decide.BY_CONSTRUCTION for c in checks}
        if True in labelled and len(seen) > 1:
            wrong[claim] = f"labelled {decide.BY_CONSTRUCTION} but the data moves it: {sorted(seen, key=str)}"
        elif labelled == {False} and len(seen) == 1 and len(checks) > 1:
            wrong[claim] = f"the same outcome on all {len(checks)} inputs, {seen.pop()}, yet not labelled"
    return wrong


def test_the_rule_finds_both_kinds_of_mislabel():
    check = lambda verdict, share: claims_.ClaimCheck("c", "", "", "", share, 5, verdict)  # noqa: E731
    assert mislabelled({"fixed": [check("supported", 1.0)] * 3}) == {
        "fixed": "the same outcome on all 3 inputs, ('supported', 1.0), yet not labelled"}
    assert "the data moves it" in mislabelled({"moves": [check(decide.BY_CONSTRUCTION, 1.0),
                                                         check("contradicted", 0.0)]})["moves"]
    assert mislabelled({"ok": [check(decide.BY_CONSTRUCTION, 1.0)] * 2,
                        "data": [check("inconclusive", 0.3), check("inconclusive", 0.6)]}) == {}


def test_every_claim_that_the_data_cannot_move_says_by_construction_and_no_other_does():
    outcomes = {**_trajectory_outcomes(), **_practice_outcomes()}
    assert len(outcomes) == 14  # every claim of the lecture was judged on every input
    assert mislabelled(outcomes) == {}
    constant = {claim for claim, checks in outcomes.items() if checks[0].verdict == decide.BY_CONSTRUCTION}
    assert constant == {"AdaGrad gives the parameters of sparse features larger effective updates",
                        "Larger batches estimate the gradient more accurately",
                        "Stochastic GD makes N updates per epoch"}
