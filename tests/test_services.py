"""Workers on a shared study: real PostgreSQL, a real `mlflow server` (basic-auth app on), real worker processes.

- two, then four `python -m pipelines.sweep --worker` processes complete one small sweep each with every count exact
  and no error in their logs, and the numbers are those of a one-worker run on this machine's default stores;
- `make services` / `make services-stop`: the env file, URLs a worker can use, loopback only, stopped by PIDs;
- passwords never reach a log, an MLflow tag or param, or the Optuna storage.
"""
from __future__ import annotations

import collections

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services_support import (REPO, SMALL, check_counts, config_of, eval_key, log_tail, log_text, problems,
                                    shared_services, wait_all)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def services(request):
    return shared_services(request)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same sweep with one worker on the default stores (journal file + SQLite), started in the background."""
    runs_dir = tmp_path_factory.mktemp("reference")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_"))}
    env["PYTHONPATH"] = str(REPO)
    log = (runs_dir / "sweep.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.sweep", "--workers", "1", "--runs-dir", str(runs_dir),
                             *SMALL, "name=load"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()

    def result() -> dict:
        assert proc.wait(timeout=300) == 0, (runs_dir / "sweep.log").read_text()[-3000:]
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{runs_dir / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("load")
        out = {}
        for r in client.search_runs([experiment.experiment_id], "tags.role = 'eval'", max_results=1000):
            out[eval_key(r)] = r.data.metrics["test_loss"]
        return out

    yield result
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("workers", [2, 4])
def test_workers_share_a_sweep_with_exact_counts_and_the_one_worker_numbers(services, reference, workers):
    name = f"load{workers}"
    cfg = config_of(SMALL, name)
    started = time.monotonic()
    procs = services.run_workers([*SMALL, f"name={name}"], workers, name)
    seconds = time.monotonic() - started
    for p in procs:
        assert p.returncode == 0, f"{p.name} exited {p.returncode}:\n{log_tail(p)}"
        assert not problems(p), f"{p.name}: {problems(p)}"
    figures = check_counts(services, cfg)
    assert figures["trials"] == figures["trial_runs"] == len(cfg.cells()) * cfg.profile.trials
    # each cell: the defaults and at least one choice per tuning run, each with every evaluation seed
    assert figures["eval_runs"] >= len(cfg.cells()) * (1 + cfg.profile.tuning_runs) * len(cfg.seeds)
    assert figures["failed_trials"] == figures["orphan_runs"] == 0

    # Whole cells: every trial of a cell ran in one worker; and the cells were shared out among the workers.
    import optuna
    from study.sweep import tuning
    from study.sweep.tuning import ledger

    owners = {}
    for cell in cfg.cells():
        study = optuna.load_study(study_name=tuning.study_name(name, cell), storage=services.storage())
        ids = {ledger.trial_worker(t) for t in study.get_trials(deepcopy=False)}
        assert len(ids) == 1, f"{cell} was run by {ids}"
        owners[cell] = ids.pop()
    assert len(set(owners.values())) >= 2, f"one worker ran every cell: {owners}"

    expected = reference()
    assert figures["test_loss"].keys() == expected.keys()
    different = {k: (v, expected[k]) for k, v in figures["test_loss"].items() if v != expected[k]}
    assert not different, f"results depend on the number of workers: {different}"
    print(f"{workers} workers: {len(cfg.cells())} cells, {figures['trials']} trials, {figures['trial_runs']} trial "
          f"runs, {figures['eval_runs']} eval runs, {len(set(owners.values()))} workers ran cells; {seconds:.1f} s")


def test_passwords_never_reach_logs_tags_params_or_the_optuna_storage(services):
    """A tiny sweep by a worker that logs in to MLflow, and a worker told a wrong database password (its error line
    must show the URL masked); then every worker log of the session so far, the servers' own logs, every MLflow
    run's tags, params and info, and every Optuna attribute are searched for every generated secret."""
    good = services.worker(["--profile", "smoke", "name=masked", "datasets=iris", "optimizers=adam",
                            "batch_sizes=full", "trials=2", "epochs=3", "seeds=1"], "masked-ok")
    wrong = services.worker([*SMALL, "name=masked-wrong"], "masked-wrong-password",
                            env=services.env(OPTUNA_STORAGE=services.env()["OPTUNA_STORAGE"].replace(
                                services.state["optuna_password"], "Wr0ngSecretXYZ")))
    wait_all([good, wrong], 120)
    assert good.returncode == 0, log_tail(good)
    assert wrong.returncode == 2, log_tail(wrong)
    assert "Wr0ngSecretXYZ" not in log_text(wrong) and "optuna:***@" in log_text(wrong), log_tail(wrong)

    secrets = services.secrets
    assert len(secrets) == 6
    logs = sorted(services.logs.glob("*.log")) + [services.paths.mlflow_log, services.paths.pg_log]
    assert len(logs) >= 4
    for path in logs:
        text = path.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"a password in {path.name}"

    client = services.client()
    runs = 0
    for experiment in client.search_experiments():
        from services_support import all_runs

        for run in all_runs(client, experiment.experiment_id):
            runs += 1
            text = repr(run.data.tags) + repr(run.data.params) + repr(run.info)
            for secret in secrets:
                assert secret not in text, f"a password in run {run.info.run_name} of {experiment.name}"
    assert runs >= 5

    import optuna
    storage = services.storage()
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        text = repr(study.user_attrs) + \
            "".join(repr(t.user_attrs) + repr(t.system_attrs) for t in study.get_trials(deepcopy=False))
        assert not any(s in text for s in secrets), f"a password in the attributes of {summary.study_name}"
    for path in (services.paths.env, services.paths.state):  # the two files that hold them: owner-only
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


# --- make services / make services-stop ----------------------------------------------------------------------------
def listening(port: int) -> list[str]:
    """Local addresses listening on TCP ``port``, from /proc/net/tcp and tcp6 (no `ss` needed)."""
    import ipaddress

    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # the kernel prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.append(str(ipaddress.ip_address(raw)))
    return found


def test_make_services_env_file_worker_and_stop(tmp_path):
    """`make services` on its own runs directory: env file (mode 600, the two URLs), both servers on 127.0.0.1 only,
    a `make worker` that uses nothing but that file completes a tiny sweep, `make services-stop` ends both PIDs."""
    from services_support import ensure_system_deps

    ensure_system_deps()
    import tempfile
    base = Path(tempfile.mkdtemp(prefix="optstudy-make-"))
    os.chmod(base, 0o711)  # the postgres user must reach runs/services/pg
    runs = base / "runs"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_", "MAKE"))}
    pids = {}
    try:
        started = time.monotonic()
        proc = subprocess.run(["make", "-s", "services", f"RUNS={runs}"], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300)
        start_seconds = time.monotonic() - started
        assert proc.returncode == 0, proc.stderr[-3000:]
        envfile = runs / "services" / "env"
        assert stat.S_IMODE(envfile.stat().st_mode) == 0o600
        lines = dict(re.fullmatch(r"export (\w+)=(\S+)", line).groups()
                     for line in envfile.read_text().splitlines() if line.startswith("export"))
        assert set(lines) == {"OPTUNA_STORAGE", "MLFLOW_TRACKING_URI"}, lines
        pg = re.fullmatch(r"postgresql://optuna:([\w-]{16,})@127\.0\.0\.1:(\d+)/optuna", lines["OPTUNA_STORAGE"])
        ml = re.fullmatch(r"http://127\.0\.0\.1:(\d+)", lines["MLFLOW_TRACKING_URI"])
        assert pg and ml, lines
        assert pg.group(1) not in proc.stderr + proc.stdout, "the password was printed"
        for what, port in (("postgresql", int(pg.group(2))), ("mlflow", int(ml.group(1)))):
            assert listening(port) == ["127.0.0.1"], f"{what} listens on {listening(port)}"
        for what in ("postgres", "mlflow"):
            pids[what] = int((runs / "services" / f"{what}.pid").read_text())
            os.kill(pids[what], 0)

        worker = subprocess.run(["make", "-s", "worker", f"RUNS={runs}", "PROFILE=smoke",
                                 "ARGS=name=made datasets=iris optimizers=adam batch_sizes=full trials=2 epochs=3 "
                                 "seeds=1"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert worker.returncode == 0, worker.stderr[-3000:]
        assert "1/1 cells done" in worker.stderr and "127.0.0.1" in worker.stderr, worker.stderr[-2000:]
        assert pg.group(1) not in worker.stderr + worker.stdout

        from mlflow import MlflowClient
        client = MlflowClient(tracking_uri=lines["MLFLOW_TRACKING_URI"])
        experiment = client.get_experiment_by_name("made")
        runs_found = client.search_runs([experiment.experiment_id], max_results=100)
        # MLflow holds the first TPE search's two trials (the random arm and the second search stay in Optuna),
        # the defaults' evaluation and at least one choice of each of the smoke profile's two tuning runs
        kinds = collections.Counter((r.data.tags["role"], r.data.tags.get("arm", "")) for r in runs_found)
        assert kinds.pop(("eval", "")) >= 3 and kinds == {("cell", ""): 1, ("trial", "tpe"): 2}, kinds
        assert experiment.artifact_location.startswith("mlflow-artifacts:"), experiment.artifact_location
        cell = next(r for r in runs_found if r.data.tags["role"] == "cell")
        assert client.list_artifacts(cell.info.run_id), "no artifacts served"
        assert list((runs / "services" / "artifacts").rglob("*.png")), "artifacts not under services/artifacts"
    finally:
        started = time.monotonic()
        stop = subprocess.run(["make", "-s", "services-stop", f"RUNS={runs}"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        stop_seconds = time.monotonic() - started
        import shutil
        shutil.rmtree(base, ignore_errors=True)
    assert stop.returncode == 0, stop.stderr
    assert "mlflow server" in stop.stderr and "postgresql" in stop.stderr, stop.stderr
    for what, pid in pids.items():
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2], \
            f"{what} (pid {pid}) still running"
    for port in (int(pg.group(2)), int(ml.group(1))):
        assert listening(port) == [], f"port {port} still open"
    print(f"make services {start_seconds:.1f} s, make services-stop {stop_seconds:.1f} s")


def test_the_allowed_hosts_we_write_out_cover_mlflows_default():
    """A server bound for remote workers is given MLflow's default Host patterns (written out in
    study/tools/mlflow_server.py, since MLflow keeps them in its server's internals) and this machine's names: ours
    must still admit every host MLflow's default admits, or a worker on the loopback or a private network would be
    refused after an MLflow upgrade."""
    from fnmatch import fnmatch

    from mlflow.server.security_utils import get_default_allowed_hosts  # the reference, read only here

    from study.tools import mlflow_server

    theirs, ours = list(get_default_allowed_hosts()), mlflow_server.DEFAULT_ALLOWED_HOSTS
    assert set(theirs) <= set(ours), sorted(set(theirs) - set(ours))
    hosts = ["localhost", "localhost:5000", "127.0.0.1", "127.0.0.1:8080", "[::1]", "[::1]:5000", "0.0.0.0:5000",
             "10.1.2.3:5000", "172.16.0.1", "172.31.255.1:80", "192.168.1.20:5000", "fd00::1", "fc00::2"]
    for host in hosts:
        if any(fnmatch(host, p) for p in theirs):
            assert any(fnmatch(host, p) for p in ours), host
    assert not any(fnmatch("example.com:5000", p) for p in ours), "only loopback and private names by default"
    command = mlflow_server._mlflow_command(mlflow_server.Paths(Path("/nonexistent")), {
        "host": "0.0.0.0", "mlflow_port": 5000, "mlflow_workers": 1, "pg_port": 5432, "mlflow_db_password": "x",
        "advertise": "workers.example"})
    allowed = command[command.index("--allowed-hosts") + 1].split(",")
    assert allowed[:len(ours)] == list(ours) and "workers.example" in allowed and "workers.example:*" in allowed
