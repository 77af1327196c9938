"""Faults against the real services (PostgreSQL, `mlflow server` with basic-auth), with real worker processes:

- a worker SIGKILLed in the middle of a trial, on "another machine" (its worker id carries another host name, so
  only the database can tell that it died): its claim (a PostgreSQL advisory lock) is released with its connection,
  held while it was merely stopped; the next worker takes the cell, fails its RUNNING trial and retries its
  parameters, nothing lost or counted twice;
- SIGINT and SIGTERM in the middle of a trial: the current trial failed cleanly and queued again, MLflow runs KILLED,
  exit non-zero with a line that says how to resume; the rerun completes with exact counts;
- PostgreSQL stopped and started again mid-sweep: workers retry with backoff and finish;
- the MLflow server killed mid-sweep: results are kept in Optuna, a worker started meanwhile stops with one line before
  any training, and once the server is back on its port the workers log what it missed; counts match Optuna's.
Each test prints its figures (workers, trials, faults, counts before and after).
"""
from __future__ import annotations

import os
import signal
import time

import pytest

from services_support import (FAULT, cell_key, check_counts, claim_is_free, config_of, finished_count,
                              freeze_mid_trial, log_tail, log_text, nothing_written, problems, shared_services,
                              trials_by_state, wait_all, wait_for)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def services(request):
    return shared_services(request)


def fail_and_retry_pairs(services, cfg) -> list[tuple]:
    """(cell, failed trial, its retry) for every FAIL trial of the sweep; asserts each has exactly one retry with
    its parameters, and that the retry (or the end of its chain of retries) finished."""
    import optuna
    from study.sweep import tuning
    from study.sweep.tuning import ledger

    pairs = []
    for cell in cfg.cells():
        study = optuna.load_study(study_name=tuning.study_name(cfg.name, cell), storage=services.storage())
        trials = study.get_trials(deepcopy=False)
        for t in trials:
            if t.state.name != "FAIL":
                continue
            retries = [u for u in trials if ledger.retry_of(u) == t.number]
            if not t.params:  # stopped between its creation and its first suggestion: nothing to try again
                assert not retries, (cell, t.number, [u.number for u in retries])
                pairs.append((cell, t.number, None))
                continue
            assert len(retries) == 1, f"{cell} trial {t.number}: retries {[u.number for u in retries]}"
            # every parameter the failed trial had drawn is tried again (one killed between two suggestions had
            # drawn only some: the retry draws the rest)
            assert {k: retries[0].params.get(k) for k in t.params} == t.params, (cell, t.number, retries[0].params)
            # the retry finished, or was itself stopped (a worker signalled inside it) and is then a FAIL trial of
            # this loop in turn: follow the chain to the trial that finished
            last = retries[0]
            while last.state.name == "FAIL":
                following = [u for u in trials if ledger.retry_of(u) == last.number]
                assert len(following) == 1, f"{cell} trial {last.number}: retries {[u.number for u in following]}"
                last = following[0]
            assert last.state.name in ("COMPLETE", "PRUNED"), (cell, t.number, last.number, last.state)
            pairs.append((cell, t.number, retries[0].number))
    return pairs


def cell_is_free(services, cfg, cell, lease: float) -> bool:
    from study.sweep import tuning
    from study.tools.services import optuna_url

    return claim_is_free(optuna_url(services.state), tuning.study_name(cfg.name, cell), lease)


def test_sigkilled_worker_on_another_host_loses_its_cell_and_nothing_is_lost(services):
    """The victim claims "worker-host-b" as its host, so no pid check on this machine can help: only the database
    can tell that its claim died with it (the advisory lock goes with the victim's connection)."""
    import optuna
    from study.sweep import tuning
    from study.sweep.tuning import ledger

    name, lease = "killed", 4.0
    args = [*FAULT, f"name={name}", f"lease_seconds={lease}"]
    cfg = config_of(args, name)
    storage = services.storage()
    victim = services.worker(args, "killed-victim", other_host="worker-host-b")
    try:
        caught = freeze_mid_trial(victim, storage, cfg, f"worker-host-b:{victim.pid}:", after=2)
        (cell, dead), = caught  # population 1: one trial at a time
        held_while_frozen = not cell_is_free(services, cfg, cell, lease)
        os.killpg(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        victim.wait(timeout=30)
        wait_for(lambda: cell_is_free(services, cfg, cell, lease), lease, "the dead worker's claim to be released",
                 poll=0.05)
        released_seconds = time.monotonic() - killed_at
    finally:
        if victim.poll() is None:
            os.killpg(victim.pid, signal.SIGKILL)
    assert held_while_frozen, "a stopped (not dead) worker's cell could be claimed by another"
    assert victim.returncode == -signal.SIGKILL
    before = trials_by_state(storage, cfg)
    survivor = services.worker(args, "killed-survivor")  # a worker that starts later (or was busy elsewhere)
    study = optuna.load_study(study_name=tuning.study_name(name, cell), storage=storage)
    wait_for(lambda: f":{survivor.pid}:" in ledger.read(study.user_attrs).owner, 120,
             "the survivor to claim the dead worker's cell", [survivor], poll=0.2)
    wait_all([survivor], 240)
    assert survivor.returncode == 0, log_tail(survivor)
    assert not problems(survivor), problems(survivor)

    figures = check_counts(services, cfg)
    pairs = fail_and_retry_pairs(services, cfg)
    assert [(c, f) for c, f, _ in pairs] == [(cell, dead.number)], pairs
    after = optuna.load_study(study_name=tuning.study_name(name, cell), storage=storage)
    retry = next((t for t in after.get_trials(deepcopy=False) if ledger.retry_of(t) == dead.number), None)
    assert retry is not None or pairs[0][2] is None
    assert retry is None or f":{survivor.pid}:" in ledger.trial_worker(retry)
    assert ledger.read(after.user_attrs).recovered_trials == 1
    print(f"\nSIGKILL: 2 workers (one after the other), {len(cfg.cells())} cells x {cfg.profile.trials} trials; killed "
          f"worker-host-b in trial {dead.number} of {'/'.join(cell)} with Optuna at {dict(before)}; its claim was "
          f"released {released_seconds:.2f} s after the kill (lease {lease:.0f} s); after: {figures['trials']} "
          f"finished trials, {figures['trial_runs']} trial runs, {figures['eval_runs']} eval runs, "
          f"{figures['failed_trials']} FAIL (retried as trial {retry.number if retry else '-'}), "
          f"{figures['orphan_runs']} orphan runs marked FAILED")


def test_sigint_and_sigterm_fail_the_current_trial_cleanly_and_a_rerun_completes(services):
    name = "stopped"
    args = [*FAULT, f"name={name}"]
    cfg = config_of(args, name)
    storage = services.storage()
    workers = {sig: services.worker(args, f"stopped-{sig.name}") for sig in (signal.SIGINT, signal.SIGTERM)}
    held = {}
    try:
        for sig, proc in workers.items():
            held[sig] = freeze_mid_trial(proc, storage, cfg, f":{proc.pid}:", after=2)
            os.kill(proc.pid, sig)
            os.kill(proc.pid, signal.SIGCONT)
        wait_all(list(workers.values()), 120)
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    before = trials_by_state(storage, cfg)
    for sig, proc in workers.items():
        text = log_text(proc)
        assert proc.returncode == 130, f"{sig.name}: exit {proc.returncode}\n{log_tail(proc)}"
        assert "Traceback" not in text, log_tail(proc)
        last = [line for line in text.replace("\r", "\n").splitlines() if line.strip()][-1]
        assert "resume" in last and "again" in last, f"{sig.name}: last line {last!r}"
    assert before["RUNNING"] == 0, f"trials left RUNNING after the signals: {before}"
    import optuna
    from study.sweep import tuning
    from study.sweep.tuning import ledger

    outcome = {}  # the trial each worker was in: finished (it was past training) or failed and queued again
    for sig, trials in held.items():
        for cell, t in trials:
            study = optuna.load_study(study_name=tuning.study_name(name, cell), storage=storage)
            now = {u.number: u for u in study.get_trials(deepcopy=False)}
            outcome[sig.name] = now[t.number].state.name
            assert outcome[sig.name] in ("COMPLETE", "PRUNED", "FAIL"), (sig.name, outcome)
            if outcome[sig.name] == "FAIL":
                queued = [u for u in now.values() if ledger.retry_of(u) == t.number]
                assert len(queued) == 1, queued
                assert queued[0].system_attrs.get("fixed_params") == now[t.number].params, queued
                retry = queued[0]
                # the other worker, still running, may take the freed cell and its queued retry and be stopped
                # inside it in turn: then that retry failed too and has a retry of its own
                while retry.state.name == "FAIL":
                    following = [u for u in now.values() if ledger.retry_of(u) == retry.number]
                    assert len(following) == 1, (retry.number, following)
                    retry = following[0]
                assert retry.state.name in ("WAITING", "COMPLETE", "PRUNED"), retry

    client = services.client()
    from services_support import all_runs
    runs = all_runs(client, client.get_experiment_by_name(name).experiment_id)
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"], "MLflow runs left RUNNING"
    killed_cells = {tuple(r.info.run_name.split("/")) for r in runs
                    if r.data.tags.get("role") == "cell" and r.info.status == "KILLED"}
    for cell in {cell for trials in held.values() for cell, _ in trials}:
        # the cell's MLflow run is made with its first trial run: stopped inside its first trial, a cell has none
        in_mlflow = [r for r in runs if cell_key(r) == cell]
        assert cell in killed_cells or not in_mlflow, (cell, killed_cells, [r.info.run_name for r in in_mlflow])

    rerun = services.run_workers(args, 2, "stopped-rerun")
    for p in rerun:
        assert p.returncode == 0 and not problems(p), log_tail(p)
    figures = check_counts(services, cfg)
    pairs = fail_and_retry_pairs(services, cfg)
    assert len(pairs) == before["FAIL"]
    print(f"\nSIGINT + SIGTERM: 2 workers, {len(cfg.cells())} cells x {cfg.profile.trials} trials; stopped with Optuna at "
          f"{dict(before)}, the trials they were in: {outcome}, cell runs KILLED: {len(killed_cells)}; "
          f"rerun with 2 workers: {figures['trials']} finished "
          f"trials, {figures['trial_runs']} trial runs, {figures['eval_runs']} eval runs, {len(pairs)} failed trials "
          f"retried with their parameters")


def test_postgres_restarted_mid_sweep_workers_retry_and_finish(services):
    name, down = "pgrestart", 3.0
    args = [*FAULT, f"name={name}"]
    cfg = config_of(args, name)
    storage = services.storage()
    procs = [services.worker(args, f"pgrestart-{i}") for i in range(2)]
    wait_for(lambda: finished_count(storage, cfg) >= 3, 120, "3 finished trials", procs)
    before = trials_by_state(storage, cfg)
    noticed = ("Optuna storage unavailable", "PostgreSQL (cell claims) unavailable")
    services.stop_postgres()
    stopped = time.monotonic()
    time.sleep(down)
    # down until a worker has run into it (both may be between two storage calls for a moment): the fault is real
    wait_for(lambda: any(n in log_text(p) for p in procs for n in noticed), 60,
             "a worker to notice that PostgreSQL is away", procs, poll=0.2)
    down = time.monotonic() - stopped
    services.start_postgres()
    wait_all(procs, 240)
    for p in procs:
        assert p.returncode == 0, log_tail(p)
        assert "Traceback" not in log_text(p), log_tail(p)
    retries = sum(log_text(p).count(n) for p in procs for n in noticed)
    assert retries >= 1, "no worker noticed the restart: the fault was not exercised"
    figures = check_counts(services, cfg)
    # The restart ends every session, and the claims (advisory locks) with them: the other worker may take a cell
    # before its owner takes the lock again. Then the owner drops the cell ("lost the claim") and the taker fails
    # the trial the owner was in and tries its parameters again: one failed trial per cell lost, each retried.
    lost = sum(log_text(p).count("lost the claim") for p in procs)
    pairs = fail_and_retry_pairs(services, cfg)
    assert len(pairs) == figures["failed_trials"] <= lost, (pairs, figures["failed_trials"], lost)
    print(f"\nPostgreSQL restart: 2 workers, {len(cfg.cells())} cells x {cfg.profile.trials} trials; stopped for {down:.1f} s "
          f"with Optuna at {dict(before)}; {retries} storage retries logged, {lost} cells lost to the other worker; "
          f"after: {figures['trials']} finished trials, {figures['trial_runs']} trial runs, {figures['eval_runs']} "
          f"eval runs, {figures['failed_trials']} failed trials retried, {figures['orphan_runs']} orphan runs")


def test_mlflow_down_at_start_and_mid_sweep(services):
    import optuna
    from study.sweep import tuning
    from study.sweep.tuning import ledger

    name = "mlflowdown"
    args = [*FAULT, f"name={name}", "trials=6"]
    cfg = config_of(args, name)
    storage = services.storage()
    procs = [services.worker(args, f"mlflowdown-{i}") for i in range(2)]
    wait_for(lambda: finished_count(storage, cfg) >= 3, 120, "3 finished trials", procs)
    services.kill_mlflow()
    at_kill = finished_count(storage, cfg)
    try:
        # Training goes on without MLflow: results pile up in the Optuna storage.
        wait_for(lambda: finished_count(storage, cfg) >= at_kill + 4, 120, "4 more trials while MLflow is down",
                 procs)
        while_down = finished_count(storage, cfg)

        # A worker that starts now stops with one line before any training, and writes nothing.
        late = services.worker([*FAULT, "name=late"], "mlflowdown-late-start")
        wait_all([late], 60)
        lines = [line for line in log_text(late).splitlines() if line.strip()]
        assert late.returncode == 2 and len(lines) == 1 and "cannot reach the MLflow server" in lines[0], lines
    finally:
        services.start_mlflow()  # the same port and backend
    nothing_written(services, "late")
    wait_all(procs, 240)
    for p in procs:
        assert p.returncode == 0, log_tail(p)
        assert "Traceback" not in log_text(p), log_tail(p)
    assert any("MLflow unavailable" in log_text(p) for p in procs), "no worker noticed the server was gone"

    figures = check_counts(services, cfg)  # MLflow's counts equal Optuna's
    backfilled = 0
    for cell in cfg.cells():
        study = optuna.load_study(study_name=tuning.study_name(name, cell), storage=storage)
        backfilled += len(ledger.read(study.user_attrs).trial_runs)
    assert backfilled >= while_down - at_kill - 2, (backfilled, at_kill, while_down)
    print(f"\nMLflow down: 2 workers, {len(cfg.cells())} cells x {cfg.profile.trials} trials; server killed with {at_kill} "
          f"trials finished, {while_down - at_kill} more finished while it was down; a worker started meanwhile: "
          f"exit 2 before training; after the restart: {backfilled} trial runs backfilled by reconcile, "
          f"{figures['trials']} finished trials = {figures['trial_runs']} trial runs, {figures['eval_runs']} eval "
          f"runs, {figures['orphan_runs']} orphan runs marked FAILED")
