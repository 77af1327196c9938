"""The report's statistics against scipy, baycomp and values worked out by hand."""
import baycomp
import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from study.report.judge import stats


def test_mean_ranks_rank_lowest_loss_first_and_share_ties():
    table = pd.DataFrame({"a": [0.1, 0.2, 0.3], "b": [0.2, 0.2, 0.1], "c": [0.3, 0.1, 0.2]})
    # block 1: a=1 b=2 c=3; block 2: c=1, a and b tie for 2-3 -> 2.5; block 3: b=1 c=2 a=3
    assert stats.mean_ranks(table).to_dict() == pytest.approx({"a": (1 + 2.5 + 3) / 3, "b": (2 + 2.5 + 1) / 3,
                                                               "c": (3 + 1 + 2) / 3})


def test_iman_davenport_matches_demsar_formulas_and_scipy():
    rng = np.random.default_rng(1)
    table = pd.DataFrame(rng.random((12, 4)), columns=list("abcd"))
    table["a"] -= 0.3  # a real effect, no ties
    n, k = table.shape
    r = stats.mean_ranks(table).to_numpy()
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(r**2) - k * (k + 1) ** 2 / 4)  # Demšar 2006, eq. 3
    f = (n - 1) * chi2 / (n * (k - 1) - chi2)  # eq. 4
    result = stats.iman_davenport(table)
    assert result.test == "Iman-Davenport"
    assert result.chi2 == pytest.approx(chi2)
    assert result.chi2 == pytest.approx(scipy_stats.friedmanchisquare(*table.T.to_numpy()).statistic)
    assert result.statistic == pytest.approx(f)
    assert result.pvalue == pytest.approx(scipy_stats.f.sf(f, k - 1, (k - 1) * (n - 1)))
    # the F form is less conservative than the chi-square form (Demšar 2006)
    assert result.pvalue < scipy_stats.chi2.sf(chi2, k - 1)


def test_iman_davenport_ranks_never_reached_last_and_degenerate_cases_give_no_evidence():
    tied = pd.DataFrame(np.ones((5, 3)), columns=list("abc"))
    assert stats.iman_davenport(tied).pvalue == 1.0
    assert stats.iman_davenport(tied.iloc[:1]).test == "none"
    assert stats.iman_davenport(tied[["a"]]).pvalue == 1.0
    same_order = pd.DataFrame({"a": [1.0, 2, 3, 4], "b": [2.0, 3, 4, 5], "c": [np.inf] * 4})
    assert stats.mean_ranks(same_order).to_dict() == {"a": 1.0, "b": 2.0, "c": 3.0}
    assert stats.iman_davenport(same_order).pvalue == 0.0  # every dataset agrees: F is infinite
    two = pd.DataFrame({"a": [1.0, 2, 3, 4, 5, 6], "b": [1.1, 2.3, 3.1, 4.5, 5.2, 6.6]})
    result = stats.iman_davenport(two)
    assert result.test == "Wilcoxon"
    assert result.pvalue == pytest.approx(scipy_stats.wilcoxon(two.b - two.a, method="approx").pvalue)  # ties


def test_differences_never_divide_by_a_loss_and_cap_what_never_arrived():
    reference, other = np.array([1e-9, 0.5, 2.0]), np.array([2e-9, 0.6, 2.0])
    d = stats.scaled_difference(other, reference, np.array([0.01, 0.05, 0.1]))
    assert d == pytest.approx([1e-7, 2.0, 0.0])  # a tiny loss gives a tiny difference, not +100%
    costs = stats.log2_ratio(np.array([8.0, np.inf, np.inf, 4.0]), np.array([2.0, 10.0, np.inf, np.inf]),
                             never=np.array([100.0, 40.0, 50.0, 16.0]))
    assert costs == pytest.approx([2.0, 2.0, 0.0, -2.0])  # inf counts as twice the largest finite cost (given)


def test_holm_by_hand():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> made monotone: 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # 0.5*2 = 1, then max(1, 0.9)
    assert len(stats.holm([])) == 0


def test_wilcoxon_against_scipy_with_and_without_ties():
    diff = np.array([0.1, 0.2, -0.12, 0.3, 0.05, 0.15, 0.0, -0.02, 0.4])  # no tied magnitudes: exact
    statistic, p = stats.wilcoxon_signed_rank(diff)
    expected = scipy_stats.wilcoxon(diff[diff != 0], method="exact")
    assert (statistic, p) == pytest.approx((expected.statistic, expected.pvalue))
    tied = np.array([1.0, 1.0, 2.0, -1.0, 3.0, 3.0, 0.5])
    expected = scipy_stats.wilcoxon(tied, method="approx")
    assert stats.wilcoxon_signed_rank(tied) == pytest.approx((expected.statistic, expected.pvalue))
    assert stats.wilcoxon_signed_rank(np.zeros(5)) == (0.0, 1.0)


def test_nemenyi_critical_difference_matches_demsar_table():
    # Demšar (2006), table 5(a): q_0.05 = 2.850 for k = 6, 2.569 for k = 4
    assert stats.nemenyi_critical_difference(6, 12) == pytest.approx(2.850 * np.sqrt(6 * 7 / (6 * 12)), rel=1e-3)
    assert stats.nemenyi_critical_difference(4, 10) == pytest.approx(2.569 * np.sqrt(4 * 5 / 60), rel=1e-3)


@pytest.mark.parametrize("rope", [0.0, 0.01, 0.05])
def test_bayesian_signed_rank_reproduces_baycomp(rope):
    rng = np.random.default_rng(3)
    d = rng.normal(0.02, 0.04, 12)
    ours = stats.bayesian_signed_rank(d, rope, nsamples=3000, seed=7)
    theirs = baycomp.SignedRankTest.probs(np.zeros(12), d, rope if rope else 1e-300, nsamples=3000, random_state=7)
    assert ours == pytest.approx(tuple(theirs), abs=1e-12)


def test_bayesian_signed_rank_is_sure_when_it_should_be():
    clearly_worse = np.full(12, 0.2)  # the other treatment 20% worse on every dataset
    assert stats.bayesian_signed_rank(clearly_worse, 0.01, nsamples=2000)[2] > 0.95
    equivalent = np.linspace(-0.002, 0.002, 12)
    assert stats.bayesian_signed_rank(equivalent, 0.01, nsamples=2000)[1] > 0.95


def test_bootstrap_interval_is_scipy_percentile_and_seeded():
    values = np.array([[1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 2.0, 2.0, 2.0, 2.0], [1.0, np.nan, 2.0, 3.0, 4.0]])
    low, high = stats.bootstrap_mean_ci(values, n_resamples=500, seed=4)
    expected = scipy_stats.bootstrap((values[:2],), np.mean, axis=-1, vectorized=True, n_resamples=500,
                                     method="percentile", rng=np.random.default_rng(4)).confidence_interval
    assert low[:2] == pytest.approx(expected.low) and high[:2] == pytest.approx(expected.high)
    assert low[1] == high[1] == 2.0
    assert np.isnan(low[2]) and np.isnan(high[2])
    assert low[0] < 3.0 < high[0]
    again = stats.bootstrap_mean_ci(values, n_resamples=500, seed=4)
    assert np.array_equal(again[0], low, equal_nan=True)


def test_first_reach():
    assert stats.first_reach([5.0, 3.0, 1.0, 0.5], 1.0) == 3
    assert stats.first_reach([5.0, 3.0], 1.0) == float("inf")
    assert stats.first_reach([5.0, np.nan, 0.9], 1.0) == 3


def test_performance_profile_by_hand():
    times = pd.DataFrame({"fast": [1.0, 2.0, np.inf, np.inf], "slow": [2.0, 2.0, 10.0, np.inf]})
    profile = stats.performance_profile(times, np.array([1.0, 2.0, 100.0]))
    # ratios: fast [1, 1, inf, inf], slow [2, 1, 1, inf]; the last problem nobody solves
    assert profile["fast"].tolist() == [0.5, 0.5, 0.5]
    assert profile["slow"].tolist() == [0.5, 0.75, 0.75]


def test_expected_best_of_k_closed_form_by_hand_and_by_resampling():
    assert stats.expected_best_of_k([3.0, 1.0, 2.0], [1, 2]) == pytest.approx([2.0, 14 / 9])
    values = np.random.default_rng(5).lognormal(size=20)
    draws = np.random.default_rng(6).choice(values, size=(200000, 5)).min(axis=1)
    assert stats.expected_best_of_k(values, [5])[0] == pytest.approx(draws.mean(), rel=0.01)
    assert stats.expected_best_of_k(values, [10000])[0] == pytest.approx(values.min())
    assert np.isnan(stats.expected_best_of_k([np.nan], [1])[0])


def test_best_so_far_skips_pruned_trials():
    got = stats.best_so_far([np.nan, 3.0, np.nan, 4.0, 1.0])
    assert np.array_equal(got, [np.nan, 3.0, 3.0, 3.0, 1.0], equal_nan=True)


def _scaled(b, a):
    return stats.scaled_difference(b, a, np.ones(len(a)))


def test_compare_family_tests_every_pair_with_holm_over_all_of_them():
    rng = np.random.default_rng(3)
    table = pd.DataFrame(rng.normal(0.0, 1.0, (14, 4)), columns=list("abcd"))
    table["a"] -= 3.0  # a is far ahead of all; b, c, d differ only by noise
    result = stats.compare_family(table, _scaled, rope=0.1, nsamples=2000)
    assert result.mean_ranks.index[0] == "a"
    assert len(result.pairs) == 6  # all k(k-1)/2 pairs, not only against the best
    assert result.pairs["holm_p"].to_numpy() == pytest.approx(stats.holm(result.pairs["wilcoxon_p"].to_numpy()))
    for other in "bcd":
        pair = result.pair("a", other)
        assert pair["holm_p"] < 0.05 and pair["median"] > 2.0 and pair["low"] > 0 and pair["p_a_better"] > 0.95
        back = result.pair(other, "a")
        assert back["median"] == -pair["median"] and back["p_b_better"] == pair["p_a_better"]
    d = table["c"] - table["a"]
    assert result.pair("a", "c")["median"] == pytest.approx(np.median(d))


def test_compare_family_focus_runs_the_bayesian_test_only_where_it_is_read():
    table = pd.DataFrame(np.random.default_rng(0).random((8, 3)), columns=list("abc"))
    result = stats.compare_family(table, _scaled, rope=0.1, nsamples=500, focus="b")
    touched = result.pairs[(result.pairs["a"] == "b") | (result.pairs["b"] == "b")]
    assert touched["p_equivalent"].notna().all()
    assert result.pairs.drop(touched.index)["p_equivalent"].isna().all()


def test_compare_family_drops_incomplete_blocks():
    table = pd.DataFrame({"a": [1.0, 2.0, np.nan], "b": [1.5, 2.5, 3.0], "c": [2.0, 3.0, 4.0]})
    assert stats.compare_family(table, _scaled, rope=0.1, nsamples=100).n_blocks == 2


def test_bootstrap_median_interval_covers_the_median_and_is_seeded():
    values = np.random.default_rng(2).normal(1.0, 0.5, 15)
    low, high = stats.bootstrap_median_ci(values, seed=3)
    assert low < np.median(values) < high
    assert stats.bootstrap_median_ci(values, seed=3) == (low, high)
    assert stats.bootstrap_median_ci(np.full(4, 2.0)) == (2.0, 2.0)
