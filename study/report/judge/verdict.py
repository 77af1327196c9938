"""The verdict: the answer at every budget and track, how stable it is and what its headline may say, how it moves
with the tolerance's width, whether the defaults are enough, and the secondary families that say when it
changes."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from study.report.inputs import Grid
from study.report.judge import stability as stability_
from study.report.judge import tolerance
from study.report.judge.answer import Answer, answers, differences, family_tests, score_table
from study.report.judge.decide import Headline
from study.report.judge.families import Family, secondary
from study.report.judge.scoring import BUDGETS, Scores
from study.schema.report import Report


@dataclass(frozen=True)
class Verdict:
    answers: dict[tuple[str, str], Answer]  # (budget, track) -> the answer
    stability: pd.DataFrame  # P(picked) per budget, track, optimizer, batch size and status (stability.COLUMNS)
    same_headline: dict[tuple[str, str], float]  # share of resamples that give the same optimizer and batch size
    headlines: dict[tuple[str, str], Headline]  # what each bold line may name (decide.headline)
    sensitivity: pd.DataFrame  # P(equivalent) and status at every multiple of the declared tolerance
    defaults_enough: dict[str, dict]  # budget -> tuned vs default for the recommended optimizer
    families: dict[tuple, Family]  # secondary comparisons (track, kind, fixed) at equal epochs: exploratory

    def answer(self, budget: str = "epochs", track: str = "tuned") -> Answer | None:
        return self.answers.get((budget, track))

    @property
    def recommended(self) -> str | None:
        """The optimizer recommended at equal epochs, tuned (chosen on validation)."""
        a = self.answer()
        return a.recommended if a else None

    @property
    def robust(self) -> tuple:
        """The optimizers every budget's tuned headline names."""
        return stability_.robust(self.headlines, BUDGETS)


def defaults_enough(cells: pd.DataFrame, found: dict, unit: pd.Series, caps: pd.DataFrame, report: Report) -> dict:
    """Per budget: the recommended optimizer at its chosen batch size, tuned against its defaults, paired by dataset.
    The advice ("the defaults are enough" / "tune it") is decided on VALIDATION: enough when the defaults are
    practically equivalent to the tuned hyperparameters there (P >= sure within the tolerance) or better. Test then
    says how that advice fares (``test_*``), and decides nothing."""
    out = {}
    for cost in BUDGETS:
        a = found.get((cost, "tuned"))
        if a is None or not a.measured or ("default" not in set(cells["track"])):
            continue
        key = (a.recommended, a.batch)
        datasets = list(a.family.scores.index)
        diff = differences(cost, unit, caps)
        pairs = {}
        for split in ("val", "test"):
            table = pd.DataFrame({"tuned": score_table(cells, f"{split}_{cost}", "tuned", datasets)[key],
                                  "default": score_table(cells, f"{split}_{cost}", "default", datasets)[key]})
            pairs[split] = family_tests(table, diff, a.rope, report.statistics).pair("tuned", "default")
        sure, val = report.statistics.sure, pairs["val"]
        out[cost] = {"optimizer": a.recommended, "batch_size": a.batch, **pairs["test"],
                     "val_p_equivalent": val["p_equivalent"], "val_p_default_better": val["p_b_better"],
                     "val_p_tuned_better": val["p_a_better"],
                     "enough": bool(val["p_equivalent"] >= sure or val["p_b_better"] >= sure)}
    return out


def verdict(scores: Scores, grid: Grid, report: Report) -> Verdict:
    found = answers(scores.cells, scores.runs, scores.unit, scores.caps, grid.datasets, grid.optimizers,
                    grid.batches, report)
    stable = stability_.stability(scores, found, list(grid.datasets), list(grid.optimizers), list(grid.batches),
                                  report)
    sensitivity = [tolerance.sensitivity(a, report) for a in found.values()]
    return Verdict(
        answers=found, stability=stable.table, same_headline=stable.same_headline, headlines=stable.headlines,
        sensitivity=pd.concat(sensitivity, ignore_index=True) if sensitivity else pd.DataFrame(
            columns=tolerance.SENSITIVITY_COLUMNS),
        defaults_enough=defaults_enough(scores.cells, found, scores.unit, scores.caps, report),
        families=secondary(scores.cells, scores.unit, grid.datasets, grid.optimizers, grid.batches, grid.tracks,
                           report))

