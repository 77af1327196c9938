"""The sweep's progress as a person reads it: a bar on a terminal; in a log file, one plain line every 30 seconds
and one at the end, with no control characters."""
from __future__ import annotations

import io

from study.sweep import config, console


def events(progress, cells, trials_per_cell):
    for cell in cells:
        for _ in range(trials_per_cell):
            progress("trial", {"cell": cell, "value": 0.5, "state": "COMPLETE"})
        progress("cell", {"cell": cell})
    progress.close()


def test_a_log_gets_one_plain_line_per_interval_and_one_at_the_end(monkeypatch):
    cfg = config.load_sweep("smoke", ["datasets=iris", "optimizers=gd,adam", "batch_sizes=full"])
    trials = cfg.profile.trials * (cfg.profile.tuning_runs + cfg.profile.random_arm)
    stream = io.StringIO()
    events(console.Progress(cfg, 0, 0, stream=stream, interactive=False), cfg.cells(), trials)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines  # everything within 30 s: the closing line only
    total = len(cfg.cells()) * trials
    assert lines[0].startswith(f"progress: {total}/{total} trials (100%), cells 2/2, elapsed 0:00:0"), lines[0]
    assert all(ch.isprintable() for ch in stream.getvalue().replace("\n", ""))

    monkeypatch.setattr(console, "PLAIN_SECONDS", 0.0)  # every event is a line's worth of time
    stream = io.StringIO()
    events(console.Progress(cfg, 0, 0, stream=stream, interactive=False), cfg.cells(), trials)
    lines = stream.getvalue().splitlines()
    assert len(lines) == total + len(cfg.cells()) + 1, len(lines)
    assert lines[0].startswith(f"progress: 1/{total} trials") and "iris/gd/full best val 0.5" in lines[0], lines[0]
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()


def test_a_terminal_gets_the_bar():
    cfg = config.load_sweep("smoke", ["datasets=iris", "optimizers=gd", "batch_sizes=full"])
    stream = io.StringIO()
    progress = console.Progress(cfg, 0, 0, stream=stream, interactive=True)
    events(progress, cfg.cells(), 2)
    assert "\r" in stream.getvalue() and "trial" in stream.getvalue()
    assert "progress: " not in stream.getvalue()
