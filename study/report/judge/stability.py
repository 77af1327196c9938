"""How stable the answer is: the whole verdict recomputed on bootstrap resamples of the datasets, of the
evaluation seeds within each dataset and of the tuning runs within each cell (Sivaprasad et al. 2020 report the
probability that each optimizer ranks first).

In every resample (``resample``), exactly as for the sweep: the targets, the loss unit, every cell's score at every
budget, each optimizer's batch size and the recommended optimizer by validation mean ranks; and the tests
(``vtests``): the omnibus test, all pairs by Wilcoxon with Holm, the primary families' omnibus p-values corrected
together, the Bayesian test with the declared tolerance, and so the status of the resample's choice. For reference,
also the optimizer that ranks first on test among the chosen cells (never a choice). A statement that holds in most
resamples of the sweep's own datasets, seeds and tuning runs is one a second sweep should repeat; the headline
(``decide.headline``) names only what holds in ``survives`` of them. The resamples are drawn from the report's seed,
so a rebuild gives the same numbers.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.report.judge import resample, vtests
from study.report.judge.decide import DISAGREE, EQUIVALENT, UNRESOLVED, WINNER, Headline, headline
from study.report.judge.scoring import BUDGETS, Scores
from study.schema.report import Report

STATUSES = {vtests.WINNER: WINNER, vtests.EQUIVALENT: EQUIVALENT, vtests.UNRESOLVED: UNRESOLVED,
            vtests.DISAGREE: DISAGREE}
CHUNK = 250  # resamples gathered at once: a few hundred fit in memory
COLUMNS = ["budget", "track", "kind", "optimizer", "batch_size", "status", "p_best", "p_best_test"]


@dataclass(frozen=True)
class Resampled:
    """One budget and track over every resample: the recommended optimizer, each optimizer's batch size, the
    optimizer first on test among the chosen cells, and the status the tests give (codes of ``vtests``)."""
    recommended: np.ndarray  # (R,)
    chosen: np.ndarray  # (R, O)
    test_first: np.ndarray  # (R,)
    status: np.ndarray  # (R,)


def _differences(budget: str, unit: np.ndarray, cap: np.ndarray):
    """The budget's paired differences on (R, X, D) arrays: loss units (the resample's own) or log2 cost ratios
    with a censored cost at the cap."""
    if budget == "epochs":
        u = unit[:, None, :]
        return lambda other, reference: np.where(other == reference, 0.0, (other - reference) / u)
    c = cap[:, None, :]

    def ratio(other, reference):
        o, r = np.where(np.isfinite(other), other, c), np.where(np.isfinite(reference), reference, c)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(o == r, 0.0, np.log2(o / r))
    return ratio


def _chunk(evidence: resample.Evidence, draws: resample.Draws, keys, report: Report, caps: dict) -> dict:
    """Every (budget, track) of one chunk of resamples: choices, then tests."""
    val_tuned = evidence.epochs_cube(draws, "val", "tuned")
    targets, unit = evidence.targets(val_tuned), evidence.unit(val_tuned)
    scored = {}
    for budget in sorted({b for b, _ in keys}, key=BUDGETS.index):
        if budget == "epochs":
            cubes = {(s, t): evidence.epochs_cube(draws, s, t) for s in ("val", "test") for t in evidence.tracks}
        else:
            cubes = evidence.cost_cubes(draws, budget, targets)
        for track in evidence.tracks:
            if (budget, track) in keys:
                scored[(budget, track)] = tuple(resample.cell_score(cubes[(s, track)], budget != "epochs")
                                                for s in ("val", "test"))
    st, tol = report.statistics, report.tolerance
    stage = {}
    for key, (val, test) in scored.items():
        chosen, recommended = resample.choices(val)
        test_at = np.take_along_axis(test, chosen[:, None, :, None], axis=3)[..., 0]  # test enters here
        difference = _differences(key[0], unit, caps[key[0]][draws.datasets])
        stage[key] = (chosen, recommended, test_at, difference, vtests.omnibus(test_at, difference),
                      vtests.pair_p(test_at, difference))
    gates = {key: s[4] for key, s in stage.items()}
    primary = [(b, "tuned") for b in report.primary.families if (b, "tuned") in stage]
    if primary:
        corrected = vtests.holm(np.stack([gates[k] for k in primary], axis=1))
        gates.update({k: corrected[:, i] for i, k in enumerate(primary)})
    out = {}
    for key, (chosen, recommended, test_at, difference, _, pairs) in stage.items():
        status = vtests.status(test_at, recommended, gates[key], pairs, difference, tol.on_scale(key[0]), st.alpha,
                               st.sure, report.stability.bayes_samples, st.seed) if test_at.shape[2] > 1 and \
            test_at.shape[1] > 1 else np.full(len(recommended), -1)
        out[key] = Resampled(recommended, chosen, resample.first(test_at), status)
    return out


def resample_verdict(scores: Scores, answers: dict, datasets, optimizers, batches, report: Report) -> dict:
    """(budget, track) -> ``Resampled`` over conf/report.yaml's ``stability.resamples``, for every measured
    answer."""
    keys = [k for k, a in answers.items() if a.measured and a.recommended is not None]
    if not keys or len(datasets) < 1:
        return {}
    evidence = resample.Evidence(scores, datasets, optimizers, batches, report.target.factor)
    cap_table = scores.caps.set_index(["dataset", "budget"])["cap"]
    caps = {b: np.array([float(cap_table.get((d, b), np.nan)) for d in datasets]) for b in BUDGETS}
    rng = np.random.default_rng(report.statistics.seed)
    parts = []
    for start in range(0, report.stability.resamples, CHUNK):
        draws = resample.draw(rng, min(CHUNK, report.stability.resamples - start), evidence.layout)
        parts.append(_chunk(evidence, draws, keys, report, caps))
    return {k: Resampled(*(np.concatenate([getattr(p[k], f) for p in parts]) for f in
                           ("recommended", "chosen", "test_first", "status"))) for k in keys}


def pick_shares(r: Resampled, optimizers, batches) -> dict:
    """(optimizer, batch size) -> the share of resamples whose recommendation it is."""
    picked = Counter(zip(r.recommended.tolist(), r.chosen[np.arange(len(r.recommended)), r.recommended].tolist()))
    return {(optimizers[o], batches[b]): n / len(r.recommended) for (o, b), n in picked.items()}


@dataclass(frozen=True)
class Stability:
    table: pd.DataFrame  # P(picked) per optimizer, per batch size of the recommended one, per status (COLUMNS)
    same_headline: dict  # (budget, track) -> share of resamples with the verdict's optimizer at its batch size
    headlines: dict  # (budget, track) -> decide.Headline: what the bold line may name
    shares: dict  # (budget, track) -> {(optimizer, batch size): share of resamples picking it}


def stability(scores: Scores, answers: dict, datasets, optimizers, batches, report: Report) -> Stability:
    found = resample_verdict(scores, answers, datasets, optimizers, batches, report)
    rows, same, heads, shares = [], {}, {}, {}
    for key, r in found.items():
        a, (budget, track) = answers[key], key
        o_star = optimizers.index(a.recommended)
        rows += [{"budget": budget, "track": track, "kind": "optimizer", "optimizer": o, "batch_size": "",
                  "status": "", "p_best": float(np.mean(r.recommended == i)),
                  "p_best_test": float(np.mean(r.test_first == i))} for i, o in enumerate(optimizers)]
        rows += [{"budget": budget, "track": track, "kind": "batch_size", "optimizer": a.recommended,
                  "batch_size": b, "status": "", "p_best": float(np.mean(r.chosen[:, o_star] == j)),
                  "p_best_test": np.nan} for j, b in enumerate(batches)]
        rows += [{"budget": budget, "track": track, "kind": "status", "optimizer": "", "batch_size": "",
                  "status": word, "p_best": float(np.mean(r.status == code)), "p_best_test": np.nan}
                 for code, word in STATUSES.items()]
        shares[key] = pick_shares(r, optimizers, batches)
        same[key] = shares[key].get((a.recommended, a.batch), 0.0)
        heads[key] = headline(shares[key], optimizers, batches, report.stability.survives,
                              (a.recommended, a.batch))
    return Stability(pd.DataFrame(rows, columns=COLUMNS), same, heads, shares)


def robust(headlines: dict[tuple, Headline], budgets) -> tuple:
    """The optimizers every budget's tuned headline names (what is robust across budgets), in the first
    budget's order."""
    sets = [headlines.get((b, "tuned")) for b in budgets]
    sets = [h for h in sets if h is not None]
    if not sets:
        return ()
    return tuple(o for o in sets[0].optimizers if all(o in h.optimizers for h in sets[1:]))
