"""An MLflow tracking server for a shared sweep: PostgreSQL behind it, artifacts served by itself, basic-auth on
request, its database password passed as PGPASSWORD (on no command line, in no log)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from study.tools.postgres import AUTH_DB, MLFLOW_DB, mlflow_db_url
from study.tools.processes import log_error, log_tail, read_pid, stop_group, write_private
from study.tools.service_state import LOOPBACK, Paths, local_host, public_host

MLFLOW_USER = "optstudy"  # the basic-auth user workers log in as (not the admin)

# The Host headers an mlflow server accepts when told none (``--allowed-hosts`` unset): MLflow 3.17's default is the
# loopback names and addresses, each also with any port, and the private address ranges (RFC 1918's 10/8,
# 172.16/12 and 192.168/16; RFC 4193's fc00::/7), as fnmatch patterns. Written out here, since MLflow keeps its list
# in a module of its server's internals; tests/test_services.py checks that ours still covers MLflow's. A server
# bound for workers on other machines is given these and this machine's own names.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "0.0.0.0")
DEFAULT_ALLOWED_HOSTS = (*LOOPBACK_HOSTS, *(f"{h.replace('[', '[[]', 1)}:*" for h in LOOPBACK_HOSTS),
                         "192.168.*", "10.*", *(f"172.{i}.*" for i in range(16, 32)), "fc00:*", "fd00:*")


def tracking_uri(state: dict, local: bool = False) -> str:
    return f"http://{local_host(state) if local else public_host(state)}:{state['mlflow_port']}"


def mlflow_pid(p: Paths) -> int | None:
    return read_pid(p.mlflow_pid, "mlflow")


def _mlflow_env(p: Paths, state: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PG", "OPTUNA_"))}
    env["PGPASSWORD"] = state["mlflow_db_password"]
    env["PGCONNECT_TIMEOUT"] = "10"
    # MLflow's job runner (GenAI scorers, trace archival: seven more Python processes) is of no use to a sweep
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    if state.get("auth"):
        ini = p.root / "basic_auth.ini"
        write_private(ini, f"[mlflow]\ndefault_permission = READ\ndatabase_uri = {mlflow_db_url(state, AUTH_DB)}\n"
                            f"authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                            # a password check costs ~0.5 s of PBKDF2: once per worker process and minute, not
                            # on every request (our one user's password changes only through `make services`)
                            f"auth_cache_ttl_seconds = 60\n")
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
        env["MLFLOW_AUTH_ADMIN_USERNAME"] = "admin"
        env["MLFLOW_AUTH_ADMIN_PASSWORD"] = state["admin_password"]
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = state["flask_secret"]
    return env


def _mlflow_command(p: Paths, state: dict) -> list[str]:
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", mlflow_db_url(state, MLFLOW_DB),
           "--artifacts-destination", str(p.artifacts), "--serve-artifacts", "--host", state["host"],
           "--port", str(state["mlflow_port"]),
           "--workers", str(state.get("mlflow_workers") or default_mlflow_workers())]
    if state["host"] not in LOOPBACK:  # workers will send this machine's name as the Host header
        names = {socket.gethostname(), socket.getfqdn(), public_host(state)}
        cmd += ["--allowed-hosts", ",".join([*DEFAULT_ALLOWED_HOSTS, *sorted(names | {f"{n}:*" for n in names})])]
    if state.get("auth"):
        cmd += ["--app-name", "basic-auth"]
    return cmd


def _health(uri: str, timeout: float = 2.0) -> bool:
    import requests

    try:
        return requests.get(uri + "/health", timeout=timeout).ok
    except requests.RequestException:
        return False


def start_mlflow(p: Paths, state: dict, timeout: float = 90) -> int:
    """Start ``mlflow server`` in its own process group on state's host and port; wait until it answers."""
    pid = mlflow_pid(p)
    if pid:
        return pid
    p.artifacts.mkdir(parents=True, exist_ok=True)
    log = open(p.mlflow_log, "ab")
    proc = subprocess.Popen(_mlflow_command(p, state), env=_mlflow_env(p, state), stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=p.root)
    log.close()
    p.mlflow_pid.write_text(f"{proc.pid}\n")
    uri = tracking_uri(state, local=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            p.mlflow_pid.unlink(missing_ok=True)
            raise RuntimeError(f"mlflow server exited with status {proc.returncode}: {log_error(p.mlflow_log)} "
                               f"(log: {p.mlflow_log})")
        if _health(uri):
            if state.get("auth"):
                _ensure_mlflow_user(state)
            return proc.pid
        time.sleep(0.3)
    stop_group(proc.pid)
    p.mlflow_pid.unlink(missing_ok=True)
    raise RuntimeError(f"mlflow server did not answer on {uri} within {timeout:.0f} s: "
                       f"{' | '.join(log_tail(p.mlflow_log))}")


def _ensure_mlflow_user(state: dict) -> None:
    """The basic-auth user workers log in as: created by the admin, not an admin itself."""
    import requests

    uri, admin = tracking_uri(state, local=True), ("admin", state["admin_password"])
    r = requests.get(f"{uri}/api/2.0/mlflow/users/get", params={"username": MLFLOW_USER}, auth=admin, timeout=10)
    if r.status_code == 200:
        requests.patch(f"{uri}/api/2.0/mlflow/users/update-password", auth=admin, timeout=10,
                       json={"username": MLFLOW_USER, "password": state["mlflow_password"]}).raise_for_status()
        return
    requests.post(f"{uri}/api/2.0/mlflow/users/create", auth=admin, timeout=10,
                  json={"username": MLFLOW_USER, "password": state["mlflow_password"]}).raise_for_status()


def stop_mlflow(p: Paths, timeout: float = 30) -> bool:
    pid = mlflow_pid(p)
    if pid is None:
        p.mlflow_pid.unlink(missing_ok=True)
        return False
    stop_group(pid, timeout)
    p.mlflow_pid.unlink(missing_ok=True)
    return True


def default_mlflow_workers() -> int:
    """Half the cores, 1 to 4: on 2 cores one server process beat two (measured with 2 and 4 sweep workers)."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))
