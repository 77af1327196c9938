"""`python -m pipelines.bench`: a tiny run end to end, the JSON's structure, sane accuracies, bad input.

A benchmark is not a test: nothing here checks a time, only that the numbers exist, are positive and consistent.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SOLVERS = ("momentum", "nag", "adam")
BATCHES = ("full", "128", "64", "32", "1")


def bench(*args, cwd=REPO, timeout=120):
    return subprocess.run([sys.executable, "-m", "pipelines.bench", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    where = tmp_path_factory.mktemp("bench")
    out = where / "bench.json"
    proc = bench("--quick", "--population", "1,4", "--out", str(out), "--runs-dir", str(where / "runs"))
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc.stdout


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_every_cell_is_measured(quick):
    result, _ = quick
    assert {(c["solver"], c["batch_size"]) for c in result["cells"]} == {(s, b) for s in SOLVERS for b in BATCHES}
    assert result["network"]["sizes"] == [64, 32, 10] and result["network"]["parameters"] == 2410
    assert positive(result["limit"]["gflops"]) and positive(result["limit"]["ms_per_epoch"])
    for cell in result["cells"]:
        ms = cell["ms_per_epoch"]
        assert set(ms) == {"sklearn", "ours", "ours_noval", "readable"} and all(positive(v) for v in ms.values())
        assert all(len(s) == cell["repeats"] for s in cell["ms_per_epoch_samples"].values())
        for variant in ("ours", "ours_noval", "readable"):
            assert cell["speedup_vs_sklearn"][variant] == pytest.approx(ms["sklearn"] / ms[variant])
            assert cell["x_limit"][variant] == pytest.approx(ms[variant] / result["limit"]["ms_per_epoch"])
        assert not any(cell["diverged"].values()) and cell["short_runs"] == []
        assert cell["validate_changes_nothing"]  # the validation pass only observes
    assert {t["target"] for t in result["targets"]} == {"speedup_batch_32", "speedup_batch_1", "speedup_batch_full",
                                                        "x_limit_batch_32"}


@pytest.mark.slow
def test_accuracies_are_sane_and_side_by_side(quick):
    result, _ = quick
    for cell in result["cells"]:
        acc = cell["test_accuracy"]
        for who in ("sklearn", "ours"):
            assert all(0.0 <= a <= 1.0 for a in acc[who]["per_seed"])
            assert len(acc[who]["per_seed"]) == cell["repeats"]
        if cell["batch_size"] in ("32", "1"):  # enough updates in a quick run to have learnt digits
            assert acc["ours"]["mean"] > 0.75 and acc["sklearn"]["mean"] > 0.75, cell
            assert abs(acc["ours"]["mean"] - acc["sklearn"]["mean"]) < 0.1, cell


@pytest.mark.slow
def test_population_and_sweep_sections(quick):
    result, stdout = quick
    pop = result["population"]
    assert pop["ks"] == [1, 4] and pop["dataset"] == "digits" and pop["small_dataset"]["dataset"] == "moons"
    assert set(pop["ms_per_network_epoch"]) == set(BATCHES)
    for batch, row in pop["ms_per_network_epoch"].items():
        assert set(row) == {"1", "4"} and all(positive(v) for v in row.values())
        assert pop["best_k"][batch] == min((1, 4), key=lambda k: row[str(k)])
    assert result["sweep"]["measured"] is False
    assert "default sweep not measured yet: run make sweep" in stdout
    assert "x faster" in stdout and "population" in stdout and "readable" in stdout
    assert not (Path(result["config"]["runs_dir"]) / "optuna").exists()  # looking created no journal


def test_the_sweep_section_reads_the_sweeps_own_timing_record(tmp_path, monkeypatch):
    """Two workers side by side: the wall time is the longer one's, the throughput all network-epochs over it, and
    the shares are of the summed wall time."""
    from study.sweep import tuning
    from study.tools import benchmark

    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)
    cfg = benchmark.BenchConfig(runs_dir=str(tmp_path), sweep="default")
    assert benchmark.measure_sweep(cfg, log=lambda line: None)["measured"] is False
    storage = tuning.open_storage(tuning.storage_url(tmp_path, "default"))
    tuning.record_timing(storage, "default", "w1", {"wall": 400.0, "network_epochs": 30_000, "mlflow": 12.0,
                                                    "optuna": 8.0})
    tuning.record_timing(storage, "default", "w2", {"wall": 380.0, "network_epochs": 28_000, "mlflow": 10.0,
                                                    "optuna": 9.0})
    lines = []
    sweep = benchmark.measure_sweep(cfg, log=lines.append)
    assert sweep["measured"] and sweep["workers"] == 2 and sweep["wall_seconds"] == 400.0
    assert sweep["network_epochs_per_second"] == pytest.approx(58_000 / 400.0)
    assert sweep["tracking_share"] == pytest.approx(22.0 / 780.0)
    assert sweep["optuna_share"] == pytest.approx(17.0 / 780.0)
    assert sweep["targets"]["wall_seconds"]["met"] and sweep["targets"]["tracking_and_optuna_share"]["met"]
    assert "145 network-epochs/s" in lines[0]


@pytest.mark.parametrize("args, where", [
    (["--batch-sizes", "full,0"], "--batch-sizes"),
    (["--batch-sizes", "5000"], "--batch-sizes"),
    (["--solvers", "sgd"], "--solvers"),
    (["--repeats", "-1"], "--repeats"),
    (["--dataset", "diabetes"], "--dataset"),
    (["--frobnicate"], "python -m pipelines.bench"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, where):
    out = tmp_path / "bench.json"
    proc = bench(*args, "--out", str(out))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and where in lines[0], proc.stderr
    assert not out.exists()


def test_help():
    proc = bench("--help")
    assert proc.returncode == 0 and "--quick" in proc.stdout and "--out" in proc.stdout


@pytest.mark.slow
def test_the_table_shows_a_measured_sweep(quick):
    from study.tools import bench_table

    result, _ = quick
    sweep = {"measured": True, "sweep": "default", "workers": 2, "wall_seconds": 400.0, "network_epochs": 58_000,
             "network_epochs_per_second": 145.0, "tracking_share": 0.03, "optuna_share": 0.02,
             "targets": {"wall_seconds": {"want": "<= 600", "met": True},
                         "tracking_and_optuna_share": {"want": "<= 0.15", "met": True}}}
    table = bench_table.format_table({**result, "sweep": sweep})
    assert "default sweep (its own record, 2 worker(s)): 400 s wall, 58000 network-epochs, 145 network-epochs/s; " \
           "tracking 3.0%, optuna 2.0% of wall time" in table
    assert "wall time want <= 600 s: met; tracking + optuna want <= 0.15: met" in table


def _sklearn_weights(clf, net):
    theta = np.zeros((1, net.n_params))
    p = net.unpack(theta)
    for i, (W, b) in enumerate(zip(clf.coefs_, clf.intercepts_), start=1):
        p[f"W{i}"][0], p[f"b{i}"][0] = W, b
    return theta


def _digits():
    from study.core import data, nn
    from study.tools import benchmark

    split = data.load("digits", 0)
    return benchmark, split, nn.MLP((split.n_features, 32, split.n_outputs), activation="relu")


def test_our_start_is_mlpclassifiers_own_initial_weights():
    """One full-batch step with a learning rate of 1e-300 leaves MLPClassifier's weights where they started."""
    from sklearn.neural_network import MLPClassifier

    benchmark, split, net = _digits()
    for seed in (0, 3):
        clf = MLPClassifier(hidden_layer_sizes=(32,), activation="relu", solver="sgd", learning_rate_init=1e-300,
                            momentum=0.0, alpha=0.0, batch_size=split.X_train.shape[0], max_iter=1,
                            random_state=seed)
        with pytest.warns(Warning):  # max_iter reached
            clf.fit(split.X_train, split.labels("train"))
        np.testing.assert_array_equal(benchmark.sklearn_initial_theta(net, seed), _sklearn_weights(clf, net))


def test_full_batch_momentum_follows_mlpclassifiers_trajectory():
    """Same start, full batch, the same momentum rule (v = gamma v + eta g; w -= v): after 20 epochs our weights
    are scikit-learn's to rounding, an independent implementation of the network, its gradient and the rule."""
    from sklearn.neural_network import MLPClassifier

    from study.core import train

    benchmark, split, net = _digits()
    clf = MLPClassifier(hidden_layer_sizes=(32,), activation="relu", solver="sgd", learning_rate="constant",
                        learning_rate_init=0.05, momentum=0.9, nesterovs_momentum=False, alpha=0.0,
                        batch_size=split.X_train.shape[0], max_iter=20, tol=0.0, n_iter_no_change=20,
                        shuffle=False, random_state=1)
    with pytest.warns(Warning):
        clf.fit(split.X_train, split.labels("train"))
    ours = train.train(net, split, "momentum", {"eta": np.array([0.05]), "gamma": np.array([0.9])}, "full", 20, 1,
                       benchmark.sklearn_initial_theta(net, 1), validate=False)
    np.testing.assert_allclose(ours.theta, _sklearn_weights(clf, net), rtol=0, atol=1e-9)
