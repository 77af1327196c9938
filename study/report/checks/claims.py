"""The lecture's claims, checked one row each: supported, contradicted or inconclusive, with the number behind it.

Criteria and thresholds live in conf/claims.yaml (written before any claim was evaluated). Each check computes a
``share``: the fraction of comparable cases (learning rates of a grid, or sweep cells) on which the claim's
criterion holds; the thresholds there turn it into a verdict.

This module judges; it trains nothing. The trajectory claims' numbers are the lecture's (``study.lecture.evidence``,
measured on its toy problems with the trainer's step record); the practice claims' come from the sweep.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from study.lecture import evidence
from study.report import fmt
from study.report.judge.decide import BY_CONSTRUCTION, CLAIM, CONTRADICTED, SUPPORTED, by_share, is_the_pick
from study.schema.report import Claims, MinibatchCriteria, SparseCriteria, ToyProblem, Verdict


@dataclass(frozen=True)
class ClaimCheck:
    claim: str  # the lecture's statement
    source: str  # where the evidence comes from
    criterion: str  # what was measured and the threshold
    measured: str  # the number behind the verdict
    share: float  # fraction of comparable cases where the criterion holds (NaN: none comparable)
    cases: int  # how many comparable cases
    verdict: str


def _by_construction(share: float, cases: int, rules: Verdict) -> str:
    """A claim the code guarantees (how the batches are cut, how a mini-batch gradient is formed): "by
    construction" when the check holds as often as a supported claim must, else contradicted (a bug to look at)."""
    return BY_CONSTRUCTION if cases and share >= rules.support else CONTRADICTED


def _verdict(share: float, cases: int, rules: Verdict) -> str:
    return CLAIM.word(by_share(share, cases, rules))


def _share(holds: np.ndarray, comparable: np.ndarray) -> tuple[float, int]:
    cases = int(np.sum(comparable))
    return (float(np.sum(holds & comparable)) / cases if cases else float("nan")), cases


def _of(share: float, cases: int) -> str:
    return f"{int(round(share * cases)) if cases else 0}/{cases}"


def _toy_checks(runs: dict, problem: ToyProblem, decay_ratio: float, rules: Verdict) -> list[ClaimCheck]:
    gd, mom, nag, ada, rms = (runs[o] for o in ("gd", "momentum", "nag", "adagrad", "rmsprop"))
    source = f"toy: lecture's sigmoid neuron, {len(runs['etas'])} learning rates {fmt.num(runs['etas'][0])}..." \
             f"{fmt.num(runs['etas'][-1])}"
    checks = []
    esc = f"loss <= {problem.criteria.escape_fraction:.0%} of the start"
    tgt = f"loss <= {problem.criteria.target_fraction:.0%} of the start"

    effective = runs["gd_effective"]
    gamma = fmt.num(problem.gamma)
    for rival, where in ((gd, "at the same learning rate"),
                         (effective, f"at GD's learning rate eta / (1 - gamma) = {fmt.num(1 / (1 - problem.gamma))} "
                                     f"eta, the step momentum's velocity settles to on a constant slope")):
        comparable = np.isfinite(rival["escape"]) | np.isfinite(mom["escape"])
        share, cases = _share(mom["escape"] < rival["escape"], comparable)
        with np.errstate(invalid="ignore"):  # both never off the plateau: no ratio (NaN), left out
            ratios = np.where(comparable, rival["escape"] / mom["escape"], np.nan)
        speedup = np.nanmedian(ratios) if cases else np.nan
        checks.append(ClaimCheck(
            "Momentum moves faster than GD on gentle slopes" + ("" if rival is gd else " (at the same effective step)"),
            source, f"momentum (gamma {gamma}) leaves the plateau ({esc}) in fewer epochs than GD {where}",
            f"faster at {_of(share, cases)} learning rates; median {fmt.num(speedup)}x fewer epochs", share, cases,
            _verdict(share, cases, rules)))

    comparable = np.isfinite(gd["target"]) | np.isfinite(mom["target"])
    holds = (mom["u_turns"] > 0) & (mom["target"] < gd["target"])
    share, cases = _share(holds, comparable)
    checks.append(ClaimCheck(
        "Momentum makes u-turns around the minimum, yet converges faster than GD", source,
        f"momentum makes >= 1 u-turn (sign change of an update along a parameter) and reaches {tgt} in fewer "
        f"epochs than GD",
        f"holds at {_of(share, cases)} learning rates; momentum's u-turns: median {fmt.num(np.median(mom['u_turns']))}",
        share, cases, _verdict(share, cases, rules)))

    comparable = mom["u_turns"] > 0
    share, cases = _share(nag["u_turns"] < mom["u_turns"], comparable)
    checks.append(ClaimCheck(
        "NAG oscillates less than momentum", source,
        "NAG makes fewer u-turns than momentum, where momentum makes any",
        f"fewer at {_of(share, cases)} learning rates; u-turns NAG/momentum median "
        f"{fmt.num(np.median(nag['u_turns']))}/{fmt.num(np.median(mom['u_turns']))}", share, cases,
        _verdict(share, cases, rules)))

    off_plateau = np.isfinite(ada["escape"]) & ~ada["diverged"]
    # a stall of AdaGrad's own making: its effective step decayed, and GD at the same learning rate gets there
    stalled = off_plateau & ~np.isfinite(ada["target"]) & (ada["b_step_decay"] < decay_ratio) \
        & np.isfinite(gd["target"])
    share, cases = _share(stalled, off_plateau)
    checks.append(ClaimCheck(
        "AdaGrad's learning rate decays until it stalls near the minimum", source,
        f"off the plateau, AdaGrad misses {tgt} within {problem.epochs} epochs while its effective step on b fell "
        f"below {fmt.num(decay_ratio)} of its first, and GD at the same learning rate reaches it",
        f"stalled at {_of(share, cases)} learning rates that left the plateau; effective step on b fell to median "
        f"{fmt.num(np.nanmedian(ada['b_step_decay']))} of its first", share, cases, _verdict(share, cases, rules)))

    share, cases = _share(np.isfinite(rms["target"]), stalled)
    checks.append(ClaimCheck(
        "RMSProp avoids AdaGrad's stall", source,
        f"where AdaGrad stalled, RMSProp (beta {fmt.num(problem.beta)}) reaches {tgt}",
        f"reached at {_of(share, cases)} stalled learning rates" if cases
        else "AdaGrad never stalled: no stall to avoid",
        share, cases, _verdict(share, cases, rules)))

    lecture = float(problem.lecture_eta)
    raised = runs["gd_raised"]
    reference = mom["target"][np.argmin(np.abs(runs["etas"] - lecture))]
    fixed = (~raised["diverged"]) & (raised["target"] <= reference)  # u-turns allowed, as they are to momentum
    larger = raised["etas"] > lecture
    share, cases = _share(~fixed, larger)
    checks.append(ClaimCheck(
        "Raising GD's learning rate does not fix gentle slopes (it overshoots or diverges)", source,
        f"at learning rates above the lecture's {fmt.num(lecture)}, GD does not reach {tgt} as fast as momentum at "
        f"{fmt.num(lecture)} ({fmt.num(reference)} epochs) without diverging: the same criterion as momentum's, "
        f"u-turns allowed to both",
        f"not fixed at {_of(share, cases)} larger learning rates; there GD made {fmt.names(raised['u_turns'][larger])}"
        f" u-turns and diverged {int(raised['diverged'][larger].sum())} times", share, cases,
        _verdict(share, cases, rules)))
    return checks


def _minibatch_checks(mb: dict, cfg: MinibatchCriteria, rules: Verdict) -> list[ClaimCheck]:
    source = f"toy: softmax regression on {cfg.dataset}, plain GD, {len(mb['etas'])} learning rates"
    sizes = [mb["numeric"][b] for b in mb["sizes"]]
    rates = np.array([mb["u_turn_rate"][b] for b in mb["sizes"]])  # (batch sizes, etas)
    blown = np.array([mb["diverged"][b] for b in mb["sizes"]]).any(axis=0)
    rho = np.array([scipy_stats.spearmanr(sizes, rates[:, i]).statistic if not blown[i] else np.nan
                    for i in range(rates.shape[1])])
    share, cases = _share(rho <= cfg.max_rho, ~blown & np.isfinite(rho))
    checks = [ClaimCheck(
        "Mini-batches reduce the oscillation of stochastic updates", source,
        f"the u-turn rate (u-turns per pair of consecutive updates) falls with batch size: Spearman rho <= "
        f"{fmt.num(cfg.max_rho)}",
        f"falls at {_of(share, cases)} learning rates; median rate at batch 1 {fmt.num(np.median(rates[0]))}, "
        f"full {fmt.num(np.median(rates[-1]))}", share, cases, _verdict(share, cases, rules))]
    batches = list(mb["gradient_error"])
    errors = np.array([mb["gradient_error"][b] for b in batches])
    comparable = np.isfinite(errors).all(axis=0)
    decreasing = (np.diff(errors, axis=0) < 0).all(axis=0)
    share, cases = _share(decreasing, comparable)
    checks.append(ClaimCheck(
        "Larger batches estimate the gradient more accurately", source + " (a mini-batch gradient is an average "
                                                                         "over the batch: this checks the code)",
        f"the relative error |g_B - g| / |g| falls strictly from batch {batches[0]} to {batches[-1]}, at the point "
        f"full-batch GD reaches after {cfg.gradient_epochs} epochs",
        f"falls at {_of(share, cases)} learning rates; median error {fmt.num(np.nanmedian(errors[0]))} at batch "
        f"{batches[0]}, {fmt.num(np.nanmedian(errors[-1]))} at {batches[-1]}", share, cases,
        _by_construction(share, cases, rules)))
    return checks


def _sparse_check(sp: dict, cfg: SparseCriteria, rules: Verdict) -> ClaimCheck:
    gain = sp["adagrad"]["ratio"] / sp["gd"]["ratio"]
    share, cases = _share(gain >= cfg.min_gain, np.isfinite(gain))
    return ClaimCheck(
        "AdaGrad gives the parameters of sparse features larger effective updates",
        f"toy: softmax regression on {cfg.dataset}, {len(sp['etas'])} learning rates (AdaGrad's per-weight "
        f"normalisation equalises path lengths by its update rule: this checks the code)",
        f"(path length of rare-feature weights / common-feature weights) is at least {fmt.num(cfg.min_gain)}x "
        f"larger for AdaGrad than for GD",
        f"holds at {_of(share, cases)} learning rates; rare/common ratio median GD "
        f"{fmt.num(np.nanmedian(sp['gd']['ratio']))}"
        f", AdaGrad {fmt.num(np.nanmedian(sp['adagrad']['ratio']))}", share, cases,
        # AdaGrad divides each weight's step by the root of its own summed squared gradients, so on this problem
        # every weight's path length grows alike whatever the learning rate (ratio 1.00 at every rate measured):
        # the outcome follows from the update rule, not from data
        _by_construction(share, cases, rules))


def practice_checks(adam_answer, cells: pd.DataFrame, updates: pd.DataFrame, rules: Verdict) -> list[ClaimCheck]:
    """The claims judged on the sweep: Adam as the best default (``adam_answer``: the default track's answer at
    equal epochs), momentum against GD and RMSProp against AdaGrad in practice (``cells``: per cell, epochs to the
    target), stochastic GD's N updates per epoch (``updates``: ``batchmodes.updates_per_epoch``)."""
    checks = []
    if adam_answer is not None and adam_answer.measured and "adam" in adam_answer.family.mean_ranks.index:
        a, j = adam_answer, adam_answer.judgement
        verdict = CLAIM.word(is_the_pick(j, "adam"))
        n = a.family.n_blocks
        rank = fmt.num(a.val_ranks.get("adam", np.nan))
        measured = (f"validation recommends {a.recommended} (Adam's mean rank {rank} of {len(a.val_ranks)}); on "
                    f"test: {j.status}" + (", Adam significantly behind" if "adam" in j.behind else ""))
        checks.append(ClaimCheck(
            "Adam is the best default in practice", f"sweep: default hyperparameters, equal epochs, {n} datasets",
            "with default hyperparameters, validation recommends Adam and every other optimizer is significantly "
            "behind it on test (Iman-Davenport, then Wilcoxon-Holm over all pairs)",
            measured, 1.0 if verdict == SUPPORTED else 0.0, n, verdict))
    for fast, slow, claim in (("momentum", "gd", "Momentum moves faster than GD (in practice)"),
                              ("rmsprop", "adagrad",
                               "RMSProp reaches the target where AdaGrad does not (in practice)")):
        a = cells[cells["optimizer"] == fast].set_index(["dataset", "batch_size"])["epochs_to_target"]
        b = cells[cells["optimizer"] == slow].set_index(["dataset", "batch_size"])["epochs_to_target"]
        a, b = a.align(b, join="inner")
        if fast == "momentum":
            comparable, holds = np.isfinite(a) | np.isfinite(b), a < b
            criterion = "momentum reaches the dataset's target in fewer epochs than GD (tuned, same batch size)"
        else:
            comparable, holds = ~np.isfinite(b), np.isfinite(a)
            criterion = ("in cells where AdaGrad misses the dataset's target, RMSProp reaches it "
                         "(tuned, same batch size)")
        share, cases = _share(holds.to_numpy(), comparable.to_numpy())
        checks.append(ClaimCheck(claim, f"sweep: tuned track, {cases} comparable (dataset, batch size) cells",
                                 criterion, f"holds in {_of(share, cases)} cells", share, cases,
                                 _verdict(share, cases, rules)))
    stochastic = updates[updates["batch_size"] == "1"]
    share, cases = _share(stochastic["matches"].to_numpy(), np.ones(len(stochastic), bool))
    checks.append(ClaimCheck(
        "Stochastic GD makes N updates per epoch", "sweep: every evaluation run at batch size 1 (the batch "
                                                   "iterator cuts N batches of one: this checks the code)",
        "measured updates per epoch equal N, the training-set size, on every epoch of every run",
        f"equal on {_of(share, cases)} datasets", share, cases, _by_construction(share, cases, rules)))
    return checks


def check_all(claims: Claims, problem: ToyProblem, adam_answer=None, cells: pd.DataFrame | None = None,
              updates: pd.DataFrame | None = None) -> tuple[tuple[ClaimCheck, ...], dict]:
    """Every claim, in the lecture's order; and the raw toy measurements (for figures and tables)."""
    measured = evidence.measure(problem, claims)  # the lecture's numbers: the report only judges them
    checks = trajectory_checks(measured, claims, problem)
    if cells is not None and updates is not None:
        checks += practice_checks(adam_answer, cells, updates, claims.verdict)
    return tuple(checks), measured


def trajectory_checks(measured: dict, claims: Claims, problem: ToyProblem) -> list[ClaimCheck]:
    """The claims judged on the lecture's numbers (``evidence.measure``'s {"toy", "sparse", "minibatch"}, measured
    on ``problem`` and on conf/claims.yaml's sparse and minibatch settings), in the lecture's order."""
    rules = claims.verdict
    toy_rows = _toy_checks(measured["toy"], problem, claims.adagrad_stall.decay_ratio, rules)
    checks = toy_rows[:3] + [_sparse_check(measured["sparse"], claims.sparse, rules)] + toy_rows[3:]
    return checks + _minibatch_checks(measured["minibatch"], claims.minibatch, rules)


def toy_table(raw: dict) -> pd.DataFrame:
    """Every toy measurement behind the claims, one row per (problem, optimizer or batch size, learning rate)."""
    return pd.DataFrame(evidence.table(raw))
