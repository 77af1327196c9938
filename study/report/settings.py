"""The report's settings: conf/report.yaml (how to judge) and conf/claims.yaml (the lecture's claims' criteria).

Loaded once through ``study.schema`` (the shapes: ``study.schema.report``), frozen; a missing or malformed key is
BadInput naming the file and the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from study.errors import BadInput
from study.schema import loader
from study.schema.lecture import Lecture
from study.schema.report import Claims, Report

CONF = loader.CONF


@dataclass(frozen=True)
class Settings:
    alpha: float = 0.05
    sure: float = 0.95
    rope_loss: tuple[float, ...] = (0.5, 0.25, 1.0)  # in seed-to-seed spreads; the first is the verdict's
    rope_accuracy: tuple[float, ...] = (1.0, 0.5, 2.0)  # percentage points
    rope_cost: tuple[float, ...] = (1.25, 1.1, 1.5)  # cost ratios
    stability_resamples: int = 1000
    band_resamples: int = 200  # bootstrap resamples of a random arm's trials for the best-of-k band
    bayes_samples: int = 50000
    bootstrap_resamples: int = 2000
    confidence: float = 0.95
    seed: int = 0
    target_factor: float = 1.1
    budgets: tuple[int, ...] = (1, 5, 20)
    edge_margin: float = 0.05
    tau_max: float = 16.0
    dpi: int = 90
    claims: dict = field(default_factory=dict, compare=False, hash=False)


def load(conf_dir: str | Path = CONF) -> Settings:
    """conf/report.yaml and conf/claims.yaml of ``conf_dir``; the claims' toy problem from its lecture.yaml."""
    conf_dir = Path(conf_dir)
    report = loader.load(Report, conf_dir / "report.yaml")
    claims = loader.load(Claims, conf_dir / "claims.yaml")
    toy_settings = loader.load(Lecture, conf_dir / "lecture.yaml").as_settings()
    for name in ("gd", "momentum", "rmsprop"):  # the claims' toy problem uses their lecture settings
        if name not in toy_settings["optimizers"]:
            raise BadInput(f"{loader.shown(conf_dir / 'lecture.yaml')}: optimizers.{name}",
                           "missing: the report's claims are checked at the lecture's settings of gd, momentum "
                           "and rmsprop")
    st, rope = report.statistics, report.rope
    return Settings(
        alpha=st.alpha, sure=st.sure, rope_loss=rope.loss_spread, rope_accuracy=rope.accuracy_points,
        rope_cost=rope.cost_ratio, stability_resamples=report.stability.resamples,
        band_resamples=report.stability.band_resamples, bayes_samples=st.bayes_samples,
        bootstrap_resamples=st.bootstrap_resamples, confidence=st.confidence, seed=st.seed,
        target_factor=report.target.factor, budgets=report.budgets, edge_margin=report.edge.margin,
        tau_max=report.profile.tau_max, dpi=report.figures.dpi, claims=claims.as_settings(toy_settings))
