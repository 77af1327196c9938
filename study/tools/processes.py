"""Servers started and stopped by PID, free ports, private files and masked logs: what the services need of the
operating system."""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from study.errors import BadInput


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


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds passwords), never visible with looser permissions."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def pid_alive(pid: int | None) -> bool:
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


def read_pid(path: Path, expect: str) -> int | None:
    """The PID in ``path`` if that process is alive and its command line contains ``expect`` (a recycled PID
    belonging to some other program is never signalled)."""
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) and expect in _cmdline(pid) else None


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return not pid_alive(pid)


def stop_group(pid: int, timeout: float = 30) -> None:
    """SIGTERM to the server's process group (the CLI and its uvicorn workers), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        if wait_gone(pid, wait):
            break
    try:  # workers of the group that outlived their parent
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def log_tail(path: Path, lines: int = 3) -> list[str]:
    try:
        return [mask_secrets(line) for line in path.read_text(errors="replace").strip().splitlines()[-lines:]]
    except OSError:
        return []


def log_error(path: Path) -> str:
    """The last error line of a server's log (its traceback's last line), else its last line."""
    lines = log_tail(path, 200)
    errors = [line for line in lines if "Error" in line or "Exception" in line]
    return (errors or lines or ["(empty log)"])[-1]


def mask_secrets(text: str) -> str:
    from study.sweep.tracking import mask_url

    return mask_url(text)
