"""Datasets: offline, leak-free splits, stratified, scaled with training statistics only, seeded; one fixed outer
test split per dataset, the same rows for every evaluation seed and every tuning split.

To see exactly which samples land in which part, a test can tag every sample with its row number: the dataset's
loader is wrapped (through monkeypatch, undone after the test) to prepend an id column, with scaling off so the id
survives. ``train_test_split``'s shuffle depends only on the number of samples, the labels and the seed, so the
tagged split is the real split.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

from study.core import data
from study.core.data import DATASETS, load

ALL = sorted(DATASETS)
SPLIT = [name for name in ALL if name != "toy"]  # the toy's two points are used whole in every part (documented)
CLASSIFICATION = [name for name in SPLIT if DATASETS[name].task == "classification"]
PARTS = ("train", "val", "test")
# the evaluation seeds of every shipped profile (full: 10) and the tuning splits (tuning_seed 10000, a run each)
SEEDS = (*range(10), 10_000, 10_001, 10_002)


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _raw(name):
    X, y = DATASETS[name].load()
    return np.asarray(X, float), np.asarray(y)


def _tagged(monkeypatch, name, seed=0):
    """The split of ``name`` with seed ``seed`` as row numbers of the raw data: {part: ids}."""
    spec = DATASETS[name]

    def with_ids():
        X, y = spec.load()
        return np.column_stack([np.arange(len(X)), X]), y

    monkeypatch.setitem(DATASETS, name, dataclasses.replace(spec, load=with_ids, scaler="none"))
    split = load(name, seed)
    monkeypatch.setitem(DATASETS, name, spec)
    return {part: getattr(split, f"X_{part}")[:, 0].astype(int) for part in PARTS}


@pytest.mark.parametrize("name", ALL)
def test_every_dataset_loads_offline(name, offline):
    s = load(name, seed=0)
    assert s.name == name and s.task == DATASETS[name].task
    for part in PARTS:
        X, Y = getattr(s, f"X_{part}"), getattr(s, f"Y_{part}")
        assert X.ndim == 2 and Y.ndim == 2 and len(X) == len(Y) > 0
        assert X.shape[1] == s.n_features and Y.shape[1] == s.n_outputs
        assert np.isfinite(X).all() and np.isfinite(Y).all()
    if s.task == "classification":
        assert s.n_classes >= 2 and s.n_outputs == s.n_classes
        for part in PARTS:  # one-hot targets
            Y = getattr(s, f"Y_{part}")
            assert set(np.unique(Y)) <= {0.0, 1.0} and np.all(Y.sum(axis=1) == 1)
        assert len(np.unique(s.labels("train"))) == s.n_classes
    else:
        assert s.n_classes == 0 and s.n_outputs == 1


@pytest.mark.parametrize("name", SPLIT)
def test_parts_are_disjoint_and_cover_the_data(name, monkeypatch):
    ids = _tagged(monkeypatch, name)
    n = len(_raw(name)[0])
    for part, part_ids in ids.items():
        assert len(np.unique(part_ids)) == len(part_ids), f"a sample appears twice in {part}"
    assert not set(ids["train"]) & set(ids["val"]), "leak: a sample in both train and val"
    assert not set(ids["train"]) & set(ids["test"]), "leak: a sample in both train and test"
    assert not set(ids["val"]) & set(ids["test"]), "leak: a sample in both val and test"
    np.testing.assert_array_equal(np.sort(np.concatenate(list(ids.values()))), np.arange(n))
    # 60 / 20 / 20
    assert abs(len(ids["test"]) - 0.2 * n) <= 1 and abs(len(ids["val"]) - 0.2 * n) <= 2
    # the tagged split is the real split: same rows, in the same order
    s, (X, _) = load(name, 0), _raw(name)
    if DATASETS[name].scaler == "none":
        np.testing.assert_array_equal(s.X_train, X[ids["train"]])


def test_the_toy_is_the_lectures_two_points_in_every_part():
    s = load("toy")
    for part in PARTS:
        np.testing.assert_array_equal(getattr(s, f"X_{part}"), [[0.5], [2.5]])
        np.testing.assert_array_equal(getattr(s, f"Y_{part}"), [[0.2], [0.9]])
        np.testing.assert_array_equal(s.rows(part), [0, 1])


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_classification_splits_are_stratified(name):
    s = load(name, seed=0)
    _, y = _raw(name)
    overall = np.bincount(y, minlength=s.n_classes) / len(y)
    for part in PARTS:
        counts = np.bincount(s.labels(part), minlength=s.n_classes)
        expected = overall * counts.sum()
        # stratified: each class within 2 samples of its overall share (plain random splits miss by ~sqrt(n))
        assert np.abs(counts - expected).max() <= 2, f"{part}: {counts} vs {np.round(expected, 1)}"


@pytest.mark.parametrize("name", SPLIT)
def test_scaling_is_fitted_on_the_training_part_only(name, monkeypatch):
    spec = DATASETS[name]
    s = load(name, seed=0)
    X, y = _raw(name)
    ids = _tagged(monkeypatch, name)
    raw_train = X[ids["train"]]
    # the expected transform, computed here from the raw training rows
    if spec.scaler == "standard":
        shift, scale = raw_train.mean(axis=0), raw_train.std(axis=0)
    elif spec.scaler == "maxabs":
        shift, scale = np.zeros(X.shape[1]), np.abs(raw_train).max(axis=0)
    else:
        shift, scale = np.zeros(X.shape[1]), np.ones(X.shape[1])
    scale = np.where(scale == 0, 1.0, scale)  # a constant feature is left unscaled (scikit-learn's convention)
    for part in PARTS:
        expected = (X[ids[part]] - shift) / scale
        np.testing.assert_allclose(getattr(s, f"X_{part}"), expected, rtol=1e-9, atol=1e-12, err_msg=part)

    varying = raw_train.std(axis=0) > 0
    if spec.scaler == "standard":
        np.testing.assert_allclose(s.X_train.mean(axis=0), 0.0, atol=1e-10)
        np.testing.assert_allclose(s.X_train.std(axis=0)[varying], 1.0, rtol=1e-10)
        # val and test are transformed with the training statistics, so they are not exactly standardised
        for part in ("val", "test"):
            Xp = getattr(s, f"X_{part}")[:, varying]
            assert np.abs(Xp.mean(axis=0)).max() > 1e-6 and np.abs(Xp.std(axis=0) - 1).max() > 1e-6
    if spec.scaler == "maxabs":
        nonzero = np.abs(raw_train).max(axis=0) > 0
        np.testing.assert_allclose(np.abs(s.X_train).max(axis=0)[nonzero], 1.0)
        maxima = np.concatenate([np.abs(s.X_val).max(axis=0), np.abs(s.X_test).max(axis=0)])
        assert np.any(maxima != 1.0)
        for part in PARTS:  # zeros stay zeros
            np.testing.assert_array_equal(getattr(s, f"X_{part}") == 0, X[ids[part]] == 0)

    if spec.task == "regression":  # the target is standardised with training statistics too
        mu, sd = y[ids["train"]].mean(), y[ids["train"]].std()
        for part in PARTS:
            np.testing.assert_allclose(getattr(s, f"Y_{part}")[:, 0], (y[ids[part]] - mu) / sd, rtol=1e-10,
                                       atol=1e-12)


@pytest.mark.parametrize("name", SPLIT)
def test_seed_changes_the_split_but_not_the_task(name, monkeypatch):
    X1, y1 = _raw(name)
    X2, y2 = _raw(name)
    np.testing.assert_array_equal(X1, X2)  # a generated set is fixed: its generator seed is pinned
    np.testing.assert_array_equal(y1, y2)
    a, b, c = _tagged(monkeypatch, name, 0), _tagged(monkeypatch, name, 0), _tagged(monkeypatch, name, 1)
    for part in PARTS:
        np.testing.assert_array_equal(a[part], b[part])  # same seed, same split
    assert set(a["train"]) != set(c["train"]) and set(a["val"]) != set(c["val"])
    np.testing.assert_array_equal(a["test"], c["test"])  # the outer test split does not move
    s0, s0_again = load(name, 0), load(name, 0)
    np.testing.assert_array_equal(s0.X_train, s0_again.X_train)
    np.testing.assert_array_equal(s0.Y_test, s0_again.Y_test)


def test_sparse_is_mostly_zeros_with_very_different_feature_frequencies():
    X, _ = _raw("sparse")
    assert (X == 0).mean() > 0.8
    frequency = (X != 0).mean(axis=0)
    assert frequency.min() > 0, "every feature occurs at least once"
    assert frequency.max() > 0.3 and frequency.max() / frequency.min() > 20
    s = load("sparse", 0)  # scaling keeps it sparse
    assert (s.X_train == 0).mean() > 0.8


def test_diabetes_is_regression():
    s = load("diabetes", 0)
    assert s.task == "regression" and DATASETS["diabetes"].task == "regression" and s.n_classes == 0
    assert s.Y_train.shape == (len(s.X_train), 1) and s.Y_train.dtype.kind == "f"
    assert len(np.unique(s.Y_train)) > 50  # a continuous target, not classes


def test_unknown_dataset_is_an_error():
    with pytest.raises(KeyError, match="unknown dataset"):
        load("no_such_set")


# --- one fixed outer test split ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_the_test_rows_are_the_same_for_every_seed_and_tuning_split(name):
    """The promise of the protocol, for every dataset: the test rows of evaluation seeds 0..9 and of tuning splits
    10000..10002 are one set of rows, disjoint from each split's training and validation rows, and the three parts
    cover the dataset."""
    n = len(_raw(name)[1])
    splits = [load(name, seed) for seed in SEEDS]
    for split in splits:
        data.check_split(split, n)
    data.check_fixed_test(splits)
    if name != "toy":  # the seeds still vary what is left: training and validation
        assert len({tuple(np.sort(s.train_rows)) for s in splits}) == len(SEEDS)
        for split in splits:
            assert not set(split.test_rows) & (set(split.train_rows) | set(split.val_rows))


@pytest.mark.parametrize("name", ALL)
def test_each_part_is_the_scaled_rows_it_names(name, monkeypatch):
    """X_part is the loaded data's rows ``part_rows``, transformed by the scaler fitted on rows ``train_rows``;
    and the rows named are the rows the tagged split (an id column) shows."""
    spec = DATASETS[name]
    X, y = _raw(name)
    split = load(name, seed=3)
    scaler = spec.transformer()
    if scaler is not None:
        scaler.fit(X[split.train_rows])
    for part in PARTS:
        rows = split.rows(part)
        assert rows.dtype == np.int64
        expected = X[rows] if scaler is None else scaler.transform(X[rows])
        np.testing.assert_allclose(getattr(split, f"X_{part}"), expected, rtol=1e-12, atol=1e-12, err_msg=part)
        if spec.task == "classification":
            np.testing.assert_array_equal(split.labels(part), y[rows])
    if name != "toy":
        ids = _tagged(monkeypatch, name, seed=3)
        for part in PARTS:
            np.testing.assert_array_equal(ids[part], split.rows(part))


def test_a_split_whose_test_rows_overlap_its_training_rows_fails_the_check():
    """Planted leaks: each must fail ``check_split`` (so the test above can fail)."""
    good = load("iris", 0)
    n = len(_raw("iris")[1])
    data.check_split(good, n)
    leaked = np.concatenate([good.test_rows[:-1], good.train_rows[:1]])  # a training row also tested
    with pytest.raises(data.SplitLeak, match="both train and test"):
        data.check_split(dataclasses.replace(good, test_rows=leaked), n)
    with pytest.raises(data.SplitLeak, match="both train and val"):
        data.check_split(dataclasses.replace(good, val_rows=np.concatenate([good.val_rows[:-1],
                                                                            good.train_rows[-1:]])), n)
    with pytest.raises(data.SplitLeak, match="cover"):  # a row in no part
        data.check_split(dataclasses.replace(good, test_rows=np.append(good.test_rows[:-1], n)), n)
    with pytest.raises(data.SplitLeak, match="twice"):
        data.check_split(dataclasses.replace(good, test_rows=np.append(good.test_rows[:-1], good.test_rows[0])), n)
    with pytest.raises(data.SplitLeak, match="names no rows"):
        data.check_split(dataclasses.replace(good, test_rows=None), n)


def _copied_data_module(tmp_path, old: str, new: str):
    """study/core/data.py with one change, imported under another name: a planted version of the loader."""
    source = Path(data.__file__).read_text()
    assert source.count(old) == 1, f"the plant needs {old!r} once in data.py"
    path = tmp_path / "planted_data.py"
    path.write_text(source.replace(old, new))
    spec = importlib.util.spec_from_file_location("planted_data", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["planted_data"] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["planted_data"]
    return module


def test_a_loader_that_draws_the_test_rows_from_the_seed_fails_the_check(tmp_path):
    """The old protocol, planted: the test part drawn from ``seed`` gives each seed its own test rows, so the
    tuning split trains on other seeds' test rows: ``check_fixed_test`` must refuse it, on every dataset."""
    leaky = _copied_data_module(tmp_path, "random_state=TEST_SPLIT_SEED", "random_state=seed")
    for name in SPLIT:
        splits = [leaky.load(name, seed) for seed in SEEDS]
        for split in splits:  # each split alone is a fine split...
            data.check_split(split, len(_raw(name)[1]))
        with pytest.raises(data.SplitLeak, match="move with the seed"):  # ...but the test rows move
            data.check_fixed_test(splits)
    data.check_fixed_test([load("iris", seed) for seed in SEEDS])  # the real one passes


def test_the_split_sizes_do_not_depend_on_the_seed():
    for name in ("iris", "digits", "diabetes"):
        n = len(_raw(name)[1])
        for val, test in ((0.2, 0.2), (0.1, 0.3)):
            sizes = data.split_sizes(n, val, test)
            for seed in (0, 10_000):
                split = load(name, seed, val, test)
                assert {part: len(split.rows(part)) for part in PARTS} == sizes


def test_registry_entries_are_well_formed():
    for name, spec in DATASETS.items():
        assert spec.task in ("classification", "regression"), name
        assert spec.scaler in ("none", *data.SCALERS), name
        assert spec.description, name
