"""The shapes of a sweep profile (``conf/sweep/<name>.yaml``) and of ``conf/search_spaces.yaml``.

Checks that need no data live here; those that do (a batch size larger than every training set, a split too small
for a dataset's classes, the memory the largest cell needs) are made by ``study.sweep.config`` once the datasets
are known. Names are checked against the numeric core's registries (datasets, optimizers), so a new optimizer or
dataset needs no change here.

Every count has an upper bound next to its field, with its reason: large enough for any study of small networks
on small datasets (the shipped profiles sit far below each), small enough that a typo (``trials=1000000000000``)
is refused in one line instead of running for ever or running out of memory after the stores were created. What
the bounds cannot see (a product of counts, each within its bound) the memory estimate does.
"""
from __future__ import annotations

import math
import re
from typing import Annotated, ClassVar, Literal

from pydantic import Strict, create_model, field_validator, model_validator

from study.core import batches, data, nn, optim
from study.schema.loader import Count, Flag, Frozen, KeyProblem, Natural, Number, Positive, at_most

LIST_KEYS = {"datasets", "optimizers", "batch_sizes", "network.hidden"}

# --- the bounds, each with its reason -------------------------------------------------------------------------
MAX_TRIALS = 10_000  # per cell and arm
MAX_EPOCHS = 10_000
MAX_NAME = 100
SEED_LIMIT = 2**32  # numpy's legacy RandomState, which scikit-learn's random_state seeds, takes 0 <= seed < 2**32
SAMPLER_SEED_LIMIT = 2**31  # study.sweep.tuning.studies derives each cell's sampler seed modulo 2**31
Trials = Annotated[Count, at_most(MAX_TRIALS, "each trial is an Optuna record and an MLflow run; the shipped "
                                              "profiles ask 4 to 50 per cell")]
Epochs = Annotated[Count, at_most(MAX_EPOCHS, "over 30 times the longest the shipped profiles train (300); every "
                                              "epoch is a point on every logged curve")]
Population = Annotated[Count, at_most(1024, "K networks train in one stacked pass; make bench measures the gain "
                                            "levelling off by K = 16, and TPE hears nothing until all K end")]
Width = Annotated[Count, at_most(4096, "the study's scope is small networks on small tabular sets")]
EvalSeeds = Annotated[Count, at_most(1000, "each evaluation seed retrains both tracks of every cell; the shipped "
                                           "profiles use 2 to 10")]
TuningSeed = Annotated[Natural, at_most(SEED_LIMIT - 1, "it seeds scikit-learn's split, whose seeds are 32-bit",
                                        "below 2**32")]
SamplerSeed = Annotated[Natural, at_most(SAMPLER_SEED_LIMIT - 1, "each cell's sampler seed is derived from it modulo "
                                                                 "2**31, so larger seeds would repeat smaller ones",
                                         "below 2**31")]
StartupTrials = Annotated[Natural, at_most(MAX_TRIALS, "no cell has more trials than that")]
WarmupEpochs = Annotated[Natural, at_most(MAX_EPOCHS, "no trial trains more epochs than that")]
LeaseSeconds = Annotated[Positive, at_most(86_400, "a dead worker's cell waits this long before another worker "
                                                   "takes it over: a day at most")]
# A sweep's name names a directory (reports/<name>/), the journal file runs/optuna/<name>.journal, the MLflow
# experiment and every Optuna study: only characters that are safe in all of them, never "." or "..".
SAFE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


def names_from(value, known, what: str) -> tuple[str, ...]:
    """A non-empty list of distinct known names (one name alone may be written without the list)."""
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"must be a non-empty list of {what}, got {value!r}")
    for v in value:
        if v not in known:
            raise ValueError(f"unknown name {v!r}; choose from {', '.join(sorted(known))}")
    if len(set(value)) != len(value):
        raise ValueError("lists a name twice")
    return tuple(value)


def batch_sizes_from(value) -> tuple:
    """A non-empty list of distinct batch sizes, each 'full' or a positive integer."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"must be a non-empty list of 'full' or positive integers, got {value!r}")
    sizes = tuple(batches.parse_batch_size(v) for v in value)
    if len(set(map(str, sizes))) != len(sizes):
        raise ValueError("lists a batch size twice")
    return sizes


def _as_default(value):
    """One number for every name is the mapping ``{default: number}``."""
    return {"default": value} if not isinstance(value, dict) else {str(k): v for k, v in value.items()}


class Network(Frozen):
    hidden: tuple[Width, ...] = (32,)
    activation: str = "relu"  # one of the network's (study.core.nn.ACTIVATIONS)
    MAX_LAYERS: ClassVar[int] = 16  # small networks: the lecture's chain rule needs one hidden layer, a study a few

    @field_validator("hidden", mode="before")
    @classmethod
    def _one_layer_alone(cls, value):
        return [value] if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("hidden")
    @classmethod
    def _few_layers(cls, value):
        if len(value) > cls.MAX_LAYERS:
            raise ValueError(f"must have at most {cls.MAX_LAYERS} hidden layers (the study's scope is small "
                             f"networks on small tabular sets), got {len(value)}")
        return value

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, value):
        if value not in nn.ACTIVATIONS:
            raise ValueError(f"must be one of {', '.join(nn.ACTIVATIONS)}, got {value!r}")
        return value


class Sampler(Frozen):
    name: Literal["tpe", "random"] = "tpe"
    seed: SamplerSeed = 0
    n_startup_trials: StartupTrials = 5


class Pruner(Frozen):
    name: Literal["median", "none"] = "median"
    n_startup_trials: StartupTrials = 5
    n_warmup_steps: WarmupEpochs = 5


class Split(Frozen):
    val: Positive = 0.2
    test: Positive = 0.2

    @model_validator(mode="after")
    def _leaves_a_training_set(self):
        if self.val + self.test >= 0.9:
            raise ValueError("validation and test leave too little to train on")
        return self


class Profile(Frozen):
    """A sweep: the grid (datasets x optimizers x batch sizes), the budget and the protocol."""
    name: Annotated[str, Strict()]  # path-safe: see SAFE_NAME
    datasets: tuple[str, ...]
    optimizers: tuple[str, ...]
    batch_sizes: tuple[str, ...]  # "full" or the number as text: the MLflow tag's spelling
    trials: Trials
    epochs: dict[str, Epochs]  # dataset (or "default") -> epochs; one number is every dataset's
    seeds: EvalSeeds  # evaluation seeds 0..seeds-1
    tuning_seed: TuningSeed = 10_000
    population: dict[str, Population] = {"default": 1}  # batch size (or "default") -> networks trained together
    network: Network = Network()
    sampler: Sampler = Sampler()
    pruner: Pruner = Pruner()
    random_arm: Flag = False
    tune_eps: Flag = False
    split: Split = Split()
    lease_seconds: LeaseSeconds = 120.0
    # a CSV dataset's rows with a missing value: refused (one line naming the column), or dropped with a warning
    missing_values: Literal["refuse", "drop"] = "refuse"

    @field_validator("name")
    @classmethod
    def _path_safe(cls, value: str):
        value = value.strip()
        if len(value) > MAX_NAME or not SAFE_NAME.fullmatch(value):
            shown = repr(value) if len(value) <= 40 else f"{value[:20]!r}... ({len(value)} characters)"
            raise ValueError(f"must be 1 to {MAX_NAME} letters, digits, '-', '_' or '.', beginning and ending with "
                             f"a letter or digit (it names reports/<name>/ and the stores' records), got {shown}")
        return value

    @field_validator("datasets", mode="before")
    @classmethod
    def _known_datasets(cls, value):
        """Bundled names and ``csv:PATH`` files (the path made absolute: study.core.data.canonical_name), no two
        shown under one name (a CSV file is shown as its stem)."""
        value = [value] if isinstance(value, str) else value
        is_file = lambda v: isinstance(v, str) and v.startswith(data.CSV)  # noqa: E731
        if isinstance(value, (list, tuple)):
            value = [data.canonical_name(v) if is_file(v) else v for v in value]
        files = {v for v in value if is_file(v)} if isinstance(value, list) else set()
        bundled = set(data.DATASETS) - {"toy"}
        for v in value if isinstance(value, list) else ():
            if not isinstance(v, str) or (v not in bundled and not is_file(v)):
                comma = (" (a path cannot contain a comma: lists on the command line are split at commas)"
                         if files else "")
                raise ValueError(f"unknown name {v!r}; choose from {', '.join(sorted(bundled))}, or csv:PATH for "
                                 f"a CSV file{comma}")
        names = names_from(value, bundled | files, "dataset names (or csv:PATH for a CSV file)")
        shown = {}
        for name in names:
            other = shown.setdefault(data.display_name(name), name)
            if other != name:
                raise ValueError(f"{other!r} and {name!r} would both be shown as {data.display_name(name)!r}; "
                                 f"rename one file")
        return names

    @field_validator("optimizers", mode="before")
    @classmethod
    def _known_optimizers(cls, value):
        return names_from(value, set(optim.OPTIMIZERS), "optimizer names")

    @field_validator("batch_sizes", mode="before")
    @classmethod
    def _batch_sizes(cls, value):
        return tuple(str(b) for b in batch_sizes_from(value))

    @field_validator("epochs", "population", mode="before")
    @classmethod
    def _one_number_for_all(cls, value):
        return _as_default(value)

    @model_validator(mode="after")
    def _seeds_apart_and_a_value_per_name(self):
        if self.tuning_seed < self.seeds:
            raise KeyProblem("tuning_seed", f"must differ from the evaluation seeds 0..{self.seeds - 1}")
        # entries for names that exist but are not swept are kept for other grids (``datasets=iris`` with a profile
        # that pins fifteen datasets' epochs); a name that exists nowhere is a typo
        # a CSV dataset's epochs are keyed by the name it is shown by (its stem: a path's dots would split the key)
        for key, swept, exists in (("epochs", tuple(map(data.display_name, self.datasets)),
                                    lambda n: n in data.DATASETS),
                                   ("population", self.batch_sizes, _is_batch_size)):
            given = getattr(self, key)
            for name in sorted(set(given) - set(swept) - {"default"}):
                if not exists(name):
                    raise KeyProblem(f"{key}.{name}", f"not in the sweep; names: {', '.join(swept)}")
            for name in swept:
                if name not in given and "default" not in given:
                    raise KeyProblem(key, f"no value for {name} and no default")
        return self

    def per_name(self, key: str) -> dict:
        """``epochs`` or ``population`` for each swept name."""
        given, swept = getattr(self, key), self.datasets if key == "epochs" else self.batch_sizes
        shown = data.display_name if key == "epochs" else str
        return {name: given.get(shown(name), given.get("default")) for name in swept}


def _is_batch_size(name: str) -> bool:
    try:
        batches.parse_batch_size(name)
        return True
    except ValueError:
        return False


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

    @property
    def bounds(self) -> tuple:
        """(low, high, log, one_minus, fixed) as ``study.sweep.config.Range`` takes them."""
        if self.fixed is not None:
            return math.nan, math.nan, True, False, self.fixed
        return self.low, self.high, self.log, self.one_minus, None


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
