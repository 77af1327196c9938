"""Where a result came from: the git commit of this checkout (the one place that asks git)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
