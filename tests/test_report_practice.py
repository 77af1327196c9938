"""Tuning measured the way practitioners meet it, and the published findings checked, on planted fixtures: the
expected best-of-k against closed forms and brute force, tunability by hand, a planted inclusion violation, a
planted generalisation gap."""
import itertools

import numpy as np
import pandas as pd
import pytest

from report_fixtures import fast_settings, make_results
from study.report import analysis
from study.report.document.literature import generalisation_rows
from study.report.checks import literature
from study.report.inputs import canonical, grid
from study.report.judge import answer, decide, scoring, tuning_value

SETTINGS = fast_settings(bayes_samples=4000, stability_resamples=100, band_resamples=50)


def test_expected_best_of_k_by_hand_and_by_enumerating_every_draw():
    val, test = np.array([3.0, 1.0, 2.0]), np.array([30.0, 10.0, 20.0])
    exp_val, exp_test = tuning_value.expected_best_of_k(val, test, [1, 2, 3])
    assert exp_test[0] == pytest.approx(20.0)  # one draw: the mean
    assert exp_test[1] == pytest.approx((10 * 5 + 20 * 3 + 30 * 1) / 9)  # P(best) = 1 - (2/3)^2, ...
    for k in (1, 2, 3):  # every one of the 3^k equally likely draws with replacement
        picks = [min(draw, key=lambda i: val[i]) for draw in itertools.product(range(3), repeat=k)]
        assert exp_test[k - 1] == pytest.approx(np.mean(test[picks]))
        assert exp_val[k - 1] == pytest.approx(np.mean(val[picks]))


def test_random_arm_curves_score_what_validation_picks_and_never_read_tpe_trials():
    trials = pd.DataFrame({"dataset": "d", "optimizer": "adam", "batch_size": "32",
                           "arm": ["random"] * 4 + ["tpe"] * 2, "number": [0, 1, 2, 3, 0, 1],
                           "state": ["COMPLETE", "DIVERGED", "COMPLETE", "PRUNED", "COMPLETE", "COMPLETE"],
                           "value": [0.5, 2.0, 0.3, np.nan, 0.01, 0.02], "test_loss": [0.6, 2.5, 0.45, 9.0, 0.0, 0.0]})
    curves = tuning_value.random_arm_curves(trials, 4, resamples=50, seed=0, level=0.9)
    assert curves["trials"].iloc[0] == 3  # the pruned trial has no score; TPE's are not the random arm
    _, expected = tuning_value.expected_best_of_k(np.array([0.5, 2.0, 0.3]), np.array([0.6, 2.5, 0.45]), [1, 2, 3, 4])
    assert curves["test"].to_numpy() == pytest.approx(expected)
    assert (curves["test_low"] <= curves["test"] + 1e-12).all()
    assert (curves["test"] <= curves["test_high"] + 1e-12).all()
    assert curves["test"].is_monotonic_decreasing  # more trials can only help, in expectation


def test_tunability_by_hand():
    trials = pd.DataFrame({"dataset": "d", "optimizer": "gd", "batch_size": "full", "arm": ["tpe"] + ["random"] * 4,
                           "number": range(5), "state": ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED", "DIVERGED"],
                           "value": [1.0, 1.04, 1.09, np.nan, 5.0]})
    t = tuning_value.tunability(trials, ["gd"], margins=(0.05, 0.10)).iloc[0]
    assert t["trials"] == 4 and t["within_5pct"] == 0.25 and t["within_10pct"] == 0.5


@pytest.fixture(scope="module")
def violated():
    """Plain GD planted 30% better than everything that includes it: the hierarchy is violated."""
    return analysis.analyse(make_results(optimizer_effect={"gd": -0.3}, default_gap=False), SETTINGS)


def test_a_planted_inclusion_violation_is_found(violated):
    row = violated.checks.literature.set_index("source").loc["Choi et al. 2019"]
    assert row["verdict"] == decide.DISAGREES
    assert "gd better than momentum" in row["number"] and "gd better than nag" in row["number"]


def test_the_hierarchy_holds_when_nothing_violates_it():
    a = analysis.analyse(make_results(optimizer_effect={"gd": 0.3}, default_gap=False), SETTINGS)
    assert a.checks.literature.set_index("source").loc["Choi et al. 2019", "verdict"] == decide.AGREES


def _wilson(results):
    results = canonical(results)
    g = grid(results)
    scores = scoring.score(results, g, SETTINGS.report)
    found = answer.answers(scores.cells, scores.runs, scores.unit, scores.caps, g.datasets, g.optimizers,
                           g.batches, SETTINGS.report)
    lit = SETTINGS.claims.literature
    return literature.wilson(scores.runs, found[("epochs", "tuned")], scores.spread, lit.adaptive,
                             lit.non_adaptive, SETTINGS.report.statistics.alpha, lit.scope)[0]


ADAPTIVE = ("adagrad", "rmsprop", "adam")


def test_a_planted_generalisation_gap_agrees_with_wilson():
    """Adaptive methods fit the training set 40% better and do 30% worse on test: they generalise worse."""
    gap = make_results(train_effect={o: -0.4 for o in ADAPTIVE}, optimizer_effect={o: 0.3 for o in ADAPTIVE},
                       default_gap=False)
    row = _wilson(gap)
    assert row["verdict"] == decide.AGREES and row["evidence"] < row["threshold"] == 0.05, row
    a = analysis.analyse(gap, SETTINGS)
    rows = generalisation_rows(a).set_index("optimizer")
    assert rows.loc[list(ADAPTIVE), "train_mean_rank"].max() < rows.loc[["gd", "momentum", "nag"],
                                                                          "train_mean_rank"].min()


def test_a_lower_training_loss_alone_is_no_agreement_with_wilson():
    """The same fit, the same test loss: no evidence that adaptive methods generalise worse."""
    row = _wilson(make_results(train_effect={o: -0.4 for o in ADAPTIVE}, default_gap=False))
    assert row["verdict"] == decide.CANNOT_TELL, row


def test_adaptive_methods_better_on_test_disagree_with_wilson():
    row = _wilson(make_results(optimizer_effect={o: -0.3 for o in ADAPTIVE}, default_gap=False))
    assert row["verdict"] == decide.DISAGREES, row


def test_wilsons_best_of_each_group_is_chosen_on_validation():
    """adam looks best on validation but is 40% worse on test; rmsprop is best on test, worse on validation.
    Chosen on validation, the adaptive side is adam: the finding agrees. Chosen on test it would be rmsprop,
    equal to the non-adaptive ones."""
    planted = make_results(optimizer_effect={"adam": 0.4}, val_effect={"adam": -0.5, "rmsprop": 0.5, "adagrad": 0.5},
                           default_gap=False)
    assert _wilson(planted)["verdict"] == decide.AGREES


def test_choi_tests_only_the_inclusions_the_spaces_make(violated):
    row = violated.checks.literature.set_index("source").loc["Choi et al. 2019"]
    assert "Adam includes momentum only as eps grows without bound" in row["number"]
    assert "RMSProp has no momentum term" in row["number"]
    assert literature._includes("adam", "momentum", {"adam": {"eps": {"low": 1e-10, "high": 1.0,
                                                                      "fixed": None}}}) is None
    assert literature._includes("momentum", "gd", {}) is None


def test_claims_that_hold_by_construction_say_so(violated):
    verdicts = {c.claim: c.verdict for c in violated.checks.claims}
    assert verdicts["Stochastic GD makes N updates per epoch"] == "by construction"
    assert verdicts["Larger batches estimate the gradient more accurately"] == "by construction"
    assert verdicts["AdaGrad gives the parameters of sparse features larger effective updates"] == "by construction"
    assert "Momentum moves faster than GD on gentle slopes (at the same effective step)" in verdicts


def test_every_literature_row_states_its_scope_and_a_verdict(violated):
    lit = violated.checks.literature
    assert {"source", "finding", "criterion", "number", "verdict", "evidence", "threshold"} <= set(lit.columns)
    decided = lit[lit["verdict"] != decide.CANNOT_TELL]
    assert decided["evidence"].notna().all() and decided["threshold"].notna().all()
    assert set(lit["verdict"]) <= {decide.AGREES, decide.DISAGREES, decide.CANNOT_TELL}
    assert lit["scope"].str.contains("small MLPs").all()
    assert set(lit["source"]) == {"Schmidt et al. 2021", "Sivaprasad et al. 2020", "Choi et al. 2019",
                                  "Wilson et al. 2017", "Shallue et al. 2019"}
