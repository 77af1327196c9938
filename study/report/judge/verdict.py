"""The verdict: the answer at every budget and track, how stable it is, how it moves with the ROPE's width, whether
the defaults are enough, and the secondary families that say when it changes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.report.inputs import Grid
from study.report.judge import stability as stability_
from study.report.judge.answer import Answer, answers, differences, family_tests, rope_sensitivity, score_table
from study.report.judge.families import Family, secondary
from study.report.judge.scoring import BUDGETS, Scores
from study.schema.report import Report


@dataclass(frozen=True)
class Verdict:
    answers: dict[tuple[str, str], Answer]  # (budget, track) -> the answer
    stability: pd.DataFrame  # P(best) per budget, track, optimizer (and batch size of the recommended one)
    same_headline: dict[tuple[str, str], float]  # share of resamples that give the same optimizer and batch size
    sensitivity: pd.DataFrame  # P(equivalent) and status at each declared ROPE width
    defaults_enough: dict[str, dict]  # budget -> tuned vs default for the recommended optimizer
    families: dict[tuple, Family]  # secondary comparisons (track, kind, fixed) at equal epochs

    def answer(self, budget: str = "epochs", track: str = "tuned") -> Answer | None:
        return self.answers.get((budget, track))

    @property
    def recommended(self) -> str | None:
        """The optimizer recommended at equal epochs, tuned (chosen on validation)."""
        a = self.answer()
        return a.recommended if a else None


def defaults_enough(cells: pd.DataFrame, found: dict, spread: pd.Series, report: Report) -> dict:
    """Per budget: the recommended optimizer at its chosen batch size, tuned against its defaults (test, paired by
    dataset): are the defaults practically as good?"""
    out = {}
    for cost in BUDGETS:
        a = found.get((cost, "tuned"))
        if a is None or not a.measured or ("default" not in set(cells["track"])):
            continue
        key = (a.recommended, a.batch)
        datasets = list(a.family.scores.index)
        tuned = score_table(cells, f"test_{cost}", "tuned", datasets)[key]
        default = score_table(cells, f"test_{cost}", "default", datasets)[key]
        table = pd.DataFrame({"tuned": tuned, "default": default})
        never = 2 * table.replace(np.inf, np.nan).max(axis=1)
        result = family_tests(table, differences(cost, spread, never), a.rope, report.statistics)
        pair = result.pair("tuned", "default")
        sure = report.statistics.sure
        out[cost] = {"optimizer": a.recommended, "batch_size": a.batch, **pair,
                     "enough": pair["p_equivalent"] >= sure or pair["p_b_better"] >= sure}
    return out


def verdict(scores: Scores, grid: Grid, report: Report) -> Verdict:
    found = answers(scores.cells, scores.runs, scores.spread, grid.datasets, grid.optimizers, grid.batches, report)
    stable, same = [], {}
    for key, a in found.items():
        table, same[key] = stability_.stability(a, scores.runs, grid.datasets, grid.optimizers, grid.batches,
                                                report.stability.resamples, report.statistics.seed)
        stable.append(table)
    return Verdict(
        answers=found, stability=pd.concat(stable, ignore_index=True) if stable else pd.DataFrame(),
        same_headline=same,
        sensitivity=pd.concat([rope_sensitivity(a, report) for a in found.values()], ignore_index=True),
        defaults_enough=defaults_enough(scores.cells, found, scores.spread, report),
        families=secondary(scores.cells, scores.spread, grid.datasets, grid.optimizers, grid.batches, grid.tracks,
                           report))
