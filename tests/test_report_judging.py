"""Issue 19's judging on planted data where the truth is known both ways: the declared tolerance on the paired
scale (a real gap is not called equivalent, a negligible one is), headlines only as sure as the resamples,
what is robust across budgets, two tuning runs that disagree widening the bootstrap, TPE against random, and the
budgets table's check that the best full-batch cell reaches the target."""
import numpy as np
import pytest

from report_fixtures import fast_settings, make_results
from study.report.inputs import canonical, grid
from study.report.judge import answer, decide, pruning, protocol, scoring, stability, stats, tolerance

SETTINGS = fast_settings(bayes_samples=4000, stability_resamples=300, stability_bayes_samples=500)
DECLARED = SETTINGS.report.tolerance.on_scale("epochs", 1.0)  # in loss units (paired SDs)
SURE = SETTINGS.report.statistics.sure


def _dataset_differences(rng, gap: float, datasets: int, seeds: int, sigma: float = 0.05) -> np.ndarray:
    """Per dataset, the mean over seeds of the paired difference between two of its six tuned cells, in the
    dataset's loss unit measured from the sample (tolerance.pair_sd over the six cells, as the judge does). The
    second cell's true loss is ``gap`` true paired SDs above the first's; a split term shared by every cell at a
    seed cancels in the pairing."""
    out = []
    for _ in range(datasets):
        scale = float(np.exp(rng.uniform(np.log(0.05), 0.0)))
        level = np.ones((6, 1))
        level[1] += gap * sigma * np.sqrt(2)  # the paired SD of two cells with independent noise sigma
        x = scale * (level + rng.normal(0, 0.05, seeds) + rng.normal(0, sigma, (6, seeds)))
        unit = float(tolerance.pair_sd(x))
        out.append(float(stats.scaled_difference(np.array([x[1].mean()]), np.array([x[0].mean()]),
                                                 np.array([unit]))[0]))
    return np.array(out)


def _called_equivalent(gap: float, seeds: int, draws: int = 100) -> int:
    rng = np.random.default_rng(19)
    return sum(stats.bayesian_signed_rank(_dataset_differences(rng, gap, 15, seeds), DECLARED, 2000, 0)[1] >= SURE
               for _ in range(draws))


@pytest.mark.parametrize("seeds", [5, 20])
def test_a_consistent_gap_of_0_3_paired_sds_on_15_datasets_is_not_called_equivalent(seeds):
    assert DECLARED == pytest.approx(0.25)
    assert _called_equivalent(0.3, seeds) <= 5  # in at most 5 of 100 draws


def test_a_gap_of_a_tenth_of_the_tolerance_is_called_equivalent_with_enough_seeds():
    """At 20 seeds per dataset a gap of a tenth of the tolerance is equivalent in >= 95 of 100 draws. At 5 seeds
    the mean paired difference of a dataset still moves by 0.45 units (1 / sqrt(5)), more than the tolerance:
    the declared width then almost never says "equivalent" (what the report says instead: cannot separate)."""
    assert _called_equivalent(0.025, 20) >= 95
    assert _called_equivalent(0.025, 5) <= 50


def test_a_headline_names_one_pair_only_when_it_holds_80_percent():
    optimizers, batches = ["gd", "adam", "rmsprop", "nag"], ["full", "128", "32", "1"]
    sure = decide.headline({("adam", "32"): 0.85, ("rmsprop", "32"): 0.15}, optimizers, batches, 0.8,
                           pick=("adam", "32"))
    assert sure.single and sure.optimizers == ("adam",) and sure.batches == ("32",)
    # adam at 32 holds 40%: adam with rmsprop hold 80% over 128-32, not at 32 alone
    spread = {("adam", "32"): 0.4, ("rmsprop", "128"): 0.25, ("adam", "128"): 0.15, ("nag", "1"): 0.1,
              ("gd", "full"): 0.1}
    h = decide.headline(spread, optimizers, batches, 0.8, pick=("adam", "32"))
    assert not h.single and h.optimizers == ("adam", "rmsprop") and h.batches == ("128", "32")
    assert h.share == pytest.approx(0.8)
    # nothing short of all four holds 80%: the headline says so rather than naming a favourite
    flat = {(o, "32"): 0.25 for o in optimizers}
    assert set(decide.headline(flat, optimizers, batches, 0.8, pick=("gd", "32")).optimizers) == set(optimizers)


def test_what_is_robust_across_budgets_is_what_every_tuned_headline_names():
    heads = {("epochs", "tuned"): decide.Headline(("adam", "rmsprop"), ("32",), 0.8),
             ("updates", "tuned"): decide.Headline(("rmsprop", "adam", "nag"), ("128",), 0.82),
             ("seconds", "tuned"): decide.Headline(("rmsprop",), ("full",), 0.9),
             ("epochs", "default"): decide.Headline(("nag",), ("32",), 0.9)}
    assert stability.robust(heads, ["epochs", "updates", "seconds"]) == ("rmsprop",)
    heads[("seconds", "tuned")] = decide.Headline(("gd",), ("full",), 0.9)
    assert stability.robust(heads, ["epochs", "updates", "seconds"]) == ()


def _judged(results, s=SETTINGS):
    results = canonical(results)
    g = grid(results)
    scores = scoring.score(results, g, s.report)
    found = answer.answers(scores.cells, scores.runs, scores.unit, scores.caps, g.datasets, g.optimizers,
                           g.batches, s.report)
    return results, g, scores, found


def _p_adam(results):
    _, g, scores, found = _judged(results)
    key = ("epochs", "tuned")
    st = stability.stability(scores, {key: found[key]}, list(g.datasets), list(g.optimizers), list(g.batches),
                             SETTINGS.report)
    t = st.table[(st.table["budget"] == "epochs") & (st.table["track"] == "tuned") &
                 (st.table["kind"] == "optimizer")].set_index("optimizer")["p_best"]
    return found[key].recommended, float(t["adam"])


def test_two_tuning_runs_that_disagree_widen_the_bootstrap():
    """adam 3% better on average in both sweeps; in one its two tuning runs agree (3% and 3%), in the other they
    disagree (18% better and 12% worse). Resampling the tuning runs within each cell must see that: adam is picked
    in fewer resamples when its runs disagree (a bootstrap over datasets and seeds alone gives both the same
    spread, as the cell means are the same)."""
    common = dict(datasets=("moons", "circles", "iris", "wine", "breast_cancer", "digits", "sparse", "clf_easy"),
                  optimizers=("gd", "adam", "rmsprop"), batch_sizes=("full", "32"), seeds=4, epochs=10, trials=6,
                  default_gap=False, random_arm=False, diverged_evals=0, tuning_sd=0.0, interaction_sd=0.02)
    agree = make_results(run_effect={0: {"adam": -0.03}, 1: {"adam": -0.03}}, **common)
    disagree = make_results(run_effect={0: {"adam": -0.18}, 1: {"adam": 0.12}}, **common)
    (pick_a, p_agree), (pick_d, p_disagree) = _p_adam(agree), _p_adam(disagree)
    assert pick_a == pick_d == "adam"
    assert p_agree >= 0.85 and p_disagree <= p_agree - 0.1, (p_agree, p_disagree)


def test_tpe_against_random_finds_a_planted_gain_and_none_where_none_is():
    results = make_results(datasets=("moons", "circles", "iris", "wine", "breast_cancer", "digits", "sparse",
                                     "clf_easy", "clf_hard", "clf_multi"), optimizers=("gd", "adam"),
                           batch_sizes=("full", "32"), seeds=3, epochs=10, trials=30, default_gap=False,
                           tpe_effect={"adam": 0.7})
    results, g, scores, _ = _judged(results)
    table = pruning.tpe_against_random(results.trials, scores.unit, g.datasets, g.optimizers,
                                       SETTINGS.report).optimizers.set_index("optimizer")
    assert table.loc["adam", "median_gain"] > 0 and table.loc["adam", "holm_p"] < 0.05
    assert table.loc["gd", "holm_p"] > 0.05 or abs(table.loc["gd", "median_gain"]) < table.loc["adam", "median_gain"]


def test_the_budgets_table_checks_that_the_best_full_batch_cell_reaches_the_target_within_every_cap():
    results = make_results(datasets=("moons", "iris", "digits"), optimizers=("gd", "adam"),
                           batch_sizes=("full", "32"), seeds=3, epochs=12, trials=6, default_gap=False)
    results, g, scores, _ = _judged(results)
    table = protocol.budgets(scores, g.batches)
    assert set(zip(table["dataset"], table["budget"])) == {(d, b) for d in g.datasets for b in scoring.BUDGETS}
    assert table["reaches_target"].all()
    assert (table.loc[table["budget"] == "updates", "cap"].to_numpy() == 12).all()  # U_d = E_d
    # a target below anything full batch reached: the check says so instead of passing by fiat
    lowered = scores.targets.assign(target=scores.targets["target"] * 1e-3)
    import dataclasses
    table = protocol.budgets(dataclasses.replace(scores, targets=lowered), g.batches)
    assert not table.loc[table["budget"] == "epochs", "reaches_target"].any()
