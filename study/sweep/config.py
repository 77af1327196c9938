"""Reading a sweep: a profile and the search spaces, through ``study.schema``, into one frozen ``Sweep``.

A profile ``conf/sweep/<name>.yaml`` names the grid and the protocol; ``conf/search_spaces.yaml`` holds one block
per optimizer (its tuning ranges with their sources), and an optimizer without a block is tuned over the ranges its
registry entry declares (``study.core.optim``), so an optimizer added in one file can be swept; the defaults of the
untuned track are the registry's. Command-line overrides ``key=value`` (lists comma-separated, nested keys dotted:
``epochs.digits=10``, ``sampler.name=random``) are applied before validation. Every problem is a ``BadInput``
naming the file and key: one line, nothing written. Besides the schema's checks, two need the datasets: every
batch size fits some training set, and every part of every dataset's split holds each of its classes (a CSV
dataset, ``csv:PATH``, is read here and checked by ``study.core.data.check_rows``, naming the file). Whether the
sweep fits in this machine's memory is the run's question, not the config's: ``study.sweep.memory``, asked by
``pipelines.sweep`` before any store is opened.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from study.core import batches, data, optim
from study.errors import BadInput
from study.schema import loader
from study.schema.sweep import LIST_KEYS, Profile, RangeSpec, Sweep, search_spaces_model

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
                                                    f"({n_train[largest]} samples in "
                                                    f"{data.display_name(largest)}, the largest)")


# The split's sizes are data.load's: defined beside the split, so the checks below cannot drift from it.
split_sizes, fewest_of_a_class = data.split_sizes, data.fewest_of_a_class


SPLIT_KEYS = {"train": "split", "val": "split.val", "test": "split.test"}  # the key that makes a part small
PART_NAMES = {"train": "training", "val": "validation", "test": "test"}


def _split_holds_every_class(where: str, dataset: str, val_fraction: float, test_fraction: float,
                             missing: str = "refuse") -> None:
    """Every part of the split holds at least one sample of every class (two samples of a regression set: a
    loss on one sample says little, and the target is scaled by the training part's spread), for every seed.
    (A CSV file was checked the same way by data.check_rows, which names the file.)"""
    task, y = data.targets(dataset, missing)
    n = len(y)
    if task == "classification":
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
            raise BadInput(f"{where}: {SPLIT_KEYS[part]}",
                           f"on {data.display_name(dataset)} the {PART_NAMES[part]} part gets {got} "
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
    for d in p.datasets:  # a CSV file first: read, checked, and its rows counted (BadInput naming the file)
        data.check_rows(d, p.split.val, p.split.test, p.batch_sizes, p.missing_values)
        _split_holds_every_class(where, d, p.split.val, p.split.test, p.missing_values)
    n_train = {d: split_sizes(len(data.targets(d, p.missing_values)[1]), p.split.val, p.split.test)["train"]
               for d in p.datasets}
    _fits_a_training_set(where, p.batch_sizes, n_train)
    spaces = load_search_spaces(tune_eps=p.tune_eps)
    # a CSV dataset's content: an edited file is another sweep (its hash), refused under the old one's name
    digests = {d: data.describe(d).digest for d in p.datasets if data.csv_path(d)}
    return Sweep(profile=p, spaces={o: spaces[o] for o in p.optimizers}, source=str(path), digests=digests)
