"""PostgreSQL for a shared sweep: Optuna's storage and the MLflow server's backend, in <runs-dir>/services/pg."""
from __future__ import annotations

import os
import pwd
import signal
import subprocess
from pathlib import Path

from study.errors import BadInput
from study.tools.processes import pid_alive, read_pid, wait_gone, write_private
from study.tools.service_state import LOOPBACK, Paths, local_host, public_host

PG_USER = "postgres"  # Debian's system user for the server: initdb refuses to run as root
OPTUNA_DB, MLFLOW_DB, AUTH_DB = "optuna", "mlflow", "mlflow_auth"


def pg_bin() -> Path:
    """The newest Debian PostgreSQL's binaries (``/usr/lib/postgresql/<major>/bin``)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    if not found:
        raise BadInput("services", "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); "
                                   "run `make system-deps` (apt-get install postgresql)")
    return found[-1].parent


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


def _initdb(p: Paths, state: dict) -> None:
    """A new cluster: scram-sha-256 over TCP for everyone (no trust), peer for the local socket we do not open."""
    p.pg.mkdir(parents=True, exist_ok=True)
    pwfile = p.root / "pg-superuser.tmp"
    write_private(pwfile, state["superuser_password"] + "\n")
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
    return read_pid(p.pg_pid, str(p.pg))


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
        if not pid_alive(old):
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
    if not wait_gone(pid, timeout):
        os.kill(pid, signal.SIGQUIT)  # immediate shutdown; recovery on the next start
        wait_gone(pid, 10)
    p.pg_pid.unlink(missing_ok=True)
    return True


def _connect_admin(state: dict, dbname: str = "postgres"):
    import psycopg

    return psycopg.connect(host=local_host(state), port=state["pg_port"], user=PG_USER,
                           password=state["superuser_password"], dbname=dbname, autocommit=True, connect_timeout=10)


def ensure_databases(state: dict) -> None:
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
    from study.sweep import tuning

    tuning.open_storage(optuna_url(state, local=True))


def optuna_url(state: dict, masked: bool = False, local: bool = False) -> str:
    password = "***" if masked else state["optuna_password"]
    host = local_host(state) if local else public_host(state)
    return f"postgresql://optuna:{password}@{host}:{state['pg_port']}/{OPTUNA_DB}"


def mlflow_db_url(state: dict, db: str) -> str:
    """No password in the URL: the server gets it as PGPASSWORD, so it is on no command line and in no log."""
    return f"postgresql://mlflow@{local_host(state)}:{state['pg_port']}/{db}"
