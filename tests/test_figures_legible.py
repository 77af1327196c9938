"""Every figure the study draws can be read (issue 20.2): no two texts over each other, none cut off at the edge,
no legend over another panel, no axis with fewer than two labelled ticks, no empty panel.

The figures checked are the real ones, caught as they are saved (``study.legibility.watch``): a cell's three
figures and the report's from a small real sweep run in this process (one worker: the cells run here, so their
figures pass through the hook), the report's from the default sweep's shape (the synthetic fixture: six optimizers
by five batch sizes on twelve datasets, the crowded case), and the lecture's. The checker is shown to fail first,
on planted figures. The report's answer figure comes first in both documents, and its contents bar wraps in a
1400 px window.
"""
import os
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from report_fixtures import fast_settings, make_results
from study import legibility

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["--profile", "smoke", "datasets=iris,diabetes", "optimizers=gd,adam", "batch_sizes=full,32", "trials=4",
         "epochs=5", "seeds=2"]
SETTINGS = fast_settings(bayes_samples=500, bootstrap_resamples=200, stability_resamples=100)
CELL_FIGURES = 3


def figure(*shape, **kwargs) -> Figure:
    fig = Figure(figsize=(4, 3), dpi=90, **kwargs)
    FigureCanvasAgg(fig)
    if shape:
        fig.subplots(*shape)
    return fig


def named(fig, index: int) -> str:
    """A figure's name in a message: its title, else its first panel's."""
    titles = [t.get_text() for t in fig.texts if t.get_text().strip()]
    titles += [ax.get_title() for ax in fig.axes if ax.get_title()]
    return f"figure {index + 1} ({titles[0][:60]!r})" if titles else f"figure {index + 1}"


def assert_legible(drawn: list, out: Path):
    """No problem in any figure; a failing one is saved under ``out`` to be looked at."""
    found = []
    for i, fig in enumerate(drawn):
        problems = legibility.problems(fig)
        if problems:
            out.mkdir(parents=True, exist_ok=True)
            fig.savefig(out / f"illegible_{i + 1}.png")
            found.append(f"{named(fig, i)}, saved as {out / f'illegible_{i + 1}.png'}:\n  " + "\n  ".join(problems))
    assert not found, "\n".join(found)


# --- The checker fails where it should -----------------------------------------------------------------------
def test_labels_drawn_over_each_other_are_flagged():
    fig = figure(1, 1)
    ax = fig.axes[0]
    ax.plot([1, 2], [1, 2])
    ax.set_xticks([1.0, 1.02], ["a long label", "another long one"])  # two labels a hair apart
    assert any("overlaps" in p and "x-tick" in p for p in legibility.problems(fig))


def test_panel_titles_that_run_into_each_other_are_flagged():
    fig = figure(1, 2)
    for ax in fig.axes:
        ax.plot([1, 2], [1, 2])
        ax.set_title("a title far too long for its own panel")
    assert "panel 1 title overlaps panel 2 title" in legibility.problems(fig)


def test_an_axis_with_one_labelled_tick_is_flagged():
    fig = figure(1, 1)
    ax = fig.axes[0]
    ax.plot([1.0, 1.9], [1, 2])
    ax.set_xscale("log", base=2)  # between 1 and 1.9 only the tick "1": what performance_profiles drew
    ax.set_xlabel("tau")
    assert "panel 1 x-axis has 1 labelled tick(s)" in legibility.problems(fig)


def test_an_empty_panel_is_flagged():
    fig = figure(1, 2)
    fig.axes[0].plot([1, 2], [1, 2])
    assert "panel 2 is empty" in legibility.problems(fig)


def test_text_outside_the_figure_is_flagged():
    fig = figure(1, 1)
    fig.axes[0].plot([1, 2], [1, 2])
    fig.subplots_adjust(left=0.01)  # the y tick labels go past the left edge
    assert any("falls outside the figure" in p for p in legibility.problems(fig))


def test_a_legend_over_another_panel_is_flagged():
    fig = figure(1, 2)
    for ax in fig.axes:
        ax.plot([1, 2], [1, 2], label="a line")
    fig.axes[0].legend(loc="center left", bbox_to_anchor=(1.0, 0.5))  # what performance_profiles did
    assert "a legend covers panel 2" in legibility.problems(fig)


def test_a_readable_figure_passes_and_blank_texts_and_bare_axes_are_ignored():
    fig = figure(1, 1, layout="constrained")
    ax = fig.axes[0]
    ax.plot([1, 2, 3], [3, 1, 2], label="line")
    ax.set(xlabel="x", ylabel="y", title="a title")
    ax.text(2, 2, "   ")
    ax.legend()
    assert legibility.problems(fig) == []
    bare = figure(1, 1, layout="constrained")
    bare.axes[0].plot([1, 2], [1, 2])
    bare.axes[0].set_yticks([])  # deliberately no scale (a CD diagram's y axis)
    assert legibility.problems(bare) == []


def test_nothing_is_collected_outside_watch():
    fig = figure(1, 1)
    legibility.saving(fig)  # no watcher: nothing kept, nothing raised
    with legibility.watch() as outer, legibility.watch() as inner:
        legibility.saving(fig)
    legibility.saving(fig)
    assert outer == [fig] and inner == [fig]


# --- The real figures ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """A small real sweep with one worker in this process, its cells' figures caught; then its report, built the
    way ``make report`` builds it, its figures caught too."""
    from pipelines import sweep as sweep_cli
    from study.report import build

    base = tmp_path_factory.mktemp("legible")
    runs, out = base / "runs", base / "report"
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith(("MLFLOW_", "OPTUNA_", "OPTSTUDY_"))]:
            mp.delenv(key)  # the stores under --runs-dir, as a fresh shell would have it
        mp.chdir(ROOT)
        with legibility.watch() as cells:
            code = sweep_cli.main(["--runs-dir", str(runs), "--workers", "1", *SMOKE])
        with legibility.watch() as report:
            build.build(runs, out=out, log=False, say=lambda *_: None)
        for key in [k for k in os.environ if k.startswith("OPTSTUDY_")]:
            mp.delenv(key, raising=False)  # what the sweep set for its workers: gone with this fixture
    assert code == 0
    return {"cells": cells, "report": report, "out": out, "base": base}


@pytest.mark.slow
def test_every_cell_figure_of_a_real_sweep_is_legible(smoke):
    assert len(smoke["cells"]) >= CELL_FIGURES * 8 - 8  # 8 cells: learning curves and history each, importances
    assert_legible(smoke["cells"], smoke["base"] / "illegible_cells")


@pytest.mark.slow
def test_every_report_figure_of_a_real_sweep_is_legible(smoke):
    assert len(smoke["report"]) == len(list((smoke["out"] / "figures").iterdir()))
    assert_legible(smoke["report"], smoke["base"] / "illegible_report")


@pytest.mark.slow
def test_the_answer_figure_comes_first_in_both_documents(smoke):
    markdown = (smoke["out"] / "report.md").read_text()
    blocks = [b for b in markdown.split("\n\n") if b.strip()]
    assert blocks[0].startswith("# Which optimizer")
    assert blocks[1].startswith("![The answer at a glance.") and "(figures/answer.png)" in blocks[1]
    page = (smoke["out"] / "report.html").read_text()
    body = page.split("</h1>", 1)[1]
    assert body.index('<img src="data:image/png;base64') < body.index("<p>")
    grid = (smoke["out"] / "tables" / "answer_grid.csv").read_text().splitlines()
    assert grid[0] == "budget,track,optimizer,batch_size,within_share,datasets,recommended,p_same"
    assert sum(line.split(",")[6] == "1" for line in grid[1:]) == 6  # one recommendation per budget and track


def test_the_default_shaped_report_figures_are_legible(tmp_path):
    """The crowded case: every label of six optimizers, five batch sizes and twelve datasets."""
    from study.report import analysis
    from study.report.document import compose, figures
    from study.report.document.blocks import Figure as Block, walk

    found = analysis.analyse(make_results(optimizer_effect={"adam": -0.15}, batch_effect={"32": -0.08}), SETTINGS)
    with legibility.watch() as drawn, figures.own_style():
        blocks, _ = compose.build(found)
    names = [b.name for b in walk(blocks) if isinstance(b, Block)]
    assert names[0] == "answer" and {"tuning_eta", "best_of_k", "performance_profiles", "stability"} <= set(names)
    assert len(drawn) == len(names)
    assert_legible(drawn, tmp_path)


def test_every_lecture_figure_is_legible(tmp_path):
    from study.lecture import figures, toy

    settings = toy.load_settings(ROOT / "conf" / "lecture.yaml")
    settings["epochs"] = 200  # the shapes of the shipped figures at a fraction of the cost
    settings["figures"]["surface"]["resolution"] = 41
    settings["figures"]["animation"]["frames"] = 3
    with legibility.watch() as drawn:
        paths = figures.draw_all(settings, toy.compute(settings), tmp_path)
    assert len(drawn) == len(paths) >= 8  # every PNG and the animation's figure
    assert_legible(drawn, tmp_path / "illegible")


def test_the_contents_bar_wraps_at_1400_px(tmp_path):
    """The contents bar of a report with every section stays inside a 1400 px window (it wraps)."""
    from study.report.document import render_html
    from study.report.document.blocks import Heading, Paragraph

    assert re.search(r"nav \{[^}]*flex-wrap: wrap", render_html.CSS)
    sections = ["The verdict", "How stable the answer is", "Statistics", "Budgets and tuning runs", "Per dataset",
                "Tuning", "Batch modes", "Performance profiles", "Optimisation and generalisation",
                "The published findings, checked", "The lecture's claims, checked", "Reproducibility"]
    page = tmp_path / "report.html"
    blocks = [Heading("A report", 1)] + [b for s in sections for b in (Heading(s), Paragraph("text"))]
    page.write_text(render_html.render(blocks, "a report"))
    from test_report_document import _chromium
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 900})
            tab.goto(page.as_uri(), wait_until="load")
            widths = tab.evaluate("(() => { const n = document.querySelector('nav'); "
                                  "return [n.scrollWidth, n.clientWidth, document.documentElement.scrollWidth]; })()")
        finally:
            browser.close()
    assert widths[0] <= widths[1] and widths[2] <= 1400, widths


def test_a_dataset_no_cell_reached_the_target_on_is_left_out_of_the_answer_shares():
    """Planted both ways: censor every tuned cell's updates to the target on one dataset. Counted, every cell would
    tie with "never" there and each share would gain that dataset as a success; left out, the shares are those of
    the grid without that dataset, and the count of datasets is one fewer."""
    import dataclasses

    from study.report import analysis
    from study.report.document.answer import within_shares

    results = make_results(datasets=("moons", "circles", "iris", "wine", "digits"), batch_sizes=("full", "32", "1"),
                           seeds=3, trials=5, optimizer_effect={"adam": -0.15}, batch_effect={"32": -0.08})
    found = analysis.analyse(results, SETTINGS)
    shares, n = within_shares(found, "updates", "tuned")
    assert n >= 3 and 0 < np.nanmin(shares.to_numpy()) < 1  # a grid with something to say

    cells = found.scores.cells
    tuned = cells[cells["track"] == "tuned"]
    reached = [d for d in found.grid.datasets if np.isfinite(tuned.loc[tuned["dataset"] == d, "test_updates"]).any()]
    never = reached[0]  # a dataset that counts, until no cell reaches the target on it
    cells = cells.copy()
    cells.loc[(cells["dataset"] == never) & (cells["track"] == "tuned"), "test_updates"] = np.inf
    censored = dataclasses.replace(found, scores=dataclasses.replace(found.scores, cells=cells))
    left_out, m = within_shares(censored, "updates", "tuned")
    others = tuple(d for d in found.grid.datasets if d != never)
    without = dataclasses.replace(found, grid=dataclasses.replace(found.grid, datasets=others))
    expected, k = within_shares(without, "updates", "tuned")
    assert m == k == n - 1
    np.testing.assert_allclose(left_out.to_numpy(float), expected.to_numpy(float))
    counted = (expected.to_numpy(float) * (n - 1) + 1) / n  # what counting the censored dataset as a tie would read
    assert not np.allclose(left_out.to_numpy(float), counted)
