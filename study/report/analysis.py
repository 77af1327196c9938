"""Everything the report says, computed once from a SweepResults: the document only formats it.

``analyse(results, settings)`` is a pure function: the same results and settings give the same Analysis, with
every table in a stable order (the config's order of datasets, optimizers and batch sizes). The Analysis is a
frozen record of a few sub-results, each a frozen record made by one function of its room and never changed after:

    scores     every evaluation run scored at every budget, and its cells       judge.scoring.score
    verdict    the answer per budget and track, its stability and sensitivity     judge.verdict.verdict
    tuning     what k trials buy, tunability, the gain over the defaults, edges   judge.tuning.tuning
    practice   targets, time to them, batch modes, performance profiles           judge.practice.practice
    checks     the lecture's claims and the published findings                    checks.check.check
"""
from __future__ import annotations

from dataclasses import dataclass

from study.report.checks.check import Checks, check
from study.report.inputs import Grid, SweepResults, canonical, grid as grid_of
from study.report.judge.practice import Practice, practice
from study.report.judge.scoring import Scores, score
from study.report.judge.tuning import Tuning, tuning
from study.report.judge.verdict import Verdict, verdict
from study.report.settings import Settings


@dataclass(frozen=True)
class Analysis:
    results: SweepResults  # in canonical order (``inputs.canonical``)
    settings: Settings
    grid: Grid
    scores: Scores
    verdict: Verdict
    tuning: Tuning
    practice: Practice
    checks: Checks


def analyse(results: SweepResults, settings: Settings) -> Analysis:
    results = canonical(results)
    report, grid = settings.report, grid_of(results)
    scores = score(results, grid, report)
    found = verdict(scores, grid, report)
    tuned = tuning(results, scores, found, grid, report)
    speed = practice(results, scores, found, grid, report)
    checked = check(results, grid, scores, found, tuned, speed, report, settings.claims, settings.toy)
    return Analysis(results, settings, grid, scores, found, tuned, speed, checked)
