"""Every verdict the report gives, and the words for it, written once.

The answer, the lecture's claims and the published findings share these decisions:

- **Where a treatment stands against the chosen one** (``standing``): *behind* (significantly worse on test,
  Holm-corrected, after a significant omnibus test), *ahead* (significantly better), *equivalent* (P(within the
  ROPE) >= sure) or *unresolved*. The answer's ``judge`` asks it of every other treatment and names the status
  (winner, practically equivalent, cannot separate, validation and test disagree, or not measured); Choi's
  inclusion hierarchy asks it of each pair, Schmidt's "several defaults" of the best tuned optimizer.
- **Is X the pick?** (``is_the_pick``, on the answer's judgement): True when validation chose X and every other
  treatment is significantly behind it (or, ``alone=False``, X is the choice or practically equivalent to it),
  False when X is significantly behind the choice, None when the data cannot tell. The claim "Adam is the best
  default" and Sivaprasad's and Schmidt's findings ask it.
- **Evidence from a share of cases** (``by_share``): True at a share >= support, False at <= contradict, None in
  between or with fewer than min_cases (conf/claims.yaml's verdict block): the claims and Shallue's finding.
- **Whether a headline survives resampling** (``survival``): the share of bootstrap resamples that pick the same
  optimizer at the same batch size, against conf/report.yaml's ``stability.survives`` and ``mostly_survives``;
  and what a headline may name (``headline``): that one pair when it survives, else the smallest set of optimizers
  (and range of batch sizes) that together hold ``survives`` of the resamples.

A check's verdict needs evidence both ways: True is "supported" / "agrees", False "contradicted" / "disagrees", None
"inconclusive" / "cannot tell" (``CLAIM.word``, ``FINDING.word``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from study.report.judge import stats
from study.schema.report import Stability, Verdict

# where one treatment stands against the chosen one
BEHIND, AHEAD, SAME, UNSEPARATED = "behind", "ahead", "equivalent", "unresolved"
# the answer's statuses
WINNER, EQUIVALENT, UNRESOLVED, DISAGREE, NOT_MEASURED = (
    "winner", "practically equivalent", "cannot separate", "validation and test disagree", "not measured")
NOT_TESTED = "not tested"  # not measured, for a reason other than the sweep's records (one dataset, one treatment)
# a claim that holds by how the code is built: checked as a sanity check of the code, not evidence about optimizers
BY_CONSTRUCTION = "by construction"


@dataclass(frozen=True)
class Words:
    """How a check says what the evidence shows: for, against, or neither."""
    holds: str
    fails: str
    neither: str

    def word(self, evidence: bool | None) -> str:
        return self.neither if evidence is None else (self.holds if evidence else self.fails)


CLAIM = Words("supported", "contradicted", "inconclusive")  # the lecture's claims
FINDING = Words("agrees", "disagrees", "cannot tell")  # the published findings
SUPPORTED, CONTRADICTED, INCONCLUSIVE = CLAIM.holds, CLAIM.fails, CLAIM.neither
AGREES, DISAGREES, CANNOT_TELL = FINDING.holds, FINDING.fails, FINDING.neither
# how the verdict words its stability under resampling
SURVIVES, MOSTLY_SURVIVES, DOES_NOT_SURVIVE = "survives", "mostly survives", "does not survive"


@dataclass(frozen=True)
class Judgement:
    """What one family's tests say about the treatment chosen on validation."""
    status: str
    chosen: str | None
    behind: tuple = ()  # significantly worse on test than the chosen one
    equivalent: tuple = ()  # practically the same (P(ROPE) >= sure), not behind
    unresolved: tuple = ()  # neither: the data cannot separate them
    ahead: tuple = ()  # significantly better on test than the chosen one
    too_few: int = 0  # so few datasets that no corrected pairwise test could reach alpha (their number)
    alpha: float | None = None  # the level the pairs were tested at
    why: str = ""  # what a "not measured" lacks, when it is not the sweep's records (one dataset, one treatment)


def status(behind, equivalent, unresolved, ahead) -> str:
    """The status of a choice from where the others stand."""
    if ahead:
        return DISAGREE
    if not unresolved:
        return EQUIVALENT if equivalent else WINNER
    return UNRESOLVED


def too_few_datasets(n: int, pairs: int, alpha: float) -> bool:
    """Whether n datasets are too few for any Holm-corrected signed-rank test of ``pairs`` pairs to reach alpha:
    the smallest exact two-sided p, 2 / 2^n, times Holm's first factor."""
    return 2.0 / 2.0 ** n * max(pairs, 1) >= alpha


def standing(family: stats.FamilyResult, chosen: str, other: str, alpha: float, sure: float,
             omnibus_p: float | None = None) -> str:
    """Where ``other`` stands against ``chosen`` on test. Pairs are read only after a significant omnibus test
    (Demšar 2006); ``omnibus_p``, when given, is the omnibus p-value corrected across the primary families (Holm),
    read in place of the family's own."""
    pair = family.pair(chosen, other)
    gate = family.omnibus.pvalue if omnibus_p is None else omnibus_p
    if gate < alpha and pair["holm_p"] < alpha:
        return BEHIND if pair["median"] > 0 else AHEAD
    return SAME if pair["p_equivalent"] >= sure else UNSEPARATED


def judge(family: stats.FamilyResult, chosen: str | None, alpha: float, sure: float,
          omnibus_p: float | None = None) -> Judgement:
    if chosen is not None and family.scores.shape[1] < 2:
        return Judgement(NOT_MEASURED, chosen, why=f"{chosen} is the only one here, nothing to compare it with.")
    if chosen is not None and family.n_blocks < 2:
        return Judgement(NOT_MEASURED, chosen, why=f"{family.n_blocks} complete dataset(s): a test compares over "
                                                   f"at least two.")
    if chosen is None:
        return Judgement(NOT_MEASURED, chosen)
    where = {BEHIND: [], SAME: [], UNSEPARATED: [], AHEAD: []}
    for other in family.mean_ranks.index:
        if other != chosen:
            where[standing(family, chosen, other, alpha, sure, omnibus_p)].append(other)
    n = family.n_blocks
    return Judgement(status(**where), chosen, **{k: tuple(v) for k, v in where.items()},
                     too_few=n if too_few_datasets(n, len(family.pairs), alpha) else 0, alpha=alpha)


def is_the_pick(j: Judgement, treatment: str, alone: bool = True) -> bool | None:
    """Whether the tests make ``treatment`` the pick: True when validation chose it and every other treatment is
    significantly behind it on test (``alone``), or it is the choice or practically equivalent to it (not
    ``alone``); False when it is significantly behind the choice; None when the data cannot tell."""
    if treatment in j.behind:
        return False
    if alone:
        return True if j.chosen == treatment and j.status == WINNER else None
    return True if j.chosen == treatment or treatment in j.equivalent else None


def by_share(share: float, cases: int, rules: Verdict) -> bool | None:
    """Evidence from the share of comparable cases on which a criterion holds, with conf/claims.yaml's verdict
    thresholds (``rules``: support, contradict, min_cases)."""
    if cases < rules.min_cases or math.isnan(share):
        return None
    if share >= rules.support:
        return True
    if share <= rules.contradict:
        return False
    return None


def survival(share: float, stability: Stability) -> str:
    """How far a headline (an optimizer at a batch size) survives resampling: the share of resamples that pick it."""
    if share >= stability.survives:
        return SURVIVES
    return MOSTLY_SURVIVES if share >= stability.mostly_survives else DOES_NOT_SURVIVE


@dataclass(frozen=True)
class Headline:
    """What a budget's bold line may name: ``optimizers`` (most picked first) at ``batches`` (a range in the
    sweep's order), holding ``share`` of the resamples; ``single`` when that is one optimizer at one batch size."""
    optimizers: tuple
    batches: tuple
    share: float

    @property
    def single(self) -> bool:
        return len(self.optimizers) == 1 and len(self.batches) == 1


def headline(shares: dict, optimizers, batches, holds: float, pick: tuple | None = None) -> Headline | None:
    """What a bold line may name, from the share of resamples picking each (optimizer, batch size): the verdict's
    ``pick`` alone when it holds ``holds`` of them (conf/report.yaml's ``stability.survives``); else the fewest
    optimizers (the pick's first, then the most picked) that together hold it, at the narrowest range of batch
    sizes (in the sweep's order, the pick's among them) with which they still do. So a headline widens the
    verdict, never contradicts it. Ties go to the larger share, then to the sweep's order. Without a pick, the
    most picked pair stands in for it; None when nothing was picked."""
    optimizers, batches = list(optimizers), list(batches)
    share = lambda os, bs: sum(shares.get((o, b), 0.0) for o in os for b in bs)  # noqa: E731
    if pick is None:
        ranked_pairs = sorted(shares, key=lambda k: (-shares[k], optimizers.index(k[0]), batches.index(k[1])))
        if not ranked_pairs or shares[ranked_pairs[0]] <= 0:
            return None
        pick = ranked_pairs[0]
    enough = holds - 1e-12
    if shares.get(pick, 0.0) >= enough:
        return Headline((pick[0],), (pick[1],), shares[pick])
    ranked = [pick[0]] + sorted((o for o in optimizers if o != pick[0]),
                                key=lambda o: (-share([o], batches), optimizers.index(o)))
    chosen = next((ranked[:k] for k in range(1, len(ranked) + 1) if share(ranked[:k], batches) >= enough), ranked)
    ranges = [batches[i:j + 1] for i in range(len(batches)) for j in range(i, len(batches)) if pick[1] in
              batches[i:j + 1]]
    fitting = [r for r in ranges if share(chosen, r) >= enough] or [batches]
    best = min(fitting, key=lambda r: (len(r), -share(chosen, r), batches.index(r[0])))
    return Headline(tuple(chosen), tuple(best), share(chosen, best))
