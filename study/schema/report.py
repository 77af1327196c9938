"""The shapes of conf/report.yaml (how the report judges a sweep) and conf/claims.yaml (the criteria of the
lecture's claims). The toy problem the claims are checked on is the lecture's own (conf/lecture.yaml): its start,
epochs and optimizer settings are read from there, not written twice."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from study.core import data, optim
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


class Stability(Frozen):
    resamples: Count
    band_resamples: Count


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

    def as_settings(self, lecture: dict) -> dict:
        """Plain data for the report's claims, the toy problem filled in from the lecture's settings (``lecture``,
        as ``study.lecture.toy.load_settings`` gives them): its start, epochs, and the lecture's learning rate,
        momentum constant, RMSProp's beta and eps."""
        settings = self.model_dump(exclude_none=True)
        hyper = lecture["optimizers"]
        settings["toy"].update(
            start=[lecture["start"]["w"], lecture["start"]["b"]], epochs=lecture["epochs"],
            lecture_eta=hyper["gd"]["eta"], gamma=hyper["momentum"]["gamma"], beta=hyper["rmsprop"]["beta"],
            eps=hyper["rmsprop"]["eps"])
        settings["minibatch"]["batch_sizes"] = list(self.minibatch.batch_sizes)
        return settings
