"""Shallue et al. 2019, "Measuring the effects of data parallelism on neural network training": the updates needed
to reach a target fall with batch size, about in proportion at first, then level off.

Read from the real update budget: every run of the updates budget (hyperparameters chosen for it, on validation),
its cost on the *test* curve to the dataset's target, censored at the dataset's cap U_d (``scoring``). A cell's cost
is the median over its runs (tuning runs and seeds); every batch size is kept, a censored cell as censored (its cost
is "> cap", never dropped). Per optimizer and pair of consecutive batch sizes, the log-log slope
log(u2 / u1) / log(b2 / b1) per dataset (a batch size at least the training set counts as the full batch; a pair
that is the same batch on a dataset is left out there), and the median over datasets.

Censoring makes a slope a bound: the cost of a censored cell is only known to exceed the cap, so a censored smaller
batch makes the slope at most its value at the cap, a censored larger one at least that, both unknown. The interval
takes the worst case: the bootstrap (datasets resampled, and runs within each dataset, the same runs for every cell
of it) of the median of the lowest possible slopes gives its lower end, of the highest its upper end. A verdict
needs the interval to exclude the alternative: "in proportion at first" when the first slope's interval lies in
conf/claims.yaml's ``proportional`` range (against: entirely outside it), "then level off" when the last slope is
surely above ``level_off`` times the first (against: surely below); per optimizer both for agrees, either against
disagrees, and over the optimizers the verdict thresholds' share (``support``) of one or the other.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from study.report import fmt
from study.report.judge.decide import CANNOT_TELL, FINDING
from study.schema.report import Statistics
from study.schema.report import Verdict as Rules

FINDING_TEXT = "updates to the target fall with batch size, about in proportion at first, then level off"
COST_COLUMNS = ["dataset", "optimizer", "batch_size", "effective_batch", "updates", "cap", "censored",
                "reached_share"]
SLOPE_COLUMNS = ["optimizer", "from_batch", "to_batch", "slope", "low", "high", "datasets", "censored"]


def slope_text(x) -> str:
    """A slope or an end of its interval: two digits, +-inf for an end censoring leaves open."""
    return "inf" if x == math.inf else fmt.num(x, 2)


def ordered(batches) -> list[str]:
    """Batch sizes from the smallest to the full batch."""
    return sorted((str(b) for b in batches), key=lambda b: math.inf if b == "full" else int(b))


def effective(batch: str, n_train: int) -> int:
    return n_train if batch == "full" else min(int(batch), int(n_train))


def slope_bounds(u1, u2, s1, s2, cap):
    """(value with censored costs at the cap, lowest possible, highest possible) log-log slopes; NaN where a cost
    is missing or the two batch sizes are the same."""
    u1, u2, s1, s2, cap = np.broadcast_arrays(*(np.asarray(x, float) for x in (u1, u2, s1, s2, cap)))
    known = ~np.isnan(u1) & ~np.isnan(u2) & (s2 > s1)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.log(np.where(np.isfinite(u2), u2, cap) / np.where(np.isfinite(u1), u1, cap)) / np.log(s2 / s1)
    low = np.where(np.isfinite(u1), value, -np.inf)  # a censored smaller batch: the slope can be any lower
    high = np.where(np.isfinite(u2), value, np.inf)  # a censored larger batch: any higher
    return tuple(np.where(known, x, np.nan) for x in (value, low, high))


def _costs(runs: pd.DataFrame, caps: pd.Series, n_train: pd.Series, datasets, optimizers, batches):
    """(datasets, optimizers, batches, slots) test costs of the tuned updates-budget runs (slots: every (tuning
    run, seed)), and the per-cell table (COST_COLUMNS)."""
    tuned = runs[(runs["track"] == "tuned") & runs["test_updates"].notna()]
    slots = sorted(set(zip(tuned["tuning_run"], tuned["seed"])))
    index = {s: i for i, s in enumerate(slots)}
    cube = np.full((len(datasets), len(optimizers), len(batches), len(slots)), np.nan)
    where = {name: {v: i for i, v in enumerate(values)} for name, values in
             (("dataset", datasets), ("optimizer", optimizers), ("batch_size", batches))}
    for row in tuned.itertuples(index=False):
        at = (where["dataset"].get(row.dataset), where["optimizer"].get(row.optimizer),
              where["batch_size"].get(str(row.batch_size)))
        if None not in at:
            cube[at + (index[(row.tuning_run, row.seed)],)] = float(row.test_updates)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a cell with no run: NaN, left out
        cells = np.nanmedian(cube, axis=3)
        reached = np.nanmean(np.where(np.isnan(cube), np.nan, np.isfinite(cube)), axis=3)
    rows = [{"dataset": d, "optimizer": o, "batch_size": b, "effective_batch": effective(b, n_train[d]),
             "updates": cells[i, j, m], "cap": caps.get(d, math.nan), "censored": bool(np.isinf(cells[i, j, m])),
             "reached_share": reached[i, j, m]}
            for i, d in enumerate(datasets) for j, o in enumerate(optimizers) for m, b in enumerate(batches)
            if not np.isnan(cells[i, j, m])]
    return cube, pd.DataFrame(rows, columns=COST_COLUMNS)


def slopes(runs: pd.DataFrame, caps: pd.Series, n_train: pd.Series, datasets, optimizers, batches,
           st: Statistics) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every cell's cost (COST_COLUMNS) and every slope with its interval (SLOPE_COLUMNS)."""
    batches = ordered(batches)
    datasets = [d for d in datasets if d in set(runs["dataset"])]
    cube, costs = _costs(runs, caps, n_train, datasets, optimizers, batches)
    if not len(costs) or len(batches) < 2:
        return costs, pd.DataFrame(columns=SLOPE_COLUMNS)
    sizes = np.array([[effective(b, n_train[d]) for b in batches] for d in datasets], float)
    cap = np.array([caps.get(d, math.nan) for d in datasets], float)
    rng = np.random.default_rng(st.seed)
    n_d, n_s = cube.shape[0], cube.shape[3]
    pick_d = rng.integers(0, n_d, (st.bootstrap_resamples, n_d))
    pick_s = rng.integers(0, n_s, (st.bootstrap_resamples, n_d, n_s))  # the same runs for every cell of a dataset
    lo_q, hi_q = (1 - st.confidence) / 2, (1 + st.confidence) / 2
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for j, optimizer in enumerate(optimizers):
            value, _, _ = slope_bounds(*_pairs(np.nanmedian(cube[:, j], axis=2), sizes, cap))
            resampled = cube[:, j][pick_d[:, :, None, None], np.arange(len(batches))[None, None, :, None],
                                   pick_s[:, :, None, :]]  # (R, D, B, S)
            _, low, high = slope_bounds(*_pairs(np.nanmedian(resampled, axis=3), sizes[pick_d], cap[pick_d]))
            for m in range(len(batches) - 1):
                finite = ~np.isnan(value[:, m])
                censored = np.isinf(np.nanmedian(cube[:, j, m:m + 2], axis=2)).any(axis=1) & finite
                rows.append({"optimizer": optimizer, "from_batch": batches[m], "to_batch": batches[m + 1],
                             "slope": float(np.nanmedian(value[:, m])) if finite.any() else math.nan,
                             # the outer order statistics: an end at -inf or inf stays there (no interpolation)
                             "low": float(np.quantile(np.nanmedian(low[..., m], axis=1), lo_q, method="lower")),
                             "high": float(np.quantile(np.nanmedian(high[..., m], axis=1), hi_q,
                                                       method="higher")),
                             "datasets": int(finite.sum()), "censored": int(censored.sum())})
    return costs, pd.DataFrame(rows, columns=SLOPE_COLUMNS)


def _pairs(cells, sizes, cap):
    """The arguments of ``slope_bounds`` for every consecutive pair of batch sizes: cells and sizes (..., datasets,
    batches), cap (..., datasets)."""
    return cells[..., :-1], cells[..., 1:], sizes[..., :-1], sizes[..., 1:], cap[..., None]


def _judge(first: pd.Series, last: pd.Series, proportional, level_off: float) -> bool | None:
    """One optimizer: True when both parts of the finding hold with the intervals, False when either is excluded."""
    p_low, p_high = proportional
    in_proportion = True if p_low <= first["low"] and first["high"] <= p_high else (
        False if first["high"] < p_low or first["low"] > p_high else None)
    levels_off = True if last["low"] > level_off * first["high"] else (
        False if last["high"] < level_off * first["low"] else None)
    if in_proportion is False or levels_off is False:
        return False
    return True if in_proportion and levels_off else None


def finding(table: pd.DataFrame, proportional, level_off: float, rules: Rules, confidence: float) -> dict:
    """The row: per optimizer the first and last slope's intervals judged (``_judge``), then the share of optimizers
    for (agrees at >= support) or against (disagrees at >= support)."""
    criterion = (f"per optimizer (tuned for updates), from the updates budget's test costs to the target (censored "
                 f"at the cap U_d, kept): the median over datasets of the log-log slope between consecutive batch "
                 f"sizes, with a {confidence:.0%} bootstrap interval over datasets and runs that takes censoring at "
                 f"its worst; \"in proportion at first\" when the interval of the slope between the two smallest "
                 f"batch sizes lies in [{fmt.num(proportional[0])}, {fmt.num(proportional[1])}], \"then level off\" "
                 f"when the slope between the two largest is surely above {fmt.num(level_off)} times the first; "
                 f"agrees when both hold for {rules.support:.0%} of the optimizers, disagrees when an interval "
                 f"excludes either for {rules.support:.0%}; every slope in `tables/shallue_slopes.csv`, every cost "
                 f"in `tables/shallue_costs.csv`")
    out = {"finding": FINDING_TEXT, "criterion": criterion}
    table = table[table["datasets"] > 0] if len(table) else table  # a pair that is one batch size everywhere
    if table.empty or table.groupby("optimizer").size().max() < 2:
        return {**out, "number": "needs the updates budget and at least three batch sizes", "verdict": CANNOT_TELL}
    verdicts, parts = [], []
    for optimizer, rows in table.groupby("optimizer", sort=False):
        if len(rows) < 2:
            verdicts.append(None)
            parts.append(f"{optimizer}: one pair of batch sizes only")
            continue
        first, last = rows.iloc[0], rows.iloc[-1]
        verdict = _judge(first, last, proportional, level_off)
        verdicts.append(verdict)
        parts.append(f"{optimizer} {slope_text(first['slope'])} [{slope_text(first['low'])}, "
                     f"{slope_text(first['high'])}] then {slope_text(last['slope'])} [{slope_text(last['low'])}, "
                     f"{slope_text(last['high'])}]" + (f" ({int(first['censored'])} censored first)"
                                                       if first["censored"] else ""))
    n = len(verdicts)
    agree, against = sum(v is True for v in verdicts) / n, sum(v is False for v in verdicts) / n
    enough = n >= rules.min_cases
    verdict = True if enough and agree >= rules.support else (False if enough and against >= rules.support else None)
    evidence = against if verdict is False else agree
    number = (f"agrees for {sum(v is True for v in verdicts)}/{n}, against for {sum(v is False for v in verdicts)}"
              f"/{n}; first slope then last [interval]: " + "; ".join(parts))
    return {**out, "number": number, "verdict": FINDING.word(verdict), "evidence": evidence,
            "threshold": rules.support}
