"""A real browser on the MLflow UI over a smoke sweep's store: the run table shows the cell runs, and a cell run,
expanded, its trial and evaluation runs.

`mlflow server` runs on a free loopback port in its own process group (killed at the end); headless Debian
Chromium is driven by the `playwright` package (never `playwright install`: DESIGN §6). Without /usr/bin/chromium
the test is skipped on a workstation and FAILS in CI (CI=true), where `make test` installs it.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SWEEP = ["--profile", "smoke", "name=ui", "datasets=iris", "optimizers=gd,adam", "batch_sizes=full", "trials=3",
         "epochs=3", "seeds=1"]
TRIALS, SEEDS, TUNING_RUNS = 3, 1, 2  # the smoke profile tunes each cell twice
CELLS = ("iris/gd/full", "iris/adam/full")


def _missing(what: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is missing in CI; `make test` installs it (tests/system_deps.sh)")
    pytest.skip(f"{what} is missing (make test installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("ui-sweep")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-m", "pipelines.sweep", "--runs-dir", str(runs_dir), "--workers", "2",
                           *SWEEP], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{runs_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ui")
    assert experiment is not None
    return runs_dir, experiment.experiment_id


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    runs_dir, _ = store
    proc, url = _server(runs_dir, tmp_path_factory.mktemp("ui-server"))
    try:
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        _missing(CHROMIUM)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright Python package")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _eval_names(store, cell: str) -> list[str]:
    """The names of a cell's evaluation runs, read from the store the UI shows."""
    from mlflow import MlflowClient

    runs_dir, experiment_id = store
    client = MlflowClient(tracking_uri=f"sqlite:///{runs_dir / 'mlflow.db'}")
    dataset, optimizer, batch = cell.split("/")
    runs = client.search_runs([experiment_id], f"tags.role = 'eval' and tags.dataset = '{dataset}' and "
                              f"tags.optimizer = '{optimizer}' and tags.batch_size = '{batch}'", max_results=1000)
    return sorted(r.info.run_name for r in runs)


def test_run_table_shows_cells_and_expanded_trials(browser, server, store, tmp_path):
    _, experiment_id = store
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        # the run table (the experiment's default page shows traces); wait for a run's name, not for networkidle
        page.goto(f"{server}/#/experiments/{experiment_id}/runs")
        for name in CELLS:
            page.get_by_text(name, exact=True).first.wait_for(timeout=90_000)
        page.screenshot(path=str(tmp_path / "runs-collapsed.png"))
        assert page.get_by_text("trial-0", exact=True).count() == 0, "trials should be nested under their cell"

        row = page.locator(".ag-row", has=page.get_by_text(CELLS[0], exact=True))
        row.locator('[col-id*="Run Name"] button').first.click()  # the +/- expander beside the run name
        page.get_by_text("trial-0", exact=True).first.wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "runs-expanded.png"))
        for n in range(TRIALS):
            assert page.get_by_text(f"trial-{n}", exact=True).count() == 1, f"trial-{n} not shown once"
        evals = _eval_names(store, CELLS[0])
        assert len(evals) >= (1 + TUNING_RUNS) * SEEDS, evals  # the defaults' and each tuning run's choices
        for name in evals:
            assert page.get_by_text(name, exact=True).count() == 1, f"{name} not shown once"
        for name in CELLS:  # the other cell stays listed (and collapsed)
            assert page.get_by_text(name, exact=True).count() == 1
        assert page.get_by_text(f"trial-{TRIALS}", exact=True).count() == 0
    finally:
        page.close()


# --- more cells than a page: the link in the sweep's summary opens a table a reviewer can browse --------------------
# The default profile's every optimizer and batch size on its four smallest datasets: 120 cells, more than the table
# loads at once (the whole grid's 450 took 150 s more to sweep and showed nothing more)
MANY_DATASETS = ("iris", "wine", "moons", "circles")
MANY = ["--profile", "default", "name=browse", f"datasets={','.join(MANY_DATASETS)}", "trials=2", "epochs=3",
        "seeds=1", "tuning_runs=1", "population=1", "random_arm=false", "sampler.n_startup_trials=2",
        "pruner.n_startup_trials=2", "pruner.warmup_fraction=0.1"]
MANY_CELLS = len(MANY_DATASETS) * 6 * 5  # x the default's 6 optimizers and 5 batch sizes
PAGE = 100  # MLflow's run table loads 100 runs at a time


@pytest.fixture(scope="module")
def many_cells(tmp_path_factory):
    """The default grid on four datasets (4 x 6 optimizers x 5 batch sizes = 120 cells), each cell cheap: one
    tuning run of 2 trials of 3 epochs, and one seed. Returns the runs directory and the cell-runs link from the
    sweep's closing summary."""
    import re

    runs_dir = tmp_path_factory.mktemp("browse")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-m", "pipelines.sweep", "--runs-dir", str(runs_dir), "--workers", "2",
                           *MANY], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    links = re.findall(r"cell runs:\s+(http://\S+)", proc.stderr)
    assert links, proc.stderr[-2000:]
    return runs_dir, links[-1]


def _server(runs_dir: Path, cwd: Path):
    """`mlflow server` over a sweep's store in its own process group, once it answers; whatever it writes by
    default lands in ``cwd``."""
    port = free_port()
    log = (cwd / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                             f"sqlite:///{runs_dir / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"], cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited with {proc.returncode}:\n{(cwd / 'server.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return proc, url
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"mlflow server not healthy after 120 s:\n{(cwd / 'server.log').read_text()[-3000:]}")
        time.sleep(0.5)


def _stop(proc) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
        try:
            os.killpg(proc.pid, sig)  # the server and the job consumers it starts
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _shown_names(page) -> list[str]:
    """Run names in the order the table shows them (ag-grid rows by their row index), read in one call: a row at a
    time took two browser round trips each."""
    rows = page.evaluate("""() => Array.from(document.querySelectorAll(
        '.ag-center-cols-container .ag-row, .ag-pinned-left-cols-container .ag-row'))
        .map(row => [row.getAttribute('row-index'), row.innerText])""")
    names = {}
    for index, text in rows:
        for token in text.strip().split():
            if token.count("/") == 2:
                names[int(index)] = token
    return [names[i] for i in sorted(names)]


def test_the_summary_link_shows_100_cell_runs_a_page_sortable_by_tuned_test_loss(browser, many_cells, tmp_path):
    from mlflow import MlflowClient

    runs_dir, link = many_cells
    client = MlflowClient(tracking_uri=f"sqlite:///{runs_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("browse")
    cells = client.search_runs([experiment.experiment_id], "tags.role = 'cell'", max_results=1000)
    assert len(cells) == MANY_CELLS > PAGE
    server, url = _server(runs_dir, tmp_path)
    try:
        page = browser.new_page(viewport={"width": 2400, "height": 5200})  # tall: ag-grid renders what is visible
        page.goto(link.replace("http://127.0.0.1:5000", url))
        page.locator(".ag-row").first.wait_for(timeout=90_000)
        page.wait_for_function(f"document.querySelectorAll('.ag-center-cols-container .ag-row').length >= {PAGE}",
                               timeout=60_000)
        shown = _shown_names(page)
        page.screenshot(path=str(tmp_path / "cells.png"))
        assert len(shown) == PAGE and len(set(shown)) == PAGE, shown
        assert set(shown) <= {r.info.run_name for r in cells}, "a run that is not a cell run on the first page"
        assert page.get_by_text("trial-0", exact=True).count() == 0

        assert page.get_by_text(f"{PAGE} matching runs").count() == 1  # the table's own count of this page

        # sort as a person would: the Sort menu, the metric, ascending
        page.get_by_role("button", name="Sort:").first.click()
        page.locator('[data-testid="sort-select-tuned_test_loss"]').click()
        if not page.locator('[data-testid="sort-select-asc"]').is_visible():
            page.get_by_role("button", name="Sort:").first.click()
        page.locator('[data-testid="sort-select-asc"]').click()
        page.keyboard.press("Escape")
        expected = [r.info.run_name for r in client.search_runs(
            [experiment.experiment_id], "tags.role = 'cell'", order_by=["metrics.tuned_test_loss ASC"],
            max_results=PAGE)]
        page.get_by_text(expected[0], exact=True).first.wait_for(timeout=60_000)
        page.wait_for_function(f"document.querySelectorAll('.ag-center-cols-container .ag-row').length >= {PAGE}",
                               timeout=60_000)
        time.sleep(1.0)  # let the table settle on the new order
        page.screenshot(path=str(tmp_path / "cells-sorted.png"))
        shown = _shown_names(page)
        assert shown == expected, list(zip(shown, expected))[:10]
    finally:
        _stop(server)
