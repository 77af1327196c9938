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

Servers bind 127.0.0.1 unless told otherwise. Passwords are generated, never typed, never put on a command line
(the MLflow server gets its database password through libpq's PGPASSWORD) and never printed unmasked.
"""
from __future__ import annotations

import json
import os
import pwd
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from study.errors import BadInput

PG_USER = "postgres"  # Debian's system user for the server: initdb refuses to run as root
OPTUNA_DB, MLFLOW_DB, AUTH_DB = "optuna", "mlflow", "mlflow_auth"
MLFLOW_USER = "optstudy"  # the basic-auth user workers log in as (not the admin)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


# --- Where things are -----------------------------------------------------------------------------------------------
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


def pg_bin() -> Path:
    """The newest Debian PostgreSQL's binaries (``/usr/lib/postgresql/<major>/bin``)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    if not found:
        raise BadInput("services", "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); "
                                   "run `make system-deps` (apt-get install postgresql)")
    return found[-1].parent


def free_port(host: str = "127.0.0.1", preferred: int = 0) -> int:
    """``preferred`` if nothing listens there, else a port the kernel says is free."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no obstacle
            try:
                s.bind((host if host not in ("0.0.0.0", "") else "0.0.0.0", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise BadInput("services", f"no free port on {host}")


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds passwords), never visible with looser permissions."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def read_state(p: Paths) -> dict:
    try:
        return json.loads(p.state.read_text())
    except (OSError, ValueError):
        return {}


def _save_state(p: Paths, state: dict) -> None:
    _write_private(p.state, json.dumps(state, indent=1, sort_keys=True))


def _local_host(state: dict) -> str:
    """The address the services use among themselves (this machine)."""
    bind = state["host"]
    return "127.0.0.1" if bind in LOOPBACK or bind in ("0.0.0.0", "::", "") else bind


def public_host(state: dict) -> str:
    """The host name in the URLs given to workers: as told (``--advertise``), else 127.0.0.1 for a loopback bind,
    the address itself for a specific one, and this machine's name for a wildcard bind."""
    if state.get("advertise"):
        return state["advertise"]
    if state["host"] not in ("0.0.0.0", "::", ""):
        return _local_host(state)
    fqdn = socket.getfqdn()
    return fqdn if "." in fqdn and not fqdn.startswith("localhost") else socket.gethostname()


# --- Processes, by PID -----------------------------------------------------------------------------------------------
def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours has exited: reap it
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _read_pid(path: Path, expect: str) -> int | None:
    """The PID in ``path`` if that process is alive and its command line contains ``expect`` (a recycled PID
    belonging to some other program is never signalled)."""
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _pid_alive(pid) and expect in _cmdline(pid) else None


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.1)
    return not _pid_alive(pid)


def _as_postgres(cmd: list[str]) -> list[str]:
    """Root runs PostgreSQL's tools as the ``postgres`` user; anyone else runs them as themselves."""
    return ["runuser", "-u", PG_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _check_reachable_by_postgres(directory: Path) -> None:
    """As root, the data directory's parents must let the postgres user through (pytest's temporary directories
    and home directories often do not)."""
    if os.geteuid() != 0:
        return
    for parent in [directory, *directory.parents]:
        if parent.exists() and not os.stat(parent).st_mode & 0o001 and parent.stat().st_uid != _pg_uid():
            raise BadInput("--runs-dir", f"PostgreSQL runs as the {PG_USER!r} user, which cannot enter {parent} "
                                         f"(mode {oct(parent.stat().st_mode & 0o777)}); use a runs directory it can "
                                         f"reach, or chmod o+x {parent}")


def _pg_uid() -> int:
    return pwd.getpwnam(PG_USER).pw_uid


# --- PostgreSQL ------------------------------------------------------------------------------------------------------
def _initdb(p: Paths, state: dict) -> None:
    """A new cluster: scram-sha-256 over TCP for everyone (no trust), peer for the local socket we do not open."""
    p.pg.mkdir(parents=True, exist_ok=True)
    pwfile = p.root / "pg-superuser.tmp"
    _write_private(pwfile, state["superuser_password"] + "\n")
    try:
        if os.geteuid() == 0:
            uid = _pg_uid()
            os.chown(p.pg, uid, -1)
            os.chown(pwfile, uid, -1)
        os.chmod(p.pg, 0o700)
        proc = subprocess.run(_as_postgres([str(pg_bin() / "initdb"), "-D", str(p.pg), "-U", PG_USER,
                                            "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8",
                                            "--locale=C", f"--pwfile={pwfile}"]),
                              capture_output=True, text=True, timeout=120)
    finally:
        pwfile.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"initdb failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    with open(p.pg / "postgresql.conf", "a") as f:  # our settings, rewritten on every start
        f.write("\ninclude_if_exists = 'optstudy.conf'\n")


def _pg_settings(p: Paths, host: str, port: int) -> None:
    """Listen on ``host`` only (no Unix socket), on ``port``; a wider bind also needs a pg_hba line for it."""
    listen = "*" if host in ("0.0.0.0", "::") else host
    conf = p.pg / "optstudy.conf"
    conf.write_text(f"listen_addresses = '{listen}'\nport = {port}\nunix_socket_directories = ''\n"
                    f"max_connections = 200\npassword_encryption = 'scram-sha-256'\n")
    hba = p.pg / "pg_hba.conf"
    text = hba.read_text()
    line = "host all all 0.0.0.0/0 scram-sha-256  # optstudy: workers on other machines\n"
    if host not in LOOPBACK and line not in text:
        hba.write_text(text + line)
    elif host in LOOPBACK and line in text:
        hba.write_text(text.replace(line, ""))
    if os.geteuid() == 0:
        os.chown(conf, _pg_uid(), -1)


def postgres_pid(p: Paths) -> int | None:
    return _read_pid(p.pg_pid, str(p.pg))


def start_postgres(p: Paths, state: dict, timeout: float = 60) -> int:
    """Start the cluster (creating it first if needed) on state's host and port; returns the postmaster's PID."""
    pid = postgres_pid(p)
    if pid:
        return pid
    p.root.mkdir(parents=True, exist_ok=True)
    _check_reachable_by_postgres(p.root)
    if not (p.pg / "PG_VERSION").exists():
        _initdb(p, state)
    stale = p.pg / "postmaster.pid"  # left by a SIGKILLed server; pg_ctl would refuse to start
    if stale.exists():
        try:
            old = int(stale.read_text().split()[0])
        except (ValueError, IndexError, OSError):
            old = 0
        if not _pid_alive(old):
            stale.unlink()
    _pg_settings(p, state["host"], state["pg_port"])
    p.pg_log.touch()
    if os.geteuid() == 0:
        os.chown(p.pg_log, _pg_uid(), -1)
    proc = subprocess.run(_as_postgres([str(pg_bin() / "pg_ctl"), "-D", str(p.pg), "-l", str(p.pg_log), "-w",
                                        "-t", str(int(timeout)), "start"]),
                          capture_output=True, text=True, timeout=timeout + 10)
    if proc.returncode != 0:
        tail = p.pg_log.read_text().strip().splitlines()[-3:]
        raise RuntimeError(f"PostgreSQL did not start on {state['host']}:{state['pg_port']}: {' | '.join(tail)}")
    pid = int((p.pg / "postmaster.pid").read_text().split()[0])
    p.pg_pid.write_text(f"{pid}\n")
    return pid


def stop_postgres(p: Paths, timeout: float = 60) -> bool:
    """Fast shutdown by PID (SIGINT to the postmaster: sessions are ended, data is safe). True if it ran."""
    pid = postgres_pid(p)
    if pid is None:
        p.pg_pid.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGINT)
    if not _wait_gone(pid, timeout):
        os.kill(pid, signal.SIGQUIT)  # immediate shutdown; recovery on the next start
        _wait_gone(pid, 10)
    p.pg_pid.unlink(missing_ok=True)
    return True


def _connect_admin(state: dict, dbname: str = "postgres"):
    import psycopg

    return psycopg.connect(host=_local_host(state), port=state["pg_port"], user=PG_USER,
                           password=state["superuser_password"], dbname=dbname, autocommit=True, connect_timeout=10)


def _ensure_databases(state: dict) -> None:
    """Roles ``optuna`` and ``mlflow`` with their generated passwords, and a database each (MLflow's and Optuna's
    schemas both have an ``alembic_version`` table, so they cannot share one). Passwords are sent already hashed
    (SCRAM verifiers computed here), so not even a failed statement in the server log could show them."""
    from psycopg import sql

    with _connect_admin(state) as conn:
        for role, password, databases in (("optuna", state["optuna_password"], (OPTUNA_DB,)),
                                          ("mlflow", state["mlflow_db_password"], (MLFLOW_DB, AUTH_DB))):
            verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            conn.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}" if exists else "CREATE ROLE {} LOGIN PASSWORD {}")
                         .format(sql.Identifier(role), sql.Literal(verifier)))
            for db in databases:
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone():
                    conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db),
                                                                               sql.Identifier(role)))
    # Optuna's tables, created once here: workers starting together on an empty database would race to create them
    from study import tuning

    tuning.open_storage(optuna_url(state, local=True))


def optuna_url(state: dict, masked: bool = False, local: bool = False) -> str:
    password = "***" if masked else state["optuna_password"]
    host = _local_host(state) if local else public_host(state)
    return f"postgresql://optuna:{password}@{host}:{state['pg_port']}/{OPTUNA_DB}"


def _mlflow_db_url(state: dict, db: str) -> str:
    """No password in the URL: the server gets it as PGPASSWORD, so it is on no command line and in no log."""
    return f"postgresql://mlflow@{_local_host(state)}:{state['pg_port']}/{db}"


# --- MLflow server ---------------------------------------------------------------------------------------------------
def tracking_uri(state: dict, local: bool = False) -> str:
    return f"http://{_local_host(state) if local else public_host(state)}:{state['mlflow_port']}"


def mlflow_pid(p: Paths) -> int | None:
    return _read_pid(p.mlflow_pid, "mlflow")


def _mlflow_env(p: Paths, state: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PG", "OPTUNA_"))}
    env["PGPASSWORD"] = state["mlflow_db_password"]
    env["PGCONNECT_TIMEOUT"] = "10"
    # MLflow's job runner (GenAI scorers, trace archival: seven more Python processes) is of no use to a sweep
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    if state.get("auth"):
        ini = p.root / "basic_auth.ini"
        _write_private(ini, f"[mlflow]\ndefault_permission = READ\ndatabase_uri = {_mlflow_db_url(state, AUTH_DB)}\n"
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
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", _mlflow_db_url(state, MLFLOW_DB),
           "--artifacts-destination", str(p.artifacts), "--serve-artifacts", "--host", state["host"],
           "--port", str(state["mlflow_port"]), "--workers", str(state.get("mlflow_workers") or default_mlflow_workers())]
    if state["host"] not in LOOPBACK:  # workers will send this machine's name as the Host header
        from study.tracking import default_allowed_hosts

        names = {socket.gethostname(), socket.getfqdn(), public_host(state)}
        cmd += ["--allowed-hosts", ",".join(default_allowed_hosts() + sorted(names | {f"{n}:*" for n in names}))]
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
            raise RuntimeError(f"mlflow server exited with status {proc.returncode}: {_log_error(p.mlflow_log)} "
                               f"(log: {p.mlflow_log})")
        if _health(uri):
            if state.get("auth"):
                _ensure_mlflow_user(state)
            return proc.pid
        time.sleep(0.3)
    _stop_group(proc.pid)
    p.mlflow_pid.unlink(missing_ok=True)
    raise RuntimeError(f"mlflow server did not answer on {uri} within {timeout:.0f} s: "
                       f"{' | '.join(_log_tail(p.mlflow_log))}")


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


def _log_tail(path: Path, lines: int = 3) -> list[str]:
    try:
        return [mask_secrets(line) for line in path.read_text(errors="replace").strip().splitlines()[-lines:]]
    except OSError:
        return []


def _log_error(path: Path) -> str:
    """The last error line of a server's log (its traceback's last line), else its last line."""
    lines = _log_tail(path, 200)
    errors = [line for line in lines if "Error" in line or "Exception" in line]
    return (errors or lines or ["(empty log)"])[-1]


def mask_secrets(text: str) -> str:
    from study.tracking import mask_url

    return mask_url(text)


def _stop_group(pid: int, timeout: float = 30) -> None:
    """SIGTERM to the server's process group (the CLI and its uvicorn workers), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        if _wait_gone(pid, wait):
            break
    try:  # workers of the group that outlived their parent
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_mlflow(p: Paths, timeout: float = 30) -> bool:
    pid = mlflow_pid(p)
    if pid is None:
        p.mlflow_pid.unlink(missing_ok=True)
        return False
    _stop_group(pid, timeout)
    p.mlflow_pid.unlink(missing_ok=True)
    return True


# --- The two together ----------------------------------------------------------------------------------------------
def default_mlflow_workers() -> int:
    """Half the cores, 1 to 4: on 2 cores one server process beat two (measured with 2 and 4 sweep workers)."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def new_state(host: str, pg_port: int, mlflow_port: int, auth: bool) -> dict:
    token = lambda: secrets.token_urlsafe(18)  # noqa: E731  URL-safe: no quoting in URLs or shell lines
    return {"host": host, "pg_port": pg_port, "mlflow_port": mlflow_port, "auth": auth, "mlflow_workers": 0,
            "superuser_password": token(), "optuna_password": token(), "mlflow_db_password": token(),
            "admin_password": token(), "mlflow_password": token(), "flask_secret": token()}


def env_lines(state: dict) -> str:
    lines = [f"export OPTUNA_STORAGE={shlex.quote(optuna_url(state))}",
             f"export MLFLOW_TRACKING_URI={shlex.quote(tracking_uri(state))}"]
    if state.get("auth"):
        lines += [f"export MLFLOW_TRACKING_USERNAME={MLFLOW_USER}",
                  f"export MLFLOW_TRACKING_PASSWORD={shlex.quote(state['mlflow_password'])}"]
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
    _save_state(p, state)
    try:
        start_postgres(p, state)
        _ensure_databases(state)
        start_mlflow(p, state)
    except BaseException:
        stop(runs_dir)
        p.env.unlink(missing_ok=True)  # no stale URLs for workers to find
        raise
    _write_private(p.env, env_lines(state))
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
