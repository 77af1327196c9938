"""Where a report is written: only into a directory the report made, and only over a report it wrote itself.

A report directory carries a marker file, ``.optstudy-report``, that lists every file and folder the report wrote
there. A rebuild replaces a directory only when it carries that marker and holds nothing else, and it deletes only
what the marker lists, file by file, then the folders it made; any other existing path (a file, a directory without
the marker, a marked one holding files the report did not write) is refused as bad input, untouched. An existing
empty directory may be used. So ``--out ~`` or a sweep named ``..`` can never cost a user a file.

The report is built in a staging directory beside the output (``Staging``) and moved into place at the end, so a
failed build leaves the previous report whole; the staging directory is cleaned the same way, by the list of what
was written into it.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path, PurePosixPath

from study.errors import BadInput

MARKER = ".optstudy-report"
MARKER_HEADER = ("# A report of the optimizer study wrote this directory. A rebuild deletes exactly the files and "
                 "folders listed here, then writes the new report; any other file makes it refuse.")
# a sweep's name becomes the folder reports/<name>/: one path component, nothing that climbs out, hides a slash or
# hides the folder; '-', '_' and '.' only inside (the reading the sweep profile's own check uses), so never . or ..
SAFE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?")
REPORTS = Path("reports")


def default_dir(sweep: str) -> Path:
    """reports/<sweep>/, for a sweep name that is safe as one folder name; else bad input, before anything is
    written."""
    if not SAFE_NAME.fullmatch(sweep):
        raise BadInput("--sweep", f"sweep name {sweep[:120]!r} cannot be the folder {REPORTS}/<name>/: a name there "
                                  f"is letters and digits with '-', '_' and '.' inside, at most 100 characters, not "
                                  f"'.' or '..' (give --out DIR to choose the report's directory)")
    return REPORTS / sweep


def _refuse(out: Path, why: str):
    raise BadInput("--out", f"{out}: {why}; nothing was changed (choose another --out, or move it away yourself)")


def read_marker(out: Path) -> list[str]:
    """The files (``name``) and folders (``name/``) the marker of ``out`` lists; bad input if it is not a list a
    report wrote (an entry that is not a plain path inside ``out``)."""
    try:
        text = (out / MARKER).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        _refuse(out, f"its {MARKER} marker cannot be read ({getattr(error, 'strerror', None) or error})")
    entries = [line for line in text.splitlines() if line and not line.startswith("#")]
    for entry in entries:
        parts = entry.removesuffix("/").split("/")  # as written: PurePosixPath would tidy "./x" into "x"
        if "\\" in entry or entry.removesuffix("/") == MARKER or any(p in ("", ".", "..") for p in parts):
            _refuse(out, f"its {MARKER} marker lists {entry[:80]!r}, which is not a path a report writes")
    return entries


def _entries(out: Path) -> tuple[list[str], list[str]]:
    """Every file (or link) and every folder under ``out``, as POSIX paths relative to it; links are not
    followed."""
    def unreadable(error: OSError):
        _refuse(out, f"cannot list {error.filename} ({error.strerror})")

    files, folders = [], []
    for root, dirs, names in os.walk(out, onerror=unreadable, followlinks=False):
        base = Path(root).relative_to(out)
        for name in dirs:
            (files if (Path(root) / name).is_symlink() else folders).append((base / name).as_posix())
        files += [(base / name).as_posix() for name in names]
    return files, folders


def check(out: str | Path) -> Path:
    """``out`` as a Path if the report may write there: a path that does not exist yet (in a directory it can
    write), an empty directory, or a report directory (the marker, and nothing the marker does not list). Anything
    else is bad input naming the path and why."""
    if str(out) == "":
        raise BadInput("--out", "empty: give the report's directory")
    out = Path(out)
    if out.is_symlink():
        _refuse(out, "is a symbolic link, not a directory the report made")
    if not out.exists():
        ancestor = next(p for p in out.absolute().parents if p.exists())
        if not ancestor.is_dir():
            _refuse(out, f"{ancestor} is a file, not a directory")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            _refuse(out, f"cannot create it: {ancestor} is not writable")
        return out
    if not out.is_dir():
        _refuse(out, "is a file, not a report directory")
    if Path.cwd().resolve().is_relative_to(out.resolve()):  # replacing it would pull the ground from under us
        _refuse(out, "is the working directory or holds it")
    if not os.access(out.absolute().parent, os.W_OK | os.X_OK):
        _refuse(out, f"cannot replace it: {out.absolute().parent} is not writable")
    if not any(out.iterdir()):
        return out
    if (out / MARKER).is_symlink() or not (out / MARKER).is_file():
        _refuse(out, f"is not empty and not a report directory (no {MARKER} marker in it)")
    listed = set(read_marker(out))
    files, folders = _entries(out)
    extra = [f for f in files if f != MARKER and f not in listed] + [d for d in folders if f"{d}/" not in listed]
    if extra:
        more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
        _refuse(out, f"holds files the report did not write ({sorted(extra)[0]}{more})")
    return out


def _remove_listed(directory: Path, entries) -> None:
    """Delete the listed files, then the listed folders, deepest first (each must be empty by then)."""
    for entry in entries:
        if not entry.endswith("/"):
            (directory / entry).unlink(missing_ok=True)
    for folder in sorted((e.rstrip("/") for e in entries if e.endswith("/")), key=lambda f: -f.count("/")):
        if (directory / folder).exists():
            (directory / folder).rmdir()


class Staging:
    """A temporary directory beside ``out`` that records every file and folder written into it; ``publish``
    marks it and moves it into place, ``discard`` deletes exactly what was written."""

    def __init__(self, out: Path, folders=()):
        out = out.absolute()  # "--out x" and "--out ./x" alike: the staging directory goes beside x, never in it
        out.parent.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.root = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        self.entries: list[str] = []  # "name" for a file, "name/" for a folder, in the order made
        for folder in folders:
            self._folder(folder)

    def _folder(self, folder: str) -> None:
        if f"{folder}/" not in self.entries:
            self.entries.append(f"{folder}/")  # listed before it exists: a failed mkdir is still cleaned
            (self.root / folder).mkdir()

    def write(self, name: str, data: bytes) -> None:
        for folder in list(reversed(PurePosixPath(name).parents))[1:]:  # outermost first, "." aside
            self._folder(folder.as_posix())
        self.entries.append(name)
        (self.root / name).write_bytes(data)

    def publish(self) -> list[Path]:
        """Mark the staging directory as a report, replace ``out`` with it, and return the report's files (the
        marker aside). ``out`` is checked again first: it may have changed while the report was being built."""
        listed = sorted(self.entries)
        (self.root / MARKER).write_text("\n".join([MARKER_HEADER, *listed]) + "\n", encoding="utf-8")
        for entry in listed:
            os.chmod(self.root / entry.rstrip("/"), 0o755 if entry.endswith("/") else 0o644)
        os.chmod(self.root / MARKER, 0o644)
        os.chmod(self.root, 0o755)
        check(self.out)
        previous = None
        if self.out.exists() and any(self.out.iterdir()):  # a report: set aside whole until the new one is in
            previous = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.previous.", dir=self.out.parent))
            os.rename(self.out, previous)
        try:
            os.rename(self.root, self.out)  # over an empty directory, or where nothing was
        except OSError:
            if previous is not None:
                os.rename(previous, self.out)
            raise
        if previous is not None:
            _remove_listed(previous, read_marker(previous))
            (previous / MARKER).unlink()
            previous.rmdir()
        return [self.out / e for e in listed if not e.endswith("/")]

    def discard(self) -> None:
        """Delete what was written, then the staging directory; never raises (an error in flight matters more)."""
        try:
            (self.root / MARKER).unlink(missing_ok=True)
            _remove_listed(self.root, self.entries)
            self.root.rmdir()
        except OSError:
            pass
