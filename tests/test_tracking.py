"""study.sweep.tracking against a real SQLite MLflow store: races between workers that write at the same moment."""
import multiprocessing

import numpy as np

from study.sweep import tracking


def _finish_a_cell_run(runs_dir: str, experiment: str, barrier, results) -> None:
    client = tracking.client(runs_dir)
    run_id = tracking.start_run(client, experiment, "cell", {"role": "cell"})
    X = np.arange(40.0).reshape(20, 2)
    barrier.wait()  # both workers log the same dataset at the same moment, as two cells of one dataset finishing
    try:
        tracking.finish_cell_run(client, run_id, [], {"best_val_loss": 0.5},
                                 {"name": "iris", "X": X, "y": np.arange(20) % 2, "source": "test"})
        results.put((run_id, "ok"))
    except Exception as e:  # reported to the test, which names it
        results.put((run_id, f"{type(e).__name__}: {e}"))


def test_two_workers_logging_the_same_dataset_at_once_both_succeed(tmp_path):
    """MLflow looks a dataset up, then inserts it: of two workers doing so at once, one hits the unique key
    (measured: every time). Both cell runs must end FINISHED with the dataset as their input."""
    client = tracking.client(tmp_path)
    experiment = tracking.experiment_id(client, "race", tmp_path)
    ctx = multiprocessing.get_context("spawn")
    for attempt in range(3):
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_finish_a_cell_run, args=(str(tmp_path), experiment, barrier, results))
                 for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        outcomes = dict(results.get(timeout=5) for _ in procs)
        assert set(outcomes.values()) == {"ok"}, (attempt, outcomes)
        for run_id in outcomes:
            run = client.get_run(run_id)
            assert run.info.status == "FINISHED"
            assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["iris"]


def test_mlflow_store_settings_apply_to_its_own_sqlite_store_only(tmp_path):
    """Opening MLflow's SQLite store sets WAL and a large page cache on its connections, and nothing on another
    SQLite database in the same process: Optuna's SQLite storage keeps SQLite's defaults."""
    import sqlite3

    import optuna

    from study.sweep import tuning

    mlflow_client = tracking.client(tmp_path)
    tracking.experiment_id(mlflow_client, "settings", tmp_path)
    optuna_db = tmp_path / "optuna.db"
    storage = tuning.open_storage(f"sqlite:///{optuna_db}")
    optuna.create_study(storage=storage, study_name="s")
    with sqlite3.connect(tmp_path / "mlflow.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent: set by our connections
    with sqlite3.connect(optuna_db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"sqlite:///{optuna_db}")  # a new connection in this process
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -2000  # SQLite's default, untouched
    engine.dispose()


def test_replacing_runs_deletes_the_files_mlflow_lists_and_nothing_else(tmp_path):
    """A replaced run's artifacts are freed file by file as MLflow lists them, then the folders left empty; a file
    that is not the run's (here a note beside its artifacts) stays, with the folder holding it."""
    from pathlib import Path

    mlflow_client = tracking.client(tmp_path)
    experiment = tracking.experiment_id(mlflow_client, "replace", tmp_path)
    source = tmp_path / "source"
    (source / "figures" / "deep").mkdir(parents=True)
    (source / "table.csv").write_text("a,b\n1,2\n")
    (source / "figures" / "loss.png").write_bytes(b"png")
    (source / "figures" / "deep" / "curve.png").write_bytes(b"png")
    run_ids = []
    for name in ("clean", "with a note"):
        run_id = tracking.start_run(mlflow_client, experiment, name, {"role": "lecture"}, provenance=False)
        mlflow_client.log_artifacts(run_id, str(source))
        tracking.end_run(mlflow_client, run_id)
        run_ids.append(run_id)
    runs = [mlflow_client.get_run(run_id) for run_id in run_ids]
    folders = [Path(r.info.artifact_uri.removeprefix("file://")) for r in runs]
    assert all((f / "figures" / "deep" / "curve.png").is_file() for f in folders)
    note = folders[1].parent / "note.txt"  # <experiment>/<run id>/note.txt: not an artifact of the run
    note.write_text("mine")
    neighbour = folders[0].parent.parent / "keep.txt"
    neighbour.write_text("also mine")

    assert tracking.replace_runs(mlflow_client, runs) == 2
    assert all(mlflow_client.get_run(r).info.lifecycle_stage == "deleted" for r in run_ids)
    assert not folders[0].parent.exists(), list(folders[0].parent.rglob("*"))
    assert not folders[1].exists() and note.read_text() == "mine"
    assert [p.name for p in folders[1].parent.iterdir()] == ["note.txt"]
    assert neighbour.read_text() == "also mine"
    assert (source / "figures" / "deep" / "curve.png").is_file()  # what was logged from is not the run's copy


def test_provenance_is_one_record_that_the_tags_and_the_benchmark_read_alike():
    """study.provenance asks git and reads the versions once; the runs' tags, the benchmark's environment and the
    report's commit line are views of that one record."""
    import subprocess
    import sys
    from pathlib import Path

    from study import provenance
    from study.tools import benchmark

    repo = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    found = provenance.provenance()
    assert found.commit == head and head.startswith(found.short_commit) and found.python == sys.version.split()[0]
    assert set(found.versions) == set(provenance.PACKAGES)
    tags = tracking.provenance_tags()
    assert tags["git_commit"] == tags["mlflow.source.git.commit"] == head
    assert {k[len("version."):]: v for k, v in tags.items() if k.startswith("version.")} == \
        {**found.versions, "python": found.python}
    assert tags["command"] == tracking.mask_url(found.command)
    env = benchmark._environment()
    assert env["git_commit"] == found.short_commit and env["numpy"] == np.__version__
    marked = provenance.code_commit(["study/provenance.py"], "its code")
    assert marked == head + (" (its code modified since)" if provenance.modified(["study/provenance.py"]) else "")


def test_an_outage_holds_writes_back_for_its_retry_time(monkeypatch):
    import time

    monkeypatch.setenv("OPTSTUDY_MLFLOW_RETRY_SECONDS", "0.3")
    outage = tracking.Outage()
    assert outage.retry_seconds == 0.3 and not outage.away()
    outage.began()
    assert outage.away()
    time.sleep(0.35)
    assert not outage.away()
    monkeypatch.delenv("OPTSTUDY_MLFLOW_RETRY_SECONDS")
    assert tracking.Outage().retry_seconds == 30.0
