"""Datasets, all offline: scikit-learn's bundled ``load_*`` sets, seeded ``make_*`` generators, and a user's CSV.

``load(name, seed)`` returns a ``Split``: stratified train / validation / test parts (60 / 20 / 20 by default),
features scaled with statistics fitted on the training part only, each part naming its rows. The test part is
drawn once per dataset, from the constant ``TEST_SPLIT_SEED``, not from ``seed``: every evaluation seed and every
tuning split share one outer test set that no tuning ever trains or validates on. ``seed`` splits the remaining
rows into training and validation (it also seeds, elsewhere, the initial weights and the data order). A generated
set is itself fixed (its generator seed is pinned here), so that seed s changes only the split, not the task.
Adding a dataset is one entry in ``DATASETS``.

A dataset named ``csv:PATH`` is the CSV file at PATH (the rules: ``study.core.tabular``); it goes through the same
split, and its name for a person (MLflow, Optuna, the report) is the file's stem: ``display_name``. ``describe``
gives what an MLflow dataset input records (the name, the source, a digest of the file's bytes).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
from sklearn import datasets as skd
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MaxAbsScaler, StandardScaler

from study.core import tabular
from study.errors import BadInput

# The outer test split's seed, the same for every dataset, seed and tuning split. Any constant would do; this one
# is none of the seeds a profile uses (evaluation seeds 0.., tuning seeds 10000..), so nobody reads a link into it.
TEST_SPLIT_SEED = 20_181_127
CSV = "csv:"
# A CSV dataset's stem names it in Optuna's study names (<sweep>/<dataset>/...), MLflow's tags and the report's
# files: the characters that are safe in all of them.
SAFE_STEM = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
PARTS = ("train", "val", "test")
PART_NAMES = {"train": "training", "val": "validation", "test": "test"}


@dataclass(frozen=True)
class Dataset:
    load: Callable[[], tuple]  # () -> (X, y): X an array (a DataFrame for a CSV file), y class indices or values
    task: str = "classification"  # or "regression"
    scaler: str = "standard"  # "standard", "maxabs" (keeps zeros zero), "none", or "columns" (a CSV file's encoder)
    description: str = ""
    encoder: Callable | None = None  # () -> an unfitted scikit-learn transformer; set for a CSV file

    def transformer(self):
        """The features' transform, unfitted (None: the features are used as they are)."""
        if self.encoder is not None:
            return self.encoder()
        return SCALERS[self.scaler]() if self.scaler != "none" else None


@dataclass(frozen=True)
class Split:
    name: str
    task: str
    X_train: np.ndarray
    Y_train: np.ndarray  # 2-D targets: one-hot for classification, (n, 1) for regression
    X_val: np.ndarray
    Y_val: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    n_classes: int = 0  # 0 for regression
    # Each part's rows as int64 indices into the dataset as loaded, in the part's order (X_train[i] is row
    # train_rows[i]): not sorted, as the split drew them. test_rows is the same for every seed. None for a split
    # made by hand (tests), which names no dataset.
    train_rows: np.ndarray | None = None
    val_rows: np.ndarray | None = None
    test_rows: np.ndarray | None = None

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def n_outputs(self) -> int:
        return self.Y_train.shape[1]

    def labels(self, part: str) -> np.ndarray:
        return getattr(self, f"Y_{part}").argmax(axis=1)

    def rows(self, part: str) -> np.ndarray | None:
        return getattr(self, f"{part}_rows")


def _toy():
    """The lecture's two points."""
    return np.array([[0.5], [2.5]]), np.array([0.2, 0.9])


def _sparse(n_samples=1000, n_features=20, seed=0):
    """Mostly-zero features with very different frequencies: feature j is non-zero in a share of the samples
    falling geometrically from 50% to 0.5%, and the rare features carry as much signal as the common ones. The
    lecture's case for AdaGrad: a global learning rate is too small for the rare features' parameters."""
    rng = np.random.default_rng(seed)
    frequency = np.geomspace(0.5, 0.005, n_features)
    mask = rng.random((n_samples, n_features)) < frequency
    X = mask * rng.lognormal(0.0, 0.5, (n_samples, n_features))
    weights = rng.choice([-1.0, 1.0], n_features) * np.geomspace(1.0, 8.0, n_features)
    score = X @ weights + 0.3 * rng.standard_normal(n_samples)
    return X, (score > np.median(score)).astype(int)


def _xy(loader):
    return loader(return_X_y=True)


DATASETS: dict[str, Dataset] = {
    "toy": Dataset(_toy, "regression", "none", "the lecture's X = [0.5, 2.5], Y = [0.2, 0.9]"),
    "moons": Dataset(partial(skd.make_moons, n_samples=600, noise=0.25, random_state=0), description="2-D moons"),
    "circles": Dataset(partial(skd.make_circles, n_samples=600, noise=0.1, factor=0.5, random_state=0),
                       description="2-D concentric circles"),
    "iris": Dataset(partial(_xy, skd.load_iris), description="150 flowers, 3 classes"),
    "wine": Dataset(partial(_xy, skd.load_wine), description="178 wines, 13 features, 3 classes"),
    "breast_cancer": Dataset(partial(_xy, skd.load_breast_cancer), description="569 tumours, 30 features"),
    "digits": Dataset(partial(_xy, skd.load_digits), description="1,797 8x8 digits, 10 classes"),
    "diabetes": Dataset(partial(_xy, skd.load_diabetes), "regression", description="442 patients, regression"),
    "sparse": Dataset(_sparse, scaler="maxabs", description="1,000 samples, 20 sparse features of varied frequency"),
    "clf_easy": Dataset(partial(skd.make_classification, n_samples=600, n_features=10, n_informative=4,
                                n_redundant=2, class_sep=1.5, random_state=0), description="well separated"),
    "clf_hard": Dataset(partial(skd.make_classification, n_samples=1000, n_features=20, n_informative=6,
                                n_redundant=4, class_sep=0.6, flip_y=0.05, random_state=1),
                        description="overlapping classes, 5% label noise"),
    "clf_multi": Dataset(partial(skd.make_classification, n_samples=800, n_features=16, n_informative=8,
                                 n_classes=5, n_clusters_per_class=2, class_sep=1.0, random_state=2),
                         description="5 classes, 2 clusters each"),
    "clf_wide": Dataset(partial(skd.make_classification, n_samples=500, n_features=50, n_informative=5,
                                n_redundant=10, class_sep=1.0, random_state=3),
                        description="50 features, 5 informative"),
    "quantiles": Dataset(partial(skd.make_gaussian_quantiles, n_samples=600, n_features=2, n_classes=2,
                                 random_state=4), description="2-D Gaussian quantiles (a disc inside a ring)"),
    "quantiles_3d": Dataset(partial(skd.make_gaussian_quantiles, n_samples=900, n_features=3, n_classes=3,
                                    random_state=5), description="3-D Gaussian quantiles, 3 shells"),
    "blobs": Dataset(partial(skd.make_blobs, n_samples=600, n_features=4, centers=4, cluster_std=2.5,
                             random_state=6), description="4 overlapping Gaussian blobs"),
}

SCALERS = {"standard": StandardScaler, "maxabs": MaxAbsScaler}


# --- names: a bundled set's is its key; a CSV file's is csv:PATH, shown as the file's stem --------------------------
class Description(NamedTuple):
    """What an MLflow dataset input records: the name a person sees, where the data came from, and a digest
    (None: let MLflow compute one from the arrays, as for a bundled set, whose content its name fixes)."""
    name: str
    source: str
    digest: str | None


def csv_path(name: str) -> str | None:
    """The file of a ``csv:PATH`` dataset, None for a bundled one."""
    return name[len(CSV):] if name.startswith(CSV) else None


def display_name(name: str) -> str:
    """The dataset's name for a person, in MLflow, Optuna and the report: a CSV file's stem, else the name."""
    path = csv_path(name)
    return Path(path).stem if path is not None else name


def display_key(key: tuple, sep: str = "/") -> str:
    """A key that begins with a dataset (a cell: dataset, optimizer, batch size) as a person reads it, in run names,
    study names and messages: its parts joined by ``sep``, the dataset by its display name."""
    if not key:
        return ""
    return sep.join([display_name(str(key[0])), *map(str, key[1:])])


def canonical_name(name: str) -> str:
    """``csv:PATH`` with PATH absolute (workers and the report may run elsewhere), or ValueError saying what is
    wrong with the name (the file itself is read later: ``check_rows``)."""
    path = (csv_path(name) or "").strip()
    if not path:
        raise ValueError(f"{name!r}: a CSV dataset is csv:PATH, the path of the file")
    if "," in path:
        raise ValueError(f"{name!r}: a path with a comma is not supported (lists on the command line are split "
                         f"at commas); rename or link the file")
    stem = Path(path).stem
    if not SAFE_STEM.fullmatch(stem):
        raise ValueError(f"{name!r}: the file's stem {stem!r} names the dataset (in MLflow, Optuna and the report) "
                         f"and must be letters, digits, '-', '_' or '.', beginning and ending with a letter or digit")
    if stem in DATASETS:
        raise ValueError(f"{name!r}: the file's stem {stem!r} is a bundled dataset's name; rename the file")
    return CSV + str(Path(path).expanduser().resolve())


def dataset_names(value) -> tuple[str, ...]:
    """A sweep's ``datasets``: a non-empty list of distinct names, each bundled (not the lecture's toy) or
    ``csv:PATH`` (made absolute: ``canonical_name``), no two shown under one name (a file is shown as its stem);
    else ValueError saying what is wrong. The files themselves are read later (``check_rows``)."""
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"must be a non-empty list of dataset names (or csv:PATH for a CSV file), got {value!r}")
    is_file = lambda v: isinstance(v, str) and csv_path(v) is not None  # noqa: E731
    bundled, names = set(DATASETS) - {"toy"}, []
    for v in value:
        if not is_file(v) and (not isinstance(v, str) or v not in bundled):
            comma = (" (a path cannot contain a comma: lists on the command line are split at commas)"
                     if any(map(is_file, value)) else "")
            raise ValueError(f"unknown name {v!r}; choose from {', '.join(sorted(bundled))}, or csv:PATH for a CSV "
                             f"file{comma}")
        names.append(canonical_name(v) if is_file(v) else v)
    if len(set(names)) != len(names):
        raise ValueError("lists a name twice")
    shown = {}
    for name in names:
        other = shown.setdefault(display_name(name), name)
        if other != name:
            raise ValueError(f"{other!r} and {name!r} would both be shown as {display_name(name)!r}; rename one file")
    return tuple(names)


def describe(name: str) -> Description:
    """(display name, source, digest) for the MLflow dataset input: for a CSV file its absolute path and the first
    16 hex digits of the sha256 of its bytes, so two different files with one stem are told apart."""
    path = csv_path(name)
    if path is None:
        return Description(name, dataset(name).description, None)
    return Description(display_name(name), str(Path(path).resolve()), tabular.digest(path))


def dataset(name: str, missing: str = "refuse") -> Dataset:
    """The ``Dataset`` of a bundled name or of ``csv:PATH`` (read and checked: ``BadInput`` naming the file)."""
    path = csv_path(name)
    if path is None:
        if name not in DATASETS:
            raise KeyError(f"unknown dataset {name!r}; choose from {', '.join(sorted(DATASETS))}, or csv:PATH")
        return DATASETS[name]
    table = tabular.read(path, missing)
    return Dataset(lambda: (table.features, table.y), table.task, "columns", f"{path}: {table.summary}",
                   partial(tabular.encoder, table))


def targets(name: str, missing: str = "refuse") -> tuple[str, np.ndarray]:
    """(task, y as loaded): what the split's checks need to know of a dataset."""
    spec = dataset(name, missing)
    return spec.task, np.asarray(spec.load()[1])


# --- the split's sizes, the same for every seed ----------------------------------------------------------------
def split_sizes(n: int, val_fraction: float, test_fraction: float) -> dict:
    """{part: samples} of ``load``'s two splits of n samples, as scikit-learn sizes them (the test part
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


def split_rows(y: np.ndarray, task: str, seed: int, val_fraction: float, test_fraction: float) -> dict:
    """{part: int64 row indices}: the test rows from ``TEST_SPLIT_SEED`` (stratified for classification), then
    the rest split into training and validation from ``seed`` (stratified too)."""
    rows = np.arange(len(y), dtype=np.int64)
    stratify = np.asarray(y) if task == "classification" else None
    rest, test = train_test_split(rows, test_size=test_fraction, random_state=TEST_SPLIT_SEED, stratify=stratify)
    train, val = train_test_split(rest, test_size=val_fraction / (1.0 - test_fraction), random_state=seed,
                                  stratify=stratify[rest] if stratify is not None else None)
    return {"train": train, "val": val, "test": test}


def check_rows(name: str, val_fraction: float, test_fraction: float, batch_sizes=(), missing: str = "refuse"):
    """A CSV dataset has rows enough for the split (every part a row of every class whatever the seed; two rows
    per part for regression) and for the largest numeric batch size, or ``BadInput`` naming the file. Nothing to
    check for a bundled set (the sweep's config checks those against its profile's keys)."""
    path = csv_path(name)
    if path is None:
        return
    table = tabular.read(path, missing)
    n, split = len(table.y), f"split.val={val_fraction:g}, split.test={test_fraction:g}"
    sizes = split_sizes(n, val_fraction, test_fraction)
    rows = f"{n} rows" + (f" (after dropping {table.dropped} with missing values)" if table.dropped else "")
    if table.task == "classification":
        counts = np.bincount(table.y, minlength=len(table.classes))
        smallest = int(counts.argmin())
        least = fewest_of_a_class(int(counts[smallest]), n, val_fraction, test_fraction)
        for part in ("test", "val", "train"):
            if least[part] < 1:
                raise BadInput(path, f"too few rows: class {table.classes[smallest]!r} has {counts[smallest]} of "
                                     f"the {rows}, so the {PART_NAMES[part]} part ({sizes[part]} rows at {split}) "
                                     f"may hold none of it; every part needs a row of every class")
    for part in ("test", "val", "train"):
        if table.task == "regression" and sizes[part] < 2:
            raise BadInput(path, f"too few rows: the {rows} give the {PART_NAMES[part]} part {sizes[part]} at "
                                 f"{split}; each part of a regression set needs at least 2")
    numeric = [int(b) for b in map(str, batch_sizes) if b != "full"]
    if numeric and max(numeric) > sizes["train"]:
        largest = max(numeric)
        need = next(m for m in range(n, 100 * largest + n) if split_sizes(m, val_fraction, test_fraction)["train"]
                    >= largest)
        raise BadInput(path, f"too few rows: the {rows} leave {sizes['train']} for training at {split}, fewer than "
                             f"batch size {largest}; it needs at least {need} rows, or smaller batch sizes")


# --- the split -------------------------------------------------------------------------------------------------
def _targets(y, task, n_classes):
    if task == "classification":
        return np.eye(n_classes)[y]
    return np.asarray(y, float).reshape(len(y), -1)


def _take(X, rows):
    return X.iloc[rows] if hasattr(X, "iloc") else X[rows]


def load(name: str, seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2,
         missing: str = "refuse") -> Split:
    """The split of dataset ``name`` for ``seed`` (see the module's docstring). ``missing`` is a CSV file's rule
    for rows with missing values: "refuse" (``BadInput``) or "drop" (with a warning); bundled sets have none."""
    spec = dataset(name, missing)
    X, y = spec.load()
    if spec.encoder is None:
        X = np.asarray(X, float)
    if name == "toy":  # two points: nothing to hold out, every part is the whole set
        Y, rows = _targets(y, spec.task, 0), np.arange(len(y), dtype=np.int64)
        return Split(name, spec.task, X, Y, X, Y, X, Y, 0, rows, rows.copy(), rows.copy())
    check_rows(name, val_fraction, test_fraction, missing=missing)
    rows = split_rows(y, spec.task, seed, val_fraction, test_fraction)
    features = {part: _take(X, rows[part]) for part in PARTS}
    transform = spec.transformer()
    if transform is not None:  # fitted on the training part only: no statistics leak from val or test
        transform.fit(features["train"])
        features = {part: transform.transform(x) for part, x in features.items()}
    features = {part: np.asarray(x, float) for part, x in features.items()}
    labels = {part: np.asarray(y)[rows[part]] for part in PARTS}
    n_classes = int(np.max(y)) + 1 if spec.task == "classification" else 0
    if spec.task == "regression":  # standardise the target too, with training statistics
        mu, sd = labels["train"].mean(), labels["train"].std()
        labels = {part: (v - mu) / sd for part, v in labels.items()}
    Y = {part: _targets(v, spec.task, n_classes) for part, v in labels.items()}
    return Split(name, spec.task, features["train"], Y["train"], features["val"], Y["val"], features["test"],
                 Y["test"], n_classes, rows["train"], rows["val"], rows["test"])


# --- the protocol's promise, checked ---------------------------------------------------------------------------
class SplitLeak(AssertionError):
    """A split that breaks the protocol: a row in two parts, a row in none, or test rows that move with the seed."""


def check_split(split: Split, n_rows: int) -> None:
    """``split`` names its rows, each part's rows are distinct and as many as its arrays, no row is in two parts
    (the toy excepted: each of its parts is every row), and the parts cover rows 0..n_rows-1; else ``SplitLeak``."""
    for part in PARTS:
        rows, X, Y = split.rows(part), getattr(split, f"X_{part}"), getattr(split, f"Y_{part}")
        if rows is None:
            raise SplitLeak(f"{split.name}: the {part} part names no rows")
        if rows.dtype != np.int64 or rows.ndim != 1 or not len(rows) == len(X) == len(Y):
            raise SplitLeak(f"{split.name}: {part}_rows must be int64, one per row of X_{part} and Y_{part}")
        if len(np.unique(rows)) != len(rows):
            raise SplitLeak(f"{split.name}: a row appears twice in the {part} part")
    every = np.arange(n_rows)
    if split.name == "toy":
        if not all(np.array_equal(np.sort(split.rows(p)), every) for p in PARTS):
            raise SplitLeak("toy: each part must be every row")
        return
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = np.intersect1d(split.rows(a), split.rows(b))
        if len(shared):
            raise SplitLeak(f"{split.name}: leak: {len(shared)} rows in both {a} and {b} (e.g. row {shared[0]})")
    if not np.array_equal(np.sort(np.concatenate([split.rows(p) for p in PARTS])), every):
        raise SplitLeak(f"{split.name}: the parts do not cover rows 0..{n_rows - 1} exactly")


def check_fixed_test(splits) -> None:
    """Every split (of one dataset, any seeds) has the same test rows, or ``SplitLeak``."""
    splits = list(splits)
    first = splits[0]
    for other in splits[1:]:
        if not np.array_equal(np.sort(other.test_rows), np.sort(first.test_rows)):
            moved = len(np.setdiff1d(other.test_rows, first.test_rows))
            raise SplitLeak(f"{first.name}: the test rows move with the seed ({moved} of {len(first.test_rows)} "
                            f"differ): tuning and other seeds train on this split's test rows")
