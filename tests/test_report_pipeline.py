"""`python -m pipelines.report`: bad input is one line and exit 2 with nothing written; the report is logged to
MLflow as one role=report run that a rebuild replaces."""
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import report
from pipelines.cli import run
from study.sweep import tracking

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("runs")
    tracking.client(runs_dir).search_experiments()  # creates the SQLite store, with no sweep in it
    return runs_dir


def exit_code_and_stderr(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        run(report.main, argv)
    return stopped.value.code, capsys.readouterr().err


def test_missing_store_is_one_line_and_exit_2(tmp_path):
    missing = tmp_path / "nowhere"
    done = subprocess.run([sys.executable, "-m", "pipelines.report", "--runs-dir", str(missing)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: --runs-dir: no MLflow store")
    assert not missing.exists()


def test_empty_store_and_unknown_sweep_are_bad_input(empty_store, tmp_path, capsys):
    before = sorted(p.name for p in empty_store.rglob("*"))
    code, err = exit_code_and_stderr(["--runs-dir", str(empty_store), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and err.startswith("error: --runs-dir: no sweep in the stores")
    code, err = exit_code_and_stderr(["--runs-dir", str(empty_store), "--sweep", "nosuch", "--out",
                                      str(tmp_path / "r")], capsys)
    assert code == 2 and err.startswith("error: --sweep: no sweep 'nosuch'") and err.count("\n") == 1
    assert sorted(p.name for p in empty_store.rglob("*")) == before  # nothing written
    assert not (tmp_path / "r").exists()


def test_a_rebuild_replaces_the_report_run(empty_store, tmp_path):
    out = tmp_path / "report"
    (out / "figures").mkdir(parents=True)
    (out / "tables").mkdir()
    for name, text in {"report.html": "<html></html>", "report.md": "# r", "figures/a.png": "png",
                       "tables/b.csv": "x\n1\n"}.items():
        (out / name).write_text(text)
    client = tracking.client(empty_store)
    experiment = tracking.experiment_id(client, "fixture_sweep", empty_store)
    first, second = (tracking.log_report_run(client, experiment, out, ("report.html", "report.md"),
                                             ("figures", "tables")) for _ in range(2))
    active = tracking.runs(client, experiment, "tags.role = 'report'")
    assert [r.info.run_id for r in active] == [second] and first != second
    assert client.get_run(first).info.lifecycle_stage == "deleted"
    logged = {f.path for f in client.list_artifacts(second)}
    assert logged == {"report.html", "report.md", "figures", "tables"}
    assert [f.path for f in client.list_artifacts(second, "figures")] == ["figures/a.png"]
    assert [f.path for f in client.list_artifacts(second, "tables")] == ["tables/b.csv"]


def test_report_settings_load_and_reject_bad_values(tmp_path):
    from study.errors import BadInput
    from study.report import settings

    loaded = settings.load()
    report = loaded.report
    assert (report.statistics.alpha, report.tolerance.epochs.paired_sd, report.tolerance.epochs.accuracy_points,
            report.tolerance.updates.ratio, report.target.factor) == (0.05, 0.25, 1.0, 1.25, 1.1)
    assert report.primary.families == ("epochs", "updates", "seconds")
    assert report.stability.bayes_samples < report.statistics.bayes_samples
    assert loaded.claims.verdict.support > loaded.claims.verdict.contradict
    for name in ("claims.yaml", "lecture.yaml"):
        (tmp_path / name).write_text((settings.CONF / name).read_text())
    text = (settings.CONF / "report.yaml").read_text()
    (tmp_path / "report.yaml").write_text(text.replace("sensitivity: [1.0, 0.5, 0.25, 0.1]", "sensitivity: [1.0, 0.5]"))
    with pytest.raises(BadInput, match=r"report.yaml: tolerance.sensitivity: must fall from 1 .* to 0.1"):
        settings.load(tmp_path)
    (tmp_path / "report.yaml").write_text(text.replace("updates: {ratio: 1.25}", "updates: {ratio: 0.8}"))
    with pytest.raises(BadInput, match=r"report.yaml: tolerance.updates.ratio"):
        settings.load(tmp_path)
    (tmp_path / "report.yaml").write_text(text.replace("families: [epochs, updates, seconds]", "families: [hours]"))
    with pytest.raises(BadInput, match=r"report.yaml: primary.families: must be distinct budgets"):
        settings.load(tmp_path)
    (tmp_path / "report.yaml").write_text(text.replace("omnibus: iman-davenport", "omnibus: friedman"))
    with pytest.raises(BadInput, match=r"report.yaml: statistics.omnibus: only 'iman-davenport' is implemented"):
        settings.load(tmp_path)
    (tmp_path / "report.yaml").write_text("statistics: [")
    with pytest.raises(BadInput, match="report.yaml: not valid YAML"):
        settings.load(tmp_path)
