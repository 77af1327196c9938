"""Optuna's journal file, kept open, locked with flock(2), and healed after a crash cut its last line."""
from __future__ import annotations

import fcntl
import json
import os
import sys

import optuna.storages.journal

from study.errors import BadInput

BACKWARDS_CHUNK = 1 << 16  # how much of the file's end is read at a time when looking for its last lines


class JournalFile(optuna.storages.journal.BaseJournalBackend):
    """Optuna's journal file format (one JSON line per operation; optuna-dashboard reads it as a
    ``JournalFileBackend``), kept open for reading and appending, locked with flock(2), without an fsync per line.

    Every pruning report is a line: about half a million per default sweep, each read back by every worker. Optuna's
    own backend opened the file for every read and every write (three opens per report) and fsynced every line
    (0.22 ms here, a fifth of a worker's time). What the fsync guarded against is a machine crash, not a killed
    process (the kernel keeps a dead process's writes); after a machine crash the resumed sweep simply retrains the
    trials whose lines were lost: the cells that are not marked done are resumed, so nothing is counted twice. The
    lock is an flock on a side file, which the kernel releases when its holder dies (Optuna's file locks wait out
    a 30 s grace period after a crash).

    A crash can cut the last line: a process killed in the middle of its write (a write of several pages can stop
    between two), a full disk, or a machine that lost power (whose file may even end in zeros). Such a line is
    skipped by the reader (it may also be a line still being written) and cut away by the next writer before it
    appends, with a warning. The writer can tell the two apart: every writer holds the lock while it appends, so a
    writer holding the lock sees no other write in progress, and an unfinished last line is a remnant of a write
    that will never finish. (The holder's death released the lock; a machine crash killed every writer.) Only the
    last line is ever cut: a bad line with records after it is no crash remnant, and is one error naming the file
    and the line, with the file left as it is.
    """

    def __init__(self, path: str):
        self._path = path
        self._append = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = os.open(path + ".flock", os.O_RDWR | os.O_CREAT, 0o644)
        self._reader = None
        self._next_number, self._next_offset = 0, 0  # where the last read stopped: the next line's number and byte
        # The file's size after this process's last append: while the file still has that size, it ends with that
        # whole line and needs no look. None until the first append, which checks the last line whole.
        self._end: int | None = None

    # --- reading -----------------------------------------------------------------------------------------------
    def read_logs(self, log_number_from: int):
        if self._reader is None:
            self._reader = open(self._path, "rb")
        if log_number_from < self._next_number:  # asked for lines read before: start over
            self._next_number, self._next_offset = 0, 0
        self._reader.seek(self._next_offset)
        data = self._reader.read()
        whole = data[:data.rfind(b"\n") + 1]  # a line still being written is read next time
        lines = whole.split(b"\n")[:-1]
        first, logs, kept = self._next_number, [], len(whole)
        for index, line in enumerate(lines):
            number = first + index
            if number < log_number_from:
                continue
            log, problem = _parse(line)
            if problem is None:
                logs.append(log)
            elif index == len(lines) - 1 and len(whole) == len(data):
                # The file's last line: a crash remnant, which the next append cuts away; not read meanwhile.
                kept, lines = len(whole) - len(line) - 1, lines[:-1]
            else:
                raise _bad_line(self._path, number + 1, problem)
        self._next_number, self._next_offset = first + len(lines), self._next_offset + kept
        return logs

    # --- appending ---------------------------------------------------------------------------------------------
    def append_logs(self, logs: list[dict]) -> None:
        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode("utf-8")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            self._heal()
            view = memoryview(text)
            while view:  # O_APPEND: at the end of the file, one writer at a time
                view = view[os.write(self._append, view):]
            self._end = os.lseek(self._append, 0, os.SEEK_CUR)
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)

    def _heal(self) -> None:
        """Under the writers' lock: cut away a last line that a crash left unfinished (see the class's note).

        Cheap on the common path: if the file has the size this process's last append left, it ends with that
        line; else one byte says whether it ends a line. Only the first append of a process parses the last line,
        since a line that ends but is no record (zeros from a lost write, two lines glued together by an older
        writer) can only have been left by a crash before this process began."""
        size = os.fstat(self._append).st_size
        if size == 0 or size == self._end:
            return
        ends_a_line = os.pread(self._append, 1, size - 1) == b"\n"
        if ends_a_line and self._end is not None:
            return
        last, before = _last_two_lines(self._append, size)
        if ends_a_line:
            problem = _parse(last[1].rstrip(b"\n"))[1]
            if problem is None:
                return
            what = f"a last line that is no journal record ({problem})"
        else:
            what = "an unfinished last record"
        if before is not None and _parse(before[1].rstrip(b"\n"))[1] is not None:
            # Two bad lines at the end: not what a cut write leaves. Leave the file to the person who knows.
            raise _bad_line(self._path, _line_number(self._append, before[0]), _parse(before[1].rstrip(b"\n"))[1])
        os.ftruncate(self._append, last[0])
        print(f"warning: {self._path}: dropped the last {size - last[0]} bytes, {what} (a write cut off by a "
              f"crash); the operations before it are kept", file=sys.stderr)

    def __del__(self):  # a process that opens many journals (the tests) does not run out of descriptors
        for fd in (getattr(self, "_append", None), getattr(self, "_lock", None)):
            if fd is not None:
                os.close(fd)
        if getattr(self, "_reader", None) is not None:
            self._reader.close()


def _parse(line: bytes) -> tuple[dict | None, str | None]:
    """(the record, None), or (None, what is wrong with the line)."""
    try:
        log = json.loads(line)
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as e:
        return None, f"not JSON: {e.msg} at column {e.colno}"
    if not isinstance(log, dict) or "op_code" not in log:
        return None, "JSON, but not an operation record"
    return log, None


def _bad_line(path: str, line_number: int, problem: str) -> BadInput:
    return BadInput(path, f"line {line_number}: {problem}, with more lines after it: no crash's cut last line, so "
                          f"the file is left as it is (repair it, or move it away and start again)")


def _last_two_lines(fd: int, size: int) -> tuple[tuple[int, bytes], tuple[int, bytes] | None]:
    """(offset, bytes) of the file's last line (with its newline, if it has one) and of the line before (None if
    there is none), read backwards from the end in chunks."""
    tail, start = b"", size
    while True:
        body = tail[:-1] if tail.endswith(b"\n") else tail  # the last line's own newline does not start it
        cuts = body.count(b"\n")
        if cuts >= 2 or start == 0:
            break
        step = min(BACKWARDS_CHUNK, start)
        start -= step
        tail = os.pread(fd, step, start) + tail
    last_start = body.rfind(b"\n") + 1
    last = (start + last_start, tail[last_start:])
    if last_start == 0:
        return last, None
    before_start = body.rfind(b"\n", 0, last_start - 1) + 1
    return last, (start + before_start, tail[before_start:last_start])


def _line_number(fd: int, offset: int) -> int:
    """The 1-based number of the line that starts at ``offset`` (an error's message only: reads up to there)."""
    newlines, position = 0, 0
    while position < offset:
        chunk = os.pread(fd, min(BACKWARDS_CHUNK, offset - position), position)
        newlines += chunk.count(b"\n")
        position += len(chunk)
    return newlines + 1
