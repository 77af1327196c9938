"""A cell's three figures for its MLflow run: the optimization history and the parameter importances of its
tuning (what Optuna's matplotlib figures show, drawn here from the trials, so that Optuna stays behind its one
door and a figure costs a third of what Optuna's took), and the learning curves of its evaluations.

Plain ``matplotlib.figure.Figure`` objects with the Agg canvas: no pyplot state, nothing left open.
"""
from __future__ import annotations

import math
from pathlib import Path

from study import legibility
from study.sweep.names import COMPLETE, DEFAULT, DIVERGED, TUNED

# Fixed margins for the 6 x 4 inch figures: tight_layout measured every label and cost 45 ms a figure
MARGINS = {"left": 0.13, "right": 0.97, "bottom": 0.12, "top": 0.91}
DPI = 80
DIVERGED_TOP = 100.0  # a learning-curve axis ends this many times above the highest first-epoch loss
LOG_FROM = 5.0  # the largest over the smallest value from which a log axis reads better than a linear one


def _axes(**margins):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(**{**MARGINS, **margins})
    return fig, fig.add_subplot()


def _short(value: float) -> str:
    """0.001 to 1000 as they are, 1e4 or 2e-5 beyond: a tick label that fits the margin."""
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _log_y(ax, values, top: float | None = None) -> None:
    """A log y axis when the values span more than a factor of LOG_FROM (else the linear default reads better),
    up to ``top`` when given (a diverged run would stretch it over twenty decades), ticked at 1, 2, 5 per decade
    over a few decades and at powers of ten beyond, with plain labels and no minor ticks: within a decade a
    per-decade locator labels a single tick, and matplotlib's default parses a mathtext label and builds an
    artist for every minor tick, the larger part of a figure's cost."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    positive = [v for v in values if math.isfinite(v) and v > 0]
    if not positive:
        return
    low, high = min(positive), min(max(positive), top if top is not None else math.inf)
    if high < LOG_FROM * low:
        return
    ax.set_yscale("log")
    ax.set_ylim(low / 1.2, high * 1.2)
    few = math.log10(high / low) <= 2.5
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if few else (1.0,), numticks=7))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _short(v)))
    ax.yaxis.set_minor_locator(NullLocator())


def _title(ax, text: str) -> None:
    """A title at a fixed height: placed automatically, matplotlib measures every tick label of the x axis to keep
    clear of them, which was most of a figure's 80 ms."""
    ax.set_title(text, y=1.01)


def _save(fig, path: Path) -> Path:
    legibility.saving(fig)
    fig.savefig(path, dpi=DPI)
    return path


def history(trials: list[dict], title: str, path: Path) -> Path | None:
    """Objective value of each finished trial in trial order, with the best so far (Optuna's optimization history).
    ``trials``: dicts with number, state (COMPLETE / PRUNED / FAIL / DIVERGED) and value."""
    scored = [t for t in trials if t["state"] in (COMPLETE, DIVERGED) and t["value"] is not None
              and math.isfinite(t["value"])]
    if not scored:
        return None
    fig, ax = _axes()
    for state, marker, color in ((COMPLETE, "o", "tab:blue"), (DIVERGED, "x", "tab:red")):
        points = [(t["number"], t["value"]) for t in scored if t["state"] == state]
        if points:
            ax.scatter(*zip(*points), marker=marker, color=color, s=18, label=state.lower())
    best, line = math.inf, []
    for t in sorted(scored, key=lambda t: t["number"]):
        if t["state"] == COMPLETE:
            best = min(best, t["value"])
        line.append((t["number"], best if math.isfinite(best) else math.nan))
    ax.step(*zip(*line), where="post", color="tab:orange", label="best so far")
    if min(t["value"] for t in scored) > 0:
        _log_y(ax, [t["value"] for t in scored])
    ax.set(xlabel="trial", ylabel="final validation loss")
    _title(ax, f"Optimization history — {title}")
    ax.legend(fontsize=8)
    return _save(fig, path)


def importances(values: dict[str, float], title: str, path: Path) -> Path | None:
    """Each tuned parameter's importance (PED-ANOVA over the cell's trials), largest on top."""
    if not values:
        return None
    fig, ax = _axes(left=0.3)
    names = sorted(values, key=lambda p: (values[p], p))
    ax.barh(names, [values[p] for p in names], color="tab:blue")
    ax.set(xlabel="importance", xlim=(0, 1))
    _title(ax, f"Hyperparameter importances — {title}")
    return _save(fig, path)


def learning_curves(curves: dict[tuple, list], title: str, path: Path) -> Path:
    """Validation loss against epoch for both tracks and every seed: the cell's learning curves."""
    fig, ax = _axes()
    colors = {TUNED: "tab:blue", DEFAULT: "tab:orange"}
    labelled = set()
    for key, values in sorted(curves.items(), key=lambda kv: tuple(map(str, kv[0]))):
        track = key[0]  # (track, ..., seed): every tuning run's choices are drawn in the tuned track's colour
        label = None if track in labelled else track
        labelled.add(track)
        ax.plot(range(1, len(values) + 1), values, color=colors.get(track, "tab:gray"), alpha=0.6, label=label)
    ax.set(xlabel="epoch", ylabel="validation loss")
    starts = [values[0] for values in curves.values() if values and math.isfinite(values[0])]
    # a run that diverges leaves through the top: the axis shows up to DIVERGED_TOP x the highest starting loss
    _log_y(ax, [v for values in curves.values() for v in values], DIVERGED_TOP * max(starts) if starts else None)
    _title(ax, title)
    if curves:
        ax.legend()
    return _save(fig, path)
