"""Load and validate the sweep configuration: YAML (data only, ``yaml.safe_load``) into typed, frozen objects.

A profile ``conf/sweep/<name>.yaml`` names the grid and the protocol; ``conf/search_spaces.yaml`` holds one block
per optimizer (its tuning ranges with their sources, and its default hyperparameters). Command-line overrides
``key=value`` (lists comma-separated, nested keys dotted: ``epochs.digits=10``, ``sampler.name=random``) are
applied before validation. Every problem is a ``BadInput`` naming the file and key: one line, nothing written.
Nothing here imports at load time anything beyond numpy, yaml and the numeric core's registries.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from study.core import batches, data, optim
from study.errors import BadInput

CONF = Path(__file__).resolve().parents[2] / "conf"
PROFILE_KEYS = {"name", "datasets", "optimizers", "batch_sizes", "trials", "epochs", "seeds", "tuning_seed",
                "population", "network", "sampler", "pruner", "random_arm", "tune_eps", "split", "lease_seconds"}
LIST_KEYS = {"datasets", "optimizers", "batch_sizes", "network.hidden"}
SAMPLERS = {"tpe", "random"}
PRUNERS = {"median", "none"}
ACTIVATIONS = {"relu", "tanh", "sigmoid"}


@dataclass(frozen=True)
class Range:
    """A tuned hyperparameter: value = x, or 1 - x when ``one_minus`` (so that log-uniform x puts the density
    near 1, where momentum and averaging constants live); ``fixed`` pins it instead of tuning."""
    low: float = math.nan
    high: float = math.nan
    log: bool = True
    one_minus: bool = False
    fixed: float | None = None


@dataclass(frozen=True)
class SweepConfig:
    name: str
    datasets: tuple[str, ...]
    optimizers: tuple[str, ...]
    batch_sizes: tuple[str, ...]  # "full" or the number as text: the MLflow tag's spelling
    trials: int
    epochs: dict  # dataset -> epochs
    seeds: tuple[int, ...]  # evaluation seeds
    tuning_seed: int
    population: dict  # batch size -> K
    hidden: tuple[int, ...]
    activation: str
    sampler: str
    sampler_seed: int
    n_startup_trials: int
    pruner: str
    pruner_startup_trials: int
    pruner_warmup_epochs: int
    random_arm: bool
    tune_eps: bool
    val_fraction: float
    test_fraction: float
    lease_seconds: float
    search_spaces: dict  # optimizer -> {param: Range}
    defaults: dict  # optimizer -> {param: value}
    source: str = ""

    def as_dict(self) -> dict:
        d = asdict(self)
        d["search_spaces"] = {o: {p: asdict(r) for p, r in s.items()} for o, s in self.search_spaces.items()}
        return json.loads(json.dumps(d, default=str))

    @property
    def hash(self) -> str:
        """A short hash of everything that determines the results (not where the file lives)."""
        d = self.as_dict()
        d.pop("source", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def cells(self):
        """The units of work, in a fixed order: (dataset, optimizer, batch size)."""
        return [(d, o, b) for d in self.datasets for o in self.optimizers for b in self.batch_sizes]


def _shown(path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as e:
        raise BadInput(_shown(path), f"cannot read: {e.strerror or e}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise BadInput(_shown(path), f"malformed YAML{where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(loaded, dict):
        raise BadInput(_shown(path), f"expected a mapping of keys, got {type(loaded).__name__}")
    return loaded


def _scalar(text: str):
    """An override's value: YAML's reading of it, with 1e-3 style floats that YAML 1.1 leaves as text."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInput(f"override {item!r}", "expected key=value")
        top = key.split(".")[0]
        if top not in PROFILE_KEYS:
            raise BadInput(f"override {item!r}", f"unknown key {top!r}; keys: {', '.join(sorted(PROFILE_KEYS))}")
        parsed = [_scalar(v) for v in value.split(",")] if key in LIST_KEYS else _scalar(value)
        node, parts = raw, key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {} if part not in node or node[part] is None else {"default": node[part]}
            node = node[part]
        node[parts[-1]] = parsed
    return raw


class _Checker:
    """Validation helpers that name the file and key in every message."""

    def __init__(self, where: str):
        self.where = _shown(where)

    def fail(self, key: str, problem: str):
        raise BadInput(f"{self.where}: {key}", problem)

    def integer(self, key, value, minimum=1):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            self.fail(key, f"must be {kind}, got {value!r}")
        return value

    def number(self, key, value, positive=False):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(key, f"must be a finite number, got {value!r}")
        if positive and value <= 0:
            self.fail(key, f"must be positive, got {value!r}")
        return float(value)

    def names(self, key, value, known):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            self.fail(key, "must be a non-empty list")
        for v in value:
            if v not in known:
                self.fail(key, f"unknown name {v!r}; choose from {', '.join(sorted(known))}")
        if len(set(value)) != len(value):
            self.fail(key, "lists a name twice")
        return tuple(value)

    def choice(self, key, value, known):
        if value not in known:
            self.fail(key, f"must be one of {', '.join(sorted(known))}, got {value!r}")
        return value

    def flag(self, key, value):
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {value!r}")
        return value

    def mapping(self, key, value, allowed):
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"must be a mapping, got {type(value).__name__}")
        for k in value:
            if k not in allowed:
                self.fail(f"{key}.{k}", f"unknown key; keys: {', '.join(sorted(allowed))}")
        return value


def load_search_spaces(path: Path = CONF / "search_spaces.yaml", tune_eps: bool = False):
    raw = _read_yaml(path)
    check = _Checker(str(path))
    spaces, defaults = {}, {}
    eps_range = raw.pop("eps_tuned", None)
    for name, block in raw.items():
        if name not in optim.OPTIMIZERS:
            check.fail(name, f"unknown optimizer; the registry has {', '.join(optim.OPTIMIZERS)}")
        block = check.mapping(name, block, {"search", "default"})
        wanted = set(optim.OPTIMIZERS[name].defaults)
        search = check.mapping(f"{name}.search", block.get("search"), wanted)
        default = check.mapping(f"{name}.default", block.get("default"), wanted)
        for param in sorted(wanted - set(default)):
            check.fail(f"{name}.default", f"missing {param}")
        for param in sorted(wanted - set(search)):
            check.fail(f"{name}.search", f"missing {param}")
        defaults[name] = {p: check.number(f"{name}.default.{p}", v, positive=True) for p, v in default.items()}
        spaces[name] = {p: _range(check, f"{name}.search.{p}", spec) for p, spec in search.items()}
        if tune_eps and "eps" in spaces[name]:
            if eps_range is None:
                check.fail("eps_tuned", "missing: tune_eps needs the range to tune eps over")
            spaces[name]["eps"] = _range(check, "eps_tuned", eps_range)
    return spaces, defaults


def _range(check: _Checker, key: str, spec) -> Range:
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return Range(fixed=check.number(key, spec, positive=True))
    spec = check.mapping(key, spec, {"low", "high", "log", "one_minus", "fixed"})
    if "fixed" in spec:
        return Range(fixed=check.number(f"{key}.fixed", spec["fixed"], positive=True))
    for bound in ("low", "high"):
        if bound not in spec:
            check.fail(key, f"missing {bound}")
    low = check.number(f"{key}.low", spec["low"])
    high = check.number(f"{key}.high", spec["high"])
    log = check.flag(f"{key}.log", spec.get("log", True))
    one_minus = check.flag(f"{key}.one_minus", spec.get("one_minus", False))
    if low >= high:
        check.fail(key, f"empty or inverted range: low {low} >= high {high}")
    if low < 0:  # learning rates, momenta and eps are all positive quantities
        check.fail(f"{key}.low", f"must be positive (not negative), got {low}")
    if (log or one_minus) and low <= 0:
        check.fail(f"{key}.low", f"must be positive for a log or 1 - x range, got {low}")
    if one_minus and high > 1:  # 1 itself is the value 0: no momentum, no averaging
        check.fail(f"{key}.high", f"must be at most 1 for a 1 - x range (below 1, or 1 for a value of 0), got {high}")
    return Range(low, high, log, one_minus)


def _batch_sizes(check: _Checker, value, n_train: dict) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        check.fail("batch_sizes", "must be a non-empty list of 'full' or positive integers")
    sizes = []
    for v in value:
        try:
            b = batches.parse_batch_size(v)
        except ValueError as e:
            check.fail("batch_sizes", str(e))
        # Larger than every training set is a mistake; larger than some (128 on iris' 90 samples) is the grid
        # meeting a small dataset: that cell then takes the whole set per update, like `full`.
        if b != batches.FULL and b > max(n_train.values()):
            largest = max(n_train, key=n_train.get)
            check.fail("batch_sizes", f"batch size {b} is larger than the training set "
                                      f"({n_train[largest]} samples in {largest}, the largest)")
        sizes.append(str(b))
    if len(set(sizes)) != len(sizes):
        check.fail("batch_sizes", "lists a batch size twice")
    return tuple(sizes)


def _per_key(check: _Checker, key: str, value, keys, minimum=1, allow_default=True, known=lambda name: False) -> dict:
    """An int for all, or a mapping {name: int} with an optional ``default``. Entries for names that are
    ``known`` but not in this sweep are ignored, so that ``datasets=iris`` works with a profile that pins the
    epochs of fifteen datasets."""
    if isinstance(value, dict):
        value = {str(k): v for k, v in value.items()}
        extra = set(value) - set(map(str, keys)) - ({"default"} if allow_default else set())
        unknown = sorted(k for k in extra if not known(k))
        if unknown:
            check.fail(f"{key}.{unknown[0]}", f"not in the sweep; names: {', '.join(map(str, keys))}")
        default = value.get("default")
        out = {}
        for k in keys:
            v = value.get(k, default)
            if v is None:
                check.fail(key, f"no value for {k} and no default")
            out[k] = check.integer(f"{key}.{k}", v, minimum)
        return out
    return {k: check.integer(key, value, minimum) for k in keys}


def _is_batch_size(name: str) -> bool:
    try:
        batches.parse_batch_size(name)
        return True
    except ValueError:
        return False


def load_sweep(profile: str | Path, overrides: list[str] = ()) -> SweepConfig:
    """A profile name (``smoke``, ``default``, ``full``) or a path to a YAML file, with overrides applied."""
    path = Path(profile)
    if path.suffix not in (".yaml", ".yml"):
        path = CONF / "sweep" / f"{profile}.yaml"
        if not path.exists():
            known = sorted(p.stem for p in (CONF / "sweep").glob("*.yaml"))
            raise BadInput("--profile", f"unknown profile {str(profile)!r}; choose from {', '.join(known)}")
    raw = apply_overrides(_read_yaml(path), list(overrides))
    check = _Checker(str(path))
    for key in raw:
        if key not in PROFILE_KEYS:
            check.fail(key, f"unknown key; keys: {', '.join(sorted(PROFILE_KEYS))}")
    for key in ("name", "datasets", "optimizers", "batch_sizes", "trials", "epochs", "seeds"):
        if key not in raw:
            check.fail(key, "missing")
    name = raw["name"]
    if not isinstance(name, str) or not name.strip() or "/" in name:
        check.fail("name", f"must be a non-empty name without '/', got {name!r}")
    datasets = check.names("datasets", raw["datasets"], set(data.DATASETS) - {"toy"})
    optimizers = check.names("optimizers", raw["optimizers"], set(optim.OPTIMIZERS))
    split = check.mapping("split", raw.get("split"), {"val", "test"})
    val_fraction = check.number("split.val", split.get("val", 0.2), positive=True)
    test_fraction = check.number("split.test", split.get("test", 0.2), positive=True)
    if val_fraction + test_fraction >= 0.9:
        check.fail("split", "validation and test leave too little to train on")
    n_train = {d: data.load(d, 0, val_fraction, test_fraction).X_train.shape[0] for d in datasets}
    batch_sizes = _batch_sizes(check, raw["batch_sizes"], n_train)
    network = check.mapping("network", raw.get("network"), {"hidden", "activation"})
    hidden = network.get("hidden", [32])
    hidden = [hidden] if isinstance(hidden, int) else hidden
    if not isinstance(hidden, list):
        check.fail("network.hidden", "must be a list of layer sizes")
    sampler = check.mapping("sampler", raw.get("sampler"), {"name", "seed", "n_startup_trials"})
    pruner = check.mapping("pruner", raw.get("pruner"), {"name", "n_startup_trials", "n_warmup_steps"})
    seeds = check.integer("seeds", raw["seeds"])
    tuning_seed = check.integer("tuning_seed", raw.get("tuning_seed", 10_000), minimum=0)
    if tuning_seed < seeds:
        check.fail("tuning_seed", f"must differ from the evaluation seeds 0..{seeds - 1}")
    tune_eps = check.flag("tune_eps", raw.get("tune_eps", False))
    spaces, defaults = load_search_spaces(tune_eps=tune_eps)
    for o in optimizers:
        if o not in spaces:
            raise BadInput(f"{_shown(CONF / 'search_spaces.yaml')}: {o}", "no search space for this optimizer")
    return SweepConfig(
        name=name.strip(), datasets=datasets, optimizers=optimizers, batch_sizes=batch_sizes,
        trials=check.integer("trials", raw["trials"]),
        epochs=_per_key(check, "epochs", raw["epochs"], datasets, known=lambda n: n in data.DATASETS),
        seeds=tuple(range(seeds)), tuning_seed=tuning_seed,
        population=_per_key(check, "population", raw.get("population", 1), batch_sizes, known=_is_batch_size),
        hidden=tuple(check.integer("network.hidden", h) for h in hidden),
        activation=check.choice("network.activation", network.get("activation", "relu"), ACTIVATIONS),
        sampler=check.choice("sampler.name", sampler.get("name", "tpe"), SAMPLERS),
        sampler_seed=check.integer("sampler.seed", sampler.get("seed", 0), minimum=0),
        n_startup_trials=check.integer("sampler.n_startup_trials", sampler.get("n_startup_trials", 5), 0),
        pruner=check.choice("pruner.name", pruner.get("name", "median"), PRUNERS),
        pruner_startup_trials=check.integer("pruner.n_startup_trials", pruner.get("n_startup_trials", 5), 0),
        pruner_warmup_epochs=check.integer("pruner.n_warmup_steps", pruner.get("n_warmup_steps", 5), 0),
        random_arm=check.flag("random_arm", raw.get("random_arm", False)),
        tune_eps=tune_eps, val_fraction=val_fraction, test_fraction=test_fraction,
        lease_seconds=check.number("lease_seconds", raw.get("lease_seconds", 120), positive=True),
        search_spaces={o: spaces[o] for o in optimizers}, defaults={o: defaults[o] for o in optimizers},
        source=str(path),
    )
