"""The sweep: workers claim whole cells through the Optuna storage and run them until every cell is done.

``make sweep`` starts ``workers`` processes on this machine, each single-threaded in BLAS, each running the same
worker loop as ``make worker`` does on other machines; a cell's results depend only on the config, never on which
worker ran it or how many there were. The parent process draws the progress bar and the closing summary.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from study.errors import BadInput
from study.schema.sweep import Sweep
from study.sweep import names, record, tracking, tuning
from study.sweep.backlog import Backlog
from study.sweep.cell import complete, mirror_done_cell, open_studies, park, run_cell
from study.sweep.context import Context, Interrupted
from study.sweep.tuning import ledger


def open_stores(cfg: Sweep, runs_dir: str | Path):
    """The Optuna storage and the MLflow experiment, checked before any training starts."""
    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        # a probe of this process's own: two workers starting together once unlinked each other's shared one
        # (FileNotFoundError), and the second stopped as if the directory were not writable
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=runs_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise BadInput("--runs-dir", f"{runs_dir} is not writable: {e.strerror or e}") from None
    # Bad settings fail before anything is written: the tracking server is asked first (a read), then a database
    # URL is opened (a wrong password or host writes nothing); only then do the file stores get created.
    tracking.check_server(runs_dir)
    url = tuning.storage_url(runs_dir, cfg.name)
    tuning.storage.check_storage(url)  # a journal that cannot be written: refused before the MLflow store exists
    storage = tuning.open_storage(url) if "://" in url else None
    mlflow_client = tracking.checked_client(runs_dir)
    storage = storage or tuning.open_storage(url)
    tuning.record_sweep(storage, cfg, machine_description())
    experiment = tracking.experiment_id(mlflow_client, cfg.name, runs_dir, description=record.EXPERIMENT_NOTE)
    return storage, mlflow_client, experiment


def new_context(cfg: Sweep, runs_dir: str | Path, progress=lambda event, info: None,
                stores: tuple | None = None) -> Context:
    """A worker: its stores (``open_stores``' if given, else opened and checked here); its identity; the locks its
    claims are held by; its backlog, which finishes and parks cells the cell's way."""
    storage, mlflow_client, experiment = stores or open_stores(cfg, runs_dir)
    locks = tuning.cell_locks(tuning.storage_url(runs_dir, cfg.name), cfg.profile.lease_seconds)
    ctx = Context(cfg, storage, mlflow_client, experiment, tuning.new_worker_id(), locks, progress=progress)
    ctx.backlog = Backlog(ctx, complete=complete, park=park)
    ctx.lost = unmirrored(cell_records(storage, cfg), mlflow_client, experiment)
    return ctx


def install_signal_handlers(ctx: Context) -> None:
    """SIGINT and SIGTERM ask the worker to stop at the end of its epoch (``Context.check_stop``)."""
    def ask_to_stop(signum, frame):
        ctx.stop_requested = True
    signal.signal(signal.SIGINT, ask_to_stop)
    signal.signal(signal.SIGTERM, ask_to_stop)


def machine_description() -> str:
    import platform

    return f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, " \
           f"Python {platform.python_version()}, {platform.system()} {platform.release()}".replace("  ", " ")


def cell_records(storage: tuning.Storage, cfg: Sweep) -> dict[tuple, ledger.CellRecord]:
    """Every cell's record, in the config's order (one storage read)."""
    attrs = tuning.study_attrs(storage, cfg.name)
    return {c: ledger.read(attrs.get(tuning.study_name(cfg.name, c), {})) for c in cfg.cells()}


def pending_cells(storage: tuning.Storage, cfg: Sweep, stores: tuple | None = None, lost=frozenset()) -> list[tuple]:
    """Cells not done, then done cells whose MLflow mirror is incomplete: the tracking server was away, or MLflow
    no longer holds what the storage says it does (cells found ``lost`` already, or looked for in the ``stores``
    that ``open_stores`` returned)."""
    records = cell_records(storage, cfg)
    if stores is not None:
        lost = set(lost) | unmirrored(records, stores[1], stores[2])
    return [c for c, r in records.items() if not r.done] + \
        [c for c, r in records.items() if r.done and (not r.mirrored or c in lost)]


def unmirrored(records: dict, mlflow_client: tracking.Client, experiment: str) -> set[tuple]:
    """Done cells that the storage records as mirrored but MLflow does not hold: their cell run missing, deleted,
    or not FINISHED, a child of it deleted, or a count of children that differs from the ledger's (the cell run
    carries the counts it was finished with, once MLflow held all of them). Two searches, whatever the number of
    cells: the cell runs, and the deleted runs. (Searching every child instead would take a second per thousand
    runs, half a minute on a default sweep; a child removed for good behind a FINISHED cell run goes unseen.)"""
    mirrored = {c: r for c, r in records.items() if r.done and r.mirrored}
    if not mirrored:
        return set()
    try:
        cell_runs = {r.info.run_id: r for r in tracking.runs(mlflow_client, experiment, record.cell_filter())}
        deleted = {r.data.tags.get(names.PARENT_RUN) for r in tracking.runs(mlflow_client, experiment, deleted=True)}
    except tracking.UNAVAILABLE as e:
        print(f"warning: could not check what MLflow holds ({type(e).__name__}); checked again on the next run",
              file=sys.stderr)
        return set()
    lost = set()
    for cell, r in mirrored.items():
        run = cell_runs.get(r.cell_run_id)
        held = run.data.metrics if run is not None else {}
        if run is None or run.info.status != "FINISHED" or r.cell_run_id in deleted \
                or held.get("trial_runs", len(r.trial_runs)) != len(r.trial_runs) \
                or held.get("eval_runs", len(r.eval_runs())) != len(r.eval_runs()):
            lost.add(cell)
    return lost


def _run_or_mirror(ctx: Context, cell: tuple, claim: tuning.Claim) -> bool:
    """Run the cell (the backlog finishes it and lets go of the claim), or write what MLflow is missing of a done
    one; False when the claim is ours to let go: the cell was mirrored, or there was nothing left to do (another
    worker finished it after our list of pending cells was read)."""
    studies = open_studies(ctx, cell)
    book = ledger.Ledger(studies[names.TPE])
    if not book.record.done:
        run_cell(ctx, cell, claim, studies, book)
        return True
    if not book.record.mirrored or cell in ctx.lost:  # done, but MLflow missed or lost some of it: write it
        mirror_done_cell(ctx, cell, claim, studies, book, check=cell in ctx.lost)
        ctx.lost.discard(cell)  # what is still missing now is in the ledger (not mirrored), retried from there
        ctx.progress("mirrored", {"cell": cell})
    return False


def worker_loop(ctx: Context, wait_for_others: bool = True, poll_seconds: float = 2.0,
                tracking_patience: float = 600.0) -> int:
    """Claim and run cells until all are done and mirrored in MLflow; returns how many this worker ran. Whatever
    the worker still owes MLflow is written before it returns, whether the loop ends or is interrupted."""
    try:
        return _loop(ctx, wait_for_others, poll_seconds, tracking_patience)
    finally:
        ctx.backlog.drain()


def _loop(ctx: Context, wait_for_others: bool, poll_seconds: float, tracking_patience: float) -> int:
    waited_for_tracking = 0.0
    while True:
        ctx.backlog.make_room()
        pending = [c for c in pending_cells(ctx.storage, ctx.cfg, lost=ctx.lost) if c not in ctx.backlog]
        if not pending:
            if ctx.backlog.finishing():
                ctx.backlog.drain()
                continue
            return ctx.cells_done
        took = False
        for cell in pending:
            ctx.check_stop()
            if ctx.outage.away() and _is_done(ctx, cell):
                continue  # only MLflow's copy is missing, and MLflow is still away
            claim = tuning.Claim(ctx.locks, tuning.study_name(ctx.cfg.name, cell), ctx.worker,
                                 ctx.cfg.profile.lease_seconds)
            if not claim.acquire():
                continue  # a live worker holds it
            held = False
            try:
                held = _run_or_mirror(ctx, cell, claim)
            except tuning.ClaimLost:
                print(f"warning: lost the claim on {'/'.join(map(str, cell))} (the database connection dropped and "
                      f"another worker took the cell); leaving it to that worker", file=sys.stderr)
            finally:
                if not held:
                    claim.release()
            took = True
            break  # look again: other workers may have finished cells meanwhile
        if took:
            continue
        if ctx.backlog.finishing():  # nothing to claim: write what this worker owes MLflow meanwhile
            ctx.backlog.drain()
            continue
        if all(_is_done(ctx, c) for c in pending):  # training is over; only MLflow's copy is waiting
            if waited_for_tracking >= tracking_patience:
                raise TrackingAway(len(pending))
            waited_for_tracking += poll_seconds
        elif not wait_for_others:
            return ctx.cells_done
        time.sleep(poll_seconds)  # pending cells are held by live workers; a dead one's lock goes with it


class TrackingAway(Exception):
    def __init__(self, cells: int):
        super().__init__(f"MLflow is still unreachable: {cells} finished cell(s) are kept in the Optuna storage but "
                         f"not yet logged to MLflow; run the same command again when it is back")


def record_timing(ctx: Context, wall: float) -> dict:
    """This worker's figures, kept with the sweep (the benchmark reads them): wall time, network-epochs trained,
    seconds spent in MLflow and in Optuna."""
    timing = {"wall": wall, "network_epochs": ctx.network_epochs, **ctx.seconds}
    try:
        tuning.record_timing(ctx.storage, ctx.cfg.name, ctx.worker, timing)
    except Exception as e:  # figures about the run must never cost the run's results
        print(f"warning: could not record timing: {type(e).__name__}", file=sys.stderr)
    return timing


def _is_done(ctx: Context, cell: tuple) -> bool:
    attrs = tuning.study_attrs(ctx.storage, ctx.cfg.name)
    return ledger.read(attrs.get(tuning.study_name(ctx.cfg.name, cell), {})).done


def _child(cfg: Sweep, runs_dir: str, queue) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    ctx = new_context(cfg, runs_dir, progress=lambda event, info: queue.put((event, info)))
    install_signal_handlers(ctx)
    code, started = 0, time.perf_counter()
    try:
        worker_loop(ctx)
    except Interrupted:
        code = 130
    except TrackingAway as e:
        print(f"error: {e}", file=sys.stderr)
        code = 3
    finally:
        timing = record_timing(ctx, time.perf_counter() - started)
        queue.put(("worker_done", {"seconds": ctx.seconds, "code": code, "network_epochs": timing["network_epochs"]}))
        ctx.locks.close()
    sys.exit(code)


def run_local(cfg: Sweep, runs_dir: str | Path, workers: int, progress) -> dict:
    """Run the sweep with ``workers`` processes on this machine; returns timing figures for the summary."""
    for var in names.THREAD_VARIABLES:  # children import numpy fresh: one BLAS thread each, one core per worker
        os.environ[var] = "1"
    mp = multiprocessing.get_context("spawn")
    queue = mp.Queue()
    started = time.perf_counter()
    procs = [mp.Process(target=_child, args=(cfg, str(runs_dir), queue), daemon=False) for _ in range(workers)]
    forward = lambda signum, frame: [p.terminate() for p in procs if p.is_alive()]  # noqa: E731
    previous = signal.signal(signal.SIGTERM, forward)
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # children get Ctrl-C themselves and stop cleanly
    for p in procs:
        p.start()
    signal.signal(signal.SIGINT, lambda s, f: None)
    seconds, codes, finished, network_epochs = {"optuna": 0.0, "mlflow": 0.0}, [], 0, 0
    try:
        while finished < workers:
            try:
                event, info = queue.get(timeout=1.0)
            except Exception:  # queue.Empty: check that the children are still alive
                if all(not p.is_alive() for p in procs) and queue.empty():
                    break
                continue
            if event == "worker_done":
                finished += 1
                codes.append(info["code"])
                network_epochs += info["network_epochs"]
                for k in seconds:
                    seconds[k] += info["seconds"][k]
            else:
                progress(event, info)
    finally:
        for p in procs:
            p.join()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    codes += [p.exitcode for p in procs if p.exitcode not in (0, None)]
    return {"wall": time.perf_counter() - started, "workers": workers, "seconds": seconds,
            "network_epochs": network_epochs,
            "interrupted": any(c in (130, -signal.SIGTERM, -signal.SIGINT) for c in codes),
            "failed": any(c not in (0, 130, -signal.SIGTERM, -signal.SIGINT) for c in codes)}


def run_in_process(cfg: Sweep, runs_dir: str | Path, progress, wait_for_others: bool = True,
                   stores: tuple | None = None) -> dict:
    """One worker in this process (``make worker``, or a sweep with one cell left): joins whatever sweep the stores
    hold. One BLAS thread, as in a spawned worker: the numbers do not depend on how the worker was started."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    ctx = new_context(cfg, runs_dir, progress=progress, stores=stores)
    install_signal_handlers(ctx)
    started = time.perf_counter()
    interrupted = failed = False
    try:
        worker_loop(ctx, wait_for_others)
    except Interrupted:
        interrupted = True
    except TrackingAway as e:
        print(f"error: {e}", file=sys.stderr)
        failed = True
    timing = record_timing(ctx, time.perf_counter() - started)
    ctx.locks.close()
    return {"wall": timing["wall"], "workers": 1, "seconds": ctx.seconds, "network_epochs": ctx.network_epochs,
            "interrupted": interrupted, "failed": failed}


def counts(cfg: Sweep, storage) -> dict:
    """What the storage holds for this sweep: cells done, trials by state, evaluations, and the runs its ledger
    records as held by MLflow."""
    attrs = tuning.study_attrs(storage, cfg.name)
    records = {c: attrs.get(tuning.study_name(cfg.name, c), {}) for c in cfg.cells()}
    ledgers = {c: ledger.read(a) for c, a in records.items()}
    return {"cells": len(records), "cells_done": sum(r.done for r in ledgers.values()),
            "trials": tuning.trial_state_counts(storage, cfg.name),
            "evals": sum(len(ledger.evaluations(a)) for a in records.values()),
            "trial_runs": sum(len(r.trial_runs) for r in ledgers.values()),
            "eval_runs": sum(len(r.eval_runs()) for r in ledgers.values())}


def mlflow_counts(mlflow_client, experiment: str) -> dict:
    """What MLflow holds of a sweep, by its own records: cell runs by status (one search); their trial and eval
    runs as each FINISHED cell run counted them when it finished (a search each for the few that are not)."""
    found = {"cells": {}, "trial_runs": 0, "eval_runs": 0}
    for run in tracking.runs(mlflow_client, experiment, record.cell_filter()):
        status = run.info.status
        found["cells"][status] = found["cells"].get(status, 0) + 1
        if status == "FAILED":  # an orphan: never counted
            continue
        if status == "FINISHED":
            if "trial_runs" not in run.data.metrics:  # finished before cell runs counted their children
                found["uncounted"] = found.get("uncounted", 0) + 1
            found["trial_runs"] += int(run.data.metrics.get("trial_runs", 0))
            found["eval_runs"] += int(run.data.metrics.get("eval_runs", 0))
            continue
        for child in tracking.run_family(mlflow_client, experiment, run.info.run_id)[1]:
            role = child.data.tags.get(names.ROLE)
            if child.info.status == "FINISHED" and role in (names.TRIAL, names.EVAL):
                found[f"{role}_runs"] += 1
    return found
