"""The journal file heals after a crash cut its last line, and refuses (untouched) a bad line with records after it.

Against real journals: one written by Optuna operations on ``JournalStorage(JournalFile(path))``, cut at every byte
of its last record; and one written by a real sweep that was killed, resumed through ``python -m pipelines.sweep``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from study.errors import BadInput
from study.sweep import tuning
from study.sweep.tuning.journal import JournalFile

REPO = Path(__file__).resolve().parents[1]
GRID = ["--profile", "smoke", "datasets=iris", "optimizers=gd,adam", "batch_sizes=full", "trials=3", "epochs=4",
        "seeds=1", "--workers", "1"]


def write_journal(path: Path) -> bytes:
    """A journal of every kind of operation a sweep makes: studies and their attributes, trials asked with their
    parameters, pruning reports, trials told; the last record is a trial's end (values and state)."""
    storage = tuning.open_storage(str(path))
    study = optuna.create_study(storage=storage, study_name="sweep/iris/adam/full")
    study.set_user_attr("config", {"trials": 3, "name": "sweep"})
    for number in range(3):
        trial = study.ask()
        eta = trial.suggest_float("eta", 1e-4, 1.0, log=True)
        beta1 = trial.suggest_float("beta1", 0.5, 0.999)
        for epoch in range(1, 4):
            trial.report(eta * beta1 / epoch, epoch)
        trial.set_user_attr("worker", f"host:{number}")
        study.tell(trial, eta * beta1)
    return path.read_bytes()


def records(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines()]


def read_back(path: Path) -> list[dict]:
    """Every record, as our reader and as Optuna's own backend (what optuna-dashboard uses) read them."""
    ours = JournalFile(str(path)).read_logs(0)
    theirs = list(optuna.storages.journal.JournalFileBackend(str(path)).read_logs(0))
    assert ours == theirs
    return ours


def last_line_start(data: bytes) -> int:
    return data.rfind(b"\n", 0, len(data) - 1) + 1


def append_one(path: Path, value: int) -> None:
    """Reopen the journal as a sweep does and write one operation."""
    study = optuna.load_study(study_name="sweep/iris/adam/full", storage=tuning.open_storage(str(path)))
    study.set_user_attr("after_the_crash", value)


def test_a_journal_cut_at_every_byte_of_its_last_record_heals(tmp_path, capsys):
    """Cut anywhere inside its last record, a journal reopens, takes the next operation, and reads back as the
    uncut journal minus that record, plus the new one; one warning line names the file and the bytes dropped."""
    whole = write_journal(tmp_path / "whole.journal")
    start = last_line_start(whole)
    kept = records(whole[:start])
    assert len(whole) - start > 100 and records(whole)[-1]["op_code"] == 6  # a trial's end, a long record
    capsys.readouterr()
    for cut in range(start, len(whole)):  # the record gone entirely, then one byte more at a time, bar its newline
        path = tmp_path / f"cut-{cut}.journal"
        path.write_bytes(whole[:cut])
        append_one(path, cut)
        after = read_back(path)
        assert after[:-1] == kept, f"cut at byte {cut}: the operations before the cut record changed"
        assert after[-1]["user_attr"] == {"after_the_crash": cut}, after[-1]
        data = path.read_bytes()
        assert data[:start] == whole[:start] and data.count(b"\n") == whole[:start].count(b"\n") + 1
        warnings = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        if cut == start:
            assert warnings == [], warnings
        else:
            assert len(warnings) == 1, warnings
            assert str(path) in warnings[0] and f"dropped the last {cut - start} bytes" in warnings[0], warnings
        path.unlink()
        Path(f"{path}.flock").unlink()


@pytest.mark.parametrize("tail", [b"\0" * 37 + b"\n", b"\0" * 4096, b"not a record\n", b"[1, 2]\n",
                                  b"\xff\xfe{\n"],
                         ids=["zeros-then-newline", "zeros", "text", "json-not-a-record", "not-utf8"])
def test_a_last_line_that_is_no_record_is_cut_away(tmp_path, capsys, tail):
    """Zeros where a machine crash lost a write, text that is not a record: as the last line, a crash remnant."""
    whole = write_journal(tmp_path / "whole.journal")
    path = tmp_path / "j.journal"
    path.write_bytes(whole + tail)
    capsys.readouterr()
    append_one(path, 1)
    assert read_back(path)[:-1] == records(whole)
    assert path.read_bytes().startswith(whole)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(warnings) == 1 and f"dropped the last {len(tail)} bytes" in warnings[0], warnings


def test_lines_glued_by_an_older_writer_at_the_end_are_cut_away(tmp_path, capsys):
    """The bug this replaces: a cut line and the next append glued into one line (ending with a newline)."""
    whole = write_journal(tmp_path / "whole.journal")
    start = last_line_start(whole)
    path = tmp_path / "j.journal"
    path.write_bytes(whole[:start + 30] + whole[start:])
    append_one(path, 2)
    assert read_back(path)[:-1] == records(whole[:start])
    assert "dropped the last" in capsys.readouterr().err


def bad_middle(whole: bytes, garbage: bytes = b"garbage\n") -> tuple[bytes, int]:
    """The journal with a line of garbage after its third line; (bytes, the garbage's line number)."""
    third = 0
    for _ in range(3):
        third = whole.index(b"\n", third) + 1
    return whole[:third] + garbage + whole[third:], 4


@pytest.mark.parametrize("garbage", [b"garbage\n", b"\0\0\0\n", b'{"op_code": 4, "cut\n', b"\n"],
                         ids=["text", "zeros", "cut-record", "empty"])
def test_a_bad_line_in_the_middle_is_one_error_naming_the_file_and_line_and_the_file_is_untouched(tmp_path,
                                                                                                     garbage):
    whole = write_journal(tmp_path / "whole.journal")
    path = tmp_path / "j.journal"
    data, line = bad_middle(whole, garbage)
    path.write_bytes(data + whole[last_line_start(whole):][:25])  # a cut last line too: still nothing is cut
    with pytest.raises(BadInput) as raised:
        tuning.open_storage(str(path))
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{path}: line {line}: "), message
    assert path.read_bytes() == data + whole[last_line_start(whole):][:25]


def test_two_bad_lines_at_the_end_are_refused_by_the_writer_too(tmp_path):
    """A writer that has not read the file (as after another worker's crash) cuts a last line only when the line
    before it is a record: two bad lines are no cut write."""
    whole = write_journal(tmp_path / "whole.journal")
    path = tmp_path / "j.journal"
    path.write_bytes(whole + b"garbage\n" + b'{"op_co')
    with pytest.raises(BadInput) as raised:
        JournalFile(str(path)).append_logs([{"op_code": 2, "worker_id": "w", "study_id": 0, "user_attr": {}}])
    garbage_line = whole.count(b"\n") + 1
    assert f"line {garbage_line}: " in str(raised.value)
    assert path.read_bytes() == whole + b"garbage\n" + b'{"op_co'


def test_a_writer_heals_a_line_cut_by_another_writer_after_its_own_read(tmp_path, capsys):
    """Two writers on one journal; one dies in the middle of a write after the other has read the file: the
    survivor's next append cuts the remnant (the remnant is not its own: it saw the file change)."""
    whole = write_journal(tmp_path / "whole.journal")
    path = tmp_path / "j.journal"
    path.write_bytes(whole)
    survivor = tuning.open_storage(str(path))
    study = optuna.load_study(study_name="sweep/iris/adam/full", storage=survivor)
    study.set_user_attr("before", 1)  # the survivor's own append: it knows where the file ended
    with path.open("ab") as dying:
        dying.write(b'{"op_code":7,"worker_id":"dead","trial_id":1,"st')
    capsys.readouterr()
    study.set_user_attr("after", 2)
    assert "dropped the last" in capsys.readouterr().err
    assert [r.get("user_attr") for r in read_back(path)[-2:]] == [{"before": 1}, {"after": 2}]


# --- through the sweep -------------------------------------------------------------------------------------------
def sweep_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def sweep(runs_dir: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.sweep", "--runs-dir", str(runs_dir), *GRID], cwd=REPO,
                          env=sweep_env(), capture_output=True, text=True, timeout=timeout)


def completed_trials(journal: Path) -> int:
    if not journal.is_file():
        return 0
    return sum(b'"op_code":6' in line and b'"state":1' in line for line in journal.read_bytes().splitlines())


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> Path:
    """A small sweep killed (SIGKILL, parent and workers) after its third completed trial, whose journal then got
    the first half of one more record: what a kill in the middle of a write leaves."""
    runs_dir = tmp_path_factory.mktemp("killed") / "runs"
    journal = runs_dir / "optuna" / "smoke.journal"
    log = (runs_dir.parent / "sweep.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.sweep", "--runs-dir", str(runs_dir), *GRID], cwd=REPO,
                            env=sweep_env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 300
    while completed_trials(journal) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"the sweep ended before it was killed: {proc.returncode}"
    data = journal.read_bytes()
    assert data.endswith(b"\n"), "a kill between writes leaves whole lines"
    last = data[last_line_start(data):]
    with journal.open("ab") as f:
        f.write(last[:len(last) // 2])
    return runs_dir


@pytest.mark.slow
def test_a_sweep_with_a_bad_journal_line_in_the_middle_is_one_line_exit_2_and_the_journal_untouched(killed,
                                                                                                      tmp_path):
    import shutil

    runs_dir = tmp_path / "runs"
    shutil.copytree(killed, runs_dir)
    journal = runs_dir / "optuna" / "smoke.journal"
    data, line = bad_middle(journal.read_bytes())
    journal.write_bytes(data)
    proc = sweep(runs_dir, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"error: {journal}: line {line}: "), lines
    assert journal.read_bytes() == data


@pytest.mark.slow
def test_a_sweep_resumed_on_a_cut_journal_finishes_with_exact_counts(killed):
    from test_sweep import check_counts, config_of, read_store, tail

    journal = killed / "optuna" / "smoke.journal"
    cut = journal.read_bytes()
    proc = sweep(killed)
    assert proc.returncode == 0, tail(proc.stderr)
    warnings = [line for line in proc.stderr.splitlines() if "dropped the last" in line]
    assert len(warnings) == 1 and str(journal) in warnings[0], tail(proc.stderr)
    assert journal.read_bytes().startswith(cut[:last_line_start(cut)])
    cfg = config_of(GRID)
    check_counts(read_store(killed, cfg))  # per cell: trials in Optuna and MLflow, seeds x tracks evaluations
