"""The lecture pipeline end to end: its CSV against an independent plain-Python reading of the lecture's equations,
its figures (the registry's colours and names, no backend chosen), the claims' numbers it records, its MLflow runs,
and its refusal of bad input (one line, exit 2, nothing written).

The pipeline runs once per session in a subprocess (about 15-25 s); the other tests read what it wrote.
"""
from __future__ import annotations

import ast
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from study.core import optim
from study.errors import BadInput
from study.lecture import evidence, toy as lecture

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "conf" / "lecture.yaml"
COLUMNS = ["optimizer", "batch_size", "epoch", "step", "w", "b", "loss"]
OPTIMIZERS = ["gd", "momentum", "nag", "adagrad", "rmsprop", "adam"]
MODES = ["full", "1"]
# The lecture's settings, written out here rather than read from conf/: the test pins the contract.
LECTURE_HYPER = {
    "gd": {"eta": 1.0},
    "momentum": {"eta": 1.0, "gamma": 0.9},
    "nag": {"eta": 1.0, "gamma": 0.9},
    "adagrad": {"eta": 0.1, "eps": 1e-8},
    "rmsprop": {"eta": 0.1, "beta": 0.9, "eps": 1e-8},
    "adam": {"eta": 0.1, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
}
EPOCHS = 1000
FIGURES = ["error_surface.png", "contour_trajectories.png", "near_minimum.png", "loss_vs_epoch.png",
           "gd_initializations.png", "gd_learning_rates.png", "momentum_pulses.png", "adagrad_sparse_features.png"]


# --- An independent reference: the lecture's equations in plain Python, no numpy, no project code ---------------
X, Y = [0.5, 2.5], [0.2, 0.9]


def f(w, b, x):
    return 1.0 / (1.0 + math.exp(-(w * x + b)))


def error(w, b):
    return sum(0.5 * (f(w, b, x) - y) ** 2 for x, y in zip(X, Y))


def gradient(w, b, points):
    """Summed over the batch's points, as in the lecture's do_gradient_descent."""
    dw = db = 0.0
    for x, y in points:
        fx = f(w, b, x)
        dw += (fx - y) * fx * (1 - fx) * x
        db += (fx - y) * fx * (1 - fx)
    return dw, db


def reference(optimizer, mode, h, epochs=EPOCHS, w=-2.0, b=-2.0):
    """Rows (epoch, step, w, b, error) from the lecture's update rules (with its code's slips corrected)."""
    points = list(zip(X, Y))
    batches = [points] if mode == "full" else [[p] for p in points]  # the given order, no shuffling
    vw = vb = mw = mb = 0.0
    t = 0
    rows = [(0, 0, w, b, error(w, b))]
    for epoch in range(1, epochs + 1):
        for batch in batches:
            t += 1
            if optimizer == "gd":
                dw, db = gradient(w, b, batch)
                w, b = w - h["eta"] * dw, b - h["eta"] * db
            elif optimizer == "momentum":
                dw, db = gradient(w, b, batch)
                vw, vb = h["gamma"] * vw + h["eta"] * dw, h["gamma"] * vb + h["eta"] * db
                w, b = w - vw, b - vb
            elif optimizer == "nag":  # w_temp = w - gamma v; w = w_temp - eta grad(w_temp); v = gamma v + eta grad
                w_temp, b_temp = w - h["gamma"] * vw, b - h["gamma"] * vb
                dw, db = gradient(w_temp, b_temp, batch)
                w, b = w_temp - h["eta"] * dw, b_temp - h["eta"] * db
                vw, vb = h["gamma"] * vw + h["eta"] * dw, h["gamma"] * vb + h["eta"] * db
            elif optimizer == "adagrad":
                dw, db = gradient(w, b, batch)
                vw, vb = vw + dw * dw, vb + db * db
                w -= h["eta"] / (math.sqrt(vw) + h["eps"]) * dw
                b -= h["eta"] / (math.sqrt(vb) + h["eps"]) * db
            elif optimizer == "rmsprop":
                dw, db = gradient(w, b, batch)
                vw = h["beta"] * vw + (1 - h["beta"]) * dw * dw
                vb = h["beta"] * vb + (1 - h["beta"]) * db * db
                w -= h["eta"] / (math.sqrt(vw) + h["eps"]) * dw
                b -= h["eta"] / (math.sqrt(vb) + h["eps"]) * db
            elif optimizer == "adam":  # m from m_{t-1} (the slide's v_{t-1} is a slip), bias-corrected
                dw, db = gradient(w, b, batch)
                mw, mb = h["beta1"] * mw + (1 - h["beta1"]) * dw, h["beta1"] * mb + (1 - h["beta1"]) * db
                vw = h["beta2"] * vw + (1 - h["beta2"]) * dw * dw
                vb = h["beta2"] * vb + (1 - h["beta2"]) * db * db
                m_hat_w, m_hat_b = mw / (1 - h["beta1"] ** t), mb / (1 - h["beta1"] ** t)
                v_hat_w, v_hat_b = vw / (1 - h["beta2"] ** t), vb / (1 - h["beta2"] ** t)
                w -= h["eta"] / (math.sqrt(v_hat_w) + h["eps"]) * m_hat_w
                b -= h["eta"] / (math.sqrt(v_hat_b) + h["eps"]) * m_hat_b
            rows.append((epoch, t, w, b, error(w, b)))
    return rows


# --- One pipeline run for the session ---------------------------------------------------------------------------
def _env():
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the store under --runs-dir
    env["PYTHONPATH"] = str(REPO)
    env["MPLBACKEND"] = "Agg"
    return env


def _pipeline(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "pipelines.lecture", *map(str, args)], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def lecture_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lecture")
    out, runs = root / "out", root / "runs"
    done = _pipeline("--out", out, "--runs-dir", runs)
    assert done.returncode == 0, done.stderr
    return out, runs


@pytest.fixture(scope="module")
def rows(lecture_run):
    with (lecture_run[0] / "trajectories.csv").open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        body = list(reader)
    grouped = {}
    for r in body:
        grouped.setdefault((r[0], r[1]), []).append(r)
    return header, grouped



@pytest.mark.slow
def test_csv_has_the_contracted_columns_and_one_row_per_update(rows):
    header, grouped = rows
    assert header == COLUMNS
    assert sorted(grouped) == sorted((o, m) for o in OPTIMIZERS for m in MODES)
    for (optimizer, mode), group in grouped.items():
        updates = EPOCHS if mode == "full" else 2 * EPOCHS
        assert len(group) == updates + 1, (optimizer, mode)
        assert [int(r[3]) for r in group] == list(range(updates + 1))
        per_epoch = 1 if mode == "full" else 2
        assert [int(r[2]) for r in group] == [0] + [1 + s // per_epoch for s in range(updates)]
        assert (float(group[0][4]), float(group[0][5])) == (-2.0, -2.0)
        for r in group[:50]:  # full precision: the text reads back to the same float64 and prints the same
            assert all(repr(float(v)) == v for v in r[4:])


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_trajectory_matches_an_independent_reference(rows, optimizer, mode):
    got = np.array([[float(v) for v in r[2:]] for r in rows[1][(optimizer, mode)]])
    want = np.array(reference(optimizer, mode, LECTURE_HYPER[optimizer]))
    assert got.shape == want.shape
    np.testing.assert_array_equal(got[:, :2], want[:, :2])  # epoch, step
    np.testing.assert_allclose(got[:, 2:], want[:, 2:], rtol=0, atol=1e-9)


@pytest.mark.slow
def test_the_lecture_story_shows(rows):
    """At the lecture's settings: AdaGrad stalls short of the minimum, RMSProp gets there fast but jitters, Adam
    converges."""
    def loss(optimizer, mode="full"):
        return np.array([float(r[6]) for r in rows[1][(optimizer, mode)]])
    assert loss("adagrad")[-1] > 1e-4 and loss("adagrad", "1")[-1] > 1e-4
    rms = loss("rmsprop")
    assert rms[:100].min() < 1e-6  # close to the minimum within 100 epochs...
    assert rms[-200:].min() > 1e-6 and np.ptp(rms[-200:]) > 0  # ...but never settles
    assert loss("adam")[-1] < 1e-20 and loss("adam", "1")[-1] < 1e-20
    assert loss("adam")[-1] < rms[-1] < loss("adagrad")[-1]


@pytest.mark.slow
def test_figures_and_animation_are_valid_images(lecture_run):
    out = lecture_run[0]
    for name in FIGURES:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) >= 300, name
            image.verify()
    gif = out / "trajectories.gif"
    assert gif.stat().st_size < 3_000_000
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames >= 10


@pytest.mark.slow
def test_mlflow_has_one_run_per_optimizer_and_batch_mode(lecture_run, rows):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{lecture_run[1] / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lecture")
    runs = client.search_runs([experiment.experiment_id], "tags.role = 'lecture'")
    assert sorted((r.data.tags["optimizer"], r.data.tags["batch_size"]) for r in runs) == \
        sorted((o, m) for o in OPTIMIZERS for m in MODES)
    for run in runs:
        optimizer, mode = run.data.tags["optimizer"], run.data.tags["batch_size"]
        assert {k: float(v) for k, v in run.data.params.items()} == LECTURE_HYPER[optimizer]
        history = sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)
        assert [m.step for m in history] == list(range(1, EPOCHS + 1))
        group = rows[1][(optimizer, mode)]
        end_of_epoch = [float(r[6]) for r in group if int(r[3]) > 0 and int(r[3]) % (1 if mode == "full" else 2) == 0]
        np.testing.assert_allclose([m.value for m in history], end_of_epoch, rtol=1e-12, atol=0)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"trajectory.csv", "trajectories.gif", "claims.json", *FIGURES} <= artifacts


@pytest.mark.slow
def test_the_claims_numbers_are_recorded_with_the_lectures_outputs(lecture_run):
    """claims.json holds what the report judges: the rows ``evidence.table`` makes of ``evidence.measure`` at the
    shipped settings (strict JSON: a never-reached epoch is null)."""
    from study.report import settings

    record = json.loads((lecture_run[0] / "claims.json").read_text(),
                        parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    conf = settings.load()
    assert record == json.loads(evidence.as_json(conf.toy, conf.claims, evidence.measure(conf.toy, conf.claims)))
    assert {r["problem"] for r in record["rows"]} == {"lecture_toy", "lecture_toy_raised", "sparse", "minibatch"}


@pytest.mark.slow
def test_rerun_replaces_the_previous_lecture_runs(tmp_path, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    from study.lecture.record import log_to_mlflow

    settings = lecture.load_settings(CONFIG)
    settings["epochs"] = 3  # the replacing is under test, not the numbers
    results = lecture.LectureResults(lecture.lecture_trajectories(settings), [], [], {})
    figure = tmp_path / "figure.png"
    figure.write_bytes(b"not really a png")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    assert log_to_mlflow(client, results, [figure], tmp_path / "runs") == (12, 0)
    experiment = client.get_experiment_by_name("lecture").experiment_id
    first = client.search_runs([experiment])
    assert log_to_mlflow(client, results, [figure], tmp_path / "runs") == (12, 12)
    assert len(client.search_runs([experiment])) == 12
    deleted = client.search_runs([experiment], run_view_type=ViewType.DELETED_ONLY)
    assert {r.info.run_id for r in deleted} == {r.info.run_id for r in first}
    for run in deleted:  # their copies of the figures are gone too
        assert not Path(run.info.artifact_uri.removeprefix("file://")).exists()


# --- Bad input: one line, exit status 2, nothing written ----------------------------------------------------------
def _bad_config(tmp_path, edit) -> Path:
    settings = yaml.safe_load(CONFIG.read_text())
    edit(settings)
    path = tmp_path / "lecture.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.mark.parametrize("edit, key", [
    (lambda s: s.update(learning_rate=1.0), "learning_rate"),
    (lambda s: s["optimizers"]["adam"].update(eta="fast"), "optimizers.adam.eta"),
], ids=["unknown-key", "wrong-type"])
def test_a_bad_config_is_one_line_exit_2_and_writes_nothing(tmp_path, edit, key):
    config = _bad_config(tmp_path, edit)
    done = _pipeline("--config", config, "--out", tmp_path / "out", "--runs-dir", tmp_path / "runs", timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{config}: {key}:" in lines[0], done.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_bad_claims_or_a_lecture_without_the_claims_settings_is_one_line_exit_2(tmp_path):
    claims = tmp_path / "claims.yaml"
    claims.write_text((REPO / "conf" / "claims.yaml").read_text().replace("min_gain: 2.0", "min_gain: lots"))
    without_gd = _bad_config(tmp_path, lambda s: s["optimizers"].pop("gd"))
    for args, key in (((("--claims", claims)), f"{claims}: sparse.min_gain:"),
                      ((("--config", without_gd)), f"{without_gd}: optimizers.gd: missing")):
        done = _pipeline(*args, "--out", tmp_path / "out", "--runs-dir", tmp_path / "runs", timeout=60)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and key in lines[0], done.stderr
        assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_an_unknown_flag_is_one_line_exit_2(tmp_path):
    done = _pipeline("--bogus", "--runs-dir", tmp_path / "runs", timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "--bogus" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_help_documents_the_options():
    done = _pipeline("--help", timeout=60)
    assert done.returncode == 0 and all(flag in done.stdout for flag in ("--out", "--runs-dir", "--config"))


# --- Fast, in-process ----------------------------------------------------------------------------------------------
def test_the_shipped_config_holds_the_lecture_settings():
    settings = lecture.load_settings(CONFIG)
    assert settings["optimizers"] == LECTURE_HYPER
    assert settings["start"] == {"w": -2.0, "b": -2.0} and settings["epochs"] == EPOCHS
    assert [str(b) for b in settings["batch_sizes"]] == MODES


def test_yaml_1e_minus_8_reads_as_a_number(tmp_path):
    """YAML 1.1 reads 1e-8 (no dot) as a string; the config loader reads it as YAML 1.2 does, a number. Text where a
    number belongs is still refused, naming the key."""
    (tmp_path / "lecture.yaml").write_text(CONFIG.read_text().replace("eps: 1.0e-8", "eps: 1e-8"))
    assert "eps: 1e-8" in (tmp_path / "lecture.yaml").read_text()
    assert lecture.load_settings(tmp_path / "lecture.yaml") == lecture.load_settings(CONFIG)
    raw = yaml.safe_load(CONFIG.read_text().replace("eps: 1.0e-8", "eps: tiny"))
    with pytest.raises(BadInput, match=r"optimizers\.adagrad\.eps: must be a valid number, got 'tiny'"):
        lecture.validate_settings(raw, "conf/lecture.yaml")


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("epochs"), "epochs: missing"),
    (lambda s: s["optimizers"].update(lbfgs={"eta": 1.0}), "optimizers.lbfgs: unknown optimizer"),
    (lambda s: s["optimizers"]["momentum"].update(gamma=1.5),
     r"optimizers.momentum.gamma: must be less than 1, got 1.5"),
    (lambda s: s["optimizers"]["rmsprop"].pop("beta"), "optimizers.rmsprop.beta: missing"),
    (lambda s: s.update(batch_sizes=["full", 0]), "batch_sizes: batch size must be"),
    (lambda s: s["figures"]["window"].update(w=[3.0, -3.0]), "figures.window.w: must be a pair"),
], ids=["missing", "unknown-optimizer", "out-of-range", "missing-hyperparameter", "bad-batch-size", "bad-range"])
def test_validation_names_the_key(edit, message):
    raw = yaml.safe_load(CONFIG.read_text())
    edit(raw)
    with pytest.raises(BadInput, match=f"^conf/lecture.yaml: {message}"):
        lecture.validate_settings(raw, "conf/lecture.yaml")


def test_momentum_steps_are_the_decaying_sum_of_the_pulses():
    settings = lecture.load_settings(CONFIG)
    settings["epochs"] = 50
    momentum = next(t for t in lecture.lecture_trajectories(settings)
                    if t.optimizer == "momentum" and t.batch_size == "full")
    pulses, history = lecture.momentum_pulses(momentum)
    previous = np.vstack([np.zeros((1, 2)), history[:-1]])
    np.testing.assert_allclose(history, 0.9 * previous + pulses, atol=1e-12)


def test_adagrad_gives_the_sparse_weight_a_larger_rate():
    rates = lecture.effective_learning_rates(lecture.load_settings(CONFIG))
    final = rates["adagrad"]["rate"][-1]  # (w_dense, w_sparse, b)
    assert final[1] > 5 * final[0]
    assert np.all(rates["gd"]["rate"] == rates["gd"]["rate"][0, 0])


def test_the_figures_take_each_optimizers_colour_and_name_from_the_registry(tmp_path, monkeypatch):
    from study.lecture import figures

    drawn = []
    monkeypatch.setattr(figures, "_save", lambda fig, path, dpi: drawn.append(fig) or path)
    settings = lecture.load_settings(CONFIG)
    settings["epochs"] = 5
    trajectories = [t for t in lecture.lecture_trajectories(settings) if t.batch_size == "full"]
    figures.loss_curves(trajectories, tmp_path / "loss.png", 30)
    lines = drawn[0].axes[0].get_lines()
    assert [line.get_color() for line in lines] == [optim.OPTIMIZERS[t.optimizer].color for t in trajectories]
    assert [line.get_label().split(" (")[0] for line in lines] == [optim.OPTIMIZERS[t.optimizer].label
                                                                  for t in trajectories]
    assert not {"COLORS", "NAMES", "ADAPTIVE"} & set(vars(figures))


def test_importing_and_drawing_the_lecture_chooses_no_backend(tmp_path):
    """No matplotlib.use and no pyplot in the lecture: the caller's backend (svg, from MPLBACKEND) stays its own
    while the lecture draws on its own Agg canvas."""
    for path in (REPO / "study" / "lecture").rglob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert "matplotlib.pyplot" not in imported, path
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "use"
                    and isinstance(n.value, ast.Name) and n.value.id == "matplotlib"], path
    code = ("import matplotlib\n"
            "from study.lecture import figures, toy\n"
            f"settings = toy.load_settings({str(CONFIG)!r})\n"
            "settings['epochs'] = 3\n"
            f"path = figures.loss_curves(toy.lecture_trajectories(settings), {str(tmp_path / 'loss.png')!r}, 30)\n"
            "print(open(path, 'rb').read(8) == b'\\x89PNG\\r\\n\\x1a\\n', matplotlib.get_backend())\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "MPLBACKEND": "svg", "MPLCONFIGDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "svg"]
