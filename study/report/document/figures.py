"""The report's figures, drawn on matplotlib's Agg canvas and saved byte-for-byte reproducibly.

Every function returns a ``matplotlib.figure.Figure`` with its own Agg canvas: no pyplot, no global backend, so
importing this module changes nothing in the process (a caller's interactive backend stays its own). ``png_bytes``
writes a figure as PNG without the matplotlib version stamp (PNG has no date unless asked), so two builds from the
same results give identical files. Colours are fixed per optimizer (its registry entry's, study.core.optim) and per
batch size so a reader can follow one optimizer from figure to figure; an averaging constant is drawn as 1 - x, as
it is searched (study.core.hyperparams).
"""
from __future__ import annotations

import contextlib
import io
import textwrap

import matplotlib
import matplotlib.style
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from study import legibility
from study.core.optim import OPTIMIZERS
from study.report.document import scales

STYLE = {"figure.dpi": 90, "savefig.dpi": 90, "font.size": 9, "axes.titlesize": 10, "axes.grid": True,
         "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False, "legend.fontsize": 8,
         "legend.frameon": False, "path.simplify": False}
BATCH_COLORS = {"full": "#08306b", "128": "#2171b5", "64": "#6baed6", "32": "#fd8d3c", "1": "#a50f15"}


@contextlib.contextmanager
def own_style():
    """matplotlib's defaults plus STYLE, whatever the global style is: Optuna's figures switch the process to
    ggplot, and a report drawn after them in the same process must not change."""
    with matplotlib.style.context("default"), matplotlib.rc_context(STYLE):
        yield


def color(name: str, index: int = 0):
    """An optimizer's colour from its registry entry, a batch size's from BATCH_COLORS, else tab10's index-th."""
    if name in OPTIMIZERS:
        return OPTIMIZERS[name].color
    return BATCH_COLORS.get(name) or matplotlib.colormaps["tab10"](index % 10)


def _plain_log_labels(fig):
    """Log axes labelled 0.3, 1, 3 rather than 3x10^-1, with at least two labelled ticks and never so many that
    they collide (``scales.log_ticks``); an axis given its own plain labels keeps them."""
    for ax in fig.axes:
        for axis, limits in ((ax.xaxis, ax.get_xlim), (ax.yaxis, ax.get_ylim)):
            if axis.get_scale() == "log" and not isinstance(axis.get_major_formatter(), FuncFormatter):
                scales.log_ticks(axis, *sorted(limits()), most=5)


def png_bytes(fig, dpi: int = 90) -> bytes:
    """The figure as PNG bytes with fixed metadata (no Software stamp): identical for identical content."""
    _plain_log_labels(fig)
    legibility.saving(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def panel_grid(n: int, columns: int, width: float = 3.2, height: float = 2.6, left: float = 0.65, bottom: float = 0.5,
          top: float = 0.35, wspace: float = 0.55, hspace: float = 0.75, right: float = 0.15, **kwargs):
    """A grid of n panels, ``width`` x ``height`` inches each, with margins in inches. A fixed layout instead of
    tight_layout: tight_layout measures every tick label of every log axis and takes most of the drawing time."""
    rows = max(1, int(np.ceil(n / columns)))
    columns = min(columns, max(n, 1))
    size = (width * columns, height * rows)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=size)
        FigureCanvasAgg(fig)  # the figure's own canvas: drawn without pyplot or a global backend
        axes = fig.subplots(rows, columns, squeeze=False, **kwargs)
    # matplotlib's wspace / hspace are fractions of the mean panel width / height: convert from inches
    size = (size[0] + right, size[1])
    fig.set_size_inches(size)
    panel_w = (size[0] - left - right - (columns - 1) * wspace) / columns
    panel_h = (size[1] - bottom - top - (rows - 1) * hspace) / rows
    fig.subplots_adjust(left=left / size[0], right=1 - right / size[0], bottom=bottom / size[1],
                        top=1 - top / size[1], wspace=wspace / panel_w, hspace=hspace / panel_h)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def legend_right(fig, ax):
    """One legend for the figure, in the right margin (``panel_grid(right=...)``), so no panel is covered."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", frameon=False)


# --- critical difference diagrams ----------------------------------------------------------------------------------
def _cd_panel(ax, mean_ranks: pd.Series, cd: float, labels: dict, title: str, beaten: set, panel_inches: float):
    """Demšar's diagram: treatments on the mean-rank axis (1 = best, left), the Nemenyi CD as a scale bar, and a
    thick bar under each maximal run of treatments whose ranks differ by less than the CD. A hollow marker is a
    treatment that Holm-corrected Wilcoxon puts significantly behind the best."""
    k = len(mean_ranks)
    names, ranks = list(mean_ranks.index), mean_ranks.to_numpy(float)
    texts = [f"{labels.get(n, n)} {r:.2f}" for n, r in zip(names, ranks)]
    label_inches = 0.065 * max(len(t) for t in texts) + 0.15  # about 0.065 in per character at 8 pt
    pad = max(0.6, label_inches * max(k - 1, 1) / max(panel_inches - 2 * label_inches, 0.5)) + 0.35
    ax.set_xlim(1 - pad, k + pad)
    ax.set_ylim(-((k + 1) // 2) - 1.2, 1.6)
    ax.grid(False)
    for side in ("left", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.spines["top"].set_visible(True)
    ax.spines["top"].set_position(("data", 0))
    ax.spines["top"].set_bounds(1, k)
    ax.xaxis.set_ticks_position("top")
    ax.set_xticks(range(1, k + 1))
    ax.set_yticks([])
    if np.isfinite(cd):
        ax.plot([1, 1 + cd], [1.0, 1.0], color="k", lw=1.5)
        ax.text(1 + cd / 2, 1.15, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=8)
    level = -0.3
    for i in range(k):  # maximal runs of consecutive treatments within the CD
        j = max(jj for jj in range(i, k) if ranks[jj] - ranks[i] < cd) if np.isfinite(cd) else i
        covered = i > 0 and np.isfinite(cd) and ranks[j] - ranks[i - 1] < cd
        if j > i and not covered:
            ax.plot([ranks[i] - 0.05, ranks[j] + 0.05], [level, level], color="k", lw=3, solid_capstyle="butt")
            level -= 0.25
    half = (k + 1) // 2
    for i, (name, rank, text) in enumerate(zip(names, ranks, texts)):
        left = i < half
        y = -(i + 1) - 0.2 if left else -(k - i) - 0.2
        x_text = 1 - 0.25 if left else k + 0.25
        c = color(name, i)
        ax.plot([rank, rank, x_text], [0, y, y], color=c, lw=1)
        ax.scatter([rank], [0], s=28, zorder=3, facecolors="white" if name in beaten else c, edgecolors=c)
        ax.text(x_text, y, text, ha="right" if left else "left", va="center", fontsize=8, color=c)
    ax.set_title(title, pad=18)


def cd_diagrams(panels: list[tuple[str, object, set]], columns: int = 2):
    """One CD diagram per family: panels = [(title, FamilyResult, labels, beaten treatments)]."""
    width = 5.0
    fig, axes = panel_grid(len(panels), columns, width=width, height=2.2, left=0.1, bottom=0.1, top=0.55, wspace=0.3,
                      hspace=0.75)
    for ax, (title, result, labels, beaten) in zip(axes, panels):
        if len(result.mean_ranks) and result.mean_ranks.notna().all():
            _cd_panel(ax, result.mean_ranks, result.critical_difference, labels, title, beaten, width - 0.3)
        else:
            ax.set_title(title)
            ax.text(0.5, 0.5, "no complete datasets", ha="center", transform=ax.transAxes)
    return fig


# --- per dataset curves --------------------------------------------------------------------------------------------
def dataset_curves(med: pd.DataFrame, dataset: str, batches: list[str], optimizers: list[str], target: float,
                   track: str = "tuned"):
    """Validation loss against epoch, one panel per batch size, a line per optimizer: median over seeds, band
    from the 25th to the 75th percentile; the dashed line is the dataset's target."""
    rows = med[(med["dataset"] == dataset) & (med["track"] == track)]
    fig, axes = panel_grid(len(batches), len(batches), width=2.6, height=2.3, right=1.1, left=0.9, sharey=True)
    for ax, batch in zip(axes, batches):
        for i, optimizer in enumerate(optimizers):
            r = rows[(rows["optimizer"] == optimizer) & (rows["batch_size"] == batch)].sort_values("epoch")
            if r.empty:
                continue
            c = color(optimizer, i)
            ax.plot(r["epoch"], r["median"], color=c, lw=1.3, label=optimizer)
            ax.fill_between(r["epoch"], r["q25"], r["q75"], color=c, alpha=0.2, lw=0)
        if np.isfinite(target):
            ax.axhline(target, color="k", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_title(f"batch {batch}")
        ax.set_xlabel("epoch")
    axes[0].set_ylabel(f"validation loss ({track})")
    legend_right(fig, axes[0])
    return fig


# --- batch modes and profiles --------------------------------------------------------------------------------------
def batch_modes(noise_runs: pd.DataFrame, mean_ranks: pd.DataFrame, batches: list[str], optimizers: list[str]):
    """Against batch size: the late-epoch gradient RMS norm over the full-batch run's, the share of epochs in
    which validation loss rose, and the batch size's mean rank of test loss (tuned) within each optimizer."""
    fig, axes = panel_grid(3, 3, width=3.2, height=2.6, right=1.1)
    x = np.arange(len(batches))
    ratios = []
    for i, optimizer in enumerate(optimizers):
        r = noise_runs[noise_runs["optimizer"] == optimizer].groupby("batch_size")
        c = color(optimizer, i)
        ratios.append(r["grad_norm_vs_full"].median().reindex(batches).to_numpy(float))
        axes[0].plot(x, ratios[-1], "o-", color=c, ms=3, label=optimizer)
        axes[1].plot(x, r["val_rise_share"].median().reindex(batches).to_numpy(), "o-", color=c, ms=3)
        if optimizer in mean_ranks.index:
            axes[2].plot(x, mean_ranks.loc[optimizer].reindex(batches).to_numpy(), "o-", color=c, ms=3)
    titles = ("gradient RMS norm / full batch", "share of epochs val. loss rose", "mean rank of test loss")
    for ax, title in zip(axes, titles):
        ax.set_xticks(x)
        ax.set_xticklabels(batches)
        ax.set_xlabel("batch size")
        ax.set_title(title)
    if any((np.isfinite(v) & (v > 0)).any() for v in ratios):
        axes[0].set_yscale("log")
    else:  # a log axis of nothing cannot be drawn; without a full-batch run there is no ratio to show
        axes[0].text(0.5, 0.5, "not measured:\nno full-batch run to compare with", ha="center", va="center",
                     transform=axes[0].transAxes)
    axes[2].invert_yaxis()
    legend_right(fig, axes[0])
    return fig


PROFILE_UNITS = {"epochs": "epochs", "updates": "updates", "seconds": "seconds"}


def performance_profiles(profiles: list[tuple[str, str, pd.DataFrame]]):
    """Dolan-Moré profiles, one panel per budget ``(budget, title, profile)`` in one row: the share of datasets
    on which a solver reaches the target within tau times the fastest solver's cost in that budget's unit."""
    fig, axes = panel_grid(max(len(profiles), 1), 3, width=3.3, height=2.8, right=1.1, top=0.6, wspace=0.7)
    for ax, (budget, title, profile) in zip(axes, profiles):
        for i, solver in enumerate(profile.columns):
            ax.step(profile.index, profile[solver], where="post", color=color(str(solver), i), lw=1.4,
                    label=str(solver))
        ax.set_xscale("log", base=2)
        low, high = float(profile.index.min()), float(profile.index.max())
        ax.set_xlim(low, high)
        scales.log_ticks(ax.xaxis, low, high, base=2)
        ax.set_ylim(-0.03, 1.03)
        unit = PROFILE_UNITS.get(budget, budget)
        ax.set_xlabel(f"tau ({unit} / fastest {unit})")
        ax.set_ylabel("share of datasets")
        ax.set_title(textwrap.fill(title, 38), fontsize=9)
    if profiles:
        legend_right(fig, axes[0])
    return fig


# --- the lecture's claims ------------------------------------------------------------------------------------------
def claims_toy(raw: dict, lecture_eta: float, target_fraction: float):
    """The toy evidence: loss against epoch at the lecture's learning rate; epochs to target and u-turns against
    the learning rate; mini-batch gradient error and u-turn rate against batch size."""
    runs, mb = raw["toy"], raw["minibatch"]
    fig, axes = panel_grid(4, 4, width=2.9, height=2.5, right=1.1, left=0.8, wspace=0.75)
    at = int(np.argmin(np.abs(runs["etas"] - lecture_eta)))
    for i, optimizer in enumerate(("gd", "momentum", "nag", "adagrad", "rmsprop")):
        c, r = color(optimizer, i), runs[optimizer]
        axes[0].plot(np.arange(1, r["loss"].shape[1] + 1), r["loss"][at], color=c, lw=1.2, label=optimizer)
        axes[1].plot(runs["etas"], np.where(np.isfinite(r["target"]), r["target"], np.nan), "o-", color=c, ms=3)
        axes[2].plot(runs["etas"], r["u_turns"] + 0.5, "o-", color=c, ms=3)
    axes[0].set(yscale="log", xscale="log", xlabel="epoch", ylabel="loss",
                title=f"toy problem, eta = {runs['etas'][at]:g}")
    axes[0].set_ylim(bottom=1e-8)  # below this the runs are converged; momentum's tail reaches 1e-32
    legend_right(fig, axes[0])
    axes[1].set(xscale="log", yscale="log", xlabel="eta", title=f"epochs to {target_fraction:.0%} of the start loss")
    axes[2].set(xscale="log", yscale="log", xlabel="eta", title="u-turns (+0.5)")
    sizes = [b for b in mb["sizes"] if b in mb["gradient_error"]]
    for j, eta in enumerate(mb["etas"]):
        shade = matplotlib.colormaps["viridis"](j / max(len(mb["etas"]) - 1, 1))
        axes[3].plot(range(len(sizes)), [mb["gradient_error"][b][j] for b in sizes], "o-", color=shade, ms=3,
                     label=f"eta {eta:g}")
    axes[3].set_xticks(range(len(sizes)))
    axes[3].set_xticklabels(sizes)
    axes[3].set(yscale="log", xlabel="batch size", title="mini-batch gradient error")
    errors = np.array([mb["gradient_error"][b][j] for b in sizes for j in range(len(mb["etas"]))], float)
    errors = errors[np.isfinite(errors) & (errors > 0)]
    if errors.size:  # headroom above the largest error, where the legend goes: it covers no line
        low = np.log10(errors.min())
        span = max(np.log10(errors.max()) - low, 1.0)  # a decade at least: one error alone still gets a range
        axes[3].set_ylim(10 ** (low - 0.05 * span), 10 ** (low + span / 0.7))
    axes[3].legend(loc="upper right", fontsize=6, ncol=3)
    return fig


def stability(table: pd.DataFrame, optimizers: list[str], budgets: list[str]):
    """P(validation picks the optimizer) over the bootstrap resamples: a panel per budget, bars per track."""
    longest = max((len(o) for o in optimizers), default=4)
    fig, axes = panel_grid(len(budgets), 3, width=3.0, height=0.3 * len(optimizers) + 1.0, left=0.25 + 0.075 * longest,
                      wspace=0.35 + 0.075 * longest, bottom=0.5, right=1.0)
    opt = table[table["kind"] == "optimizer"]
    tracks = [t for t in ("tuned", "default") if (opt["track"] == t).any()]
    y = np.arange(len(optimizers))
    for ax, budget in zip(axes, budgets):
        for i, track in enumerate(tracks):  # tracks told apart by lightness and hatching, not by hue alone
            rows = opt[(opt["budget"] == budget) & (opt["track"] == track)].set_index("optimizer")
            values = [float(rows["p_best"].get(o, 0.0)) for o in optimizers]
            ax.barh(y + (i - (len(tracks) - 1) / 2) * 0.38, values, height=0.36, label=track,
                    color=["#08306b", "#9ecae1"][i], hatch=["", "//"][i], edgecolor="white", lw=0)
        ax.set_yticks(y, optimizers)
        ax.invert_yaxis()  # the registry's order from the top
        ax.set_xlim(0, 1)
        ax.set_title(f"{budget}")
        ax.set_xlabel("P(picked)")
    if axes:
        legend_right(fig, axes[0])
    return fig


def tolerance_sensitivity(table: pd.DataFrame, optimizers: list[str], sure: float):
    """P(practically equivalent to the recommended optimizer) against the tolerance (as a multiple of the
    declared one, log axis), a panel per budget, a line per optimizer compared."""
    budgets = list(dict.fromkeys(table["budget"]))
    fig, axes = panel_grid(max(len(budgets), 1), 3, width=3.2, height=2.6, right=1.1)
    for ax, budget in zip(axes, budgets):
        rows = table[table["budget"] == budget]
        for i, optimizer in enumerate(optimizers):
            r = rows[rows["optimizer"] == optimizer].sort_values("multiple")
            if len(r):
                ax.plot(r["multiple"], r["p_equivalent"], "o-", ms=3, lw=1.2, color=color(optimizer, i),
                        label=optimizer)
        ax.axhline(sure, color="k", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("tolerance / declared")
        ax.set_ylabel("P(equivalent)")
        ax.set_title(budget)
    if budgets:
        legend_right(fig, axes[0])
    return fig
