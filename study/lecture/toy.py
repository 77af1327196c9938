"""The lecture's toy problem, computed with the platform's own code: its pictures' numbers, nothing drawn here.

One sigmoid neuron f(x) = 1 / (1 + exp(-(w x + b))) on the two points X = [0.5, 2.5], Y = [0.2, 0.9] with the
lecture's error sum_i 0.5 (f(x_i) - y_i)^2, started at (w, b) = (-2, -2) and trained by each of the six update
rules (``study.core.optim``) with full-batch and stochastic updates, through the same ``study.core.train.train``
loop the sweep uses, which records every update (``study.core.train.Steps``: the parameters, the gradient, the
update and the optimizer's own state). Everything here is a pure function of the settings (``conf/lecture.yaml``);
the data order is fixed (no shuffling), so every number is deterministic. Figures: ``study.lecture.figures``; the
numbers the claims are judged on: ``study.lecture.evidence``; MLflow runs: ``study.lecture.record``; wiring:
``pipelines.lecture``.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import logit

from study.core import batches, data, nn, train
from study.errors import BadInput
from study.schema import loader
from study.schema.lecture import Lecture

CSV_COLUMNS = ("optimizer", "batch_size", "epoch", "step", "w", "b", "loss")


# --- Settings: conf/lecture.yaml, validated before anything runs (study.schema.lecture) ---------------------------
def validate_settings(raw, where: str) -> dict:
    """The settings as plain data, or BadInput naming ``where`` (the file), the dotted key and the problem."""
    if not isinstance(raw, dict):
        raise BadInput(where, f"expected a mapping of keys, got {type(raw).__name__}")
    return loader.validate(Lecture, raw, where).as_settings()


def load_lecture(path: str | Path, shown_as: str | None = None) -> Lecture:
    """conf/lecture.yaml (or ``path``) as its frozen model; ``shown_as`` names the file in a message (default: the
    path as the user would type it)."""
    return loader.load(Lecture, Path(path), shown_as)


def load_settings(path: str | Path, shown_as: str | None = None) -> dict:
    """conf/lecture.yaml (or ``path``) as plain data."""
    return load_lecture(path, shown_as).as_settings()


# --- Trajectories through the real training loop ----------------------------------------------------------------
@dataclass(frozen=True)
class Trajectory:
    """Where one run went: the trainer's record of it (one member, K = 1) and the full error along it."""

    optimizer: str
    batch_size: str  # "full" or the number as text
    hyper: dict
    steps: train.Steps  # row 0 the start, row s after update s; NaN after a run diverged
    loss: np.ndarray  # (S+1,) the full error (every point) at each recorded point

    @property
    def epoch(self) -> np.ndarray:
        """(S+1,) the 1-based epoch of each update; 0 for the start."""
        return self.steps.epoch

    @property
    def theta(self) -> np.ndarray:
        """(S+1, P) the parameters."""
        return self.steps.theta[0]

    @property
    def w(self):
        return self.theta[:, 0]

    @property
    def b(self):
        return self.theta[:, -1]

    def epoch_losses(self) -> np.ndarray:
        """The full error at the end of each epoch (its last update): the `loss` curve of the MLflow run."""
        last_of_epoch = np.flatnonzero(np.diff(self.epoch, append=self.epoch[-1] + 1))
        return self.loss[last_of_epoch[1:]]


def toy_problem(n_features: int = 1):
    """The lecture's neuron with its error summed over the batch, and the two points."""
    return nn.SigmoidNeuron(n_features=n_features, reduction="sum"), data.load("toy")


def toy_minimum(split) -> tuple[float, float]:
    """Two points and two parameters: the sigmoid can pass through both, so the error's minimum is 0 where
    w x_i + b = logit(y_i) for both points."""
    (x1, x2), (z1, z2) = split.X_train[:, 0], logit(split.Y_train[:, 0])
    w = (z2 - z1) / (x2 - x1)
    return float(w), float(z1 - w * x1)


def batch_label(batch_size) -> str:
    return str(batches.parse_batch_size(batch_size))


def train_population(net, split, optimizer: str, hypers: list[dict], batch_size, epochs: int,
                     starts: np.ndarray) -> list[Trajectory]:
    """Run K networks (start k, hyperparameters k) through ``study.core.train.train`` in one pass, every update
    recorded; one Trajectory per member."""
    starts = np.asarray(starts, float)
    hyper = {name: np.array([h[name] for h in hypers], float) for name in hypers[0]}
    steps = train.train(net, split, optimizer, hyper, batch_size, epochs, seed=0, theta0=starts, shuffle=False,
                        validate=False, record_steps=True).steps
    loss = steps.losses(net, split.X_train, split.Y_train)
    return [Trajectory(optimizer, batch_label(batch_size), dict(hypers[j]), steps.member(j), loss[j])
            for j in range(len(starts))]


def lecture_trajectories(settings: dict) -> list[Trajectory]:
    """Every optimizer with every batch mode from the lecture's start: the CSV and the MLflow runs."""
    net, split = toy_problem()
    start = np.array([[settings["start"]["w"], settings["start"]["b"]]])
    return [train_population(net, split, name, [hyper], batch_size, settings["epochs"], start)[0]
            for name, hyper in settings["optimizers"].items() for batch_size in settings["batch_sizes"]]


def from_initializations(settings: dict) -> list[Trajectory]:
    """GD (full batch, the lecture's eta) from several starts: the same behaviour from elsewhere?"""
    net, split = toy_problem()
    starts = np.array(settings["figures"]["initializations"])
    hyper = settings["optimizers"].get("gd", {"eta": 1.0})
    return train_population(net, split, "gd", [hyper] * len(starts), "full", settings["epochs"], starts)


def with_learning_rates(settings: dict) -> list[Trajectory]:
    """GD (full batch) from the lecture's start with ever larger eta, in one population: overshoot, then flight."""
    net, split = toy_problem()
    etas = settings["figures"]["learning_rates"]
    start = [[settings["start"]["w"], settings["start"]["b"]]] * len(etas)
    return train_population(net, split, "gd", [{"eta": eta} for eta in etas], "full", settings["epochs"], start)


def error_grid(w_range, b_range, resolution: int):
    """The error on a resolution x resolution grid of (w, b): every grid point is one member of a population."""
    net, split = toy_problem()
    w, b = np.meshgrid(np.linspace(*w_range, resolution), np.linspace(*b_range, resolution))
    error = net.loss(np.column_stack([w.ravel(), b.ravel()]), split.X_train, split.Y_train)
    return w, b, error.reshape(w.shape)


def momentum_pulses(trajectory: Trajectory) -> tuple[np.ndarray, np.ndarray]:
    """Per update t of a full-batch momentum run: the pulse eta * grad_t and the history v_t, both (S, P), from the
    trainer's record (its gradients and momentum's own state). v_t = gamma v_{t-1} + eta grad_t: the exponentially
    decaying sum of the pulses, and the step taken (momentum moves by exactly -v_t)."""
    steps = trajectory.steps
    return trajectory.hyper["eta"] * steps.gradient[0], steps.state["v"][0, 1:]


# --- AdaGrad's case: a sparse feature -------------------------------------------------------------------------
def sparse_toy(samples: int):
    """A dense feature (non-zero everywhere, alternating sign) and a sparse one (non-zero in one point).

    Targets follow the dense feature's sign, except every fifth point, which contradicts it: the neuron cannot fit
    those, so the dense gradients never die out and AdaGrad's history for the dense weight keeps growing. The one
    point with the sparse feature wants a high output (0.95) that only the sparse weight can give it.
    """
    i = np.arange(samples)
    dense = np.linspace(0.5, 1.5, samples) * np.where(i % 2, -1.0, 1.0)
    sparse = (i == samples // 3).astype(float)
    y = np.where(dense > 0, 0.8, 0.2)
    y = np.where(i % 5 == 4, 1.0 - y, y)
    y[samples // 3] = 0.95
    return np.column_stack([dense, sparse]), y[:, None]


def effective_learning_rates(settings: dict) -> dict[str, dict[str, np.ndarray]]:
    """GD and AdaGrad (same eta, stochastic, no shuffling) on the sparse toy, through ``study.core.train.train``.

    Per optimizer: ``theta`` (epochs+1, 3) at the end of each epoch (w_dense, w_sparse, b) and ``rate``
    (updates, 3): the learning rate each parameter effectively had at each update, eta for GD and
    eta / (sqrt(v_t) + eps) for AdaGrad, v_t its own accumulator after the update.
    """
    cfg = settings["figures"]["sparse"]
    X, Y = sparse_toy(cfg["samples"])
    # one set of points, nothing held out: the figure shows how the weights learn, not how they generalise
    split = data.Split(name="sparse_toy", task="regression", X_train=X, Y_train=Y, X_val=X, Y_val=Y, X_test=X,
                       Y_test=Y)
    net = nn.SigmoidNeuron(n_features=2, reduction="sum")
    eps = settings["optimizers"].get("adagrad", {}).get("eps", 1e-8)
    out = {}
    for name, hyper in (("gd", {"eta": cfg["eta"]}), ("adagrad", {"eta": cfg["eta"], "eps": eps})):
        steps = train.train(net, split, name, hyper, 1, cfg["epochs"], seed=0, theta0=net.init([0.0, 0.0], 0.0),
                            shuffle=False, validate=False, record_steps=True).steps
        if name == "adagrad":  # NaN until a parameter's first gradient: no step taken, no rate to show
            v = steps.state["v"][0, 1:]
            rate = np.where(v > 0, hyper["eta"] / (np.sqrt(v) + eps), np.nan)
        else:
            rate = np.full(steps.update.shape[1:], hyper["eta"])
        out[name] = {"theta": steps.theta[0, ::len(X)], "rate": rate}
    return out


# --- The CSV ----------------------------------------------------------------------------------------------------
def write_trajectories_csv(path: str | Path, trajectories: list[Trajectory]) -> Path:
    """One row per update plus the start row; floats as repr (shortest text that reads back to the same float64)."""
    path = Path(path)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for t in trajectories:
            for step in range(len(t.epoch)):
                writer.writerow([t.optimizer, t.batch_size, int(t.epoch[step]), step, repr(float(t.w[step])),
                                 repr(float(t.b[step])), repr(float(t.loss[step]))])
    return path


# --- Everything the pipeline writes, computed before anything is written -------------------------------------------
@dataclass(frozen=True)
class LectureResults:
    trajectories: list[Trajectory]  # every optimizer x batch mode: the CSV, the MLflow runs
    initializations: list[Trajectory]  # GD from several starts
    learning_rates: list[Trajectory]  # GD with growing eta
    sparse: dict  # effective_learning_rates()


def compute(settings: dict) -> LectureResults:
    return LectureResults(lecture_trajectories(settings), from_initializations(settings),
                          with_learning_rates(settings), effective_learning_rates(settings))
