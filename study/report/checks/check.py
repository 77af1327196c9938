"""The checks of one sweep: the lecture's claims (on its toy problem and on the sweep) and the published findings."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from study.report.checks import claims as claims_, literature
from study.report.checks.claims import ClaimCheck
from study.report.inputs import Grid, SweepResults
from study.report.judge.practice import Practice
from study.report.judge.scoring import Scores
from study.report.judge.tuning import Tuning
from study.report.judge.verdict import Verdict
from study.schema.report import Claims, Report, ToyProblem


@dataclass(frozen=True)
class Checks:
    claims: tuple[ClaimCheck, ...]  # one per claim, in the lecture's order
    toy: dict  # the toy measurements behind them: {"toy", "sparse", "minibatch"} (``claims.toy_table``)
    literature: pd.DataFrame  # one row per published finding (empty when conf/claims.yaml declares none)
    # the tables behind the findings, by the name of their tables/*.csv (``literature.findings``)
    literature_tables: dict = field(default_factory=dict)


def check(results: SweepResults, grid: Grid, scores: Scores, verdict: Verdict, tuning: Tuning, practice: Practice,
          report: Report, claims: Claims, problem: ToyProblem) -> Checks:
    to_target = practice.to_target
    found, toy = claims_.check_all(claims, problem, verdict.answer("epochs", claims.practice.adam_track),
                                   to_target[to_target["track"] == claims.practice.speed_track], practice.updates)
    findings, tables = literature.findings(claims.literature, claims.verdict, report, results, grid, scores,
                                           verdict, tuning) if claims.literature else (pd.DataFrame(), {})
    return Checks(found, toy, findings, tables)
