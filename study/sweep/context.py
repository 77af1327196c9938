"""What a worker carries from cell to cell: the sweep, its stores, its identity and what it has measured, each typed.

The stores are handles of the two doors (``tuning.Storage``, ``tracking.Client``), the claims' locks a
``tuning.Locks``, the tracking store's availability an ``tracking.Outage``; the backlog (``study.sweep.backlog``) is
reached through the ``Outbox`` protocol below, since it calls back into the cell's functions it is handed.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol

from study.schema.sweep import Sweep
from study.sweep import tracking, tuning

if TYPE_CHECKING:  # types only: both modules work on a Context
    from study.sweep.cell import Finishing
    from study.sweep.record import Mirror


class Interrupted(Exception):
    """SIGINT / SIGTERM arrived: stop at the end of the current epoch, fail what is running, leave resumable."""


class Outbox(Protocol):
    """What a worker still owes MLflow, across its cells (``study.sweep.backlog.Backlog``): a cell is opened when
    its training starts, closed with what its MLflow run still needs once it is trained, dropped when it stops;
    ``work`` writes a slice whenever the store is free."""

    def open(self, cell: tuple, mirror: Mirror, claim: tuning.Claim, studies: dict) -> object: ...

    def close(self, entry, finishing: Finishing) -> None: ...

    def drop(self, entry) -> None: ...

    def work(self, wait: bool = False) -> None: ...

    def make_room(self) -> None: ...

    def drain(self) -> None: ...

    def finishing(self) -> int: ...

    def __contains__(self, cell) -> bool: ...


@dataclass
class Context:
    """What a worker needs to run cells: the sweep, its stores and its identity, and what it has measured."""
    cfg: Sweep
    storage: tuning.Storage
    mlflow: tracking.Client
    experiment: str
    worker: str
    locks: tuning.Locks  # what the worker's claims are held by
    progress: Callable[[str, dict], None] = lambda event, info: None
    stop_requested: bool = False
    outage: tracking.Outage = field(default_factory=tracking.Outage)  # MLflow failed a write: wait before the next
    seconds: dict = field(default_factory=lambda: {"optuna": 0.0, "mlflow": 0.0})
    network_epochs: int = 0  # epochs trained, summed over networks
    cells_done: int = 0
    backlog: Outbox | None = None  # set once the context exists: the backlog works on it
    lost: set = field(default_factory=set)  # done cells whose MLflow runs were found missing (study.sweep.sweep)

    @contextlib.contextmanager
    def timed(self, what: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[what] += time.perf_counter() - started

    def check_stop(self) -> None:
        if self.stop_requested:
            raise Interrupted()
