"""MLflow, through one door: stores, runs, batched metrics, artifacts, and reading them back.

Everything goes through ``MlflowClient`` (no fluent global run state), so worker processes and threads do not step
on each other. Metrics are sent with ``log_batch`` in chunks of at most 1,000 (one call per value costs 6-15 s per
2,000 values on SQLite; a batch 0.1-0.2 s).
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
import subprocess
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Iterable, Mapping

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

CHUNK = 1000  # MLflow's limit of metrics per log_batch call
# A tracking server that is down should be noticed in seconds, not after MLflow's default ~2 minutes of retries;
# the sweep keeps results in the Optuna storage meanwhile and logs them when the server is back. MLflow also prints
# a "View run" link per finished run on a server (and fetches the run again to do so): noise and a request more.
CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                   "MLFLOW_HTTP_REQUEST_TIMEOUT": "20", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
                   "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
# SQLite stores in write-ahead-log mode with syncs at checkpoints only: every MLflow write is its own transaction
# (about six per run), and the default rollback journal fsyncs each one (WAL took a run from 12.8 to 8.2 ms). A
# killed process loses nothing; a machine crash can lose the last transactions but never corrupts the file; readers
# (``make ui``) are not blocked by a writer. A 256 MB page cache and memory-mapped reads keep the indexes of a
# default sweep's store (about 300 MB) in memory; writers wait for each other up to a minute, not 5 s.
SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "cache_size=-262144", "mmap_size=1073741824",
                  "busy_timeout=60000")
_sqlite_stores: set[str] = set()


def _configure(uri: str) -> None:
    """Settings applied when a store is opened (never on import): client defaults, and the SQLite pragmas above
    for this store's connections only (another SQLite database in the process, Optuna's say, is left alone)."""
    for name, value in CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if not uri.startswith("sqlite:///"):
        return
    import sqlalchemy

    if not _sqlite_stores:
        sqlalchemy.event.listen(sqlalchemy.engine.Engine, "connect", _sqlite_settings)
    _sqlite_stores.add(str(Path(uri[len("sqlite:///"):]).resolve()))


@contextlib.contextmanager
def writer_turn(mlflow_client: MlflowClient, wait: bool = True):
    """This process's turn to write to a SQLite store: an flock on ``<store>.writer``. Yields True once it has the
    turn (at once on a tracking server, which has its own database, and when this process holds it already), or
    False when another process has it and ``wait`` is False.

    SQLite lets one writer in at a time and makes the others poll, sleeping 1, 2, 5, 10, 25 ms and more between
    tries: two workers logging at once each paid about twice a run's cost. Waiting in the kernel's queue wakes the
    next writer the moment the lock is free, and a writer that need not wait can do something else meanwhile."""
    uri = mlflow_client.tracking_uri
    if not uri.startswith("sqlite:///") or _writing.depth:
        yield True
        return
    import fcntl

    fd = os.open(uri[len("sqlite:///"):] + ".writer", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        _writing.depth += 1
        try:
            yield True
        finally:
            _writing.depth -= 1
    finally:
        os.close(fd)  # and with it the lock


class _writing:
    depth = 0  # > 0 while this process holds the writer's turn


def _serialized(write):
    """A tracking write that waits for its turn (``writer_turn``)."""
    @functools.wraps(write)
    def call(mlflow_client, *args, **kwargs):
        with writer_turn(mlflow_client):
            return write(mlflow_client, *args, **kwargs)
    return call


def _sqlite_settings(dbapi_connection, _record) -> None:
    import sqlite3

    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    try:
        main = next((row[2] for row in cursor.execute("PRAGMA database_list") if row[1] == "main"), "")
        if main and str(Path(main).resolve()) in _sqlite_stores:
            for pragma in SQLITE_PRAGMAS:
                cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


class Unavailable(Exception):
    """The tracking store could not take a write."""


def _unavailable_errors() -> tuple:
    import requests
    import sqlalchemy.exc

    return (Unavailable, mlflow.exceptions.MlflowException, requests.RequestException, OSError,
            sqlalchemy.exc.OperationalError)
PACKAGES = ("numpy", "scipy", "scikit-learn", "pandas", "optuna", "mlflow")


UNAVAILABLE = _unavailable_errors()


def mask_url(url: str) -> str:
    """A storage or tracking URL with any password replaced by ***: safe for logs, tags and reports."""
    return re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", str(url))


def tracking_uri(runs_dir: str | Path = "runs") -> str:
    """``MLFLOW_TRACKING_URI`` if set (MLflow's own convention), else SQLite under the runs directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(runs_dir).resolve() / 'mlflow.db'}"


def client(runs_dir: str | Path = "runs") -> MlflowClient:
    """The store's client, one per store and process: opening a SQLite store checks its schema (0.8 s)."""
    return _client(tracking_uri(runs_dir))


@functools.lru_cache(maxsize=8)
def _client(uri: str) -> MlflowClient:
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    _configure(uri)
    return MlflowClient(tracking_uri=uri)


def check_server(runs_dir: str | Path = "runs") -> None:
    """A tracking server must answer and take our requests: else one clear error, before anything is written."""
    from study.errors import BadInput

    uri = tracking_uri(runs_dir)
    if uri.startswith(("http://", "https://")):
        import requests

        _configure(uri)
        try:
            requests.get(uri.rstrip("/") + "/health", timeout=5).raise_for_status()
        except requests.RequestException as e:
            raise BadInput("MLFLOW_TRACKING_URI", f"cannot reach the MLflow server at {mask_url(uri)}: "
                                                  f"{type(e).__name__}") from None
        _check_access(uri)


def checked_client(runs_dir: str | Path = "runs") -> MlflowClient:
    """A client whose store answers: an unreachable tracking server is one clear error before any training."""
    from study.errors import BadInput

    check_server(runs_dir)
    try:
        return client(runs_dir)
    except OSError as e:
        raise BadInput("--runs-dir", f"cannot create the MLflow store: {e.strerror or e}") from None


def _check_access(uri: str) -> None:
    """/health answers anyone; an API call shows whether the server takes our requests (basic-auth credentials,
    allowed Host header). A read, so that a refusal leaves nothing written."""
    from study.errors import BadInput

    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except mlflow.exceptions.MlflowException as e:
        status = re.search(r"\b(401|403)\b", str(e))
        if status and status.group(1) == "401":
            problem = "the server refused our credentials (HTTP 401); set MLFLOW_TRACKING_USERNAME and " \
                      "MLFLOW_TRACKING_PASSWORD (make services writes them to runs/services/env)"
        elif status:
            problem = "the server refused the request (HTTP 403): no permission, or this host name is not in its " \
                      "--allowed-hosts"
        else:
            problem = str(e).strip().splitlines()[0][:200]
        raise BadInput("MLFLOW_TRACKING_URI", f"{mask_url(uri)}: {mask_url(problem)}") from None


NOTE_TAG = "mlflow.note.content"  # the experiment's description, shown in the UI above its runs


@_serialized
def experiment_id(mlflow_client: MlflowClient, name: str, runs_dir: str | Path = "runs",
                  description: str | None = None) -> str:
    """The experiment's id, created on first use with its artifacts under ``<runs_dir>/artifacts/``, and with
    ``description`` as the text the UI shows above its runs."""
    found = mlflow_client.get_experiment_by_name(name)
    if found is None:
        location = None
        if not mlflow_client.tracking_uri.startswith(("http://", "https://")):
            location = (Path(runs_dir).resolve() / "artifacts" / name).as_uri()
        try:
            mlflow_client.create_experiment(name, artifact_location=location)
        except mlflow.exceptions.MlflowException:  # another worker created it between our look and our create
            pass
        found = mlflow_client.get_experiment_by_name(name)
    if description is not None and found.tags.get(NOTE_TAG) != description:
        mlflow_client.set_experiment_tag(found.experiment_id, NOTE_TAG, description)
    return found.experiment_id


def runs_table_url(ui: str, experiment: str, filter_string: str) -> str:
    """A link to the UI's run table of an experiment with a search filter in place (MLflow keeps it in the URL)."""
    from urllib.parse import quote

    return f"{ui.rstrip('/')}/#/experiments/{experiment}/runs?searchFilter={quote(filter_string, safe='')}"


COMMAND_VARIABLE = "OPTSTUDY_COMMAND"  # set by a pipeline for the worker processes it spawns


def command_line() -> str:
    """The command as the user typed it ("python -m pipelines.sweep ..."), also inside spawned workers."""
    import shlex

    argv = list(getattr(sys, "orig_argv", sys.argv))
    return os.environ.get(COMMAND_VARIABLE) or shlex.join(["python", *argv[1:]])


@functools.lru_cache(maxsize=1)
def _provenance() -> tuple:
    return tuple(_provenance_tags().items())


def provenance_tags() -> dict[str, str]:
    """Git commit, package versions and the command line (computed once per process)."""
    return dict(_provenance())


def _provenance_tags() -> dict[str, str]:
    """Git commit, package versions and the command line: on every run, so any number can be traced back."""
    tags = {"command": mask_url(command_line())}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    if re.fullmatch(r"[0-9a-f]{40}", commit):
        tags["mlflow.source.git.commit"] = tags["git_commit"] = commit
    for package in PACKAGES:
        try:
            tags[f"version.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    tags["version.python"] = sys.version.split()[0]
    return tags


def _chunks(items: list, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _run_tags(tags: Mapping[str, object], parent_run_id: str | None, provenance: bool) -> dict[str, str]:
    """A run's tags: its own, and the provenance tags only where asked (cell, report and lecture runs: a child
    is traced back through its cell)."""
    all_tags = {**(provenance_tags() if provenance else {}), **{k: str(v) for k, v in tags.items()}}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    return all_tags


@_serialized
def log_run(mlflow_client: MlflowClient, experiment: str, run_name: str, tags: Mapping[str, str],
            params: Mapping[str, object] = (), curves: Mapping[str, Iterable[float]] = (),
            final: Mapping[str, float] = (), artifacts: Iterable[str | Path] = (), artifact_path: str | None = None,
            parent_run_id: str | None = None, status: str = "FINISHED", provenance: bool = False) -> str:
    """Create a run, log everything in batches, end it; returns the run id. Three calls to the store for a run
    of up to 1,000 values: create (with its tags), one ``log_batch``, terminate.

    ``curves[name]`` is a per-epoch sequence logged with step = epoch (1-based); NaN entries (epochs after a run
    stopped) are skipped. ``final`` metrics are logged once at the last step.
    """
    run = mlflow_client.create_run(experiment, tags=_run_tags(tags, parent_run_id, provenance), run_name=run_name)
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    metrics, last_step = [], 0
    for name, values in dict(curves).items():
        for epoch, value in enumerate(values, start=1):
            if value == value:  # skip NaN: the run had stopped
                metrics.append(Metric(name, float(value), now, epoch))
                last_step = max(last_step, epoch)
    metrics += [Metric(name, float(value), now, last_step) for name, value in dict(final).items()]
    batch_params = [Param(k, str(v)) for k, v in dict(params).items()]
    for i, chunk in enumerate(_chunks(metrics) if metrics else [[]]):
        mlflow_client.log_batch(run_id, metrics=chunk, params=batch_params if i == 0 else ())
    for path in artifacts:
        mlflow_client.log_artifact(run_id, str(path), artifact_path)
    mlflow_client.set_terminated(run_id, status=status)
    return run_id


def runs(mlflow_client: MlflowClient, experiment: str, filter_string: str = "",
         max_results: int | None = None) -> list:
    """Every run of an experiment matching the filter (all pages, or the first ``max_results``)."""
    found, token = [], None
    while True:
        page = mlflow_client.search_runs([experiment], filter_string=filter_string,
                                         max_results=min(1000, max_results or 1000), page_token=token)
        found += list(page)
        token = page.token
        if not token or (max_results and len(found) >= max_results):
            return found


def experiments_newest_first(mlflow_client: MlflowClient) -> list:
    return sorted(mlflow_client.search_experiments(), key=lambda e: (e.creation_time or 0, e.experiment_id),
                  reverse=True)


@_serialized
def start_run(mlflow_client: MlflowClient, experiment: str, run_name: str, tags: Mapping[str, str],
              parent_run_id: str | None = None, provenance: bool = True) -> str:
    """A run left RUNNING (a cell's parent run while its trials go on); ``end_run`` closes it."""
    return mlflow_client.create_run(experiment, tags=_run_tags(tags, parent_run_id, provenance),
                                    run_name=run_name).info.run_id


@_serialized
def reopen_run(mlflow_client: MlflowClient, run_id: str) -> None:
    mlflow_client.update_run(run_id, status="RUNNING")


@_serialized
def end_run(mlflow_client: MlflowClient, run_id: str, status: str = "FINISHED") -> None:
    mlflow_client.set_terminated(run_id, status=status)


@_serialized
def fail_orphans(mlflow_client: MlflowClient, experiment: str, parent_run_id: str, keep: set) -> int:
    """Mark FAILED the children of a run that the Optuna storage does not record (written by a worker that died
    before recording them); FAILED runs are excluded from every count. Returns how many."""
    orphans = [r for r in runs(mlflow_client, experiment, f"tags.mlflow.parentRunId = '{parent_run_id}'")
               if r.info.run_id not in keep and r.info.status != "FAILED"]
    for run in orphans:
        mlflow_client.set_terminated(run.info.run_id, status="FAILED")
        mlflow_client.set_tag(run.info.run_id, "orphaned", "true")
    return len(orphans)


@_serialized
def finish_cell_run(mlflow_client: MlflowClient, run_id: str, artifact_dir: str | Path | None,
                    final: Mapping[str, float], dataset_input: Mapping | None = None,
                    params: Mapping[str, object] = ()) -> None:
    """The files of ``artifact_dir`` (one upload), final metrics, params and the dataset (as an MLflow input) on a
    cell's run, then FINISHED."""
    now = int(time.time() * 1000)
    mlflow_client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in final.items()],
                            params=[Param(k, str(v)) for k, v in dict(params).items()])
    if artifact_dir is not None:
        mlflow_client.log_artifacts(run_id, str(artifact_dir))
    if dataset_input is not None:
        _log_dataset(mlflow_client, run_id, dataset_input)
    mlflow_client.set_terminated(run_id, status="FINISHED")


def _log_dataset(mlflow_client: MlflowClient, run_id: str, dataset_input: Mapping) -> None:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    with warnings.catch_warnings():  # a plain-text source is "ambiguous" to MLflow's resolver; it is fine
        warnings.simplefilter("ignore")
        dataset = mlflow.data.from_numpy(dataset_input["X"], targets=dataset_input["y"],
                                         source=dataset_input.get("source"), name=dataset_input["name"])
    inputs = [DatasetInput(Dataset(**dataset.to_dict()), [InputTag("mlflow.data.context", "train")])]
    try:
        mlflow_client.log_inputs(run_id, inputs)
    except mlflow.exceptions.MlflowException:
        # MLflow looks the dataset up and inserts it when missing: two workers finishing cells of the same
        # dataset at once both insert, and one hits the unique key. Its row is there now: link to it.
        time.sleep(0.2)
        mlflow_client.log_inputs(run_id, inputs)


def metric_histories(mlflow_client: MlflowClient, run_ids: Iterable[str], key: str) -> dict:
    """run id -> (steps, values) of one metric, run by run (a resumed cell's earlier runs, read back once)."""
    out = {}
    for run_id in run_ids:
        history = sorted(mlflow_client.get_metric_history(run_id, key), key=lambda m: m.step)
        out[run_id] = ([m.step for m in history], [m.value for m in history])
    return out


def download(run, path: str, dst: str | Path) -> Path | None:
    """One artifact of a run (as ``runs`` returns it), as a local file; None if the run has no such file. An
    artifact store on this machine's disk is read where it lies (MLflow's own download resolves the store again for
    every file: 10 ms a file); anything else is downloaded into ``dst``."""
    from urllib.parse import unquote, urlparse

    location = urlparse(f"{run.info.artifact_uri}/{path}")
    if location.scheme == "file":
        local = Path(unquote(location.path))
        return local if local.is_file() else None
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{run.info.artifact_uri}/{path}",
                                                        dst_path=str(dst)))
    except (mlflow.exceptions.MlflowException, OSError):
        return None


@_serialized
def log_report_run(mlflow_client: MlflowClient, experiment: str, out: Path, files: Iterable[str],
                   folders: Iterable[str]) -> str:
    """A report's files as artifacts of one role=report run; older report runs are deleted once the new one is
    complete, so a failed upload never leaves the experiment without a report."""
    previous = [r.info.run_id for r in runs(mlflow_client, experiment, "tags.role = 'report'")]
    run_id = start_run(mlflow_client, experiment, "report", {"role": "report"})
    try:
        for name in files:
            mlflow_client.log_artifact(run_id, str(Path(out) / name))
        for folder in folders:
            mlflow_client.log_artifacts(run_id, str(Path(out) / folder), folder)
    except BaseException:
        end_run(mlflow_client, run_id, "FAILED")
        raise
    end_run(mlflow_client, run_id)
    for old in previous:
        mlflow_client.delete_run(old)
    return run_id


@_serialized
def delete_runs(mlflow_client: MlflowClient, experiment: str, filter_string: str) -> int:
    """Delete the matching runs (e.g. a previous report run that a rebuild replaces); returns how many."""
    found = runs(mlflow_client, experiment, filter_string)
    for run in found:
        mlflow_client.delete_run(run.info.run_id)
    return len(found)


def default_allowed_hosts() -> list[str]:
    """The Host headers an mlflow server accepts by default (loopback names), to extend for remote workers."""
    from mlflow.server.security_utils import get_default_allowed_hosts

    return list(get_default_allowed_hosts())
