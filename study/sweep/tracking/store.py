"""Opening an MLflow store: its client (one per store and process), the settings applied when it is opened, whose
turn it is to write a SQLite store, and the errors that mean "not reachable now"."""
from __future__ import annotations

import contextlib
import functools
import os
import re
from pathlib import Path

import mlflow
from mlflow import MlflowClient

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


def serialized(write):
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


def default_allowed_hosts() -> list[str]:
    """The Host headers an mlflow server accepts by default (loopback names), to extend for remote workers."""
    from mlflow.server.security_utils import get_default_allowed_hosts

    return list(get_default_allowed_hosts())
