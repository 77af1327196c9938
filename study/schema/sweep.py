"""The shapes of a sweep profile (``conf/sweep/<name>.yaml``) and of ``conf/search_spaces.yaml``, and ``Sweep``: a
profile with the search space of each of its optimizers, which is what the sweep's code is given and what it derives
everything from (its cells, its hash, the record it keeps in the stores).

Checks that need no data live here; those that do (a batch size larger than every training set, a split too small
for a dataset's classes) are made by ``study.sweep.config`` once the datasets are known, and the memory the largest
cell needs by ``study.sweep.memory``. Names are checked against the numeric core's registries (datasets,
optimizers), so a new optimizer or dataset needs no change here.

Every count has an upper bound next to its field, with its reason: large enough for any study of small networks
on small datasets (the shipped profiles sit far below each), small enough that a typo (``trials=1000000000000``)
is refused in one line instead of running for ever or running out of memory after the stores were created. What
the bounds cannot see (a product of counts, each within its bound) the memory estimate does.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Annotated, ClassVar, Literal

from pydantic import Field, Strict, field_validator, model_validator

from study.core import batches, data, nn, optim
from study.schema import loader
from study.schema.loader import Count, Flag, Frozen, KeyProblem, Natural, Positive, at_most
from study.schema.spaces import RangeSpec, search_spaces_model  # noqa: F401 (the sweep's ranges; config reads them here)

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
# a share of a trial's epochs: 0 prunes from the first epoch on, 1 would never prune (say pruner.name=none instead)
WarmupFraction = Annotated[float, Strict(), Field(allow_inf_nan=False, ge=0, lt=1)]
TuningRuns = Annotated[Count, at_most(20, "each tuning run repeats a cell's TPE search; the shipped profiles run 2 "
                                          "or 3, enough for the bootstrap to see tuning's own spread")]
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
    warmup_fraction: WarmupFraction = 0.2  # no trial is pruned before this share of its epochs (warmup_epochs)

    def warmup_epochs(self, epochs: int) -> int:
        """The epochs a trial of ``epochs`` trains before the pruner may stop it: the fraction of them, rounded up."""
        return math.ceil(self.warmup_fraction * epochs - 1e-9)


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
    tuning_runs: TuningRuns = 2  # independent TPE searches per cell, run r on split seed tuning_seed + r
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
        return data.dataset_names(value)  # bundled names and csv:PATH files, no two shown alike

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
        if self.tuning_seed + self.tuning_runs - 1 >= SEED_LIMIT:  # run r splits with tuning_seed + r
            raise KeyProblem("tuning_seed", f"plus tuning_runs - 1 must be below 2**32 (run r splits with "
                                            f"tuning_seed + r), got {self.tuning_seed} and {self.tuning_runs} runs")
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


class Sweep(Frozen):
    """A sweep as it runs: its profile as read, and the search space of each of its optimizers (conf's block for it,
    else the registry's fallback; eps over ``eps_tuned`` when the profile tunes it: ``study.sweep.config``).

    The record the stores keep of it (``stored``: the Optuna storage's ``<sweep>/_meta``, each cell run's
    config.yaml, what the report reads) is the flat mapping the sweep has always written, and ``hash`` is the hash of
    that mapping: a sweep's stores stay readable and resumable across versions of this code."""
    profile: Profile
    spaces: dict[str, dict[str, RangeSpec]]  # optimizer -> hyperparameter -> range, for the profile's optimizers
    source: str = ""  # the profile's file, as given (where it lives is not part of the hash)
    # csv:PATH -> the file's digest (study.core.data.describe), one per CSV dataset: the file's content is part of
    # what determines the results, so an edited file is another sweep (another hash), refused under the old name
    digests: dict[str, str] = {}

    @model_validator(mode="after")
    def _a_space_per_optimizer_and_a_digest_per_file(self):
        for o in self.profile.optimizers:
            if set(self.spaces.get(o, {})) != set(optim.OPTIMIZERS[o].hyper):
                raise KeyProblem(f"spaces.{o}", f"must cover exactly {', '.join(optim.OPTIMIZERS[o].hyper)}")
        if set(self.digests) != set(self.csv_datasets):
            raise KeyProblem("digests", f"must name exactly the CSV datasets "
                                        f"({', '.join(self.csv_datasets) or 'none'}), got {', '.join(self.digests)}")
        return self

    @property
    def csv_datasets(self) -> tuple[str, ...]:
        """The datasets that are files (csv:PATH), in the profile's order."""
        return tuple(d for d in self.profile.datasets if data.csv_path(d))

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def seeds(self) -> tuple[int, ...]:
        """The evaluation seeds: 0 .. profile.seeds - 1."""
        return tuple(range(self.profile.seeds))

    def cells(self) -> list[tuple[str, str, str]]:
        """The units of work, in a fixed order: (dataset, optimizer, batch size)."""
        p = self.profile
        return [(d, o, b) for d in p.datasets for o in p.optimizers for b in p.batch_sizes]

    def epochs_of(self, dataset: str) -> int:
        """The epochs every run of this dataset trains (a CSV dataset's are keyed by its stem: Profile.per_name)."""
        given = self.profile.epochs
        return given.get(data.display_name(dataset), given.get("default"))

    def population_of(self, batch_size: str) -> int:
        """How many networks of a cell at this batch size train together (K)."""
        given = self.profile.population
        return given.get(str(batch_size), given.get("default"))

    def defaults(self, optimizer: str) -> dict[str, float]:
        """The untuned track's hyperparameters: the optimizer registry's defaults."""
        return {name: float(value) for name, value in optim.OPTIMIZERS[optimizer].defaults.items()}

    def stored(self) -> dict:
        """The mapping the stores keep (plain JSON types; keys in the order the sweep has always written them).

        Its flat keys (``pruner_warmup_fraction`` for ``pruner.warmup_fraction``, ``val_fraction`` for ``split.val``,
        ...) exist here only: earlier sweeps' stores hold them, the report reads them, and the hash that names a
        sweep (pinned per profile in tests/test_profile_input.py) is computed from them."""
        p = self.profile
        flat = {"name": p.name, "datasets": p.datasets, "optimizers": p.optimizers, "batch_sizes": p.batch_sizes,
                "trials": p.trials, "epochs": p.per_name("epochs"), "seeds": self.seeds, "tuning_seed": p.tuning_seed,
                "population": p.per_name("population"), "hidden": p.network.hidden,
                "activation": p.network.activation, "sampler": p.sampler.name, "sampler_seed": p.sampler.seed,
                "n_startup_trials": p.sampler.n_startup_trials, "pruner": p.pruner.name,
                "pruner_startup_trials": p.pruner.n_startup_trials, "pruner_warmup_fraction": p.pruner.warmup_fraction,
                "tuning_runs": p.tuning_runs,
                "random_arm": p.random_arm, "tune_eps": p.tune_eps, "val_fraction": p.split.val,
                "test_fraction": p.split.test, "lease_seconds": p.lease_seconds,
                **self._file_keys(),
                "search_spaces": {o: {h: r.stored() for h, r in self.spaces[o].items()} for o in p.optimizers},
                "defaults": {o: self.defaults(o) for o in p.optimizers}, "source": self.source}
        return json.loads(json.dumps(flat, default=str))

    def _file_keys(self) -> dict:
        """A CSV dataset's missing-value rule and the files' digests, in the record and so in the hash; a sweep
        without a file has neither (they decide nothing there), which keeps its hash the one it always had."""
        if not self.csv_datasets:
            return {}
        return {"missing_values": self.profile.missing_values, "digests": dict(self.digests)}

    @property
    def hash(self) -> str:
        """A short hash of everything that determines the results (not where the file lives)."""
        flat = self.stored()
        flat.pop("source", None)
        return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def from_stored(cls, stored: dict, where: str = "the sweep's stored config") -> Sweep:
        """The sweep whose ``stored()`` mapping this is (a key an older sweep did not write takes the profile's
        default); a mapping that is no sweep's is one BadInput line naming ``where`` and the key."""
        keys = {"network": {"hidden": "hidden", "activation": "activation"},
                "sampler": {"name": "sampler", "seed": "sampler_seed", "n_startup_trials": "n_startup_trials"},
                "pruner": {"name": "pruner", "n_startup_trials": "pruner_startup_trials",
                           "warmup_fraction": "pruner_warmup_fraction"},
                "split": {"val": "val_fraction", "test": "test_fraction"}}
        # (a sweep from before issue 18 stored pruner_warmup_epochs, fixed epochs: read with the profile's default
        # fraction, and one tuning run)
        raw = {k: stored[k] for k in ("name", "datasets", "optimizers", "batch_sizes", "trials", "epochs",
                                      "tuning_seed", "tuning_runs", "population", "random_arm", "tune_eps",
                                      "lease_seconds", "missing_values")
               if k in stored}
        raw.setdefault("tuning_runs", 1)  # a sweep from before tuning runs ran one
        raw["seeds"] = len(stored.get("seeds", ()))
        if "epochs" in raw:  # stored per dataset name; a profile keys a CSV dataset's epochs by its stem
            raw["epochs"] = {data.display_name(d): e for d, e in raw["epochs"].items()}
        for block, names in keys.items():
            raw[block] = {field: stored[key] for field, key in names.items() if key in stored}
        spaces = {o: {h: RangeSpec.unstored(r) for h, r in space.items()}
                  for o, space in stored.get("search_spaces", {}).items()}
        return loader.validate(cls, {"profile": raw, "spaces": spaces, "source": stored.get("source", ""),
                                     "digests": stored.get("digests", {})}, where)
