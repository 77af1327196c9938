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

optuna.logging.set_verbosity(optuna.logging.WARNING)
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
    where SQLite costs ~9 ms and Optuna advises against it for parallel work)."""
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
            from study.tracking import mask_url  # the masking rule lives with the other URL handling
            raise BadInput("OPTUNA_STORAGE", f"cannot open {mask_url(url)}: {str(e).splitlines()[0][:200]}") \
                from None
    if s and s != "file":
        raise BadInput("OPTUNA_STORAGE", f"unsupported storage URL scheme {s!r}: use postgresql://..., "
                                         f"sqlite:///... or a journal file path")
    path = journal_path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFile(str(path)))


class JournalFile(optuna.storages.journal.JournalFileBackend):
    """Optuna's journal file, locked with ``FlockLock`` and without an fsync per appended line.

    Every pruning report is a line: about half a million per default sweep, and Optuna's fsync of each cost 0.22 ms
    here, a fifth of a worker's time. What the fsync guarded against is a machine crash, not a killed process (the
    kernel keeps a dead process's writes), and after a machine crash the resumed sweep simply retrains the trials
    whose lines were lost: the cells that are not marked done are resumed, so nothing is counted twice.
    """

    def __init__(self, path: str):
        self._path, self._flock = path, FlockLock(path)
        super().__init__(path, lock_obj=self._flock)

    def append_logs(self, logs: list[dict]) -> None:
        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode("utf-8")
        self._flock.acquire()
        try:
            with open(self._path, "ab") as f:
                f.write(text)
        finally:
            self._flock.release()


class FlockLock(optuna.storages.journal.JournalFileOpenLock):  # the public lock type, with flock inside
    """The journal's lock as an flock(2) on a side file: the kernel releases it when its process dies, so a
    SIGKILLed worker never leaves a stale lock behind (Optuna's file locks wait out a 30 s grace period)."""

    def __init__(self, journal_path: str):
        self._path, self._fd = journal_path + ".flock", None

    def acquire(self) -> bool:
        import fcntl

        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return True

    def release(self) -> None:
        import fcntl

        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


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
