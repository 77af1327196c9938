"""Datasets, all offline: scikit-learn's bundled ``load_*`` sets and seeded ``make_*`` generators.

``load(name, seed)`` returns a ``Split``: stratified train / validation / test parts (60 / 20 / 20 by default)
drawn from ``seed``, features scaled with statistics fitted on the training part only. A generated set is itself
fixed (its generator seed is pinned here), so that seed s changes only the split, not the task. Adding a dataset
is one entry in ``DATASETS``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
from sklearn import datasets as skd
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MaxAbsScaler, StandardScaler


@dataclass(frozen=True)
class Dataset:
    load: Callable[[], tuple[np.ndarray, np.ndarray]]
    task: str = "classification"  # or "regression"
    scaler: str = "standard"  # "standard", "maxabs" (keeps zeros zero) or "none"
    description: str = ""


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

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def n_outputs(self) -> int:
        return self.Y_train.shape[1]

    def labels(self, part: str) -> np.ndarray:
        return getattr(self, f"Y_{part}").argmax(axis=1)


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


def _targets(y, task, n_classes):
    if task == "classification":
        return np.eye(n_classes)[y]
    return np.asarray(y, float).reshape(len(y), -1)


def load(name: str, seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2) -> Split:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; choose from {', '.join(sorted(DATASETS))}")
    spec = DATASETS[name]
    X, y = spec.load()
    X = np.asarray(X, float)
    if name == "toy":  # two points: nothing to hold out, every part is the whole set
        Y = _targets(y, spec.task, 0)
        return Split(name, spec.task, X, Y, X, Y, X, Y, 0)
    stratify = y if spec.task == "classification" else None
    X_rest, X_test, y_rest, y_test = train_test_split(X, y, test_size=test_fraction, random_state=seed,
                                                      stratify=stratify)
    X_train, X_val, y_train, y_val = train_test_split(
        X_rest, y_rest, test_size=val_fraction / (1.0 - test_fraction), random_state=seed,
        stratify=y_rest if stratify is not None else None)
    if spec.scaler != "none":  # fitted on the training part only: no statistics leak from val or test
        scaler = SCALERS[spec.scaler]().fit(X_train)
        X_train, X_val, X_test = (scaler.transform(a) for a in (X_train, X_val, X_test))
    n_classes = int(np.max(y)) + 1 if spec.task == "classification" else 0
    if spec.task == "regression":  # standardise the target too, with training statistics
        mu, sd = y_train.mean(), y_train.std()
        y_train, y_val, y_test = ((a - mu) / sd for a in (y_train, y_val, y_test))
    return Split(name, spec.task, X_train, _targets(y_train, spec.task, n_classes), X_val,
                 _targets(y_val, spec.task, n_classes), X_test, _targets(y_test, spec.task, n_classes), n_classes)
