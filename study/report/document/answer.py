"""The answer at a glance: the report's first figure, before any prose.

A panel per budget (columns) and track (rows); in each, the optimizers (rows) against the batch sizes (columns),
every cell the share of datasets on which that cell's *test* score is within the declared tolerance of the
dataset's best cell (the budget's own scale: loss units at equal epochs, the log2 ratio of costs at the cost
budgets, a censored cost at its cap: the tests' differences, ``judge.answer.differences``). A box marks validation's
recommendation; the panel's title says it and how often the bootstrap resamples pick it
(``Verdict.same_headline``, the number the stability section reports). The colours are cividis (sequential, built
for colour-blind readers, monotone in lightness so it reads in grayscale) and every cell has its number written on
it, so no reading depends on colour at all.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.patches import Rectangle

from study.report.analysis import Analysis
from study.report.document import figures
from study.report.document.blocks import Figure
from study.report.document.tables import Tables
from study.report.judge.answer import differences, score_table
from study.report.judge.scoring import BUDGETS, measured

COLUMNS = ["budget", "track", "optimizer", "batch_size", "within_share", "datasets", "recommended", "p_same"]
BUDGET_TITLES = {"epochs": "equal epochs", "updates": "equal updates", "seconds": "equal wall time"}


def within_shares(a: Analysis, budget: str, track: str) -> tuple[pd.DataFrame, int]:
    """Optimizers x batch sizes: the share of datasets (those with every cell scored) on which the cell's test
    score is within the declared tolerance of that dataset's best cell; and how many datasets that is."""
    ans = a.verdict.answer(budget, track)
    shape = pd.DataFrame(np.nan, index=a.grid.optimizers, columns=a.grid.batches)
    cells = a.scores.cells
    if ans is None or not measured(cells[cells["track"] == track], budget):
        return shape, 0
    test = score_table(cells, f"test_{budget}", track, a.grid.datasets).astype(float).dropna(axis=0, how="any")
    if test.empty:
        return shape, 0
    finite = test.where(np.isfinite(test))
    # a dataset on which no cell reached the target (every cost censored at the cap) says nothing about which cell
    # is best: counted, every cell would tie with "never" and the grid would read 100% everywhere
    reached = finite.notna().any(axis=1)
    test, best = test[reached], finite.min(axis=1)[reached]
    if test.empty:
        return shape, 0
    distance = differences(budget, a.scores.unit, a.scores.caps)
    for optimizer, batch in test.columns:
        d = np.asarray(distance(test[(optimizer, batch)], best), float)
        if np.isfinite(d).any():
            shape.loc[optimizer, batch] = float(np.mean(d[np.isfinite(d)] <= ans.rope))
    return shape, len(test)


def _panel(ax, shares: pd.DataFrame, recommended: tuple | None, title: str, cmap):
    values = shares.to_numpy(float)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    ax.grid(False)
    ax.set_xticks(range(shares.shape[1]), [str(c) for c in shares.columns])
    ax.set_yticks(range(shares.shape[0]), [str(i) for i in shares.index])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    for (i, j), v in np.ndenumerate(values):
        # dark text on the light (high) end of cividis, white on the dark end: legible on either
        ink = "white" if not np.isfinite(v) or v < 0.55 else "black"
        text = "n/a" if not np.isfinite(v) else f"{v:.0%}"
        is_pick = recommended == (shares.index[i], shares.columns[j])
        ax.text(j, i, text, ha="center", va="center", fontsize=8, color=ink,
                fontweight="bold" if is_pick else "normal")
    if recommended is not None and recommended[0] in shares.index and recommended[1] in shares.columns:
        i, j = list(shares.index).index(recommended[0]), list(shares.columns).index(recommended[1])
        for lw, edge in ((3.2, "black"), (1.4, "white")):  # a double outline: seen on dark and light cells alike
            ax.add_patch(Rectangle((j - 0.46, i - 0.46), 0.92, 0.92, fill=False, lw=lw, edgecolor=edge))
    ax.set_xlabel("batch size")
    ax.set_title(title, fontsize=9)
    return image


def answer_figure(a: Analysis, shares: dict):
    """The grid of panels (``shares``: (budget, track) -> (optimizers x batch sizes, datasets)) with a colour
    scale in the right margin."""
    keys = [k for k in ((b, t) for t in ("tuned", "default") for b in BUDGETS) if k in a.verdict.answers]
    budgets = list(dict.fromkeys(b for b, _ in keys))
    rows = list(dict.fromkeys(t for _, t in keys))
    width = max(2.6, 0.62 * len(a.grid.batches) + 0.4)
    longest = max((len(o) for o in a.grid.optimizers), default=4)
    fig, axes = figures.panel_grid(len(budgets) * len(rows), len(budgets), width=width,
                              height=max(1.6, 0.33 * len(a.grid.optimizers) + 0.9), left=0.25 + 0.085 * longest,
                              bottom=0.5, top=0.7, wspace=0.35 + 0.085 * longest, hspace=1.1, right=1.25)
    cmap = colormaps["cividis"].with_extremes(bad="#d9d9d9")
    image = None
    for ax, (track, budget) in zip(axes, ((t, b) for t in rows for b in budgets)):
        ans = a.verdict.answer(budget, track)
        values, datasets = shares.get((budget, track), (None, 0))
        if ans is None or values is None or datasets == 0:
            ax.axis("off")
            ax.text(0.5, 0.5, f"{BUDGET_TITLES[budget]}, {track}:\nnot measured, or no cell\nreached the target",
                    ha="center", va="center", transform=ax.transAxes)
            continue
        same = a.verdict.same_headline.get((budget, track), math.nan)
        held = f"picked in {same:.0%} of resamples" if np.isfinite(same) else "stability not measured"
        pick = (ans.recommended, ans.batch) if ans.recommended is not None else None
        said = f"recommended: {ans.recommended} @ {ans.batch}" if pick else "no recommendation"
        image = _panel(ax, values, pick, f"{BUDGET_TITLES[budget]}, {track}, {datasets} datasets\n{said}\n{held}",
                       cmap)
    if image is not None:
        right = max(ax.get_position().x1 for ax in axes)
        cax = fig.add_axes((right + 0.3 / fig.get_figwidth(), 0.2, 0.12 / fig.get_figwidth(), 0.6))
        bar = fig.colorbar(image, cax=cax, ticks=[0, 0.25, 0.5, 0.75, 1.0], format=lambda v, _: f"{v:.0%}")
        bar.set_label("datasets within tolerance of the best")
    return fig


def answer_section(a: Analysis, tables: Tables) -> list:
    """The figure and its numbers (tables/answer_grid.csv)."""
    shares, rows = {}, []
    for (budget, track), ans in a.verdict.answers.items():
        values, datasets = within_shares(a, budget, track)
        shares[(budget, track)] = (values, datasets)
        same = a.verdict.same_headline.get((budget, track), math.nan)
        for optimizer in values.index:
            for batch in values.columns:
                rows.append({"budget": budget, "track": track, "optimizer": optimizer, "batch_size": batch,
                             "within_share": values.loc[optimizer, batch], "datasets": datasets,
                             "recommended": (optimizer, batch) == (ans.recommended, ans.batch), "p_same": same})
    if not rows:
        return []
    csv = tables.add("answer_grid", pd.DataFrame(rows, columns=COLUMNS))
    fig = answer_figure(a, shares)
    caption = ("The answer at a glance. Per budget and track: the share of datasets on which each optimizer at each "
               "batch size scores within the declared tolerance of the dataset's best cell on test (loss units at "
               "equal epochs, the ratio of costs at equal updates and wall time, a run that never reaches the "
               "target counted at the cap; datasets on which no cell reached it are left out). The box is "
               "validation's recommendation, the title how often the "
               "bootstrap resamples pick it. Why, and how sure: below. Numbers: "
               f"`tables/{csv}.csv`.")
    return [Figure("answer", figures.png_bytes(fig, a.settings.report.figures.dpi), caption)]
