"""The shape of conf/lecture.yaml: the lecture's toy problem (start, epochs, batch modes, each optimizer's settings)
and its figures. Every key is required: the lecture's settings are spelled out, never taken from elsewhere."""
from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import AfterValidator, Field, Strict, create_model, field_validator, model_validator

from study.core import optim
from study.schema.loader import Count, Frozen, Number, Positive
from study.schema.sweep import batch_sizes_from

Fraction = Annotated[float, Strict(), Field(allow_inf_nan=False, ge=0, lt=1)]  # the weight of the past in an average


def _at_least(n: int):
    return Annotated[int, Strict(), Field(ge=n)]


def _ordered(pair: tuple[float, float]) -> tuple[float, float]:
    if pair[0] >= pair[1]:
        raise ValueError(f"must be a pair [low, high] with low < high, got {list(pair)!r}")
    return pair


Pair = Annotated[tuple[Number, Number], AfterValidator(_ordered)]
HYPER_TYPES = {"eta": Positive, "eps": Positive, "gamma": Fraction, "beta": Fraction, "beta1": Fraction,
               "beta2": Fraction}


class Point(Frozen):
    w: Number
    b: Number


class Window(Frozen):
    w: Pair
    b: Pair


class Surface(Window):
    resolution: _at_least(10)


class SparseToy(Frozen):
    samples: _at_least(10)
    epochs: Count
    eta: Positive


class Animation(Frozen):
    frames: _at_least(2)
    fps: Count
    dpi: _at_least(30)


class Figures(Frozen):
    dpi: _at_least(30)
    surface: Surface
    window: Window
    zoom: Window
    initializations: Annotated[list[tuple[Number, Number]], Field(min_length=1)]  # [w, b] starts
    learning_rates: Annotated[list[Positive], Field(min_length=1)]
    learning_rate_window: Window
    momentum_epochs: _at_least(2)
    sparse: SparseToy
    animation: Animation


class _SomeOptimizers(Frozen):
    unknown_key: ClassVar[str] = "unknown optimizer"

    @model_validator(mode="after")
    def _at_least_one(self):
        if all(value is None for _, value in self):
            raise ValueError("must map optimizer names to their hyperparameters, got none")
        return self


def _optimizers_model():
    """Any of the registry's optimizers, each with every one of its hyperparameters written out (the registry's
    defaults are the sweep's default track, not the lecture's settings)."""
    fields = {name: (create_model(f"lecture_{name}", __base__=Frozen,
                                  **{h: (HYPER_TYPES.get(h, Positive), ...) for h in opt.defaults}) | None, None)
              for name, opt in optim.OPTIMIZERS.items()}
    return create_model("LectureOptimizers", __base__=_SomeOptimizers, **fields)


class Lecture(Frozen):
    start: Point
    epochs: Count
    batch_sizes: tuple
    optimizers: _optimizers_model()
    figures: Figures

    @field_validator("batch_sizes", mode="before")
    @classmethod
    def _batch_sizes(cls, value):
        return batch_sizes_from(value)

    def as_settings(self) -> dict:
        """Plain data for the lecture's code: optimizers absent from the file left out."""
        settings = self.model_dump()
        settings["optimizers"] = {k: v for k, v in settings["optimizers"].items() if v is not None}
        settings["batch_sizes"] = list(self.batch_sizes)
        return settings
