"""The report document: every section in order, every optimizer, files that exist, byte-identical rebuilds, and a
page that opens in a real browser with every image loaded and nothing fetched."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from report_fixtures import fast_settings, make_results
from study.report import analysis, build

SECTIONS = ["The verdict", "How stable the answer is", "Statistics", "Budgets and tuning runs", "Per dataset",
            "Tuning", "Batch modes",
            "Performance profiles", "Optimisation and generalisation", "The published findings, checked",
            "The lecture's claims, checked", "Reproducibility"]
OPTIMIZERS = ("gd", "momentum", "nag", "adagrad", "rmsprop", "adam")
SETTINGS = fast_settings(bayes_samples=2000, bootstrap_resamples=500, stability_resamples=300)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    """The default sweep's shape (12 datasets x 6 optimizers x 5 batch sizes, 5 seeds, a random arm), with
    Adam and batch size 32 planted as better."""
    out = tmp_path_factory.mktemp("report") / "fixture"
    results = make_results(optimizer_effect={"adam": -0.15}, batch_effect={"32": -0.08})
    build.write(results, out, SETTINGS, "0" * 40)
    return out


def headings(markdown: str) -> list[str]:
    return re.findall(r"^## (.+)$", markdown, flags=re.M)


def test_sections_in_order_and_the_verdict_first(full_report):
    markdown = (full_report / "report.md").read_text()
    assert headings(markdown) == SECTIONS
    verdict = markdown.split("## The verdict", 1)[1].split("## How stable", 1)[0]
    first = [p for p in verdict.split("\n\n") if p.strip()]
    assert first[0].startswith("**What holds across budgets:** tuned, ")  # what is robust comes first
    assert first[1].startswith("**At equal epochs (equal samples processed): use adam at batch size 32.**")
    assert first[2].startswith("**At equal updates")
    assert first[3].startswith("**At equal wall time (this machine)")
    assert "every other optimizer is significantly behind adam" in first[1]
    assert "validation picks adam in" in first[1] and "bootstrap resamples of datasets, seeds and tuning runs" \
        in first[1]
    assert "Scope: small MLPs" in verdict
    assert "**How each choice was made.** Every choice is made on the validation split" in verdict
    for optimizer in OPTIMIZERS:
        assert optimizer in verdict
    stable = markdown.split("## How stable the answer is", 1)[1].split("## Statistics", 1)[0]
    assert '"adam at batch size 32" survives resampling' in stable


def test_verdict_and_stability_tables_hold_every_budget(full_report):
    import pandas as pd

    verdict = pd.read_csv(full_report / "tables" / "verdict.csv")
    assert {"budget", "track", "status", "recommended", "batch_size", "p_value", "p_best"} <= set(verdict.columns)
    assert sorted(set(zip(verdict["budget"], verdict["track"]))) == sorted(
        (b, t) for b in ("epochs", "updates", "seconds") for t in ("tuned", "default"))
    row = verdict[(verdict["budget"] == "epochs") & (verdict["track"] == "tuned")].iloc[0]
    assert (row["recommended"], str(row["batch_size"]), row["status"]) == ("adam", "32", "winner")
    stability = pd.read_csv(full_report / "tables" / "stability.csv")
    assert {"budget", "track", "optimizer", "p_best"} <= set(stability.columns)
    shares = stability[stability["kind"] == "optimizer"].groupby(["budget", "track"])["p_best"].sum()
    assert shares.to_numpy() == pytest.approx(1.0)


def test_every_figure_and_table_referenced_exists(full_report):
    markdown = (full_report / "report.md").read_text()
    figures = set(re.findall(r"\(figures/([\w.-]+\.png)\)", markdown))
    tables = set(re.findall(r"`tables/([\w.-]+\.csv)`", markdown))
    assert figures == {p.name for p in (full_report / "figures").iterdir()}
    assert tables <= {p.name for p in (full_report / "tables").iterdir()}
    assert {"cells.csv", "verdict.csv", "stability.csv", "pairs.csv", "rope_sensitivity.csv", "effects.csv",
            "choices.csv", "claims.csv", "budget_curves.csv", "budgets.csv", "hyper_by_budget.csv", "tuning_runs.csv",
            "tpe_vs_random.csv", "loss_unit.csv"} <= tables | {
        p.name for p in (full_report / "tables").iterdir()}
    for dataset in ("moons", "digits", "diabetes"):
        assert f"curves_{dataset}.png" in figures


def test_claims_table_has_one_row_per_claim_with_a_verdict(full_report):
    markdown = (full_report / "report.md").read_text()
    claims = markdown.split("## The lecture's claims, checked", 1)[1].split("## Reproducibility", 1)[0]
    rows = [line for line in claims.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert len(rows) == 14
    assert all(re.search(r"\*\*(supported|contradicted|inconclusive|by construction)\*\*", row) for row in rows)
    assert sum("**by construction**" in row for row in rows) == 3


def test_smoke_shaped_sweep_report_has_every_section_and_optimizer(tmp_path):
    """The smoke profile's shape: 3 datasets, 2 batch sizes, 2 seeds, 4 trials, no random-search arm."""
    results = make_results(datasets=("iris", "moons", "diabetes"), batch_sizes=("full", "32"), seeds=2, epochs=8,
                           trials=4, random_arm=False, diverged_evals=1, name="smoke")
    build.write(results, tmp_path / "smoke", SETTINGS)
    markdown = (tmp_path / "smoke" / "report.md").read_text()
    assert headings(markdown) == SECTIONS
    verdict = markdown.split("## How stable")[0]
    assert "the data cannot separate" in verdict and "with 3 datasets no Holm-corrected" in verdict
    assert "TPE's best validation loss after k trials: the mean of a few realisations" in markdown
    for optimizer in OPTIMIZERS:
        assert f"| {optimizer} |" in markdown


def test_two_builds_are_byte_identical(tmp_path):
    """One build here, one in a fresh interpreter with another hash seed and shuffled input rows (neither set
    order nor the order a store returns runs in may leak into the files, nor matplotlib's global style)."""
    code = ("import sys, dataclasses; sys.path.insert(0, 'tests')\n"
            "from report_fixtures import fast_settings, make_results\n"
            "from study.report import build\n"
            "s = fast_settings(bayes_samples=2000, bootstrap_resamples=500)\n"
            "r = make_results(datasets=('iris', 'moons', 'digits', 'diabetes'), batch_sizes=('full', '1'),"
            " seeds=3, epochs=8, trials=5)\n"
            "if len(sys.argv) > 1:  # the second build gets every table's rows shuffled, as another store might\n"
            "    r = dataclasses.replace(r, **{n: getattr(r, n).sample(frac=1, random_state=7)\n"
            "                                  for n in ('evals', 'curves', 'trials', 'importances')})\n"
            f"build.write(r, OUT, s, '{'1' * 40}')\n")
    first, second = tmp_path / "first", tmp_path / "second"
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    other = subprocess.Popen([sys.executable, "-c", code.replace("OUT", "sys.argv[1]"), str(second)], cwd=ROOT,
                             env=env)  # both builds at once
    import matplotlib.pyplot as plt

    with plt.style.context("ggplot"):  # what Optuna's figures leave behind in a process: must not leak in
        exec(compile(code.replace("OUT", repr(str(first))).replace("len(sys.argv) > 1", "False"), "build", "exec"),
             {})
    assert other.wait(timeout=120) == 0
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert {"report.md", "report.html"} <= {str(f) for f in files}
    different = [str(f) for f in files if (first / f).read_bytes() != (second / f).read_bytes()]
    assert different == []


def test_a_failed_build_leaves_the_previous_report_whole(tmp_path, monkeypatch):
    """A build that fails while analysing, or after its staging directory was made, leaves the previous report
    byte for byte and nothing beside it (the staging directory is cleaned by the list of what it wrote)."""
    import hashlib

    from study.report.document import render_html

    out = tmp_path / "report"
    results = make_results(datasets=("iris", "wine"), optimizers=("gd", "adam"), batch_sizes=("full",), seeds=2,
                           epochs=3, trials=2, random_arm=False, diverged_evals=0)
    build.write(results, out, SETTINGS)
    before = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir" for p in out.rglob("*")}

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    for module, name in ((analysis, "analyse"), (render_html, "render")):
        with monkeypatch.context() as patched:
            patched.setattr(module, name, broken)
            with pytest.raises(RuntimeError):
                build.write(results, out, SETTINGS)
        assert {str(p): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
                for p in out.rglob("*")} == before
        assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_degenerate_sweeps_build_and_say_what_is_not_measured(tmp_path):
    """Complete sweeps the report used to crash on: one mini-batch size and no full batch (a log axis of no data:
    "Data cannot be log-scaled"), and one recorded before test curves were kept (no performance profile at all).
    Each builds; the second says which budgets it could not measure. The first also lacks one cell's cost per
    epoch, as the default sweep does for two cells: a complete sweep whose every budget is measured for most cells
    keeps the report it had, with no note (and no tables/coverage.csv)."""
    import dataclasses
    import math

    no_full = make_results(datasets=("iris", "wine"), optimizers=("gd", "adam"), batch_sizes=("32",), seeds=2,
                           epochs=3, trials=2, random_arm=False, diverged_evals=0)
    no_cost = (no_full.cells["dataset"] == "wine") & (no_full.cells["optimizer"] == "gd")
    no_full = dataclasses.replace(no_full, cells=no_full.cells.assign(
        seconds_per_epoch=no_full.cells["seconds_per_epoch"].mask(no_cost)))
    build.write(no_full, tmp_path / "no_full", SETTINGS)
    assert "## What this report rests on" not in (tmp_path / "no_full" / "report.md").read_text()
    assert not (tmp_path / "no_full" / "tables" / "coverage.csv").exists()
    old = make_results(datasets=("iris", "wine"), optimizers=("gd", "adam"), batch_sizes=("full", "32"), seeds=2,
                       epochs=3, trials=2, random_arm=False, diverged_evals=0)
    old = dataclasses.replace(old, curves=old.curves.assign(test_loss=math.nan, test_accuracy=math.nan))
    build.write(old, tmp_path / "old", SETTINGS)
    markdown = (tmp_path / "old" / "report.md").read_text()
    note = markdown.split("## What this report rests on", 1)[1].split("\n## ", 1)[0]
    assert "Every cell of the sweep finished (8 of 8)" in note
    assert "At equal updates: not measured at all (the sweep recorded no test-loss curves" in note
    assert "At equal wall time (this machine): not measured at all" in note
    profiles = markdown.split("## Performance profiles", 1)[1].split("\n## ", 1)[0]
    assert "Not measured: performance profiles need the test-loss curves" in profiles


def _chromium():
    if shutil.which("chromium") or Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
    if os.environ.get("CI") == "true":
        pytest.fail("Chromium is missing on CI (`make system-deps` installs it)")
    pytest.skip("Chromium is not installed (make system-deps)")


def test_html_opens_in_chromium_with_every_image_and_no_errors(full_report):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page()
            problems, fetched = [], []
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.on("request", lambda r: fetched.append(r.url))
            page.goto((full_report / "report.html").as_uri(), wait_until="load")
            page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
            page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=10000)
            images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.naturalWidth, i.src.slice(0, 21)])")
            title = page.title()
        finally:
            browser.close()
    assert problems == []
    assert len(images) == len(list((full_report / "figures").iterdir()))
    assert all(width > 0 and src == "data:image/png;base64" for _, width, src in images), images
    assert [u for u in fetched if not u.startswith(("file:", "data:"))] == []  # nothing from the network
    assert "fixture" in title
