"""Cell claims held by the storage engine's own locks: a worker owns a cell while it holds the cell's lock.

- Journal file (and SQLite) storages: an flock(2) on a file per cell beside the storage. The kernel releases it the
  moment its process dies, however it dies.
- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) on a connection kept for the purpose. The
  server releases it when that connection ends: at once when the worker's process dies (its kernel closes the
  socket), and when its host vanishes, once TCP keepalives go unanswered; those are set on the session to give up
  well within ``lease_seconds``.

Taking a lock never waits: a held cell is simply skipped. Nothing is timed, nothing is left behind for anyone to
clean up, and no claim shows up as a study. A lock can be lost only with its connection (a database restart): the
holder notices at its next check, takes the lock again on a new connection, and goes on only if nobody else held
the cell meanwhile (the cell's record still names it as owner); otherwise it drops the cell (``ClaimLost``).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import socket
import time
import uuid
from pathlib import Path
from typing import Protocol

from study.sweep.tuning.ledger import Ledger
from study.sweep.tuning.storage import journal_path, retry_transient, scheme


class ClaimLost(Exception):
    """Another worker may hold the cell now: stop working on it without writing anything more."""


class Locks(Protocol):
    """What a worker's claims are held by: one lock per cell, taken without waiting (``FileLocks`` for journal and
    SQLite storages, ``PostgresLocks`` for PostgreSQL). A handle is whatever ``try_lock`` returned."""

    def try_lock(self, name: str) -> object | None:
        """The cell's lock, or None when another worker holds it."""

    def still_held(self, handle) -> bool:
        """Whether the lock can still be vouched for (a database connection may have dropped it)."""

    def regain(self, handle) -> object | None:
        """After ``still_held`` said no: the lock again, or None if another worker has it now."""

    def unlock(self, handle) -> None: ...

    def close(self) -> None: ...


class FileLocks:
    """flock(2) on ``<directory>/<cell>.lock``: one open file per held cell."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def try_lock(self, name: str):
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / (re.sub(r"[^A-Za-z0-9_.-]+", "__", name) + ".lock"),
                     os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def still_held(self, handle) -> bool:
        return True  # held until we let go or die

    def regain(self, handle):
        return handle

    def unlock(self, handle) -> None:
        fcntl.flock(handle, fcntl.LOCK_UN)
        os.close(handle)

    def close(self) -> None:
        pass


def advisory_key(name: str) -> int:
    """A signed 64-bit key for ``pg_try_advisory_lock``, the same in every worker."""
    return int.from_bytes(hashlib.blake2b(f"optstudy:{name}".encode(), digest_size=8).digest(), "big", signed=True)


class PostgresLocks:
    """Session advisory locks on one connection of this worker's own (autocommit, no pool)."""

    def __init__(self, url: str, lease_seconds: float):
        self.url, self.lease_seconds = url, lease_seconds
        self.conn = None

    def keepalive(self) -> dict:
        """Give up on a silent peer within about half the lease: idle + count x interval seconds."""
        idle = max(1, int(self.lease_seconds / 4))
        interval = max(1, int(self.lease_seconds / 8))
        return {"idle": idle, "interval": interval, "count": 2, "user_timeout_ms": 1000 * (idle + 2 * interval)}

    def _connect(self):
        import sqlalchemy

        k = self.keepalive()
        engine = sqlalchemy.create_engine(self.url, poolclass=sqlalchemy.pool.NullPool, connect_args={
            "connect_timeout": 10, "keepalives": 1, "keepalives_idle": k["idle"],
            "keepalives_interval": k["interval"], "keepalives_count": k["count"],
            "tcp_user_timeout": k["user_timeout_ms"]})
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        # the server's side of the same socket: a vanished host's backend ends, and its locks with it
        for setting, value in (("tcp_keepalives_idle", k["idle"]), ("tcp_keepalives_interval", k["interval"]),
                               ("tcp_keepalives_count", k["count"]), ("tcp_user_timeout", k["user_timeout_ms"])):
            conn.exec_driver_sql(f"SET {setting} = {int(value)}")
        return conn

    def _query_once(self, sql: str, key: int | None = None):
        import sqlalchemy.exc

        if self.conn is None:
            self.conn = self._connect()
        try:
            return self.conn.exec_driver_sql(sql, (key,) if key is not None else None).scalar()
        except sqlalchemy.exc.DBAPIError:
            self._drop()  # a broken connection is never used again
            raise

    def _lock(self, key: int):
        taken = retry_transient(lambda: self._query_once("SELECT pg_try_advisory_lock(%s)", key),
                                what="PostgreSQL (cell claims)")
        return key if taken else None

    def try_lock(self, name: str):
        return self._lock(advisory_key(name))

    def still_held(self, handle) -> bool:
        """True while our session (and so every lock it holds) is alive."""
        import sqlalchemy.exc

        try:
            return self._query_once("SELECT 1") == 1
        except sqlalchemy.exc.DBAPIError:
            return False

    def regain(self, handle):
        """After the connection was lost: the lock again on a new connection, or None if another worker has it."""
        self._drop()
        return self._lock(handle)

    def unlock(self, handle) -> None:
        import sqlalchemy.exc

        try:
            self._query_once("SELECT pg_advisory_unlock(%s)", handle)
        except sqlalchemy.exc.DBAPIError:  # the connection is gone, and the lock with it
            pass

    def _drop(self) -> None:
        if self.conn is not None:
            try:
                self.conn.invalidate()
                self.conn.close()
            except Exception:  # closing a dead connection: nothing to save
                pass
            self.conn = None

    def close(self) -> None:
        self._drop()


def cell_locks(url: str, lease_seconds: float) -> Locks:
    """The lock kind that belongs to a storage URL (``study.sweep.tuning.storage.storage_url``)."""
    s = scheme(url)
    if s.startswith("postgres"):
        return PostgresLocks(url, lease_seconds)
    if s == "sqlite":
        return FileLocks(Path(url.split(":///", 1)[1] + ".claims"))
    return FileLocks(Path(str(journal_path(url)) + ".claims"))


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Claim:
    """A worker's hold on one cell. ``acquire`` never waits; ``check`` (cheap, throttled) raises ``ClaimLost`` once
    the hold cannot be vouched for; ``release`` lets go. Once the cell's ledger names the claim as its owner
    (``own``), a lock regained after a lost connection counts only if the ledger still names it."""

    def __init__(self, locks: Locks, name: str, worker: str, lease_seconds: float):
        self.locks, self.name, self.worker = locks, name, worker
        self.interval = min(5.0, lease_seconds / 4)
        self.token = f"{worker}:{uuid.uuid4().hex[:6]}"  # this claim, as the cell's record names its owner
        self.handle = None
        self._checked = 0.0
        self._book: Ledger | None = None

    def own(self, book: Ledger, **changes) -> None:
        """Write this claim into the cell's ledger as its owner (with any other ``changes`` to the record, in the
        same write): from now on a worker that held the cell in between shows there."""
        book.update(owner=self.token, **changes)
        self._book = book

    def still_ours(self) -> bool:
        """Does the cell's record still name this claim as its owner (True before ``own``: nothing to compare)?"""
        return self._book is None or self._book.refresh().owner == self.token

    def acquire(self) -> bool:
        self.handle = self.locks.try_lock(self.name)
        self._checked = time.monotonic()
        return self.handle is not None

    def check(self, force: bool = False) -> None:
        if self.handle is None:
            raise ClaimLost(self.name)
        now = time.monotonic()
        if not force and now - self._checked < self.interval:
            return
        self._checked = now
        if self.locks.still_held(self.handle):
            return
        self.handle = self.locks.regain(self.handle)
        if self.handle is None or not self.still_ours():
            self.release()
            raise ClaimLost(self.name)

    def release(self) -> None:
        if self.handle is not None:
            self.locks.unlock(self.handle)
            self.handle = None
