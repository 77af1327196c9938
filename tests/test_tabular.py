"""A user's CSV file as a dataset (``csv:PATH``): read, typed, checked, encoded on training rows only, split like a
bundled set (the same fixed test rows), named by its stem, told apart by a digest; and every bad file refused in
one line with exit status 2, nothing written.

The files are made here from scikit-learn's generators and written with pandas, as a user would.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification, make_regression

from study.core import data, tabular
from study.errors import BadInput
from study.sweep import config

REPO = Path(__file__).resolve().parents[1]
PARTS = ("train", "val", "test")
SEEDS = (0, 1, 2, 10_000, 10_001)
NUMERIC = ["a", "b", "c", "d"]
# The one command the README shows to make a CSV file from scikit-learn (tested below): 500 rows, six numeric
# features, one categorical, a binary label named target.
def _readme_command() -> str:
    """The Python one-liner in the README's "Your own data" section that makes my_data.csv."""
    section = (REPO / "README.md").read_text().split("## Your own data", 1)[1].split("\n## ", 1)[0]
    found = re.search(r'^\.venv/bin/python -c "(.+)"$', section, flags=re.M)
    assert found, "the README's own-data section has no `.venv/bin/python -c` command"
    return found.group(1)


def _classification(n=300):
    """Four numeric features, a categorical ``colour``, a text label; ``violet`` only in one test row."""
    X, y = make_classification(n_samples=n, n_features=4, n_informative=3, n_redundant=0, random_state=0)
    frame = pd.DataFrame(X * [1, 10, 100, 0.1] + [0, 5, -50, 2], columns=NUMERIC)  # scales to standardise away
    frame["colour"] = np.random.default_rng(0).choice(["red", "green", "blue"], n)
    frame["target"] = np.array(["no", "yes"])[y]
    test_rows = data.split_rows(y, "classification", 0, 0.2, 0.2)["test"]  # the same for every seed
    frame.loc[test_rows[0], "colour"] = "violet"
    return frame, test_rows[0]


def _write(tmp_path, frame, name="my_data.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


@pytest.fixture
def clf_csv(tmp_path):
    frame, violet_row = _classification()
    return _write(tmp_path, frame), frame, violet_row


@pytest.fixture
def reg_csv(tmp_path):
    X, y = make_regression(n_samples=200, n_features=3, noise=5.0, random_state=1)
    frame = pd.DataFrame(X, columns=["p", "q", "r"])
    frame["shape"] = np.random.default_rng(1).choice(["round", "square"], 200)
    frame["price"] = 1000 + 50 * y  # the last column: the label, a quantity
    return _write(tmp_path, frame, "prices.csv"), frame


# --- a classification file ---------------------------------------------------------------------------------------
def test_a_classification_csv_splits_like_a_bundled_set(clf_csv):
    path, frame, _ = clf_csv
    name = "csv:" + path
    splits = [data.load(name, seed) for seed in SEEDS]
    for split in splits:
        data.check_split(split, len(frame))
        assert split.task == "classification" and split.n_classes == 2 and split.name == name
        for part in PARTS:  # the labels are the file's, in its rows' order
            np.testing.assert_array_equal(split.labels(part), (frame["target"].to_numpy()[split.rows(part)] == "yes"))
    data.check_fixed_test(splits)
    assert len({tuple(s.train_rows) for s in splits}) == len(SEEDS)
    # stratified like a bundled set: each part within a row of the file's class shares
    share = (frame["target"] == "yes").mean()
    for part in PARTS:
        labels = splits[0].labels(part)
        assert abs(labels.sum() - share * len(labels)) <= 2


def test_numeric_features_are_standardised_with_training_statistics(clf_csv):
    path, frame, _ = clf_csv
    split = data.load("csv:" + path, seed=1)
    raw = frame[NUMERIC].to_numpy()
    train = raw[split.train_rows]
    mu, sd = train.mean(axis=0), train.std(axis=0)
    for part in PARTS:
        np.testing.assert_allclose(getattr(split, f"X_{part}")[:, :4], (raw[split.rows(part)] - mu) / sd,
                                   rtol=1e-9, atol=1e-12, err_msg=part)
    np.testing.assert_allclose(split.X_train[:, :4].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(split.X_train[:, :4].std(axis=0), 1.0, rtol=1e-12)
    assert np.abs(split.X_test[:, :4].mean(axis=0)).max() > 1e-6  # the test part is not its own reference


def test_categories_are_fitted_on_the_training_rows_only(clf_csv):
    """``violet`` appears in one test row only: no column for it, and that row's one-hot block is all zeros; every
    other row has exactly one colour."""
    path, frame, violet_row = clf_csv
    split = data.load("csv:" + path, seed=0)
    assert split.n_features == 4 + 3  # blue, green, red (sorted): violet was never seen in training
    colours = frame["colour"].to_numpy()
    for part in PARTS:
        block, rows = getattr(split, f"X_{part}")[:, 4:], split.rows(part)
        expected = np.stack([colours[rows] == c for c in ("blue", "green", "red")], axis=1).astype(float)
        np.testing.assert_array_equal(block, expected, err_msg=part)
    at = int(np.flatnonzero(split.test_rows == violet_row)[0])
    np.testing.assert_array_equal(split.X_test[at, 4:], [0, 0, 0])
    assert violet_row not in split.train_rows and violet_row not in split.val_rows


def test_a_category_in_training_rows_only_gets_its_column(tmp_path):
    """The encoder's categories are the training rows' (planted the other way round: only training has amber)."""
    frame, _ = _classification()
    split0 = data.load("csv:" + _write(tmp_path, frame), seed=0)
    frame.loc[split0.train_rows[0], "colour"] = "amber"
    again = data.load("csv:" + _write(tmp_path, frame, "amber.csv"), seed=0)
    assert again.n_features == 4 + 4  # amber, blue, green, red
    assert again.X_train[0, 4] == 1.0 and again.X_val[:, 4].sum() == 0 and again.X_test[:, 4].sum() == 0


# --- a regression file ---------------------------------------------------------------------------------------------
def test_a_regression_csv_standardises_its_target_with_training_statistics(reg_csv):
    path, frame = reg_csv
    splits = [data.load("csv:" + path, seed) for seed in SEEDS]
    data.check_fixed_test(splits)
    split = splits[0]
    data.check_split(split, len(frame))
    assert split.task == "regression" and split.n_classes == 0 and split.n_outputs == 1
    assert split.n_features == 3 + 2  # p, q, r and the shape's two categories
    y = frame["price"].to_numpy()
    mu, sd = y[split.train_rows].mean(), y[split.train_rows].std()
    for part in PARTS:
        np.testing.assert_allclose(getattr(split, f"Y_{part}")[:, 0], (y[split.rows(part)] - mu) / sd, rtol=1e-10)
    np.testing.assert_allclose(split.Y_train.mean(), 0.0, atol=1e-12)


# --- the label rule ----------------------------------------------------------------------------------------------
def _table(tmp_path, columns: dict, name="t.csv", **read):
    return tabular.read(_write(tmp_path, pd.DataFrame(columns), name), **read)


@pytest.mark.parametrize("label, task, classes", [
    (["cat", "dog", "cat", "emu"] * 25, "classification", ("cat", "dog", "emu")),
    ([True, False] * 50, "classification", ("false", "true")),
    (list(range(50)) * 2, "classification", tuple(str(i) for i in range(50))),  # 50 whole numbers: classes
    (list(range(51)) + list(range(49)), "regression", ()),  # 51: a quantity
    ([1.0, 2.0, 3.0, 2.0] * 25, "classification", ("1", "2", "3")),  # whole numbers written as floats
    ([0.5, 1.25, 3.0, 2.0] * 25, "regression", ()),
])
def test_the_label_rule(tmp_path, label, task, classes):
    table = _table(tmp_path, {"x": np.arange(100.0), "label": label})
    assert (table.task, table.classes, table.label) == (task, classes, "label")
    if task == "classification":
        np.testing.assert_array_equal(np.array(classes)[table.y], pd.Series(label).astype(str).str.lower()
                                      .str.replace(r"\.0$", "", regex=True))


def test_the_label_is_the_column_named_target_else_the_last(tmp_path):
    table = _table(tmp_path, {"target": ["a", "b"] * 50, "x": np.arange(100.0), "z": np.ones(100)})
    assert table.label == "target" and table.numeric == ("x", "z")
    table = _table(tmp_path, {"x": np.arange(100.0), "kind": ["a", "b"] * 50}, "u.csv")
    assert table.label == "kind" and table.numeric == ("x",)


def test_booleans_and_text_features_are_categorical_numbers_numeric(tmp_path):
    table = _table(tmp_path, {"n": np.arange(100), "flag": ["True", "false", "TRUE", "False"] * 25,
                              "colour": ["red", "blue"] * 50, "y": [0, 1] * 50})
    assert table.numeric == ("n",) and table.categorical == ("flag", "colour")
    assert set(table.features["flag"]) == {"true", "false"}  # one category whatever the case


# --- missing values ----------------------------------------------------------------------------------------------
def _with_gaps(tmp_path):
    frame, _ = _classification()
    frame.loc[[3, 40, 41], "b"] = np.nan
    frame.loc[7, "colour"] = None
    frame.loc[9, "c"] = np.inf
    return _write(tmp_path, frame), frame


def test_rows_with_missing_values_are_refused_naming_the_file_the_column_and_the_count(tmp_path):
    path, _ = _with_gaps(tmp_path)
    with pytest.raises(BadInput) as error:
        data.load("csv:" + path, 0)
    assert error.value.where == path
    assert "column 'b': 3 rows with a missing or infinite value" in error.value.problem
    assert "2 other columns; 5 rows in all" in error.value.problem and "missing_values=drop" in error.value.problem


def test_rows_with_missing_values_are_dropped_with_a_warning_when_asked(tmp_path):
    path, frame = _with_gaps(tmp_path)
    with pytest.warns(UserWarning, match=r"dropped 5 of 300 rows .*'b', 'c', 'colour'"):
        split = data.load("csv:" + path, 0, missing="drop")
    data.check_split(split, 295)  # rows index the rows as loaded: the file's rows less the five dropped
    assert np.isfinite(split.X_train).all() and np.isfinite(split.X_test).all()
    cfg = config.load_sweep("smoke", [f"datasets=csv:{path}", "missing_values=drop", "batch_sizes=full"])
    assert cfg.profile.missing_values == "drop" and cfg.stored()["missing_values"] == "drop"
    with pytest.raises(BadInput, match="missing_values=drop"):
        config.load_sweep("smoke", [f"datasets=csv:{path}", "batch_sizes=full"])


# --- names and digests -------------------------------------------------------------------------------------------
def test_a_csv_dataset_is_shown_by_its_stem_and_told_apart_by_its_digest(tmp_path, clf_csv):
    path, frame, _ = clf_csv
    (tmp_path / "other").mkdir()
    frame.iloc[:-1].to_csv(tmp_path / "other" / "my_data.csv", index=False)  # one name, another file
    first, second = data.describe("csv:" + path), data.describe(f"csv:{tmp_path}/other/my_data.csv")
    assert first.name == second.name == data.display_name("csv:" + path) == "my_data"
    assert first.source == path and first.digest == hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    assert first.digest != second.digest
    assert data.describe("iris") == ("iris", data.DATASETS["iris"].description, None)


def test_a_cell_of_a_csv_dataset_is_named_by_the_files_stem_and_a_bundled_cell_as_before(clf_csv):
    from study.sweep import tuning

    cell = ("csv:" + clf_csv[0], "adam", "full")
    assert data.display_key(cell) == "my_data/adam/full" and data.display_key(cell, " / ") == "my_data / adam / full"
    assert tuning.study_name("s", cell) == "s/my_data/adam/full"
    assert tuning.study_name("s", ("iris", "adam", "32"), "random") == "s/iris/adam/32/random"
    assert data.display_key(()) == ""


def test_the_profile_names_a_csv_dataset_by_its_absolute_path_and_keys_its_epochs_by_its_stem(clf_csv, tmp_path,
                                                                                             monkeypatch):
    path, _, _ = clf_csv
    monkeypatch.chdir(tmp_path)
    cfg = config.load_sweep("smoke", ["datasets=csv:my_data.csv,iris", "epochs.my_data=3", "batch_sizes=full,32"])
    assert cfg.profile.datasets == ("csv:" + path, "iris")
    assert cfg.profile.per_name("epochs") == {"csv:" + path: 3, "iris": 8}
    assert cfg.epochs_of("csv:" + path) == 3
    with pytest.raises(BadInput, match=r"epochs\.my_dat: not in the sweep; names: my_data, iris"):
        config.load_sweep("smoke", ["datasets=csv:my_data.csv,iris", "epochs.my_dat=3"])


def test_an_edited_file_is_another_sweep(clf_csv):
    """The file's digest is in the config's hash, so resuming a sweep under its name after editing the file is
    refused (study.sweep.tuning.storage.record_sweep), not mixed with the old file's results."""
    path, frame, _ = clf_csv
    args = [f"datasets=csv:{path}", "batch_sizes=full"]
    before = config.load_sweep("smoke", args)
    assert before.digests == {"csv:" + path: data.describe("csv:" + path).digest}
    frame.iloc[::-1].to_csv(path, index=False)
    after = config.load_sweep("smoke", args)
    assert after.digests != before.digests and after.hash != before.hash
    assert config.load_sweep("smoke", ["datasets=iris"]).digests == {}


def test_a_csv_sweeps_record_holds_its_file_keys_and_reads_back_as_the_same_sweep(clf_csv):
    """The stored record (the stores' _meta, config.yaml, the report's input) of a sweep with a file carries the
    missing-value rule and the digests, and ``Sweep.from_stored`` gives back the same sweep (epochs keyed by the
    file's stem again); a sweep of bundled sets has neither key, so its hash is the one it always had."""
    from study.schema.sweep import Sweep

    path, _, _ = clf_csv
    cfg = config.load_sweep("smoke", [f"datasets=csv:{path},iris", "epochs.my_data=3", "batch_sizes=full"])
    stored = cfg.stored()
    assert stored["missing_values"] == "refuse" and stored["digests"] == cfg.digests
    assert stored["epochs"] == {"csv:" + path: 3, "iris": 8}
    back = Sweep.from_stored(stored)
    assert back.stored() == stored and back.hash == cfg.hash and back.epochs_of("csv:" + path) == 3
    bundled = config.load_sweep("smoke", ["datasets=iris", "batch_sizes=full"]).stored()
    assert not {"missing_values", "digests"} & set(bundled)
    with pytest.raises(BadInput, match=r"digests: must name exactly the CSV datasets"):
        Sweep.from_stored({**stored, "digests": {}})


# --- bad input: one line, exit 2, nothing written ------------------------------------------------------------------
def _bad_files(tmp_path) -> dict:
    """{case: (the datasets= value, a word the line must name)}; the files written here."""
    frame, _ = _classification()
    cases = {}

    def case(name, content, word, datasets=None):
        path = tmp_path / f"{name}.csv"
        if isinstance(content, pd.DataFrame):
            content.to_csv(path, index=False)
        elif content is not None:
            path.write_bytes(content)
        cases[name] = (datasets or f"csv:{path}", word if word != "PATH" else str(path))

    case("no_such_file", None, "no such file")
    case("binary", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a CSV file")
    case("ragged", b"a,b,target\n1,2,0\n3,4,1,5\n", "not a CSV file")
    case("empty", b"", "not a CSV file")
    case("no_header", frame.to_csv(index=False, header=False).encode(), "header row")
    case("semicolons", frame.to_csv(index=False, sep=";").encode(), "one feature column")
    case("one_class", frame.assign(target="yes"), "one class only")
    case("constant_target", frame.assign(target=2.5), "one value only")
    case("few_rows", frame.iloc[:8], "too few rows")
    case("few_for_the_batch", frame.iloc[:150], "batch size 128")  # 90 training rows
    case("free_text", frame.assign(note=[f"comment {i}" for i in range(len(frame))]), "column 'note': text")
    case("missing", frame.assign(a=frame["a"].where(frame.index > 2)), "column 'a': 3 rows")
    case("iris", frame, "bundled dataset's name")
    case("comma", frame, "comma", datasets=f"csv:{tmp_path}/a,b.csv")
    (tmp_path / "twin").mkdir()
    frame.to_csv(tmp_path / "twin" / "iris_twin.csv", index=False)
    frame.to_csv(tmp_path / "iris_twin.csv", index=False)
    case("same_stem", None, "both be shown as 'iris_twin'",
         datasets=f"csv:{tmp_path}/iris_twin.csv,csv:{tmp_path}/twin/iris_twin.csv")
    case("bad stem", frame, "stem 'bad stem'")
    return cases


def _sweep_in_process(args):
    """``python -m pipelines.sweep ARGS`` through its entry point in this process: (exit status, stderr)."""
    from pipelines import cli, sweep as sweep_cli

    saved, err = dict(os.environ), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), \
                pytest.raises(SystemExit) as exited, warnings.catch_warnings():
            cli.run(sweep_cli.main, args)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return exited.value.code, err.getvalue()


def test_each_bad_file_is_one_line_exit_2_and_nothing_written(tmp_path):
    cases = _bad_files(tmp_path)
    for name, (datasets, word) in cases.items():
        runs = tmp_path / f"runs-{name}"
        code, err = _sweep_in_process(["--profile", "smoke", "--runs-dir", str(runs), f"datasets={datasets}",
                                       "optimizers=adam", "batch_sizes=full,128", "trials=2", "epochs=2", "seeds=1",
                                       "--workers", "1", f"name=bad-{name.replace(' ', '-')}"])
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (name, code, err)
        assert word in lines[0], (name, lines[0])
        path = datasets.removeprefix("csv:").split(",")[0]
        named = path if name not in ("comma", "same_stem", "iris", "bad stem") else "datasets"
        assert named in lines[0], (name, lines[0])
        assert not runs.exists(), (name, list(runs.rglob("*")))
    assert not (REPO / "reports" / "bad-no_such_file").exists()


def test_an_unknown_name_says_a_csv_file_is_csv_path():
    with pytest.raises(BadInput, match=r"unknown name 'mydata.csv'; choose from .*, or csv:PATH for a CSV file$"):
        config.load_sweep("smoke", ["datasets=mydata.csv"])


# --- the README's command, and a real sweep ------------------------------------------------------------------------
def test_the_readme_command_makes_a_csv_the_default_profile_takes(tmp_path):
    subprocess.run([sys.executable, "-c", _readme_command()], cwd=tmp_path, check=True, timeout=120)
    table = tabular.read(str(tmp_path / "my_data.csv"))
    assert (table.task, table.classes, table.categorical, len(table.y)) == ("classification", ("0", "1"),
                                                                            ("size",), 500)
    cfg = config.load_sweep("default", [f"datasets=csv:{tmp_path}/my_data.csv"])
    assert cfg.profile.batch_sizes == ("full", "128", "64", "32", "1")  # 300 training rows hold the largest batch


@pytest.mark.slow
def test_a_real_sweep_on_csv_files_names_them_by_their_stems(tmp_path, clf_csv, reg_csv):
    """A classification and a regression file through the real pipeline (Optuna journal, MLflow SQLite store) and
    read back as the report reads a sweep: every MLflow run's tag and name, every Optuna study and every table the
    report is given name a file by its stem, never its path; the cell run's dataset input records the file's path
    and digest."""
    from mlflow import MlflowClient

    from study.report import inputs
    from study.sweep import tuning

    clf, reg = clf_csv[0], reg_csv[0]
    runs = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "pipelines.sweep", "--profile", "smoke", "--runs-dir", str(runs),
                           f"datasets=csv:{clf},csv:{reg}", "optimizers=adam", "batch_sizes=full", "trials=2",
                           "epochs=2", "seeds=1", "random_arm=false", "--workers", "1", "name=csv-sweep"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert clf not in proc.stderr and reg not in proc.stderr, "a message named a file by its path"
    client = MlflowClient(f"sqlite:///{runs}/mlflow.db")
    experiment = client.get_experiment_by_name("csv-sweep")
    everything = client.search_runs([experiment.experiment_id], "tags.role != 'report'", max_results=1000)
    cells = [run for run in everything if run.data.tags["role"] == "cell"]
    assert len(cells) == 2 and len(everything) > len(cells)  # the trials and evaluations too
    assert {run.data.tags["dataset"] for run in everything} == {"my_data", "prices"}
    assert {run.info.run_name for run in cells} == {"my_data/adam/full", "prices/adam/full"}
    inputs_of = {d.dataset.name: d.dataset for run in cells for d in run.inputs.dataset_inputs}
    assert set(inputs_of) == {"my_data", "prices"}
    assert inputs_of["my_data"].digest == data.describe("csv:" + clf).digest
    assert inputs_of["prices"].digest == data.describe("csv:" + reg).digest
    assert clf in inputs_of["my_data"].source and reg in inputs_of["prices"].source
    storage = tuning.open_storage(tuning.storage_url(runs, "csv-sweep"))
    studies = set(tuning.study_attrs(storage, "csv-sweep"))
    assert {"csv-sweep/my_data/adam/full", "csv-sweep/prices/adam/full"} <= studies
    assert not [name for name in studies if str(tmp_path) in name]
    results = inputs.load(runs, "csv-sweep")
    assert results.datasets == ("my_data", "prices") and results.epochs("my_data") == 2
    for table in (results.evals, results.curves, results.trials, results.cells):
        assert set(table["dataset"]) == {"my_data", "prices"}, table
    assert set(results.evals["n_train"]) == {180, 120}  # 300 and 200 rows at 60 / 20 / 20
    # and through to the report: both files by their stems, the regression one on its own scale
    out = tmp_path / "report"
    built = subprocess.run([sys.executable, "-m", "pipelines.report", "--runs-dir", str(runs), "--sweep", "csv-sweep",
                            "--out", str(out), "--no-log"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    markdown = (out / "report.md").read_text()
    assert "my_data" in markdown and "prices" in markdown  # (the paths only where the report names its stores)
    cells = pd.read_csv(out / "tables" / "cells.csv")
    assert set(cells["dataset"]) == {"my_data", "prices"}, cells
