"""Real services for the tests of a shared sweep: PostgreSQL and an MLflow server on free loopback ports, started
with study.tools.services (the code behind `make services`) and stopped at the end of the session; workers as real
`python -m pipelines.sweep --worker` processes; the stores read back through Optuna and MlflowClient.

The services are shared by every test module that asks for them (one start per session, ~15 s); tests that stop
or kill a server start it again on the same port before they end. Each test runs its own sweep name.
"""
from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the random-search arm off: these tests are about sharing and surviving, and the TPE arm exercises all of it
SMALL = ["--profile", "smoke", "datasets=iris", "optimizers=gd,adam", "batch_sizes=full,32", "trials=4",
         "epochs=5", "seeds=2", "random_arm=false"]
# The fault tests' sweep: two cells (one per worker), each long enough to be caught in the middle of a trial.
FAULT = ["--profile", "smoke", "datasets=iris", "optimizers=adam", "batch_sizes=full,32", "trials=5", "epochs=20",
         "seeds=2", "population=1", "random_arm=false"]  # one trial at a time: the one a signal or a kill interrupts
MLFLOW_RETRY_SECONDS = "3"  # the workers' pause before trying a server that was away again (default 30 s)


def ensure_system_deps() -> None:
    """PostgreSQL and runuser must be there: install them (as `make test` does), never skip."""
    from study.tools import services

    try:
        services.pg_bin()
    except Exception:
        subprocess.run(["bash", str(REPO / "tests" / "system_deps.sh")], check=True, timeout=600)


class Services:
    """PostgreSQL + MLflow server under a temporary runs directory the postgres user can reach (pytest's own
    temporary directories are mode 700)."""

    def __init__(self, auth: bool = True, mlflow_workers: int = 1):
        from study.tools import services

        ensure_system_deps()
        self.base = Path(tempfile.mkdtemp(prefix="optstudy-services-"))
        os.chmod(self.base, 0o711)
        self.runs_dir = self.base / "runs"
        self.paths = services.paths(self.runs_dir)
        self.logs = self.base / "logs"
        self.logs.mkdir()
        self.auth, self.mlflow_workers = auth, mlflow_workers
        self.state: dict = {}
        self.procs: list[subprocess.Popen] = []

    # --- lifecycle -----------------------------------------------------------------------------------------------
    def start(self) -> "Services":
        from study.tools import services

        started = time.monotonic()
        self.state = services.start(self.runs_dir, "127.0.0.1", services.free_port(), services.free_port(),
                                    auth=self.auth, mlflow_workers=self.mlflow_workers)
        self.start_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        from study.tools import services

        for proc in self.procs:
            if proc.poll() is None:
                _kill_group(proc)
        services.stop(self.runs_dir)
        shutil.rmtree(self.base, ignore_errors=True)

    def stop_postgres(self) -> None:
        from study.tools import services
        assert services.stop_postgres(self.paths)

    def start_postgres(self) -> None:
        from study.tools import services
        services.start_postgres(self.paths, self.state)

    def kill_mlflow(self) -> None:
        """A crash: SIGKILL to the server's process group."""
        from study.tools import services

        pid = services.mlflow_pid(self.paths)
        assert pid, "the MLflow server is not running"
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while services.mlflow_pid(self.paths) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not services.mlflow_pid(self.paths)

    def start_mlflow(self) -> None:
        from study.tools import services
        services.start_mlflow(self.paths, self.state)

    def ensure_running(self) -> None:
        """What a fault test leaves behind is put right for the next test."""
        from study.tools import services

        if not services.postgres_pid(self.paths):
            self.start_postgres()
        if not services.mlflow_pid(self.paths):
            self.start_mlflow()

    # --- what workers and tests use ------------------------------------------------------------------------------
    @property
    def secrets(self) -> list[str]:
        return [self.state[k] for k in ("superuser_password", "optuna_password", "mlflow_db_password",
                                        "admin_password", "mlflow_password", "flask_secret") if self.state.get(k)]

    def env(self, **changes) -> dict:
        from study.tools import services

        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_", "OPTSTUDY_"))}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
        env["OPTUNA_STORAGE"] = services.optuna_url(self.state)
        env["MLFLOW_TRACKING_URI"] = services.tracking_uri(self.state)
        env["OPTSTUDY_MLFLOW_RETRY_SECONDS"] = MLFLOW_RETRY_SECONDS
        if self.state.get("auth"):
            env["MLFLOW_TRACKING_USERNAME"] = services.MLFLOW_USER
            env["MLFLOW_TRACKING_PASSWORD"] = self.state["mlflow_password"]
        for k, v in changes.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return env

    def worker(self, args: list, name: str, runs_dir: Path | None = None, env: dict | None = None,
               other_host: str | None = None) -> subprocess.Popen:
        """`python -m pipelines.sweep --worker ...` in its own session, its stdout and stderr in logs/<name>.log.
        ``other_host``: the worker believes it runs on that machine (its worker id carries that host name), so its
        leases expire only by time, as a worker's on another machine would."""
        runs_dir = runs_dir or self.base / "worker-runs" / name
        if other_host:
            launcher = ["-c", f"import runpy, socket; socket.gethostname = lambda: {other_host!r}; "
                              f"runpy.run_module('pipelines.sweep', run_name='__main__')"]
        else:
            launcher = ["-m", "pipelines.sweep"]
        log = (self.logs / f"{name}.log").open("w")
        proc = subprocess.Popen([sys.executable, *launcher, "--worker", "--runs-dir", str(runs_dir), *args], cwd=REPO,
                                env=env or self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        proc.log = self.logs / f"{name}.log"
        proc.name = name
        self.procs.append(proc)
        return proc

    def run_workers(self, args: list, n: int, prefix: str, timeout: float = 240) -> list[subprocess.Popen]:
        procs = [self.worker(args, f"{prefix}-{i}") for i in range(n)]
        wait_all(procs, timeout)
        return procs

    def storage(self):
        from study.sweep import tuning
        from study.tools.services import optuna_url

        return tuning.open_storage(optuna_url(self.state))

    def client(self):
        """An MlflowClient with the workers' credentials (MLflow reads them from the environment per request)."""
        from mlflow import MlflowClient
        from study.tools import services

        if self.state.get("auth"):
            os.environ["MLFLOW_TRACKING_USERNAME"] = services.MLFLOW_USER
            os.environ["MLFLOW_TRACKING_PASSWORD"] = self.state["mlflow_password"]
        return MlflowClient(tracking_uri=services.tracking_uri(self.state))


_shared: Services | None = None


def shared_services(request) -> Services:
    """One Services per test session (with MLflow's basic-auth app, so every worker logs in); stopped when the
    session ends, or at exit if it is cut short."""
    global _shared
    if _shared is None:
        _shared = Services(auth=True).start()
        request.config.add_cleanup(_stop_shared)
        atexit.register(_stop_shared)
    else:
        _shared.ensure_running()
    return _shared


def _stop_shared() -> None:
    global _shared
    if _shared is not None:
        _shared.stop()
        for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(k, None)
        _shared = None


# --- processes ---------------------------------------------------------------------------------------------------
def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def wait_all(procs: list, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in procs:
                if p.poll() is None:
                    _kill_group(p)
            raise AssertionError(f"worker {proc.name} did not finish in {timeout:.0f} s:\n{log_tail(proc)}")


def log_text(proc) -> str:
    return proc.log.read_text(errors="replace")


def log_tail(proc, lines: int = 40) -> str:
    """A worker's log without its progress bar (tqdm redraws with carriage returns)."""
    kept = [line for line in log_text(proc).splitlines() if line.strip() and "trial/s" not in line
            and "s/trial" not in line]
    return "\n".join(kept[-lines:])


def problems(proc) -> list[str]:
    """Lines of a worker's log that speak of an error or a warning."""
    return [line for line in log_text(proc).splitlines()
            if re.search(r"error|warning|traceback|exception", line, re.IGNORECASE)]


def worker_pid_attr(proc) -> str:
    return f":{proc.pid}:"


# --- reading the stores ------------------------------------------------------------------------------------------
def config_of(args: list, name: str):
    from study.sweep import config

    profile = args[args.index("--profile") + 1]
    return config.load_sweep(profile, [a for a in args if "=" in a and not a.startswith("-")] + [f"name={name}"])


def trials_by_state(storage, cfg) -> Counter:
    """Trial states over the sweep's cell studies (the claims studies aside)."""
    import optuna
    from study.sweep import tuning

    names = {tuning.study_name(cfg.name, c) for c in cfg.cells()}
    out = Counter()
    for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if s.study_name in names:
            study = optuna.load_study(study_name=s.study_name, storage=storage)
            out.update(t.state.name for t in study.get_trials(deepcopy=False))
    return out


def all_runs(client, experiment_id: str) -> list:
    from mlflow.entities import ViewType

    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], run_view_type=ViewType.ALL, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def cell_key(run) -> tuple:
    t = run.data.tags
    return (t.get("dataset"), t.get("optimizer"), t.get("batch_size"))


def eval_group(run) -> tuple:
    """(track, tuning run, budgets served): what an evaluation run evaluated, but for its seed."""
    t = run.data.tags
    return t["track"], t["tuning_run"], t["budget"]


def eval_key(run) -> tuple:
    """An evaluation run's identity within a sweep: its cell, what it evaluated and its seed."""
    return (cell_key(run), *eval_group(run), int(run.data.tags["seed"]))


def check_counts(services: Services, cfg) -> dict:
    """Every count exact, from both stores: per cell `trials` finished trials in Optuna (none RUNNING) and exactly
    those trial numbers as FINISHED trial runs in MLflow, each once; `seeds` evaluation runs per track, each seed
    once; one FINISHED cell run; no run left RUNNING; anything else only as FAILED orphans. Returns the figures and
    test_loss per (cell, track, seed)."""
    import optuna
    from optuna.trial import TrialState
    from study.sweep import tuning
    from study.sweep.tuning import ledger

    storage, client = services.storage(), services.client()
    experiment = client.get_experiment_by_name(cfg.name)
    assert experiment is not None, f"no MLflow experiment {cfg.name!r}"
    runs = all_runs(client, experiment.experiment_id)
    running = [(r.info.run_name, cell_key(r)) for r in runs if r.info.status == "RUNNING"]
    assert not running, f"MLflow runs left RUNNING: {running}"
    figures = {"trials": 0, "trial_runs": 0, "eval_runs": 0, "failed_trials": 0, "orphan_runs": 0,
               "retried": 0, "test_loss": {}}
    for cell in cfg.cells():
        study = optuna.load_study(study_name=tuning.study_name(cfg.name, cell), storage=storage)
        trials = study.get_trials(deepcopy=False)
        record = ledger.read(study.user_attrs)
        assert record.done and record.mirrored, (cell, record)
        assert not [t.number for t in trials if t.state == TrialState.RUNNING], f"{cell}: Optuna trials RUNNING"
        numbers = sorted(t.number for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED))
        assert len(numbers) == cfg.profile.trials, f"{cell}: {len(numbers)} finished Optuna trials, want {cfg.profile.trials}"
        figures["trials"] += len(numbers)
        figures["failed_trials"] += sum(t.state == TrialState.FAIL for t in trials)
        figures["retried"] += sum(ledger.retry_of(t) is not None for t in trials)
        parents = [r for r in runs if r.data.tags.get("role") == "cell" and cell_key(r) == cell]
        assert len(parents) == 1 and parents[0].info.status == "FINISHED", \
            f"{cell}: cell runs {[(r.info.run_id, r.info.status) for r in parents]}"
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
        trial_runs = [r for r in children if r.data.tags["role"] == "trial" and r.info.status == "FINISHED"]
        recorded = sorted(int(r.data.tags["trial_number"]) for r in trial_runs)
        assert recorded == numbers, f"{cell}: MLflow trial runs {recorded} != Optuna's finished trials {numbers}"
        figures["trial_runs"] += len(trial_runs)
        evals = [r for r in children if r.data.tags["role"] == "eval" and r.info.status == "FINISHED"]
        # one evaluation per seed of the defaults, and of each tuning run's every distinct choice (one choice can
        # serve several budgets: its budget tag lists them), every budget served once per tuning run
        groups: dict = {}
        for r in evals:
            groups.setdefault(eval_group(r), []).append(int(r.data.tags["seed"]))
        for group, seeds in groups.items():
            assert sorted(seeds) == list(cfg.seeds), f"{cell} {group}: eval seeds {sorted(seeds)}, want {list(cfg.seeds)}"
        assert ("default", "-1", "epochs,updates,seconds") in groups, f"{cell}: no default-track evaluations"
        for run in range(cfg.profile.tuning_runs):
            served = [b for track, r, budgets in groups if track == "tuned" and r == str(run) for b in budgets.split(",")]
            assert sorted(served) == sorted(["epochs", "updates", "seconds"]), f"{cell} tuning run {run}: {served}"
        for r in evals:
            figures["test_loss"][eval_key(r)] = r.data.metrics["test_loss"]
        figures["eval_runs"] += len(evals)
        others = [r for r in children if r not in trial_runs and r not in evals]
        assert all(r.info.status == "FAILED" for r in others), [(r.info.run_name, r.info.status) for r in others]
        figures["orphan_runs"] += len(others)
    stray = [r.info.run_name for r in runs if r.data.tags.get("role") in ("trial", "eval")
             and r.data.tags.get("mlflow.parentRunId") not in {p.info.run_id for p in runs
                                                                if p.data.tags.get("role") == "cell"}]
    assert not stray, f"trial or eval runs without a cell run: {stray}"
    return figures


def nothing_written(services: Services, name: str, runs_dir: Path | None = None) -> None:
    """No trace of sweep ``name``: no Optuna study, no MLflow experiment, no file under the runs directory."""
    import optuna

    names = [s.study_name for s in optuna.get_all_study_summaries(services.storage(), include_best_trial=False)
             if s.study_name.startswith(f"{name}/")]
    assert not names, f"Optuna studies written: {names}"
    assert services.client().get_experiment_by_name(name) is None, f"MLflow experiment {name!r} written"
    if runs_dir is not None and runs_dir.exists():
        files = [p for p in runs_dir.rglob("*") if p.is_file()]
        assert not files, f"files written under {runs_dir}: {files}"


def wait_for(condition, timeout: float, what: str, procs: list = (), poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        for p in procs:
            assert p.poll() is None, f"worker {p.name} ended (status {p.returncode}) before {what}:\n{log_tail(p)}"
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


# --- catching a worker in the middle of a trial --------------------------------------------------------------------
def freeze_mid_trial(proc, storage, cfg, marker: str, timeout: float = 180, after: int = 0,
                     slice_seconds: float = 0.1) -> list[tuple]:
    """Stop ``proc`` (SIGSTOP) at a moment when it is training a RUNNING trial (one that has reported an epoch, so
    its parameters are drawn), once at least ``after`` tuning trials of the sweep are finished; returns those
    trials. The caller then kills or signals it (and SIGCONTs if needed).

    Once it has a trial of its own, the worker runs only in slices of ``slice_seconds`` and is stopped while the
    stores are looked at: a look costs far more than a slice on a loaded machine, and a worker left running
    meanwhile could do all its trials between two looks (it did). Looked at every slice of its own time, it
    cannot; until then (its start-up, the longest part) it runs freely."""
    deadline = time.monotonic() + timeout
    started = False
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{proc.name} ended before it could be caught mid-trial:\n{log_tail(proc)}"
        if started:
            _stop(proc)
        finished, ours = _look(storage, cfg, marker)
        if started and finished >= after:
            held = [(cell, t) for cell, t in ours if t.state.name == "RUNNING" and t.intermediate_values]
            if held:
                return held  # it cannot move: still running when the caller acts
        if started:
            os.kill(proc.pid, signal.SIGCONT)
        started = started or bool(ours)
        time.sleep(slice_seconds)
    if started:
        os.kill(proc.pid, signal.SIGCONT)
    raise AssertionError(f"{proc.name} was never seen in the middle of a trial")


def _stop(proc, timeout: float = 10) -> None:
    """SIGSTOP, and wait until the kernel shows the process stopped (a signal is delivered asynchronously)."""
    os.kill(proc.pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        if fields[0] in ("T", "t", "Z"):
            return
        time.sleep(0.005)
    raise AssertionError(f"{proc.name} did not stop within {timeout:.0f} s of SIGSTOP")


def _look(storage, cfg, marker: str) -> tuple[int, list[tuple]]:
    """(finished tuning trials of the sweep, (cell, trial) for every trial whose worker id contains ``marker``), in
    one read of the storage."""
    import optuna
    from optuna.trial import TrialState
    from study.sweep import tuning
    from study.sweep.tuning import ledger

    finished, ours = 0, []
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    for cell in cfg.cells():
        name = tuning.study_name(cfg.name, cell)
        if name in names:
            trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
            finished += sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
            ours += [(cell, t) for t in trials if marker in ledger.trial_worker(t)]
    return finished, ours


def finished_count(storage, cfg) -> int:
    return sum(n for s, n in trials_by_state(storage, cfg).items() if s in ("COMPLETE", "PRUNED"))


def claim_is_free(url: str, name: str, lease: float = 60.0) -> bool:
    """Try a cell's claim as another worker would (and let go at once): True if nobody holds it."""
    from study.sweep import tuning

    locks = tuning.cell_locks(url, lease)
    claim = tuning.Claim(locks, name, "prober", lease)
    try:
        free = claim.acquire()
        claim.release()
        return free
    finally:
        locks.close()
