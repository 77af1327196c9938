"""The verdict's tests, vectorised over bootstrap resamples: the same decisions as ``stats`` and ``decide``, for a
thousand resampled families at once.

Every array has the resamples first. Two departures from the report's own tests, declared in conf/report.yaml
(``stability``): the Wilcoxon signed-rank test uses the normal approximation with the tie correction throughout
(a dataset drawn twice gives tied differences, where the report's exact test would switch to it anyway), and the
Bayesian signed-rank test uses fewer posterior draws. A difference that cannot be computed (a loss unit of 0) counts
as no difference.
"""
from __future__ import annotations

import numpy as np
from scipy import special
from scipy import stats as scipy_stats
from threadpoolctl import threadpool_limits

from study.report.judge import stats

WINNER, EQUIVALENT, UNRESOLVED, DISAGREE = 0, 1, 2, 3  # decide's statuses, as codes (decide.STATUS_CODES)


def iman_davenport(table: np.ndarray) -> np.ndarray:
    """Iman-Davenport p-values of (R, blocks, treatments) tables, with the tie correction of scipy's Friedman test
    (``stats.iman_davenport``'s: every block tied gives p = 1, the same order everywhere p = 0)."""
    _, n, k = table.shape
    ranks = scipy_stats.rankdata(table, axis=2, method="average")
    sums = ranks.sum(axis=1)
    same = np.equal(ranks[:, :, :, None], ranks[:, :, None, :]).sum(axis=3)  # each rank's tie-group size
    ties = (same ** 2 - 1).sum(axis=(1, 2))  # sum over tie groups of t^3 - t
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = (12.0 / (n * k * (k + 1)) * (sums ** 2).sum(axis=1) - 3.0 * n * (k + 1)) / (
            1.0 - ties / (n * k * (k * k - 1)))
        denominator = n * (k - 1) - chi2
        f = (n - 1) * chi2 / denominator
        p = np.where(denominator <= 0, 0.0, scipy_stats.f.sf(f, k - 1, (k - 1) * (n - 1)))
    all_tied = (ranks == ranks[:, :, :1]).all(axis=(1, 2))
    return np.where(all_tied, 1.0, p)


def wilcoxon(d: np.ndarray) -> np.ndarray:
    """Two-sided Wilcoxon signed-rank p-values along the last axis, zeros dropped, normal approximation with the
    tie correction (scipy's ``method="approx"``); no non-zero difference gives p = 1."""
    d = np.where(np.isfinite(d), d, 0.0)
    zero = d == 0
    n_zero = zero.sum(axis=-1)
    count = d.shape[-1] - n_zero
    ranks = scipy_stats.rankdata(np.abs(d), axis=-1, method="average") - n_zero[..., None]
    r_plus = np.where(d > 0, ranks, 0.0).sum(axis=-1)
    magnitude = np.where(zero, np.nan, np.abs(d))
    same = np.equal(magnitude[..., :, None], magnitude[..., None, :]).sum(axis=-1)
    ties = np.where(zero, 0, same ** 2 - 1).sum(axis=-1)
    mean = count * (count + 1) / 4.0
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt((count * (count + 1) * (2 * count + 1) - ties / 2.0) / 24.0)
        z = np.abs(r_plus - mean) / se
    p = np.minimum(1.0, 2.0 * special.ndtr(-z))
    return np.where(count > 0, np.nan_to_num(p, nan=1.0), 1.0)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment along the last axis (``stats.holm``, vectorised)."""
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    scaled = np.minimum(1.0, np.take_along_axis(p, order, axis=-1) * (m - np.arange(m)))
    adjusted = np.maximum.accumulate(scaled, axis=-1)
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, axis=-1)
    return out


def p_equivalent(d: np.ndarray, rope: float, nsamples: int, seed: int, prior: float = 0.5,
                 chunk: int = 400) -> np.ndarray:
    """P(the region of practical equivalence is the most probable one) of the Bayesian signed-rank test
    (``stats.bayesian_signed_rank``, its Dirichlet draws) for each row of ``d`` (tests x differences). Each
    draw's mass above and below the region is the quadratic form w^T H w of the Walsh-average indicators H; for a
    chunk of tests, the draws times every H is one matrix product."""
    d = np.where(np.isfinite(d), d, 0.0)
    n = d.shape[1] + 1
    draws = stats._dirichlet_draws(n, prior, nsamples, seed)
    out = np.empty(len(d))
    full = np.hstack([np.zeros((len(d), 1)), d])
    with threadpool_limits(limits=1, user_api="blas"):
        for start in range(0, len(d), chunk):
            block = full[start:start + chunk]
            t = len(block)
            sums = block[:, :, None] + block[:, None, :]  # (t, n, n), twice the Walsh averages
            indicators = np.stack([(-sums > 2 * rope) + 0.5 * (-sums == 2 * rope),
                                   (sums > 2 * rope) + 0.5 * (sums == 2 * rope)], axis=1)  # (t, 2, n, n)
            product = draws @ indicators.transpose(2, 0, 1, 3).reshape(n, t * 2 * n)  # (S, t * 2 * n)
            mass = np.einsum("stkj,sj->tks", product.reshape(nsamples, t, 2, n), draws)  # (t, 2, S)
            p_left, p_right = mass[:, 0], mass[:, 1]
            middle = 1.0 - p_left - p_right
            wins = (middle > p_left) & (middle >= p_right)  # np.argmax's first-wins order: left, rope, right
            out[start:start + t] = wins.mean(axis=1)
    return out


def omnibus(test: np.ndarray, difference) -> np.ndarray:
    """(R,) omnibus p-values: Iman-Davenport, or with two treatments the Wilcoxon test of their differences."""
    if test.shape[2] == 2:
        by_treatment = np.moveaxis(test, 2, 1)
        return wilcoxon(difference(by_treatment[:, 1:2], by_treatment[:, 0:1])[:, 0])
    return iman_davenport(np.where(np.isnan(test), np.inf, test))


def pair_p(test: np.ndarray, difference) -> np.ndarray:
    """Holm-adjusted Wilcoxon p-values of every pair of treatments of (R, blocks, treatments) tables: (R, k, k),
    symmetric. ``difference(other, reference)`` takes (R, pairs, blocks) arrays."""
    _, _, k = test.shape
    first, second = np.triu_indices(k, 1)
    by_treatment = np.moveaxis(test, 2, 1)  # (R, k, blocks)
    adjusted = holm(wilcoxon(difference(by_treatment[:, second], by_treatment[:, first])))
    out = np.ones((test.shape[0], k, k))
    out[:, first, second] = adjusted
    out[:, second, first] = adjusted
    return out


def status(test: np.ndarray, chosen: np.ndarray, gate: np.ndarray, adjusted: np.ndarray, difference, rope: float,
           alpha: float, sure: float, nsamples: int, seed: int) -> np.ndarray:
    """``decide.judge``'s status of each resample's choice: every other treatment behind (significantly worse, its
    pair read only when the omnibus ``gate`` p is below alpha), ahead, equivalent (P >= sure within ``rope``) or
    unresolved; codes WINNER, EQUIVALENT, UNRESOLVED, DISAGREE."""
    r, blocks, k = test.shape
    rows = np.arange(r)
    reference = test[rows, :, chosen]  # (R, blocks)
    d = difference(np.moveaxis(test, 2, 1), np.broadcast_to(reference[:, None, :], (r, k, blocks)))  # > 0: choice better
    median = np.median(np.where(np.isfinite(d), d, 0.0), axis=2)
    significant = (gate[:, None] < alpha) & (adjusted[rows, chosen] < alpha)  # (R, k)
    other = np.ones((r, k), bool)
    other[rows, chosen] = False
    behind = other & significant & (median > 0)
    ahead = other & significant & ~(median > 0)
    undecided = other & ~significant & ~ahead.any(axis=1)[:, None]  # one ahead decides: validation and test disagree
    # One unresolved pair makes the status "cannot separate", whatever the others: the pairs of a resample are
    # tested the widest gap first, and a resample leaves the loop at its first unresolved pair.
    order = np.argsort(-np.where(undecided, np.abs(median), -np.inf), axis=1, kind="stable")
    unresolved, open_ = np.zeros(r, bool), undecided.any(axis=1)
    for q in range(k):
        pair = order[:, q]
        wanted = open_ & undecided[rows, pair]
        if not wanted.any():
            break
        same = p_equivalent(d[rows[wanted], pair[wanted]], rope, nsamples, seed) >= sure
        unresolved[np.flatnonzero(wanted)[~same]] = True
        open_ &= ~unresolved
    equivalent = undecided.any(axis=1) & ~unresolved
    return np.select([ahead.any(axis=1), unresolved, equivalent], [DISAGREE, UNRESOLVED, EQUIVALENT], WINNER)
