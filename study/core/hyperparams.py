"""What an optimizer's hyperparameter is, apart from its value: its meaning, where it is valid, its default, how it
is searched, and the one mapping between its lecture name and the name it is tuned under.

Averaging constants (momentum's gamma, RMSProp's beta, Adam's beta1 and beta2) live just below 1, where 0.9, 0.99
and 0.999 behave very differently; they are therefore tuned as x = 1 - value with x log-uniform (Choi et al. 2019),
and Optuna knows them as ``one_minus_<name>``. That mapping, and the conversion 1 - x, are written here once:

    search_name("gamma", one_minus=True) == "one_minus_gamma"      lecture_name("one_minus_gamma") == ("gamma", True)
    search_value(0.9, one_minus=True) == 1.0 - 0.9                 lecture_value(x, one_minus=True) == 1.0 - x
    searched_as("gamma", one_minus=True) == "1 - gamma"            (how a table or an axis shows it)

Whether a hyperparameter is searched as 1 - x is the search range's ``one_minus`` (conf/search_spaces.yaml), which
by default is the registry's ``averaging``: the functions take the flag, so conf keeps the last word.

The records are plain frozen dataclasses (the core imports no pydantic); ``SearchRange`` has the fields of
``study.schema.sweep.RangeSpec``, so ``RangeSpec(**dataclasses.asdict(r))`` makes it a configuration model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

ONE_MINUS = "one_minus_"  # Optuna's name of a hyperparameter searched as 1 - x: this prefix and its lecture name


def search_name(name: str, one_minus: bool) -> str:
    """The name a hyperparameter is tuned under (an Optuna parameter): ``one_minus_<name>`` when searched as 1 - x."""
    return ONE_MINUS + name if one_minus else name


def lecture_name(searched: str) -> tuple[str, bool]:
    """The inverse of ``search_name``: (the lecture's name, whether it is searched as 1 - x)."""
    return (searched[len(ONE_MINUS):], True) if searched.startswith(ONE_MINUS) else (searched, False)


def search_value(value, one_minus: bool):
    """The value as searched: x = 1 - value when searched as 1 - x, else the value (numbers or arrays)."""
    return 1.0 - value if one_minus else value


def lecture_value(x, one_minus: bool):
    """The hyperparameter's value from the searched x: 1 - x when searched as 1 - x, else x (numbers or arrays)."""
    return 1.0 - x if one_minus else x


def searched_as(name: str, one_minus: bool) -> str:
    """How a table, an axis or a warning names what was searched: ``1 - gamma`` or ``eta``."""
    return f"1 - {name}" if one_minus else name


@dataclass(frozen=True)
class Interval:
    """Where a hyperparameter is valid: low < value (or <= when ``low_closed``) and value < high (<= when
    ``high_closed``)."""
    low: float
    high: float = math.inf
    low_closed: bool = False
    high_closed: bool = False

    def __contains__(self, value: float) -> bool:
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return bool(above and below)

    def bounds(self) -> dict[str, float]:
        """The bounds as pydantic's ``Field`` (and annotated-types) take them: ``{"gt": 0}``, ``{"ge": 0, "lt": 1}``."""
        out = {("ge" if self.low_closed else "gt"): self.low}
        if math.isfinite(self.high):
            out["le" if self.high_closed else "lt"] = self.high
        return out

    def __str__(self) -> str:
        return f"{'[' if self.low_closed else '('}{self.low:g}, {self.high:g}{']' if self.high_closed else ')'}"


POSITIVE = Interval(0.0)  # a step size, a small constant: any positive number
FRACTION = Interval(0.0, 1.0, low_closed=True)  # the weight of the past in an average: 0 (none) up to, not at, 1


@dataclass(frozen=True)
class SearchRange:
    """A search range with the meaning of a conf/search_spaces.yaml entry (``study.schema.sweep.RangeSpec``): x
    between ``low`` and ``high`` (log-uniform unless ``log`` is false), the value x or, when ``one_minus``, 1 - x;
    or ``fixed``: the value itself, not tuned."""
    low: float | None = None
    high: float | None = None
    log: bool = True
    one_minus: bool = False
    fixed: float | None = None

    def values(self) -> tuple[float, float] | None:
        """The hyperparameter's smallest and largest value over the range (None when fixed)."""
        if self.fixed is not None:
            return None
        ends = sorted(lecture_value(x, self.one_minus) for x in (self.low, self.high))
        return ends[0], ends[1]


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter of one optimizer.

    name       the lecture's name (the rule's argument, the MLflow param, the conf key)
    symbol     the lecture's symbol (η, γ, β, ...), for figures
    meaning    what it does, in words
    default    the untuned value (the sweep's default track)
    valid      where the rule makes sense (an Interval)
    averaging  an averaging constant: a weight of the past just below 1, searched as 1 - x by default
    search     the fallback search range, used when conf/search_spaces.yaml has no block for the optimizer (conf wins)
    """
    name: str
    symbol: str
    meaning: str
    default: float
    valid: Interval
    search: SearchRange
    averaging: bool = False

    def __post_init__(self):
        if self.default not in self.valid:
            raise ValueError(f"{self.name}: default {self.default} outside its valid range {self.valid}")
        if self.search.one_minus != self.averaging:
            raise ValueError(f"{self.name}: an averaging constant is searched as 1 - x (and only such a constant)")
        reach = self.search.values()
        if reach is not None and not all(v in self.valid for v in reach):
            raise ValueError(f"{self.name}: search range {reach} outside its valid range {self.valid}")


def learning_rate(default: float, low: float, high: float) -> Hyperparameter:
    return Hyperparameter("eta", "η", "the learning rate: how far one update moves along its (scaled) gradient",
                          default, POSITIVE, SearchRange(low, high))


def averaging(name: str, symbol: str, meaning: str, default: float, low: float, high: float = 1.0) -> Hyperparameter:
    """An averaging constant; low and high bound x = 1 - value (high 1: the value may go down to 0, none)."""
    return Hyperparameter(name, symbol, meaning, default, FRACTION, SearchRange(low, high, one_minus=True),
                          averaging=True)


def epsilon(default: float = 1e-8) -> Hyperparameter:
    """eps, fixed unless a profile says ``tune_eps`` (then over conf's ``eps_tuned``, the same for every optimizer)."""
    return Hyperparameter("eps", "ε", "added to sqrt(v) so that a parameter with (almost) no gradient history gets a "
                                      "finite step", default, POSITIVE, SearchRange(fixed=default))
