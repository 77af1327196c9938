"""Optuna storages: one per sweep, a journal file by default or an RDB (PostgreSQL for many machines).

Also the sweep's own record (``<sweep>/_meta``: the resolved config, the machine, each worker's timing) and the
cheap read of every study's user attributes that the worker loop and the counts rest on.
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import optuna

from study.errors import BadInput
from study.schema.sweep import Sweep
from study.sweep.names import OPTUNA_STORAGE
from study.sweep.tuning.journal import JournalFile  # noqa: F401 (also this module's)

Storage = optuna.storages.BaseStorage  # what ``open_storage`` returns; the rest of the sweep only hands it back

RDB_SCHEMES = ("postgresql", "postgres", "sqlite")
JOURNAL_SCHEME = "file"
USE = "use postgresql://..., sqlite:///PATH or a journal file's path"


def storage_url(runs_dir: str | Path, sweep: str) -> str:
    """``OPTUNA_STORAGE`` if set, else a journal file under the runs directory (one per sweep)."""
    return os.environ.get(OPTUNA_STORAGE) or str(Path(runs_dir).resolve() / "optuna" / f"{sweep}.journal")


def scheme(url: str) -> str:
    """``postgresql`` for ``postgresql+psycopg://...``; "" for a journal file path."""
    return url.split("://", 1)[0].split("+", 1)[0] if "://" in url else ""


def journal_path(url: str) -> Path | None:
    """The journal file a URL names, or None for a database URL."""
    s = scheme(url)
    if s in RDB_SCHEMES:
        return None
    return Path(url[len("file://"):] if s == JOURNAL_SCHEME else url)


def check_storage(url: str) -> None:
    """A storage URL that can work, else one line naming what is wrong, before any store is written: a known scheme
    and a well-formed URL; for SQLite, a file that is a database; for a journal, a folder that exists or can be
    made (made here: what cannot be made fails now, not after the MLflow store was created) and a file, if there
    is one, that is a file. No database is connected to: ``open_storage`` does that."""
    from study.sweep.tracking import mask_url
    from study.sweep.tracking.store import check_sqlite_file, userinfo_problem

    s = scheme(url)
    if s in RDB_SCHEMES:
        import sqlalchemy.engine
        import sqlalchemy.exc

        problem = userinfo_problem(url, s)
        if problem:
            raise BadInput(OPTUNA_STORAGE, f"malformed URL {mask_url(url)}: {problem}")
        try:
            database = sqlalchemy.engine.make_url(url).database
        except (ValueError, sqlalchemy.exc.ArgumentError) as e:
            raise BadInput(OPTUNA_STORAGE, f"malformed URL {mask_url(url)}: "
                                             f"{mask_url(str(e).splitlines()[0][:200])}") from None
        if s == "sqlite":
            if not url.startswith("sqlite:///") or not database or database == ":memory:":
                raise BadInput(OPTUNA_STORAGE, f"{mask_url(url)} names no database file (an in-memory storage "
                                                 f"would vanish with the process, unshared): use sqlite:///PATH")
            check_sqlite_file(database)
        return
    if s and s != JOURNAL_SCHEME:
        raise BadInput(OPTUNA_STORAGE, f"unsupported storage URL scheme {s!r}: {USE}")
    if s == JOURNAL_SCHEME and not url.startswith("file:///"):
        raise BadInput(OPTUNA_STORAGE, f"malformed URL {mask_url(url)}: a journal's URL is file:///ABSOLUTE/PATH")
    if not s and re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", url):
        raise BadInput(OPTUNA_STORAGE, f"malformed URL {mask_url(url)}: a scheme without '//' ({USE}; a file "
                                         f"whose name has a colon: ./{url})")
    _check_journal_path(journal_path(url), OPTUNA_STORAGE if os.environ.get(OPTUNA_STORAGE) == url else None)


def _check_journal_path(path: Path, where: str | None) -> None:
    where = where or str(path)
    if path.is_dir() or not path.name:
        raise BadInput(where, f"{path} is a folder: name the journal file in it, e.g. {path / 'sweep.journal'}")
    if path.exists() and not path.is_file():
        raise BadInput(where, f"{path} is not a regular file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            os.close(os.open(path, os.O_RDWR | os.O_APPEND))  # ours to read and append to
        else:
            _probe(path.parent)
    except OSError as e:
        raise BadInput(where, f"cannot write the journal {path}: {e.strerror or e}") from None


def _probe(folder: Path) -> None:
    """Whether a file can be created in ``folder`` (root may write where a permission check says yes, yet /proc
    refuses): a file of our own, removed at once. Not the journal itself: another worker may be creating it now."""
    import tempfile

    fd, name = tempfile.mkstemp(prefix=".write-test-", dir=folder)
    os.close(fd)
    os.unlink(name)


def open_storage(url: str) -> Storage:
    """An RDB URL (PostgreSQL for many machines) or a journal file path (the default: ~0.65 ms per operation,
    where SQLite costs ~9 ms and Optuna advises against it for parallel work). Optuna's per-trial log lines are
    silenced when a storage is opened (not on import): the progress bar says what they would."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check_storage(url)
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
            raise BadInput(OPTUNA_STORAGE, f"cannot open {mask_url(url)}: "
                                             f"{mask_url(str(e).splitlines()[0][:200])}") from None
    path = journal_path(url)
    try:
        return optuna.storages.JournalStorage(JournalFile(str(path)))
    except OSError as e:
        where = OPTUNA_STORAGE if os.environ.get(OPTUNA_STORAGE) == url else str(path)
        raise BadInput(where, f"cannot open the journal {path}: {e.strerror or e}") from None


class RetryingStorage(optuna.storages.BaseStorage):
    """A storage whose every call is retried with exponential backoff when the database connection breaks, so a
    PostgreSQL restart in the middle of a sweep costs a pause, not the workers.

    A write can commit just before the connection drops, its reply lost: the retry then applies it a second time.
    Attribute, parameter and intermediate-value writes are upserts, so that is harmless; a trial created twice is
    an orphan that the cell fails at its end (``fail_orphans``). Finishing a trial is the one write that refuses
    to be applied twice (the trial is finished now): ``set_trial_state_values`` treats a retry that finds the trial
    already finished as asked as done."""

    def __init__(self, inner, attempts: int = 9, first_wait: float = 0.5):
        self._inner, self._attempts, self._first_wait = inner, attempts, first_wait

    def set_trial_state_values(self, trial_id: int, state, values=None) -> bool:
        tries = 0

        def write() -> bool:
            nonlocal tries
            tries += 1
            try:
                return self._inner.set_trial_state_values(trial_id, state=state, values=values)
            except optuna.exceptions.UpdateFinishedTrialError:
                # only a retry may find its own write: finished otherwise (another state or other values) is
                # another worker's doing, which the caller must hear of (a lost claim)
                if tries > 1 and finished_as_asked(self._inner.get_trial(trial_id), state, values):
                    return True
                raise

        return retry_transient(write, self._attempts, self._first_wait)


def finished_as_asked(trial, state, values) -> bool:
    """Whether ``trial`` is in ``state`` with ``values`` (None: whatever values it has), as one
    ``set_trial_state_values(state, values)`` leaves it."""
    return trial.state == state and (values is None or list(trial.values or []) == [float(v) for v in values])


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
    if _name not in vars(RetryingStorage):  # those it defines itself retry in their own way
        setattr(RetryingStorage, _name, _retrying(_name))
RetryingStorage.__abstractmethods__ = frozenset()


# --- the sweep's own record and cheap reads ---------------------------------------------------------------------
def study_attrs(storage, sweep: str) -> dict[str, dict]:
    """User attributes of every study of a sweep, by study name: one storage read, no trial is looked at."""
    return {s.study_name: s.user_attrs for s in storage.get_all_studies() if s.study_name.startswith(f"{sweep}/")}


def _meta_name(sweep: str) -> str:
    return f"{sweep}/_meta"


def record_sweep(storage: Storage, cfg: Sweep, machine: str) -> None:
    """Keep the resolved config with the results; the same name with a different config is refused, since mixing
    two protocols under one name would make every count and comparison meaningless."""
    meta = optuna.create_study(storage=storage, study_name=_meta_name(cfg.name), load_if_exists=True)
    known = meta.user_attrs.get("config_hash")
    if known is None:
        meta.set_user_attr("config", cfg.stored())
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


def sweep_timing(storage, sweep: str) -> tuple[dict, dict] | None:
    """The timing pre-phase's record (``study.sweep.timing``): ({cell: seconds_per_epoch}, {dataset: caps}), or None
    before it was measured."""
    meta = sweep_meta(storage, sweep)
    return (meta["timing"], meta["caps"]) if "caps" in meta and "timing" in meta else None


def record_sweep_timing(storage, sweep: str, timing: dict, caps: dict) -> None:
    """Keep the measured seconds per epoch, then the caps (written last: their presence says both are there)."""
    meta = optuna.create_study(storage=storage, study_name=_meta_name(sweep), load_if_exists=True)
    meta.set_user_attr("timing", {k: float(v) for k, v in timing.items()})
    meta.set_user_attr("caps", {d: {b: float(v) for b, v in by.items()} for d, by in caps.items()})
