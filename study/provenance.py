"""Where a result came from: the git commit of this checkout, the versions of the packages that computed it, and
the command that ran it. The one place that asks git and reads versions: the MLflow runs' provenance tags
(``study.sweep.tracking``), the benchmark's environment (``study.tools.benchmark``) and the report's commit line
(``code_commit``) all come from ``provenance()``.
"""
from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from study.sweep.names import OPTSTUDY_COMMAND

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("numpy", "scipy", "scikit-learn", "pandas", "optuna", "mlflow")  # what a sweep's numbers depend on


@dataclass(frozen=True)
class Provenance:
    """commit: the checkout's HEAD (40 hex digits), None outside a git checkout; short_commit: git's abbreviation of
    it; versions: package -> version, for each package asked about that is installed; python: its version;
    command: the command line as the user typed it (passwords and all: mask it before showing it)."""
    commit: str | None
    short_commit: str | None
    versions: dict[str, str]
    python: str
    command: str


@functools.lru_cache(maxsize=8)
def provenance(packages: tuple[str, ...] = PACKAGES) -> Provenance:
    """Where this process's results come from (git is asked once per process)."""
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return Provenance(commit(), commit(short=True), versions, sys.version.split()[0], command_line())


def command_line() -> str:
    """The command as the user typed it ("python -m pipelines.sweep ..."), also inside the workers a pipeline
    spawns (it sets ``OPTSTUDY_COMMAND`` for them)."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    return os.environ.get(OPTSTUDY_COMMAND) or shlex.join(["python", *argv[1:]])


def code_commit(paths, what: str) -> str:
    """The commit of the code that made a result, marked when any of ``paths`` (``what`` they are, in words)
    differs from it: ``<commit> (report code modified since)``; "unknown" outside a git checkout."""
    found = provenance().commit
    if found is None:
        return "unknown"
    return found + (f" ({what} modified since)" if modified(paths) else "")


def commit(short: bool = False) -> str | None:
    """The checkout's HEAD (40 hex digits, or 7 with ``short``), or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", *(["--short"] if short else []), "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out if re.fullmatch(r"[0-9a-f]{7,40}", out) else None


def modified(paths) -> bool:
    """Whether any of ``paths`` (relative to the checkout) differs from HEAD."""
    try:
        return bool(subprocess.run(["git", "status", "--porcelain", "--", *paths], capture_output=True, text=True,
                                   timeout=5, cwd=ROOT).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return False
