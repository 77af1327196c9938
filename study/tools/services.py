"""The services of a shared sweep on one machine: PostgreSQL (Optuna's storage, MLflow's backend) and an MLflow
tracking server that serves artifacts itself, so that workers on other machines need no shared disk.

Everything lives under ``<runs-dir>/services/``:

    pg/           PostgreSQL's data directory (owned by the ``postgres`` user when we run as root: initdb refuses
                  root); databases ``optuna`` (workers), ``mlflow`` and ``mlflow_auth`` (the server only)
    artifacts/    the MLflow server's --artifacts-destination
    env           ``export OPTUNA_STORAGE=...`` / ``export MLFLOW_TRACKING_URI=...`` (and the MLflow credentials
                  when the basic-auth app runs): what ``make worker`` reads; mode 600, it holds passwords
    state.json    ports, bind address and generated passwords (mode 600), so a restart keeps the same URLs
    postgres.pid, mlflow.pid, postgres.log, mlflow.log

PostgreSQL is in study/tools/postgres.py, the MLflow server in study/tools/mlflow_server.py; this module starts
and stops the two together. Servers bind 127.0.0.1 unless told otherwise. Passwords are generated, never typed,
never put on a command line (the MLflow server gets its database password through libpq's PGPASSWORD) and never
printed unmasked.
"""
from __future__ import annotations

import os
import shlex
from pathlib import Path

from study.errors import BadInput
from study.sweep import names
from study.tools.mlflow_server import (MLFLOW_USER, default_mlflow_workers, mlflow_pid, start_mlflow,  # noqa: F401
                                       stop_mlflow, tracking_uri)
from study.tools.postgres import (ensure_databases, optuna_url, pg_bin, postgres_pid, start_postgres,  # noqa: F401
                                  stop_postgres)
from study.tools.processes import free_port, mask_secrets, write_private  # noqa: F401
from study.tools.service_state import Paths, new_state, paths, read_state, save_state  # noqa: F401


def load_env(runs_dir: str | Path) -> None:
    """The settings `make services` wrote to ``<runs_dir>/services/env`` (``export NAME=value`` lines), for whatever
    the environment does not set already: the environment takes precedence."""
    from dotenv import dotenv_values

    path = paths(runs_dir).env
    if path.exists():
        for name, value in dotenv_values(path).items():
            if value is not None:
                os.environ.setdefault(name, value)


def env_lines(state: dict) -> str:
    lines = [f"export {names.OPTUNA_STORAGE}={shlex.quote(optuna_url(state))}",
             f"export {names.MLFLOW_TRACKING_URI}={shlex.quote(tracking_uri(state))}"]
    if state.get("auth"):
        lines += [f"export {names.MLFLOW_TRACKING_USERNAME}={MLFLOW_USER}",
                  f"export {names.MLFLOW_TRACKING_PASSWORD}={shlex.quote(state['mlflow_password'])}"]
    return "# written by `make services`; `make worker` reads it (source it to use the services by hand)\n" + \
        "\n".join(lines) + "\n"


def start(runs_dir: str | Path, host: str = "127.0.0.1", pg_port: int = 0, mlflow_port: int = 0,
          auth: bool | None = None, mlflow_workers: int | None = None, advertise: str | None = None) -> dict:
    """Start (or find running) PostgreSQL and the MLflow server; write the env file; returns the state.

    Ports: as asked, else as last time, else PostgreSQL's 5432 and MLflow's 5000 when free, else any free port.
    """
    p = paths(runs_dir)
    try:
        p.root.mkdir(parents=True, exist_ok=True)
        os.chmod(p.root, 0o711)  # the postgres user must pass through; nobody else may list it
    except OSError as e:
        raise BadInput("--runs-dir", f"cannot create {p.root}: {e.strerror or e}") from None
    known = read_state(p)
    running = postgres_pid(p) is not None
    state = {**new_state(host, 0, 0, bool(auth)), **known}  # passwords kept from last time, new ones if missing
    if known and (running or mlflow_pid(p)) and host != state["host"]:
        raise BadInput("--host", f"the services are running bound to {state['host']}; stop them first "
                                 f"(make services-stop)")
    state["host"] = host
    if advertise is not None:
        state["advertise"] = advertise
    if auth is not None and auth != state.get("auth"):
        if mlflow_pid(p):
            raise BadInput("--auth", "the MLflow server is running with the other setting; stop it first")
        state["auth"] = auth
    if not running:
        state["pg_port"] = pg_port or free_port(host, state.get("pg_port") or 5432)
    if not mlflow_pid(p):
        state["mlflow_port"] = mlflow_port or free_port(host, state.get("mlflow_port") or 5000)
        state["mlflow_workers"] = mlflow_workers or state.get("mlflow_workers") or default_mlflow_workers()
    save_state(p, state)
    try:
        start_postgres(p, state)
        ensure_databases(state)
        start_mlflow(p, state)
    except BaseException:
        stop(runs_dir)
        p.env.unlink(missing_ok=True)  # no stale URLs for workers to find
        raise
    write_private(p.env, env_lines(state))
    return state


def stop(runs_dir: str | Path) -> list[str]:
    """Stop both by their PIDs; returns what was running."""
    p = paths(runs_dir)
    stopped = []
    if stop_mlflow(p):
        stopped.append("mlflow server")
    if stop_postgres(p):
        stopped.append("postgresql")
    return stopped


def status(runs_dir: str | Path) -> dict:
    p = paths(runs_dir)
    return {"postgres": postgres_pid(p), "mlflow": mlflow_pid(p), "state": read_state(p)}
