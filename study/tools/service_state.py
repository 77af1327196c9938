"""Where a shared sweep's services keep their files, and the state that makes a restart keep the same URLs."""
from __future__ import annotations

import json
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from study.tools.processes import write_private

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def pg(self) -> Path: return self.root / "pg"
    @property
    def artifacts(self) -> Path: return self.root / "artifacts"
    @property
    def env(self) -> Path: return self.root / "env"
    @property
    def state(self) -> Path: return self.root / "state.json"
    @property
    def pg_pid(self) -> Path: return self.root / "postgres.pid"
    @property
    def mlflow_pid(self) -> Path: return self.root / "mlflow.pid"
    @property
    def pg_log(self) -> Path: return self.root / "postgres.log"
    @property
    def mlflow_log(self) -> Path: return self.root / "mlflow.log"


def paths(runs_dir: str | Path) -> Paths:
    return Paths(Path(runs_dir).resolve() / "services")


def read_state(p: Paths) -> dict:
    try:
        return json.loads(p.state.read_text())
    except (OSError, ValueError):
        return {}


def save_state(p: Paths, state: dict) -> None:
    write_private(p.state, json.dumps(state, indent=1, sort_keys=True))


def new_state(host: str, pg_port: int, mlflow_port: int, auth: bool) -> dict:
    token = lambda: secrets.token_urlsafe(18)  # noqa: E731  URL-safe: no quoting in URLs or shell lines
    return {"host": host, "pg_port": pg_port, "mlflow_port": mlflow_port, "auth": auth, "mlflow_workers": 0,
            "superuser_password": token(), "optuna_password": token(), "mlflow_db_password": token(),
            "admin_password": token(), "mlflow_password": token(), "flask_secret": token()}


def local_host(state: dict) -> str:
    """The address the services use among themselves (this machine)."""
    bind = state["host"]
    return "127.0.0.1" if bind in LOOPBACK or bind in ("0.0.0.0", "::", "") else bind


def public_host(state: dict) -> str:
    """The host name in the URLs given to workers: as told (``--advertise``), else 127.0.0.1 for a loopback bind,
    the address itself for a specific one, and this machine's name for a wildcard bind."""
    if state.get("advertise"):
        return state["advertise"]
    if state["host"] not in ("0.0.0.0", "::", ""):
        return local_host(state)
    fqdn = socket.getfqdn()
    return fqdn if "." in fqdn and not fqdn.startswith("localhost") else socket.gethostname()
