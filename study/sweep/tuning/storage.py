"""Optuna storages: one per sweep, a journal file by default or an RDB (PostgreSQL for many machines).

Also the sweep's own record (``<sweep>/_meta``: the resolved config, the machine, each worker's timing) and the
cheap read of every study's user attributes that the worker loop and the counts rest on.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import optuna
import optuna.storages.journal

from study.errors import BadInput

RDB_SCHEMES = ("postgresql", "postgres", "sqlite")


def storage_url(runs_dir: str | Path, sweep: str) -> str:
    """``OPTUNA_STORAGE`` if set, else a journal file under the runs directory (one per sweep)."""
    return os.environ.get("OPTUNA_STORAGE") or str(Path(runs_dir).resolve() / "optuna" / f"{sweep}.journal")


def scheme(url: str) -> str:
    """``postgresql`` for ``postgresql+psycopg://...``; "" for a journal file path."""
    return url.split("://", 1)[0].split("+", 1)[0] if "://" in url else ""


def journal_path(url: str) -> Path | None:
    """The journal file a URL names, or None for a database URL."""
    s = scheme(url)
    if s in RDB_SCHEMES:
        return None
    return Path(url[len("file://"):] if s == "file" else url)


def open_storage(url: str):
    """An RDB URL (PostgreSQL for many machines) or a journal file path (the default: ~0.65 ms per operation,
    where SQLite costs ~9 ms and Optuna advises against it for parallel work). Optuna's per-trial log lines are
    silenced when a storage is opened (not on import): the progress bar says what they would."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = scheme(url)
    if s in RDB_SCHEMES:
        try:
            # pre-ping: a connection broken by a database restart is replaced, not used; connect_timeout: an
            # unreachable host is an error in seconds, not after TCP's two minutes
            rdb = optuna.storages.RDBStorage(url, engine_kwargs={
                "pool_pre_ping": True, **({"connect_args": {"connect_timeout": 10}} if s.startswith("postgres")
                                          else {})})
            return RetryingStorage(optuna.storages.get_storage(rdb))
        except Exception as e:  # a wrong URL, password or host: one line, the password masked
            from study.sweep.tracking import mask_url  # the masking rule lives with the other URL handling
            raise BadInput("OPTUNA_STORAGE", f"cannot open {mask_url(url)}: {str(e).splitlines()[0][:200]}") \
                from None
    if s and s != "file":
        raise BadInput("OPTUNA_STORAGE", f"unsupported storage URL scheme {s!r}: use postgresql://..., "
                                         f"sqlite:///... or a journal file path")
    path = journal_path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFile(str(path)))


class JournalFile(optuna.storages.journal.BaseJournalBackend):
    """Optuna's journal file format (one JSON line per operation; optuna-dashboard reads it as a
    ``JournalFileBackend``), kept open for reading and appending, locked with flock(2), without an fsync per line.

    Every pruning report is a line: about half a million per default sweep, each read back by every worker. Optuna's
    own backend opened the file for every read and every write (three opens per report) and fsynced every line
    (0.22 ms here, a fifth of a worker's time). What the fsync guarded against is a machine crash, not a killed
    process (the kernel keeps a dead process's writes); after a machine crash the resumed sweep simply retrains the
    trials whose lines were lost: the cells that are not marked done are resumed, so nothing is counted twice. The
    lock is an flock on a side file, which the kernel releases when its holder dies (Optuna's file locks wait out
    a 30 s grace period after a crash).
    """

    def __init__(self, path: str):
        import fcntl

        self._path = path
        self._append = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = os.open(path + ".flock", os.O_RDWR | os.O_CREAT, 0o644)
        self._flock = fcntl.flock
        self._reader = None
        self._next_number, self._next_offset = 0, 0  # where the last read stopped: the next line's number and byte

    def read_logs(self, log_number_from: int):
        if self._reader is None:
            self._reader = open(self._path, "rb")
        if log_number_from < self._next_number:  # asked for lines read before: start over
            self._next_number, self._next_offset = 0, 0
        self._reader.seek(self._next_offset)
        data = self._reader.read()
        whole = data[:data.rfind(b"\n") + 1]  # a line still being written is read next time
        lines = whole.splitlines()
        first = self._next_number
        self._next_number, self._next_offset = first + len(lines), self._next_offset + len(whole)
        return [json.loads(line) for number, line in enumerate(lines, start=first) if number >= log_number_from]

    def append_logs(self, logs: list[dict]) -> None:
        import fcntl

        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode("utf-8")
        self._flock(self._lock, fcntl.LOCK_EX)
        try:
            view = memoryview(text)
            while view:  # O_APPEND: at the end of the file, one writer at a time
                view = view[os.write(self._append, view):]
        finally:
            self._flock(self._lock, fcntl.LOCK_UN)


class RetryingStorage(optuna.storages.BaseStorage):
    """A storage whose every call is retried with exponential backoff when the database connection breaks, so a
    PostgreSQL restart in the middle of a sweep costs a pause, not the workers. (A write that committed just before
    the connection dropped could be applied twice; Optuna's writes here are idempotent or checked by the caller.)"""

    def __init__(self, inner, attempts: int = 9, first_wait: float = 0.5):
        self._inner, self._attempts, self._first_wait = inner, attempts, first_wait


def retry_transient(call, attempts: int = 9, first_wait: float = 0.5, what: str = "Optuna storage"):
    """``call()``, retried with backoff (0.5 s doubling, at most 30 s a wait) while the database is away."""
    import sqlalchemy.exc

    transient = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError,
                 sqlalchemy.exc.InterfaceError)
    wait = first_wait
    for attempt in range(attempts):
        try:
            return call()
        except transient as e:
            if attempt == attempts - 1:
                raise
            print(f"warning: {what} unavailable ({type(e).__name__}); retrying in {wait:.1f} s", file=sys.stderr)
            time.sleep(wait)
            wait = min(wait * 2, 30.0)


def _retrying(name: str):
    def call(self, *args, **kwargs):
        return retry_transient(lambda: getattr(self._inner, name)(*args, **kwargs), self._attempts,
                               self._first_wait)
    call.__name__ = name
    return call


for _name in [m for m in dir(optuna.storages.BaseStorage) if not m.startswith("_")]:
    setattr(RetryingStorage, _name, _retrying(_name))
RetryingStorage.__abstractmethods__ = frozenset()


# --- the sweep's own record and cheap reads ---------------------------------------------------------------------
def study_attrs(storage, sweep: str) -> dict[str, dict]:
    """User attributes of every study of a sweep, by study name: one storage read, no trial is looked at."""
    return {s.study_name: s.user_attrs for s in storage.get_all_studies() if s.study_name.startswith(f"{sweep}/")}


def _meta_name(sweep: str) -> str:
    return f"{sweep}/_meta"


def record_sweep(storage, cfg, machine: str) -> None:
    """Keep the resolved config with the results; the same name with a different config is refused, since mixing
    two protocols under one name would make every count and comparison meaningless."""
    meta = optuna.create_study(storage=storage, study_name=_meta_name(cfg.name), load_if_exists=True)
    known = meta.user_attrs.get("config_hash")
    if known is None:
        meta.set_user_attr("config", cfg.as_dict())
        meta.set_user_attr("machine", machine)
        meta.set_user_attr("config_hash", cfg.hash)
    elif known != cfg.hash:
        raise BadInput(cfg.source, f"sweep {cfg.name!r} already exists in the store with another config "
                                   f"(hash {known}, now {cfg.hash}); resume it with the same settings or start a "
                                   f"new one with name=<new name>")


def record_timing(storage, sweep: str, worker: str, timing: dict) -> None:
    meta = optuna.create_study(storage=storage, study_name=_meta_name(sweep), load_if_exists=True)
    meta.set_user_attr(f"timing:{worker}", {k: float(v) for k, v in timing.items()})


def sweep_meta(storage, sweep: str) -> dict:
    """The config and machine recorded by ``record_sweep``; empty if the sweep is unknown."""
    return dict(study_attrs(storage, sweep).get(_meta_name(sweep), {}))


def is_cell_study(name: str, sweep: str) -> bool:
    return name.startswith(f"{sweep}/") and name != _meta_name(sweep)
