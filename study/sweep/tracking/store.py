"""Opening an MLflow store: its client (one per store and process), the settings applied when it is opened, whose
turn it is to write a SQLite store, and the errors that mean "not reachable now" (and ``Outage``, what a worker
remembers of them)."""
from __future__ import annotations

import contextlib
import functools
import os
import re
import time
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from study.sweep.names import MLFLOW_TRACKING_URI, OPTSTUDY_MLFLOW_RETRY_SECONDS

Client = MlflowClient  # a store's client, as ``client`` returns it

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
    with _sqlite_turn(uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else None, wait) as turn:
        yield turn


@contextlib.contextmanager
def _sqlite_turn(database: str | None, wait: bool = True):
    """The writer's turn on the SQLite database at ``database`` (None: no turn to take)."""
    if database is None or _writing.depth:
        yield True
        return
    import fcntl

    fd = os.open(database + ".writer", os.O_RDWR | os.O_CREAT, 0o644)
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


class Outage:
    """A worker's memory of the tracking store going away: after a failed write, no write is tried for
    ``retry_seconds`` (``OPTSTUDY_MLFLOW_RETRY_SECONDS``, default 30), so a server that is down costs one timeout,
    not one per trial; meanwhile results wait in the Optuna storage."""

    def __init__(self, retry_seconds: float | None = None):
        self.retry_seconds = float(os.environ.get(OPTSTUDY_MLFLOW_RETRY_SECONDS, 30.0)) if retry_seconds is None \
            else retry_seconds
        self.until = 0.0  # time.time() before which the store is taken to be away

    def away(self) -> bool:
        return time.time() < self.until

    def began(self) -> None:
        """A write failed just now."""
        self.until = time.time() + self.retry_seconds


_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def mask_url(text: str) -> str:
    """A storage or tracking URL, or any text holding URLs (a command line, a log line), with every password
    replaced by ***: safe for logs, tags and reports.

    Parsed, not matched: a password may hold ``/``, ``:``, ``@`` and anything else unencoded (SQLAlchemy accepts
    ``postgresql://u:Pr0be/S3cret@host/db``), so a URL's userinfo is everything up to the LAST ``@`` of the URL, and
    its password everything after the first ``:`` of that. Where a URL ends is where the text says so: the whole
    text when it starts with the URL, else the next blank or its shell quotes (see ``_url_end``). Anything unclear
    is masked generously: a host shown as *** costs a look, a password shown costs the password."""
    text = str(text)
    quoted = _quoted_spans(text)
    out, done = [], 0
    for start in (m.start() for m in _URL_START.finditer(text)):
        if start < done:  # inside a URL masked already (several URLs in one word are masked as one)
            continue
        end = _url_end(text, start, quoted)
        authority = text.index("://", start) + 3
        at = text.rfind("@", authority, end)
        colon = text.find(":", authority, at) if at >= 0 else -1
        if colon >= 0:
            out += [text[done:colon + 1], "***"]
            done = at
        else:
            out.append(text[done:end])
            done = end
    return "".join(out) + text[done:]


def _quoted_spans(text: str) -> list[tuple[int, int]]:
    """Where single- or double-quoted parts of a command line begin and end (as ``shlex.join`` writes them)."""
    spans, i = [], 0
    while i < len(text):
        if text[i] in "'\"":
            close = text.find(text[i], i + 1)
            if close < 0:
                break
            spans.append((i, close))
            i = close
        i += 1
    return spans


def _url_end(text: str, start: int, quoted: list[tuple[int, int]]) -> int:
    """Where the URL at ``start`` ends, at the latest: the text's end if the text is the URL (a password with a
    blank in it is still one password), else the next blank or the end of the quotes it is in, whichever is later
    (a quote in a password does not end it)."""
    if not text[:start].strip():
        return len(text)
    blank = re.compile(r"\s").search(text, start)
    end = blank.start() if blank else len(text)
    return max([end] + [last + 1 for first, last in quoted if first < start < last])


def tracking_uri(runs_dir: str | Path = "runs") -> str:
    """``MLFLOW_TRACKING_URI`` if set (MLflow's own convention), else SQLite under the runs directory."""
    return os.environ.get(MLFLOW_TRACKING_URI) or f"sqlite:///{Path(runs_dir).resolve() / 'mlflow.db'}"


def client(runs_dir: str | Path = "runs") -> MlflowClient:
    """The store's client, one per store and process: opening a SQLite store checks its schema (0.8 s)."""
    return _client(tracking_uri(runs_dir))


@functools.lru_cache(maxsize=8)
def _client(uri: str) -> MlflowClient:
    check_tracking_uri(uri)
    database = _sqlite_path(uri)
    if database is not None:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    _configure(uri)
    # The first client of a new SQLite store creates its schema (MLflow's migrations, about a second). Two
    # processes doing so at once collide ("table _alembic_tmp_experiments already exists"): the writer's turn
    # makes the second wait and find the schema there.
    with _sqlite_turn(database):
        return MlflowClient(tracking_uri=uri)


# --- what a tracking URI may be --------------------------------------------------------------------------------
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")  # MLflow's SQLAlchemy stores, with or without +driver
SERVER_SCHEMES = ("http", "https")
SQLITE_HEADER = b"SQLite format 3\0"


def _sqlite_path(uri: str) -> str | None:
    """The database file of a ``sqlite:///PATH`` URL (its query aside), else None."""
    return uri[len("sqlite:///"):].split("?", 1)[0] if uri.startswith("sqlite:///") else None


def check_tracking_uri(uri: str) -> None:
    """A tracking URI MLflow can open as a store we can use, else one line naming what is wrong (before anything
    is written): a known scheme, a well-formed URL, and for SQLite a file that is a database."""
    from study.errors import BadInput

    where = MLFLOW_TRACKING_URI
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    if scheme in ("", "file"):
        raise BadInput(where, f"{mask_url(uri)} names a folder for MLflow's file store, which MLflow 3 refuses: "
                              f"use sqlite:///PATH/mlflow.db, a database URL or http://HOST:PORT of a server")
    if scheme not in DATABASE_SCHEMES + SERVER_SCHEMES:
        raise BadInput(where, f"unsupported scheme {scheme!r} in {mask_url(uri)}: use sqlite:///PATH, "
                              f"postgresql://..., mysql://..., mssql://... or http(s)://HOST:PORT")
    problem = userinfo_problem(uri, scheme)
    if problem:
        raise BadInput(where, f"malformed URL {mask_url(uri)}: {problem}")
    if scheme in SERVER_SCHEMES:
        return
    import sqlalchemy.engine
    import sqlalchemy.exc

    try:
        database = sqlalchemy.engine.make_url(uri).database
    except (ValueError, sqlalchemy.exc.ArgumentError) as e:
        raise BadInput(where, f"malformed URL {mask_url(uri)}: {mask_url(str(e).splitlines()[0][:200])}") from None
    if scheme == "sqlite":
        if not database or database == ":memory:" or _sqlite_path(uri) is None:
            raise BadInput(where, f"{mask_url(uri)} names no database file (an in-memory store would vanish "
                                  f"with the process): use sqlite:///PATH/mlflow.db")
        check_sqlite_file(_sqlite_path(uri))


def userinfo_problem(url: str, scheme: str) -> str | None:
    """What makes a URL's user and password ambiguous to the libraries that read it, or None.

    SQLAlchemy ends a password at its first ``@`` and takes the rest for the host, and the URL parsers of http
    clients end the whole authority at a ``/``: a driver's error would then name a "host" that is part of the
    password. Such URLs are refused (masked, and without the parser's words), so no part of a password is printed."""
    if scheme == "sqlite":
        return None
    if url.count("@") > 1:
        return "more than one '@': write an '@' in a user name or password as %40"
    if scheme in SERVER_SCHEMES:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if "@" in url and "@" not in parts.netloc:
            return "a '/', '?' or '#' in a user name or password must be written %2F, %3F, %23"
        try:
            if not parts.hostname:
                return "no host"
            parts.port  # noqa: B018 (a port that is not a number raises)
        except ValueError:
            return "the port is not a number"
    return None


def check_sqlite_file(path: str | Path) -> None:
    """An existing SQLite file must be a database: else one line naming it, at once, with the file untouched.

    SQLite opens anything and only fails on the first query ("file is not a database"), which MLflow then retries
    for minutes as if the database were away. Looked at before opening: the header SQLite writes first, and the
    size its header promises (page count x page size). The size is not held against a file whose write-ahead log
    still has pages: those belong to the database too until they are checkpointed."""
    from study.errors import BadInput

    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            header = f.read(100)
    except FileNotFoundError:
        return  # a new store
    except IsADirectoryError:
        raise BadInput(str(path), "is a folder, not an SQLite database file") from None
    except OSError as e:
        raise BadInput(str(path), f"cannot read this SQLite database: {e.strerror or e}") from None
    if size == 0:
        return  # SQLite's own empty database: the schema is created in it
    if not header.startswith(SQLITE_HEADER) or len(header) < 100:
        raise BadInput(str(path), f"not an SQLite database: {size} bytes without SQLite's header (left as it is: "
                                  f"move it away or name another store)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    counted = pages and header[24:28] == header[92:96]  # the page count is valid only when these agree
    wal = Path(f"{path}-wal")
    if counted and size < pages * page_size and not (wal.is_file() and wal.stat().st_size):
        raise BadInput(str(path), f"a truncated SQLite database: {size} bytes where its header says "
                                  f"{pages} pages of {page_size} ({pages * page_size} bytes); left as it is: restore "
                                  f"it from a copy, or move it away and name another store")


def check_server(runs_dir: str | Path = "runs") -> None:
    """The tracking store must be one we can open, and a tracking server must answer and take our requests: else
    one clear error, before anything is written."""
    from study.errors import BadInput

    uri = tracking_uri(runs_dir)
    check_tracking_uri(uri)
    if uri.startswith(("http://", "https://")):
        import requests

        _configure(uri)
        try:
            requests.get(uri.rstrip("/") + "/health", timeout=5).raise_for_status()
        except requests.RequestException as e:
            raise BadInput(MLFLOW_TRACKING_URI, f"cannot reach the MLflow server at {mask_url(uri)}: "
                                                  f"{type(e).__name__}") from None
        _check_access(uri)


def checked_client(runs_dir: str | Path = "runs") -> MlflowClient:
    """A client whose store answers: an unreachable tracking server is one clear error before any training."""
    from study.errors import BadInput

    check_server(runs_dir)
    try:
        return client(runs_dir)
    except OSError as e:
        where = MLFLOW_TRACKING_URI if os.environ.get(MLFLOW_TRACKING_URI) else "--runs-dir"
        raise BadInput(where, f"cannot create the MLflow store: {e.strerror or e}") from None


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
        raise BadInput(MLFLOW_TRACKING_URI, f"{mask_url(uri)}: {mask_url(problem)}") from None
