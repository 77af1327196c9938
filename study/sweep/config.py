"""Reading a sweep: a profile and the search spaces, through ``study.schema``, into one frozen ``Sweep``.

A profile ``conf/sweep/<name>.yaml`` names the grid and the protocol; ``conf/search_spaces.yaml`` holds one block
per optimizer (its tuning ranges with their sources), and an optimizer without a block is tuned over the ranges its
registry entry declares (``study.core.optim``), so an optimizer added in one file can be swept; the defaults of the
untuned track are the registry's. Command-line overrides ``key=value`` (lists comma-separated, nested keys dotted:
``epochs.digits=10``, ``sampler.name=random``) are applied before validation. Every problem is a ``BadInput``
naming the file and key: one line, nothing written. Besides the schema's checks, two need the datasets: every
batch size fits some training set, and every part of every dataset's split holds each of its classes. Whether the
sweep fits in this machine's memory is the run's question, not the config's: ``study.sweep.memory``, asked by
``pipelines.sweep`` before any store is opened.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from study.core import batches, data, optim
from study.errors import BadInput
from study.schema import loader
from study.schema.sweep import LIST_KEYS, Profile, RangeSpec, Sweep, search_spaces_model
from study.sweep import memory

CONF = loader.CONF
PROFILE_KEYS = set(Profile.model_fields)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """A profile's raw mapping with ``key=value`` overrides applied (a copy)."""
    return loader.apply_overrides(raw, overrides, PROFILE_KEYS, LIST_KEYS)


def load_search_spaces(path: Path = CONF / "search_spaces.yaml", tune_eps: bool = False) -> dict:
    """{optimizer: {hyperparameter: RangeSpec}} for every registered optimizer: the file's block, else the
    registry's ranges; with ``tune_eps``, eps is tuned over ``eps_tuned`` instead of fixed."""
    where = loader.shown(path)
    spaces_file = loader.load(search_spaces_model(), path, where)
    if tune_eps and any("eps" in o.hyper for o in optim.OPTIMIZERS.values()):
        if spaces_file.eps_tuned is None:
            raise BadInput(f"{where}: eps_tuned", "missing: tune_eps needs the range to tune eps over")
        if spaces_file.eps_tuned.fixed is not None:
            raise BadInput(f"{where}: eps_tuned", "must be a range (low, high) to tune eps over, not fixed")
    spaces = {}
    for name, opt in optim.OPTIMIZERS.items():
        block = getattr(spaces_file, name)
        if block is not None:
            space = {h: getattr(block.search, h) for h in opt.hyper}
        else:  # the registry's fallback ranges are valid conf entries (tests/test_registry.py)
            space = {h: RangeSpec(**dataclasses.asdict(r)) for h, r in opt.search_space().items()}
        if tune_eps and "eps" in space:
            space["eps"] = spaces_file.eps_tuned
        spaces[name] = space
    return spaces


def _fits_a_training_set(where: str, sizes: tuple[str, ...], n_train: dict) -> None:
    """Larger than every training set is a mistake; larger than some (128 on iris' 90 samples) is the grid meeting
    a small dataset: that cell then takes the whole set per update, like `full`."""
    for b in sizes:
        if b != batches.FULL and int(b) > max(n_train.values()):
            largest = max(n_train, key=n_train.get)
            raise BadInput(f"{where}: batch_sizes", f"batch size {b} is larger than the training set "
                                                    f"({n_train[largest]} samples in {largest}, the largest)")


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> dict:
    """{part: samples} of ``data.load``'s two splits of n samples, as scikit-learn sizes them (the test part
    ``ceil(test * n)``, then validation ``ceil(val / (1 - test) * rest)`` of the rest)."""
    n_test = math.ceil(test_fraction * n)
    n_val = math.ceil(val_fraction / (1.0 - test_fraction) * (n - n_test))
    return {"train": n - n_test - n_val, "val": n_val, "test": n_test}


def fewest_of_a_class(count: int, n: int, val_fraction: float, test_fraction: float) -> dict:
    """{part: the fewest samples of a class of ``count`` samples that each part can get}, whatever the seed.

    scikit-learn's stratified split gives each class the floor or the ceiling of its share of a part; the second
    split draws from what the first left. So a class of c samples gets at least floor(c * test / n) test samples
    and at least floor(c * rest / n) in the rest, which the second split shares out the same way.
    """
    sizes = split_sizes(n, val_fraction, test_fraction)
    rest = sizes["train"] + sizes["val"]
    in_rest = count * rest // n
    return {"train": in_rest * sizes["train"] // rest, "val": in_rest * sizes["val"] // rest,
            "test": count * sizes["test"] // n}


SPLIT_KEYS = {"train": "split", "val": "split.val", "test": "split.test"}  # the key that makes a part small
PART_NAMES = {"train": "training", "val": "validation", "test": "test"}


def _split_holds_every_class(where: str, dataset: str, val_fraction: float, test_fraction: float) -> None:
    """Every part of the split holds at least one sample of every class (two samples of a regression set: a
    loss on one sample says little, and the target is scaled by the training part's spread), for every seed."""
    spec = data.DATASETS[dataset]
    _, y = spec.load()
    n = len(y)
    if spec.task == "classification":
        counts = np.unique(y, return_counts=True)[1]
        smallest, need = int(counts.min()), 1
        least = lambda val, test: fewest_of_a_class(smallest, n, val, test)  # noqa: E731
        why = f"too few to hold a sample of each of its {len(counts)} classes (the smallest has {smallest} of {n})"
    else:
        need = 2
        least = lambda val, test: split_sizes(n, val, test)  # noqa: E731
        why = f"too few: each part of a regression set needs at least 2 of its {n} samples"
    for part in ("val", "test", "train"):
        if least(val_fraction, test_fraction)[part] < need:
            got = split_sizes(n, val_fraction, test_fraction)[part]
            hint = ""
            if part != "train":  # the smallest fraction, in thousandths, that would do with the other one kept
                for k in range(1, 1000):
                    val, test = (k / 1000, test_fraction) if part == "val" else (val_fraction, k / 1000)
                    if val + test < 0.9 and min(least(val, test).values()) >= need:
                        hint = f"; {SPLIT_KEYS[part]}={k / 1000:g} would do"
                        break
            raise BadInput(f"{where}: {SPLIT_KEYS[part]}", f"on {dataset} the {PART_NAMES[part]} part gets {got} "
                                                           f"sample{'s' * (got != 1)}, {why}{hint}")


def load_sweep(profile: str | Path, overrides: list[str] = ()) -> Sweep:
    """A profile name (``smoke``, ``default``, ``full``) or a path to a YAML file, with overrides applied."""
    path = Path(profile)
    if path.suffix not in (".yaml", ".yml"):
        path = CONF / "sweep" / f"{profile}.yaml"
        if not path.exists():
            known = sorted(p.stem for p in (CONF / "sweep").glob("*.yaml"))
            raise BadInput("--profile", f"unknown profile {str(profile)!r}; choose from {', '.join(known)}")
    where = loader.shown(path)
    p = loader.load(Profile, path, where, list(overrides), LIST_KEYS)
    for d in p.datasets:
        _split_holds_every_class(where, d, p.split.val, p.split.test)
    shapes = {d: memory.dataset_shape(d, p.split.val, p.split.test) for d in p.datasets}
    _fits_a_training_set(where, p.batch_sizes, {d: shape.n_train for d, shape in shapes.items()})
    spaces = load_search_spaces(tune_eps=p.tune_eps)
    return Sweep(profile=p, spaces={o: spaces[o] for o in p.optimizers}, source=str(path))
