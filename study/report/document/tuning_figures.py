"""The tuning section's figures: how far above the best a trial, a tuning budget or a random search lands.

Every distance is above the dataset's best in its loss units, never negative, so each is drawn on the log axis
of ``scales.distance_axis``: from the decade below the smallest distance, not below a tenth of a loss unit
(closer is drawn on that floor, as the axis label then says), to the decade above the largest distance drawn, with the points beyond either end marked as clipped. Drawn with the
report's grid, colours and style (``figures``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from study.core.hyperparams import search_value, searched_as
from study.report.document import scales
from study.report.document.figures import color, legend_right, panel_grid


def _trial_axis(ax, k_max: int) -> None:
    """Trials k on a log axis: 1, 2, 5, ... and the last k."""
    ax.set_xscale("log")
    ticks = [k for k in (1, 2, 5, 10, 20, 50, 100, 200) if k < k_max / 1.5] + [k_max]
    ax.set_xlim(0.9, k_max * 1.1)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: scales.plain(v)))
    ax.xaxis.set_minor_locator(NullLocator())


def budget_curves(curves: pd.DataFrame, batches: list[str], optimizers: list[str]):
    """Best validation loss after k trials over the dataset's best trial, in loss units, median over
    datasets; on a log axis from a tenth of a loss unit (``scales``), nearer than that drawn on the floor."""
    fig, axes = panel_grid(len(batches), len(batches), width=2.6, height=2.4, right=1.1, left=0.9, sharey=True)
    medians = curves.groupby(["batch_size", "optimizer", "k"], sort=False)["excess"].median()
    ends = scales.span(medians)
    k_max = int(curves["k"].max()) if len(curves) else 1
    for ax, batch in zip(axes, batches):
        sub = curves[curves["batch_size"] == batch]
        for i, optimizer in enumerate(optimizers):
            r = sub[sub["optimizer"] == optimizer].groupby("k")["excess"].median()
            if len(r):
                y, _, _ = scales.clip(r.to_numpy(), ends)
                ax.plot(r.index, y, color=color(optimizer, i), lw=1.3, label=optimizer)
        scales.distance_axis(ax, ends, "")
        _trial_axis(ax, k_max)
        ax.set_title(f"batch {batch}")
        ax.set_xlabel("trials k")
    axes[0].set_ylabel(f"above the dataset's best,\nloss units {ends.note}".strip())
    legend_right(fig, axes[0])
    return fig


def loss_against(trials: pd.DataFrame, panels: list[tuple[str, str, bool]], batches: list[str], unit: pd.Series):
    """Trial value above the dataset's best trial, in loss units, against a hyperparameter, one panel per
    (optimizer, parameter); x is 1 - value for averaging constants. Diverged trials are crosses at the top."""
    complete = trials[trials["state"] == "COMPLETE"]
    best = complete.groupby("dataset")["value"].min()
    distance = (complete["value"] - complete["dataset"].map(best)) / complete["dataset"].map(unit)
    ends = scales.span(distance)  # one scale for every panel: the panels compare
    fig, axes = panel_grid(len(panels), 3, width=3.0, height=2.4, right=1.0, left=0.9, wspace=0.9)
    for ax, (optimizer, param, one_minus) in zip(axes, panels):
        t = trials[(trials["optimizer"] == optimizer) & trials["state"].isin(["COMPLETE", "DIVERGED"])]
        measured = bool(np.isfinite(t["dataset"].map(unit)).any())
        for batch in batches:
            b = t[t["batch_size"] == batch]
            ok = (b["state"] == "COMPLETE").to_numpy()
            x = search_value(b[param], one_minus).to_numpy(float)[ok]
            y, below, above = scales.clip(((b["value"] - b["dataset"].map(best)) / b["dataset"].map(unit))
                                          .to_numpy(float)[ok], ends)
            inside = ~(below | above)
            ax.scatter(x[inside], y[inside], s=5, alpha=0.5, color=color(batch), label=batch, lw=0)
            scales.mark_clipped(ax, x, below, above, ends, color(batch))
        diverged = t[t["state"] == "DIVERGED"]
        x = search_value(diverged[param], one_minus)
        ax.scatter(x, np.full(len(x), scales.diverged_row(ends)), marker="x", s=10, color="k", lw=0.6,
                   label="diverged")
        searched = search_value(t[param], one_minus).to_numpy(float)
        searched = searched[np.isfinite(searched) & (searched > 0)]
        if not measured and searched.size:  # nothing drawn (no distance): the axis spans what was searched
            ax.set_xlim(searched.min() / 2, searched.max() * 2)
        ax.set_xscale("log")
        if measured:
            scales.distance_axis(ax, ends, f"above the best, loss units\n{ends.note}".strip(), headroom=True)
        else:  # no loss unit (one cell or one seed): no distance to draw
            ax.set_yticks([])
            ax.text(0.5, 0.5, "not measured:\nno loss unit", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"{optimizer}: {searched_as(param, one_minus)}")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", frameon=False, markerscale=2.5)
    return fig


def best_of_k(curves: pd.DataFrame, chosen_batch: dict, unit: pd.Series, optimizers: list[str]):
    """Expected test loss of validation's pick among k random trials, each optimizer at its chosen batch size:
    above the dataset's best curve value, in loss units, median over datasets, with the median band."""
    fig, axes = panel_grid(1, 1, width=5.2, height=3.2, right=1.2, left=0.8)
    ax = axes[0]
    chosen = curves[[chosen_batch.get(o) == b for o, b in zip(curves["optimizer"], curves["batch_size"])]]
    best = chosen.groupby("dataset")["test"].min()
    scale = chosen["dataset"].map(unit)
    base = chosen["dataset"].map(best)
    excess = chosen.assign(mid=(chosen["test"] - base) / scale, lo=(chosen["test_low"] - base) / scale,
                           hi=(chosen["test_high"] - base) / scale)
    medians = {o: excess[excess["optimizer"] == o].groupby("k")[["mid", "lo", "hi"]].median() for o in optimizers}
    medians = {o: r for o, r in medians.items() if len(r) and r["mid"].notna().any()}
    if not medians:  # no loss unit (one cell, or one seed): no distance to draw
        ax.axis("off")
        ax.text(0.5, 0.5, "not measured:\nno loss unit (needs two cells and two seeds)", ha="center",
                va="center", transform=ax.transAxes)
        return fig
    ends = scales.span(pd.concat([r["mid"] for r in medians.values()]))
    for i, optimizer in enumerate(optimizers):
        if optimizer in medians:
            r = medians[optimizer]
            ax.plot(r.index, scales.clip(r["mid"], ends)[0], color=color(optimizer, i), lw=1.4, label=optimizer)
            ax.fill_between(r.index, scales.clip(r["lo"], ends)[0], scales.clip(r["hi"], ends)[0],
                            color=color(optimizer, i), alpha=0.12, lw=0)
    _trial_axis(ax, int(excess["k"].max()))
    scales.distance_axis(ax, ends, f"test loss above the best,\nloss units {ends.note}".strip())
    ax.set_xlabel("random trials k")
    legend_right(fig, ax)
    return fig
