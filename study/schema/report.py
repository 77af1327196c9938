"""The shapes of conf/report.yaml (how the report judges a sweep) and conf/claims.yaml (the criteria of the
lecture's claims). The toy problem the claims are checked on is the lecture's own (conf/lecture.yaml): its start,
epochs and optimizer settings are read from there, not written twice."""
from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from study.core import data, optim
from study.schema.lecture import Lecture
from study.schema.loader import Count, Frozen, Name, Natural, Number, Positive, Unit
from study.schema.sweep import batch_sizes_from, names_from


def _only(implemented: str):
    def check(value: str) -> str:
        if value != implemented:
            raise ValueError(f"only {implemented!r} is implemented, got {value!r}")
        return value
    return Annotated[str, AfterValidator(check)]


def _three(above: float, what: str):
    def check(values: tuple) -> tuple:
        if len(values) != 3 or min(values) <= above:
            raise ValueError(f"must be {what} (the verdict's first), got {list(values)!r}")
        return values
    return Annotated[tuple[Number, ...], AfterValidator(check)]


class Statistics(Frozen):
    omnibus: _only("iman-davenport")
    posthoc: _only("wilcoxon-holm")
    alpha: Unit
    sure: Unit
    bayes_samples: Count
    bootstrap_resamples: Count
    confidence: Unit
    seed: Natural


class Rope(Frozen):
    loss_spread: _three(0, "three positive widths")
    accuracy_points: _three(0, "three positive widths")
    cost_ratio: _three(1, "three ratios above 1")

    def widths(self, budget: str) -> tuple[float, ...]:
        """The declared widths at a budget, as written: loss spreads at equal epochs, cost ratios at the others."""
        return self.loss_spread if budget == "epochs" else self.cost_ratio

    def on_scale(self, budget: str, width: float | None = None) -> float:
        """A width (default: the verdict's, the first) on the scale the budget's paired differences are ranked on:
        seed-to-seed spreads at equal epochs, the log2 of a cost ratio at the others."""
        width = self.widths(budget)[0] if width is None else width
        return width if budget == "epochs" else math.log2(width)


class Stability(Frozen):
    resamples: Count
    band_resamples: Count
    band_level: Unit
    survives: Unit
    mostly_survives: Unit

    @model_validator(mode="after")
    def _tiers(self):
        if self.mostly_survives > self.survives:
            raise ValueError(f"mostly_survives ({self.mostly_survives}) must not exceed survives ({self.survives})")
        return self


class Tunability(Frozen):
    margins: Annotated[tuple[Unit, ...], Field(min_length=1)]  # relative margins of a cell's best validation loss


class Target(Frozen):
    factor: Annotated[float, Field(ge=1, allow_inf_nan=False, strict=True)]


class Edge(Frozen):
    margin: Unit


class PerformanceProfile(Frozen):
    tau_max: Positive


class Figures(Frozen):
    dpi: Count


class Report(Frozen):
    statistics: Statistics
    rope: Rope
    stability: Stability
    target: Target
    budgets: Annotated[tuple[Count, ...], Field(min_length=1)]  # tuning budgets (trials per cell)
    tunability: Tunability
    edge: Edge
    profile: PerformanceProfile
    figures: Figures


# --- conf/claims.yaml ---------------------------------------------------------------------------------------------
Rates = Annotated[list[Positive], Field(min_length=1)]
Track = Literal["tuned", "default"]
Dataset = Annotated[str, AfterValidator(lambda name: names_from(name, set(data.DATASETS), "dataset names")[0])]
Optimizer = Annotated[str, AfterValidator(lambda name: names_from(name, set(optim.OPTIMIZERS), "optimizers")[0])]


class Verdict(Frozen):
    support: Unit
    contradict: Unit
    min_cases: Count = 1


class ToyCriteria(Frozen):
    """The claims' grid and thresholds on the lecture's toy problem (the problem itself: conf/lecture.yaml)."""
    etas: Rates
    raised_etas: Rates
    escape_fraction: Unit
    target_fraction: Unit
    min_update: Positive


class SparseCriteria(Frozen):
    dataset: Dataset
    seed: Natural
    epochs: Count
    etas: Rates
    quartile: Unit
    min_gain: Positive


class MinibatchCriteria(Frozen):
    dataset: Dataset
    seed: Natural
    epochs: Count
    batch_sizes: tuple
    etas: Rates
    max_rho: Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False, strict=True)]
    gradient_epochs: Count

    @field_validator("batch_sizes", mode="before")
    @classmethod
    def _batch_sizes(cls, value):
        return batch_sizes_from(value)


class Stall(Frozen):
    decay_ratio: Unit


class Practice(Frozen):
    adam_track: Track = "default"
    speed_track: Track = "tuned"


class Literature(Frozen):
    scope: Name
    track: Track
    small_budget: Count
    adaptive: Annotated[list[Optimizer], Field(min_length=1)]
    non_adaptive: Annotated[list[Optimizer], Field(min_length=1)]
    hierarchy: list[tuple[Optimizer, Optimizer]]
    proportional: tuple[Number, Number]
    level_off: Unit


class Claims(Frozen):
    verdict: Verdict
    toy: ToyCriteria
    sparse: SparseCriteria
    minibatch: MinibatchCriteria
    adagrad_stall: Stall
    practice: Practice = Practice()
    literature: Literature | None = None

    def toy_problem(self, lecture: Lecture) -> ToyProblem:
        """The toy problem the trajectory claims are checked on: the lecture's (conf/lecture.yaml: its start,
        epochs, GD's learning rate, momentum's gamma, RMSProp's beta and eps) with this file's grid and thresholds.
        ``lecture`` must set gd, momentum and rmsprop (``study.report.settings.load`` says so, naming the file)."""
        hyper = lecture.optimizers
        return ToyProblem(criteria=self.toy, start=(lecture.start.w, lecture.start.b), epochs=lecture.epochs,
                          lecture_eta=hyper.gd.eta, gamma=hyper.momentum.gamma, beta=hyper.rmsprop.beta,
                          eps=hyper.rmsprop.eps)


class ToyProblem(Frozen):
    """The claims' toy problem: the lecture's settings and the claims' criteria side by side (made by
    ``Claims.toy_problem``, never read from a file: the lecture's settings are written once, in its file)."""
    criteria: ToyCriteria
    start: tuple[Number, Number]  # (w, b)
    epochs: Count
    lecture_eta: Positive  # the lecture's learning rate (GD's)
    gamma: Number  # momentum's (and NAG's)
    beta: Number  # RMSProp's
    eps: Positive  # RMSProp's (and AdaGrad's, on the toy problem)
