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


class Statistics(Frozen):
    omnibus: _only("iman-davenport")
    posthoc: _only("wilcoxon-holm")
    alpha: Unit
    sure: Unit
    bayes_samples: Count
    bootstrap_resamples: Count
    confidence: Unit
    seed: Natural


BUDGETS = ("epochs", "updates", "seconds")  # the budgets a verdict is given at (study.report.judge.scoring)


class LossTolerance(Frozen):
    """At equal epochs: a loss difference in units of the dataset's SD of paired, same-seed differences of
    validation loss (``paired_sd`` of them), and an accuracy difference in points."""
    paired_sd: Positive
    accuracy_points: Positive


class CostTolerance(Frozen):
    """At equal updates or seconds: two costs to the target within this ratio of each other are the same."""
    ratio: Annotated[float, Field(gt=1, allow_inf_nan=False, strict=True)]


def _sensitivity(values: tuple) -> tuple:
    if not values or values[0] != 1.0 or values[-1] != 0.1 or any(b >= a for a, b in zip(values, values[1:])):
        raise ValueError(f"must fall from 1 (the declared tolerance) to 0.1 (a tenth of it), got {list(values)!r}")
    return values


class Tolerance(Frozen):
    """The equivalence tolerance per budget, on a paired scale, declared before looking (never set from test)."""
    epochs: LossTolerance
    updates: CostTolerance
    seconds: CostTolerance
    sensitivity: Annotated[tuple[Positive, ...], AfterValidator(_sensitivity)]

    def declared(self, budget: str, multiple: float = 1.0) -> float:
        """The tolerance as declared, times ``multiple``: paired SDs at equal epochs, a ratio at the others."""
        if budget == "epochs":
            return self.epochs.paired_sd * multiple
        return getattr(self, budget).ratio ** multiple

    def on_scale(self, budget: str, multiple: float = 1.0) -> float:
        """The tolerance on the scale the budget's paired differences are tested on: paired SDs of validation
        loss at equal epochs, the log2 of a cost ratio at the others."""
        width = self.declared(budget, multiple)
        return width if budget == "epochs" else math.log2(width)


def _budgets(values: tuple) -> tuple:
    unknown = [v for v in values if v not in BUDGETS]
    if unknown or len(set(values)) != len(values):
        raise ValueError(f"must be distinct budgets of {list(BUDGETS)!r}, got {list(values)!r}")
    return values


class Primary(Frozen):
    """The families the report's claims rest on (the tuned verdict at these budgets): their omnibus p-values are
    corrected together (Holm); every other family and table is exploratory."""
    families: Annotated[tuple[str, ...], Field(min_length=1), AfterValidator(_budgets)]


class Stability(Frozen):
    resamples: Count
    bayes_samples: Count  # posterior draws of each Bayesian test inside a resample
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
    tolerance: Tolerance
    primary: Primary
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
