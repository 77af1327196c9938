"""The report's configuration: the frozen models of conf/report.yaml (how to judge a sweep), conf/claims.yaml (the
criteria of the lecture's claims and the published findings) and conf/lecture.yaml (the toy problem the claims are
checked on), loaded once through ``study.schema`` and passed on as they are: nothing is copied or renamed, and what
the report derives from them is a method of the model (``Rope.on_scale``, ``Claims.toy_problem``).

A missing or malformed key is BadInput naming the file and the key.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from study.errors import BadInput
from study.schema import loader
from study.schema.lecture import Lecture
from study.schema.report import Claims, Report, ToyProblem

CONF = loader.CONF
TOY_OPTIMIZERS = ("gd", "momentum", "rmsprop")  # the claims' toy problem runs at their lecture settings


@dataclass(frozen=True)
class Settings:
    """The three models, side by side."""
    report: Report
    claims: Claims
    lecture: Lecture

    @property
    def toy(self) -> ToyProblem:
        return self.claims.toy_problem(self.lecture)


def load(conf_dir: str | Path = CONF) -> Settings:
    """conf/report.yaml, conf/claims.yaml and conf/lecture.yaml of ``conf_dir``."""
    conf_dir = Path(conf_dir)
    report = loader.load(Report, conf_dir / "report.yaml")
    claims = loader.load(Claims, conf_dir / "claims.yaml")
    lecture = loader.load(Lecture, conf_dir / "lecture.yaml")
    for name in TOY_OPTIMIZERS:
        if getattr(lecture.optimizers, name) is None:
            raise BadInput(f"{loader.shown(conf_dir / 'lecture.yaml')}: optimizers.{name}",
                           "missing: the report's claims are checked at the lecture's settings of gd, momentum "
                           "and rmsprop")
    return Settings(report, claims, lecture)
