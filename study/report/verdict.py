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


def judge(family: Family, alpha: float, sure: float) -> Judgement:
    result = family.result
    versus = result.versus_control
    treatments = list(result.mean_ranks.index)
    if result.control is None or result.n_blocks < 2 or len(treatments) < 2:
        return Judgement(INCONCLUSIVE, result.control, treatments, [],
                         reason=f"{result.n_blocks} complete dataset(s) and {len(treatments)} treatment(s): nothing to test")
    sure_better = [t for t in versus.index if versus.loc[t, "p_control_better"] >= sure]
    equivalent = [t for t in versus.index if versus.loc[t, "p_equivalent"] >= sure]
    omnibus = f"{result.omnibus.test} {fmt.p(result.omnibus.pvalue)} over {result.n_blocks} datasets"
    if result.omnibus.pvalue >= alpha:
        return Judgement(INCONCLUSIVE, result.control, treatments, [], sure_better, equivalent,
                         reason=f"no significant difference ({omnibus})")
    beaten = [t for t in versus.index if versus.loc[t, "holm_p"] < alpha]
    top = [result.control] + [t for t in versus.index if t not in beaten]
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
    """How sure, in one sentence, from the Bayesian signed-rank test of the control against each other treatment
    (every probability is in the statistics tables)."""
    versus = family.result.versus_control
    if judgement.control is None or versus.empty:
        return ""
    label = family.labels
    better, equivalent = versus["p_control_better"], versus["p_equivalent"]
    weakest = better.idxmin()
    if better.min() == better.max():
        spread = f"is {fmt.prob(better.min())} against every other"
    else:
        spread = (f"ranges from {fmt.prob(better.min())} (against {label[weakest]}) to {fmt.prob(better.max())} "
                  f"(against {label[better.idxmax()]})")
    text = (f"By the Bayesian signed-rank test, the probability that {label[judgement.control]} is more than "
            f"{rope:.0%} better {spread}")
    close = [t for t in versus.index if equivalent[t] >= 0.5]
    if close:
        text += "; practically equivalent (within the ROPE) is the more likely reading for " + fmt.names(
            f"{label[t]} (P = {fmt.prob(equivalent[t])})" for t in close)
    return text + "."
