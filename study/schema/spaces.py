"""The shape of ``conf/search_spaces.yaml``: a tuned hyperparameter's range (``RangeSpec``) and the file's model,
made from the optimizer registry, so a new optimizer needs no change here."""
from __future__ import annotations

import math
from typing import ClassVar

from pydantic import create_model, model_validator

from study.core import optim
from study.schema.loader import Flag, Frozen, KeyProblem, Number, Positive


class RangeSpec(Frozen):
    """A tuned hyperparameter's range, or ``fixed``: value = x, or 1 - x when ``one_minus``."""
    low: Number | None = None
    high: Number | None = None
    log: Flag = True
    one_minus: Flag = False
    fixed: Positive | None = None

    @model_validator(mode="before")
    @classmethod
    def _a_number_is_fixed(cls, value):
        return {"fixed": value} if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _a_usable_range(self):
        if self.fixed is not None:
            return self
        for bound in ("low", "high"):
            if getattr(self, bound) is None:
                raise ValueError(f"missing {bound}")
        low, high = self.low, self.high
        if low >= high:
            raise ValueError(f"empty or inverted range: low {low} >= high {high}")
        if low < 0:  # learning rates, momenta and eps are all positive quantities
            raise KeyProblem("low", f"must be positive (not negative), got {low}")
        if (self.log or self.one_minus) and low <= 0:
            raise KeyProblem("low", f"must be positive for a log or 1 - x range, got {low}")
        if self.one_minus and high > 1:  # 1 itself is the value 0: no momentum, no averaging
            raise KeyProblem("high", f"must be at most 1 for a 1 - x range (below 1, or 1 for a value of 0), "
                                     f"got {high}")
        return self

    def stored(self) -> dict:
        """The range as the stores keep it (the sweep's record, config.yaml, the report's input): low and high NaN
        when fixed."""
        if self.fixed is not None:
            return {"low": math.nan, "high": math.nan, "log": True, "one_minus": False, "fixed": self.fixed}
        return {"low": self.low, "high": self.high, "log": self.log, "one_minus": self.one_minus, "fixed": None}

    @staticmethod
    def unstored(stored: dict) -> dict:
        """``stored()``'s mapping back as the entry a conf file would hold (to validate as a RangeSpec)."""
        if stored.get("fixed") is not None:
            return {"fixed": stored["fixed"]}
        return {k: stored[k] for k in ("low", "high", "log", "one_minus") if k in stored}


def search_spaces_model() -> type[Frozen]:
    """The model of conf/search_spaces.yaml, made from the optimizer registry: one optional block per optimizer
    with exactly its hyperparameters, and ``eps_tuned`` (the range eps is tuned over when a profile says so)."""
    blocks = {}
    for name, opt in optim.OPTIMIZERS.items():
        search = create_model(f"{name}_search", __base__=Frozen, **{h: (RangeSpec, ...) for h in opt.defaults})
        blocks[name] = (create_model(f"{name}_block", __base__=_Block, search=(search, ...)) | None, None)
    return create_model("SearchSpaces", __base__=_SpacesFile, eps_tuned=(RangeSpec | None, None), **blocks)


class _SpacesFile(Frozen):
    unknown_key: ClassVar[str] = "unknown optimizer or key"


class _Block(Frozen):
    unknown_key: ClassVar[str] = "unknown key (the defaults are the optimizer registry's: study/core/optim.py)"
