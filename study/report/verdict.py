"""What a family of comparisons lets us say: a winner, a group we cannot split, or "we cannot tell".

The decision is frequentist and conservative: a treatment is named the winner only when the Friedman test says
the family differs at all (p < alpha) AND Holm-corrected Wilcoxon tests put every other treatment significantly
behind it. When the Friedman test is significant but some treatments cannot be separated from the best, those form
the top group. When Friedman is not significant, the verdict is "we cannot tell". The Bayesian signed-rank test
then says how sure: P(the control is better by more than the ROPE), P(practically equivalent), P(worse).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from study.report import fmt
from study.report.families import Family

WINNER, TOP_GROUP, INCONCLUSIVE = "winner", "top group", "inconclusive"


@dataclass
class Judgement:
    status: str  # WINNER, TOP_GROUP or INCONCLUSIVE
    control: str | None  # the best-ranked treatment (named winner only when status == WINNER)
    top: list[str]  # treatments we cannot separate from the control (the control first)
    beaten: list[str]  # treatments significantly behind the control
    sure_better: list[str] = field(default_factory=list)  # P(control better by > ROPE) >= sure
    equivalent: list[str] = field(default_factory=list)  # P(practically equivalent) >= sure
    reason: str = ""  # the numbers behind the status, one clause


def smallest_signed_rank_p(n: int) -> float:
    """The smallest two-sided p the exact Wilcoxon signed-rank test can give with n pairs: 2 / 2^n."""
    return 2.0 / 2.0 ** n if n > 0 else 1.0


def judge(family: Family, alpha: float, sure: float) -> Judgement:
    result = family.result
    versus = result.versus_control
    treatments = list(result.mean_ranks.index)
    n = result.n_blocks
    if result.control is None or n < 2 or len(treatments) < 2:
        return Judgement(INCONCLUSIVE, result.control, treatments, [],
                         reason=f"{n} complete dataset(s) and {len(treatments)} treatment(s): nothing to test")
    sure_better = [t for t in versus.index if versus.loc[t, "p_control_better"] >= sure]
    equivalent = [t for t in versus.index if versus.loc[t, "p_equivalent"] >= sure]
    omnibus = f"{result.omnibus.test} {fmt.p(result.omnibus.pvalue)} over {n} datasets"
    too_few = ""
    if smallest_signed_rank_p(n) * max(len(versus), 1) >= alpha:
        too_few = (f"; with {n} datasets the Holm-corrected signed-rank tests cannot reach p < {alpha} at all "
                   f"(the smallest possible p is {fmt.num(smallest_signed_rank_p(n))} before correction)")
    if result.omnibus.pvalue >= alpha:
        return Judgement(INCONCLUSIVE, result.control, treatments, [], sure_better, equivalent,
                         reason=f"no significant difference ({omnibus}){too_few}")
    beaten = [t for t in versus.index if versus.loc[t, "holm_p"] < alpha]
    top = [result.control] + [t for t in versus.index if t not in beaten]
    if not beaten:
        return Judgement(INCONCLUSIVE, result.control, treatments, [], sure_better, equivalent,
                         reason=f"{omnibus} finds a difference somewhere, but no treatment is significantly behind "
                                f"the best after Holm's correction (smallest Holm {fmt.p(versus['holm_p'].min())})"
                                f"{too_few}")
    if len(top) == 1:
        worst_p = versus["holm_p"].max()
        return Judgement(WINNER, result.control, top, beaten, sure_better, equivalent,
                         reason=f"{omnibus}; ahead of every other after Holm's correction (largest {fmt.p(worst_p)})")
    closest = versus.loc[top[1:], "holm_p"].min()
    return Judgement(TOP_GROUP, result.control, top, beaten, sure_better, equivalent,
                     reason=f"{omnibus}, but {fmt.names(top[1:])} cannot be separated from {result.control} "
                            f"(Holm {fmt.p(closest)} at best)")


def sentence(family: Family, judgement: Judgement) -> str:
    """One plain sentence: what the family says, with its numbers."""
    label = family.labels
    if judgement.status == WINNER:
        return f"**{label[judgement.control]}** is best: {judgement.reason}."
    if judgement.status == TOP_GROUP:
        group = fmt.names(f"**{label[t]}**" for t in judgement.top)
        behind = f"; {fmt.names(label[t] for t in judgement.beaten)} significantly behind" if judgement.beaten else ""
        return f"{group} share the top — {judgement.reason}{behind}."
    return f"**We cannot tell**: {judgement.reason} (best mean rank: {label.get(judgement.control, 'none')})."


def sureness(family: Family, judgement: Judgement, rope: float) -> str:
    """How sure, in one or two sentences, from the Bayesian signed-rank test of the control against the runner-up
    (the closest competitor: the question "is it the best?" is decided there) and the range over the others.

    The control is the best-ranked treatment of the same data, which biases these probabilities upward; they are
    reported as "how sure, given this choice", and never name a winner on their own."""
    versus = family.result.versus_control
    if judgement.control is None or versus.empty:
        return ""
    label = family.labels
    control = label[judgement.control]
    runner_up = versus.index[0]  # versus_control is ordered by mean rank
    v = versus.loc[runner_up]
    text = (f"Bayesian signed-rank test against the runner-up {label[runner_up]}: P({control} better by more than "
            f"{rope:.0%}) = {fmt.prob(v['p_control_better'])}, P(within {rope:.0%}) = {fmt.prob(v['p_equivalent'])}, "
            f"P(worse) = {fmt.prob(v['p_control_worse'])}")
    others = versus["p_control_better"].iloc[1:]
    if len(others):
        text += (f"; against the others P({control} better) is {fmt.prob(others.min())}"
                 + (f" to {fmt.prob(others.max())}" if others.max() != others.min() else ""))
    text += "."
    if family.result.n_blocks < 6:
        text += (f" With only {family.result.n_blocks} datasets these posteriors rest on very little data: do not "
                 f"read them as confidence.")
    return text
