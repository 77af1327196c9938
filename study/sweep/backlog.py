"""What a worker still owes MLflow, across its cells: written whenever the store is free, never waited for.

A SQLite store takes one writer at a time, and MLflow's writes are about half a sweep's work: two workers that
waited for each other at every run (or at every cell's end) left a core idle a quarter of the time. So a worker
queues its runs, and when a cell is tuned and evaluated it hands the cell here, with its claim, and goes on with
the next one. Whatever is queued is written in slices of at most ``SLICE_SECONDS`` whenever no other worker holds
the store (one look per epoch costs nothing), and a cell is finished (curves.parquet, summary metrics, FINISHED)
once MLflow holds all of its runs. The worker waits only when ``MAX_FINISHING`` cells are queued or when it has
nothing else to do.

The cell's claim is let go, and the cell marked done, only once MLflow holds all of it: a worker that dies with
cells here leaves them not done, and whoever claims them next writes what MLflow lacks (the trials are in the
storage) and runs their missing evaluations again. If the tracking server is away, a trained cell is parked: done
in the storage with its evaluations' payloads, mirrored later.

What finishing and parking a cell mean is the cell's business (``study.sweep.cell.complete`` and ``park``): the
backlog is handed those two functions, and calls nothing else of the cell.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable

from study.sweep import tracking
from study.sweep.context import Context
from study.sweep.record import Mirror
from study.sweep.tuning import Claim, ClaimLost

MAX_FINISHING = 3  # trained cells waiting for MLflow before the worker waits too
SLICE_SECONDS = 0.05  # one turn at the store when the worker is not waiting: then back to training
RETRY_SECONDS = 0.02  # after finding the store busy, do not ask again before this long


@dataclass
class Entry:
    cell: tuple
    mirror: Mirror
    claim: Claim  # held until the cell is done
    studies: dict
    finishing: object | None = None  # study.sweep.cell.Finishing once the cell is trained


class Backlog:
    """``complete(ctx, studies, mirror, finishing) -> bool`` finishes a trained cell's MLflow run once MLflow holds
    all its runs (False when MLflow could not take it); ``park(ctx, mirror, finishing)`` marks a trained cell done
    in the storage while the tracking server is away."""

    def __init__(self, ctx: Context, complete: Callable[[Context, dict, Mirror, object], bool],
                 park: Callable[[Context, Mirror, object], None]):
        self.ctx, self.entries = ctx, []
        self._complete_cell, self._park_cell = complete, park
        self._next_try = 0.0

    def __contains__(self, cell) -> bool:
        return any(e.cell == cell for e in self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def finishing(self) -> int:
        return sum(e.finishing is not None for e in self.entries)

    def open(self, cell: tuple, mirror: Mirror, claim: Claim, studies: dict) -> Entry:
        """The cell being trained: its runs are written as the store allows."""
        entry = Entry(cell, mirror, claim, studies)
        self.entries.append(entry)
        return entry

    def close(self, entry: Entry, finishing) -> None:
        """The cell is trained: finish it when MLflow holds all its runs."""
        entry.finishing = finishing

    def drop(self, entry: Entry) -> None:
        """The claim was lost (or the cell stopped): nothing more is written for it here."""
        if entry in self.entries:
            self.entries.remove(entry)
        if entry.finishing is not None:
            entry.finishing.directory.cleanup()
        entry.claim.release()

    def work(self, wait: bool = False) -> None:
        """Write what is queued: a slice now if the store is free, or (``wait``) everything, waiting for the turn."""
        if not self.entries or (not wait and time.monotonic() < self._next_try):
            return
        if self.ctx.outage.away():  # the server is away: park what is trained, keep the rest
            self._park_finished()
            return
        with tracking.writer_turn(self.ctx.mlflow, wait) as ours:
            if not ours:
                self._next_try = time.monotonic() + RETRY_SECONDS
                return
            deadline = None if wait else time.monotonic() + SLICE_SECONDS
            for entry in list(self.entries):
                if not entry.mirror.flush(deadline=deadline):
                    break  # out of time, or MLflow refused a write
                if entry.finishing is not None:
                    self._complete(entry)
                if deadline is not None and time.monotonic() > deadline:
                    break
        if self.ctx.outage.away():
            self._park_finished()

    def make_room(self) -> None:
        """Before another cell is claimed: wait while too many trained cells are queued."""
        while self.finishing() >= MAX_FINISHING:
            self.work(wait=True)

    def drain(self) -> None:
        """Everything written (or parked, if the server is away): at the end, and before a worker exits."""
        while any(e.finishing is not None for e in self.entries):
            self.work(wait=True)

    def _complete(self, entry: Entry) -> None:
        try:
            entry.claim.check(force=True)
        except ClaimLost:
            print(f"warning: lost the claim on {'/'.join(map(str, entry.cell))} before its MLflow run was finished; "
                  f"the worker that took it over finishes it", file=sys.stderr)
            self.drop(entry)
            return
        if self._complete_cell(self.ctx, entry.studies, entry.mirror, entry.finishing):
            self.entries.remove(entry)
            entry.claim.release()
            self.ctx.progress("cell", {"cell": entry.cell})
            self.ctx.cells_done += 1

    def _park_finished(self) -> None:
        for entry in [e for e in self.entries if e.finishing is not None]:
            self._park_cell(self.ctx, entry.mirror, entry.finishing)
            self.entries.remove(entry)
            entry.claim.release()
            self.ctx.progress("cell", {"cell": entry.cell})
            self.ctx.cells_done += 1
