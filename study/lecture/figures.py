"""The lecture's pictures, drawn from ``study.lecture.toy``'s numbers with matplotlib on its Agg canvas.

Each function draws one figure into one file and returns its path. Every figure is a ``matplotlib.figure.Figure``
with its own Agg canvas, never pyplot: no display is needed, no backend is chosen for the process (importing this
module changes nothing in matplotlib), and nothing global (open windows, the current figure) is left behind. An
optimizer's colour, display name and family (adaptive or not) are its registry entry's (``study.core.optim``), the
same as in the report.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.animation import PillowWriter
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from study import legibility
from study.core import optim
from study.core.optim import OPTIMIZERS
from study.lecture import toy as lecture

BATCH_TITLES = {"full": "batch GD (one update per epoch)", "1": "stochastic (one update per point)"}
TOY = "X = [0.5, 2.5], Y = [0.2, 0.9]"
CMAP = "viridis"
ERROR_TICKS = [0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]


def _figure(figsize, **kwargs) -> Figure:
    """A figure on its own Agg canvas: drawn and saved without pyplot or a global backend."""
    fig = Figure(figsize=figsize, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _label(optimizer: str) -> str:
    return OPTIMIZERS[optimizer].label


def _color(optimizer: str) -> str:
    return OPTIMIZERS[optimizer].color


def _hyper_text(t: lecture.Trajectory) -> str:
    """A run's hyperparameters under the lecture's symbols (the registry's), eps left out (it only keeps a division finite)."""
    opt = OPTIMIZERS[t.optimizer]
    return ", ".join(f"{opt.hyperparameter(k).symbol}={v:g}" for k, v in t.hyper.items() if k != "eps")


def _batch_title(batch_size: str) -> str:
    return BATCH_TITLES.get(batch_size, f"mini-batch of {batch_size}")


def _save(fig: Figure, path: Path, dpi: int) -> Path:
    legibility.saving(fig)
    fig.savefig(path, dpi=dpi)
    return path


def _contour(ax, grid, minimum=None, filled=True):
    """The error as a contour map: levels packed towards 0 so the valley floor shows, labelled axes.

    ``filled=False`` draws coloured lines on white only: a GIF stores that in a fraction of the bytes.
    """
    w, b, error = grid
    levels = error.max() * np.linspace(0.0, 1.0, 22)[1:] ** 2
    if filled:
        mappable = ax.contourf(w, b, error, levels=np.concatenate([[0.0], levels]), cmap=CMAP, alpha=0.45)
        ax.contour(w, b, error, levels=levels, colors="grey", linewidths=0.4)
    else:
        mappable = ax.contour(w, b, error, levels=levels, cmap=CMAP, linewidths=0.8)
    if minimum is not None:
        ax.plot(*minimum, marker="*", color="gold", markeredgecolor="black", markersize=15, linestyle="none",
                label="minimum (error 0)", zorder=5)
    ax.set_xlabel("w")
    ax.set_ylabel("b")
    ax.set_xlim(w.min(), w.max())
    ax.set_ylim(b.min(), b.max())
    return mappable


def _path(ax, t: lecture.Trajectory, color, label, dots=True):
    """A trajectory with a dot per update: dense dots are small steps, sparse dots big ones."""
    ax.plot(t.w, t.b, "-", color=color, linewidth=1.0, label=label, zorder=3)
    if dots:
        ax.plot(t.w, t.b, "o", color=color, markersize=1.8, zorder=3)
    ax.plot(t.w[0], t.b[0], "o", color=color, markersize=6, markeredgecolor="white", zorder=4)


def _by_batch(trajectories):
    modes = list(dict.fromkeys(t.batch_size for t in trajectories))
    return {m: [t for t in trajectories if t.batch_size == m] for m in modes}


def error_surface(grid, gd: lecture.Trajectory, minimum, path: Path, dpi: int) -> Path:
    """The 3-D error surface and the same surface as a contour map ("can we visualise it in 2-D?")."""
    w, b, error = grid
    fig = _figure(figsize=(13, 5.8), layout="constrained")
    # computed_zorder off: the path is drawn over the surface instead of being hidden in it
    ax = fig.add_subplot(1, 2, 1, projection="3d", computed_zorder=False)
    ax.plot_surface(w, b, error, cmap=CMAP, linewidth=0, antialiased=True, alpha=0.85, zorder=1)
    ax.plot(gd.w, gd.b, gd.loss + 0.005, color=_color(gd.optimizer), linewidth=2.5, zorder=10,
            label=f"{_label(gd.optimizer)} from ({gd.w[0]:g}, {gd.b[0]:g}), {_hyper_text(gd)}")
    ax.set_xlabel("w")
    ax.set_ylabel("b")
    ax.set_zlabel("error")
    ax.view_init(elev=30, azim=-60)
    ax.legend(loc="upper left")
    ax.set_title("The error surface: a plateau, a steep drop, a valley")
    ax2 = fig.add_subplot(1, 2, 2)
    filled = _contour(ax2, grid, minimum)
    _path(ax2, gd, _color(gd.optimizer), f"{_label(gd.optimizer)}, {_hyper_text(gd)} (a dot per epoch)")
    fig.colorbar(filled, ax=ax2, label="error", ticks=ERROR_TICKS)
    ax2.legend(loc="upper right")
    ax2.set_title("The same surface as a contour map: close lines = steep slope")
    fig.suptitle(f"Error sum_i 0.5 (σ(w x_i + b) − y_i)² of one sigmoid neuron on {TOY}")
    return _save(fig, path, dpi)


def contour_trajectories(grid, trajectories, minimum, path: Path, dpi: int) -> Path:
    """Every optimizer's path over the contour map, one panel per batch mode."""
    groups = _by_batch(trajectories)
    fig = _figure(figsize=(7 * len(groups), 6.2), layout="constrained")
    for i, (mode, group) in enumerate(groups.items(), start=1):
        ax = fig.add_subplot(1, len(groups), i)
        _contour(ax, grid, minimum)
        for t in group:
            _path(ax, t, _color(t.optimizer), f"{_label(t.optimizer)} ({_hyper_text(t)}),"
                                                  f" final error {t.loss[-1]:.1e}")
        ax.set_title(f"{_batch_title(mode)}: {t.epoch[-1]} epochs from ({t.w[0]:g}, {t.b[0]:g})")
        ax.legend(loc="lower left", fontsize=8)
    fig.suptitle(f"The six update rules on the lecture's toy problem ({TOY}); a dot per update")
    return _save(fig, path, dpi)


def near_minimum(grid, trajectories, minimum, path: Path, dpi: int, optimizers=None):
    """The adaptive methods (``optimizers``, default: the registry's adaptive family) close to the minimum:
    AdaGrad stalls short, RMSProp jitters, Adam settles."""
    optimizers = optim.adaptive() if optimizers is None else optimizers
    groups = _by_batch([t for t in trajectories if t.optimizer in optimizers])
    fig = _figure(figsize=(6.5 * len(groups), 5.8), layout="constrained")
    for i, (mode, group) in enumerate(groups.items(), start=1):
        ax = fig.add_subplot(1, len(groups), i)
        _contour(ax, grid, minimum)
        for t in group:
            color = _color(t.optimizer)
            _path(ax, t, color, f"{_label(t.optimizer)}: ends at w={t.w[-1]:.3f}, b={t.b[-1]:.3f}")
            ax.plot(t.w[-1], t.b[-1], "s", color=color, markersize=8, markeredgecolor="white", zorder=6)
        ax.set_title(f"{_batch_title(mode)}; a square marks the end")
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle("Near the minimum: AdaGrad's learning rate has decayed before it arrives, RMSProp arrives fast "
                 "but keeps jittering, Adam settles", fontsize=11)
    return _save(fig, path, dpi)


def loss_curves(trajectories, path: Path, dpi: int) -> Path:
    groups = _by_batch(trajectories)
    fig = _figure(figsize=(6.5 * len(groups), 4.8), layout="constrained")
    axes = [fig.add_subplot(1, len(groups), i) for i in range(1, len(groups) + 1)]
    for ax, (mode, group) in zip(axes, groups.items()):
        for t in group:
            losses = t.epoch_losses()
            ax.plot(np.arange(1, len(losses) + 1), losses, color=_color(t.optimizer),
                    label=f"{_label(t.optimizer)} ({_hyper_text(t)})")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("error at the end of the epoch (log scale)")
        ax.set_title(_batch_title(mode))
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Error against epoch on {TOY}")
    return _save(fig, path, dpi)


def _paths_and_losses(grid, trajectories, labels, minimum, path, dpi, title, loss_title):
    fig = _figure(figsize=(13, 5.5), layout="constrained")
    ax = fig.add_subplot(1, 2, 1)
    ax2 = fig.add_subplot(1, 2, 2)
    _contour(ax, grid, minimum)
    colors = matplotlib.colormaps["tab10"](np.arange(len(trajectories)) % 10)
    for t, label, color in zip(trajectories, labels, colors):
        _path(ax, t, color, label)
        losses = t.epoch_losses()
        ax2.plot(np.arange(1, len(losses) + 1), losses, color=color, label=f"{label}: final {losses[-1]:.1e}")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title)
    ax2.set_yscale("log")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("error (log scale)")
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    ax2.set_title(loss_title)
    return _save(fig, path, dpi)


def initializations(grid, trajectories, minimum, path: Path, dpi: int) -> Path:
    labels = [f"start ({t.w[0]:g}, {t.b[0]:g})" for t in trajectories]
    return _paths_and_losses(
        grid, trajectories, labels, minimum, path, dpi,
        f"Do we see the same behaviour from a different initialization? (GD, {_hyper_text(trajectories[0])})",
        "Starts on a plateau crawl for hundreds of epochs, or never leave it")


def learning_rates(grid, trajectories, minimum, path: Path, dpi: int) -> Path:
    labels = [f"η = {t.hyper['eta']:g}" for t in trajectories]
    return _paths_and_losses(
        grid, trajectories, labels, minimum, path, dpi,
        f"Could we not just raise η? (GD from ({trajectories[0].w[0]:g}, {trajectories[0].b[0]:g}))",
        "Larger η helps, then overshoots and is thrown onto a plateau")


def momentum_pulses(trajectory: lecture.Trajectory, pulses, history, epochs: int, path: Path, dpi: int) -> Path:
    """The lecture's picture: the gradient pulses eta * grad_t per epoch and their exponentially decaying sum v_t."""
    shown = slice(0, min(epochs, len(pulses)))
    epoch = np.arange(1, len(pulses) + 1)[shown]
    fig = _figure(figsize=(12, 4.8), layout="constrained")
    for i, name in enumerate(("w", "b")):
        ax = fig.add_subplot(1, 2, i + 1)
        column = 0 if name == "w" else -1
        ax.vlines(epoch, 0, pulses[shown, column], color="tab:blue", linewidth=2, label=f"pulse η ∇{name}_t")
        ax.plot(epoch, history[shown, column], "-o", color="tab:orange", markersize=3,
                label=f"v_t = γ v_(t−1) + η ∇{name}_t (the step taken)")
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"update of {name}")
        ax.set_title(f"{name}: the steps outgrow the pulses, then swing back (u-turns)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{_label(trajectory.optimizer)} ({_hyper_text(trajectory)}), batch, first {len(epoch)} epochs: "
                 "each step is an exponentially decaying average of the past gradients")
    return _save(fig, path, dpi)


def sparse_features(result: dict, samples: int, eta: float, path: Path, dpi: int) -> Path:
    """AdaGrad's per-parameter effective learning rates against GD's single one, on the sparse toy."""
    names = ("w_dense", "w_sparse", "b")
    styles = {"w_dense": "-", "w_sparse": "--", "b": ":"}
    fig = _figure(figsize=(13, 5), layout="constrained")
    ax = fig.add_subplot(1, 2, 1)
    rate = result["adagrad"]["rate"]
    step = np.arange(1, len(rate) + 1)
    ax.axhline(eta, color=_color("gd"), linewidth=2, label=f"GD: η = {eta:g} for every parameter")
    for j, name in enumerate(names):
        ax.plot(step, rate[:, j], styles[name], color=_color("adagrad"), label=f"AdaGrad: {name}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("update (stochastic, one point each)")
    ax.set_ylabel("effective learning rate η / (√v_t + ε)")
    ax.set_title("The sparse weight's rate decays slowly (few updates), the dense weight's fast")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax2 = fig.add_subplot(1, 2, 2)
    for optimizer in ("gd", "adagrad"):
        theta = result[optimizer]["theta"]
        epoch = np.arange(len(theta))
        for j, name in enumerate(names[:2]):
            ax2.plot(epoch, theta[:, j], styles[name], color=_color(optimizer),
                     label=f"{_label(optimizer)}: {name}")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("weight")
    ax2.set_title("So the sparse feature's weight learns faster with AdaGrad")
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    fig.suptitle(f"A neuron with a dense feature and a sparse one (non-zero in 1 of {samples} points), "
                 f"GD vs AdaGrad at η = {eta:g}")
    return _save(fig, path, dpi)


def frame_epochs(last_epoch: int, frames: int) -> np.ndarray:
    """Epochs to show, log-spaced: the early epochs are where the paths move."""
    return np.unique(np.concatenate([[0], np.round(np.geomspace(1, last_epoch, frames - 1)).astype(int)]))


def animation(grid, trajectories, minimum, path: Path, frames: int, fps: int, dpi: int) -> Path:
    """The trajectories moving over the contour map, one panel per batch mode, as a GIF."""
    groups = _by_batch(trajectories)
    fig = _figure(figsize=(5.6 * len(groups), 5.0), layout="constrained")
    moving = []  # (trajectory, trail line, head marker)
    for i, (mode, group) in enumerate(groups.items(), start=1):
        ax = fig.add_subplot(1, len(groups), i)
        _contour(ax, grid, minimum, filled=False)
        for t in group:
            color = _color(t.optimizer)
            trail, = ax.plot([], [], "-", color=color, linewidth=1.2, label=_label(t.optimizer))
            head, = ax.plot([], [], "o", color=color, markersize=7, markeredgecolor="white")
            moving.append((t, trail, head))
        ax.set_title(_batch_title(mode), fontsize=10)
        if i == 1:
            ax.legend(loc="lower left", fontsize=8)
    title = fig.suptitle(" ")
    fig.draw_without_rendering()  # lay the panels out once, then freeze: re-laying out every frame costs 2x
    fig.set_layout_engine(None)
    legibility.saving(fig)  # checked as it stands after the last frame (the frames change paths and the title only)
    epochs = frame_epochs(int(trajectories[0].epoch[-1]), frames)
    writer = PillowWriter(fps=fps)
    with writer.saving(fig, str(path), dpi):
        for e in list(epochs) + [epochs[-1]] * fps:  # hold the last frame for a second
            for t, trail, head in moving:
                upto = np.searchsorted(t.epoch, e, side="right")
                trail.set_data(t.w[:upto], t.b[:upto])
                head.set_data([t.w[upto - 1]], [t.b[upto - 1]])
            title.set_text(f"{TOY}, start ({trajectories[0].w[0]:g}, {trajectories[0].b[0]:g}): epoch {e}")
            writer.grab_frame()
    return path


FILES = {
    "surface": "error_surface.png",
    "contour": "contour_trajectories.png",
    "zoom": "near_minimum.png",
    "loss": "loss_vs_epoch.png",
    "initializations": "gd_initializations.png",
    "learning_rates": "gd_learning_rates.png",
    "momentum": "momentum_pulses.png",
    "sparse": "adagrad_sparse_features.png",
    "animation": "trajectories.gif",
}


def draw_all(settings: dict, results: lecture.LectureResults, out_dir: Path) -> list[Path]:
    """Every figure into ``out_dir`` (those whose runs are configured); returns the paths written."""
    fig_cfg, dpi = settings["figures"], settings["figures"]["dpi"]
    minimum = lecture.toy_minimum(lecture.toy_problem()[1])
    resolution = fig_cfg["surface"]["resolution"]

    def grid(window):
        return lecture.error_grid(window["w"], window["b"], resolution)

    window = grid(fig_cfg["window"])
    trajectories = results.trajectories
    gd_full = next((t for t in trajectories if t.optimizer == "gd" and t.batch_size == "full"), trajectories[0])
    momentum = next((t for t in trajectories if t.optimizer == "momentum" and t.batch_size == "full"), None)
    out = Path(out_dir)
    paths = [
        error_surface(grid(fig_cfg["surface"]), gd_full, minimum, out / FILES["surface"], dpi),
        contour_trajectories(window, trajectories, minimum, out / FILES["contour"], dpi),
        loss_curves(trajectories, out / FILES["loss"], dpi),
        initializations(grid(fig_cfg["surface"]), results.initializations, minimum, out / FILES["initializations"],
                        dpi),
        learning_rates(grid(fig_cfg["learning_rate_window"]), results.learning_rates, minimum,
                       out / FILES["learning_rates"], dpi),
    ]
    if any(OPTIMIZERS[t.optimizer].adaptive for t in trajectories):
        paths.append(near_minimum(grid(fig_cfg["zoom"]), trajectories, minimum, out / FILES["zoom"], dpi))
    if momentum is not None:  # the pulses need a full-batch momentum run
        pulses, history = lecture.momentum_pulses(momentum)
        paths.append(momentum_pulses(momentum, pulses, history, fig_cfg["momentum_epochs"], out / FILES["momentum"],
                                     dpi))
    paths.append(sparse_features(results.sparse, fig_cfg["sparse"]["samples"], fig_cfg["sparse"]["eta"],
                                 out / FILES["sparse"], dpi))
    anim = fig_cfg["animation"]
    paths.append(animation(window, trajectories, minimum, out / FILES["animation"], anim["frames"], anim["fps"],
                           anim["dpi"]))
    return paths
