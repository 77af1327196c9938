"""The report's house: three rooms and what each may import (parsed from the code, checked against each room's
docstring), at most ten modules at the top, none over 400 lines; the Analysis and its sub-results frozen; every
verdict word written once; an optimizer's colour, name and 1 - x panels taken from its registry entry; and no
matplotlib backend chosen by importing the report."""
from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydantic
import pytest
from matplotlib.colors import to_hex

from report_fixtures import fast_settings, make_results
from study.core import hyperparams as hp, optim
from study.report import analysis
from study.report.document import figures, tuning, tuning_figures
from study.report.judge import decide

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "study" / "report"
ROOMS = ("judge", "checks", "document")
# what each room may import of study.report besides itself, as the issue has it: document reads judge and checks,
# checks reads judge, judge reads neither; the modules at the door (inputs, fmt) are everyone's
MAY_IMPORT = {"judge": {"inputs", "fmt"},
              "checks": {"judge", "inputs", "fmt"},
              "document": {"judge", "checks", "analysis", "coverage", "inputs", "settings", "fmt"},
              # the top level: the data and conf modules import nothing of the report; analysis the rooms it
              # composes; build everything (it is the way through)
              "inputs": set(), "fmt": set(), "settings": set(), "coverage": {"inputs"},
              "analysis": {"judge", "checks", "inputs", "settings"},
              "build": {"analysis", "coverage", "document", "inputs", "settings"}}


def _report_imports(path: Path) -> set[str]:
    """The parts of study.report (a room or a top-level module) that ``path`` imports, at any depth."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "study.report" \
                else [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {n.split(".")[2] for n in names if n.startswith("study.report.")}
    return found


def _docstring_rule(room: str) -> tuple[set[str], set[str]]:
    """The parts of study.report a room's docstring says it imports, and those it says it never does."""
    doc = ast.get_docstring(ast.parse((REPORT / room / "__init__.py").read_text()))
    rule = doc.split("Imports:", 1)[1]
    allowed, _, never = rule.partition("never")
    named = lambda text: set(re.findall(r"``study\.report\.(\w+)``", text))  # noqa: E731
    return named(allowed), named(never)


def test_the_top_level_has_at_most_ten_modules_and_three_rooms():
    top = sorted(p.stem for p in REPORT.glob("*.py"))
    assert len(top) <= 10, top
    rooms = sorted(p.name for p in REPORT.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert rooms == sorted(ROOMS)
    assert not [p for p in REPORT.iterdir() if p.is_dir() and p.name not in ROOMS and p.name != "__pycache__"]


def test_no_module_of_the_report_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in REPORT.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


@pytest.mark.parametrize("room", ROOMS)
def test_each_room_imports_only_what_its_docstring_allows(room):
    allowed, never = _docstring_rule(room)
    assert allowed == MAY_IMPORT[room], (room, allowed)  # the docstring says what the rule says
    assert never == {"judge": {"checks", "document"}, "checks": {"document"}, "document": set()}[room]
    for path in sorted((REPORT / room).glob("*.py")):
        imported = _report_imports(path) - {room}
        assert imported <= allowed and not imported & never, (str(path.relative_to(ROOT)), imported - allowed)


@pytest.mark.parametrize("module", ["inputs", "fmt", "settings", "coverage", "analysis", "build"])
def test_the_top_level_modules_import_downwards_only(module):
    imported = _report_imports(REPORT / f"{module}.py") - {module}
    assert imported <= MAY_IMPORT[module], (module, imported - MAY_IMPORT[module])


def test_the_parse_sees_every_kind_of_import(tmp_path):
    """The rule above can fail: a module-level, a function-level and a package import are all seen."""
    path = tmp_path / "m.py"
    path.write_text("from study.report import fmt, inputs\nimport study.report.checks.claims\n"
                    "def f():\n    from study.report.document.blocks import Table\n")
    assert _report_imports(path) == {"fmt", "inputs", "checks", "document"}


# --- the frozen result ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small():
    results = make_results(datasets=("iris", "moons", "wine"), optimizers=("gd", "momentum", "adam"),
                           batch_sizes=("full", "32"), seeds=2, epochs=4, trials=4, diverged_evals=0)
    return analysis.analyse(results, fast_settings(bayes_samples=500, bootstrap_resamples=100,
                                                   stability_resamples=50, band_resamples=20))


def _refuses_assignment(record) -> None:
    for field in dataclasses.fields(record):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, field.name, getattr(record, field.name))


def test_the_analysis_and_its_sub_results_are_frozen(small):
    _refuses_assignment(small)
    parts = [small.results, small.settings, small.grid, small.scores, small.verdict, small.tuning, small.practice,
             small.checks]
    assert [type(p).__name__ for p in parts] == ["SweepResults", "Settings", "Grid", "Scores", "Verdict", "Tuning",
                                                 "Practice", "Checks"]
    answer = small.verdict.answer()
    family = next(iter(small.verdict.families.values()))
    for record in parts + [answer, answer.judgement, answer.family, family, small.checks.claims[0]]:
        _refuses_assignment(record)
    for model in (small.settings.report, small.settings.claims, small.settings.lecture, small.settings.toy):
        with pytest.raises(pydantic.ValidationError):  # the conf models themselves are frozen pydantic models
            setattr(model, next(iter(type(model).model_fields)), None)


def test_every_verdict_word_is_written_once():
    """The verdict words are decide.py's constants; no other module of the report spells one as a literal."""
    words = {decide.WINNER, decide.EQUIVALENT, decide.UNRESOLVED, decide.DISAGREE, decide.NOT_MEASURED,
             decide.NOT_TESTED, decide.BY_CONSTRUCTION, decide.SURVIVES, decide.MOSTLY_SURVIVES,
             decide.DOES_NOT_SURVIVE, *dataclasses.astuple(decide.CLAIM), *dataclasses.astuple(decide.FINDING)}
    assert len(words) == 16
    spelled = {}
    for path in REPORT.rglob("*.py"):
        if path.name == "decide.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in words:
                spelled.setdefault(node.value, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert spelled == {}


def test_one_pick_decision_for_the_answer_and_the_checks():
    """is_the_pick reads a judgement; the answer's winner, the claim "Adam is the best default" and Sivaprasad's
    finding all ask it."""
    winner = decide.Judgement(decide.WINNER, "adam", behind=("gd", "nag"))
    tied = decide.Judgement(decide.EQUIVALENT, "momentum", behind=("gd",), equivalent=("adam",))
    assert decide.is_the_pick(winner, "adam") is True and decide.is_the_pick(winner, "gd") is False
    assert decide.is_the_pick(tied, "adam") is None and decide.is_the_pick(tied, "adam", alone=False) is True
    assert decide.CLAIM.word(decide.is_the_pick(winner, "adam")) == "supported"
    assert decide.FINDING.word(decide.is_the_pick(tied, "gd")) == "disagrees"
    assert decide.FINDING.word(decide.is_the_pick(tied, "adam")) == "cannot tell"


# --- an optimizer's identity from its registry entry ------------------------------------------------------------
@pytest.fixture
def seventh(monkeypatch):
    """A seventh optimizer, declared only in the registry: its own colour and an averaging constant named rho."""
    entry = optim.Optimizer("rhoprop", "RhoProp", "#9467bd", True, optim.rmsprop_rule, ("v",),
                            (hp.learning_rate(0.001, 1e-5, 1.0),
                             hp.averaging("rho", "ρ", "the decay of the running average of squared gradients", 0.95,
                                          1e-5, 0.5), hp.epsilon()))
    monkeypatch.setitem(optim.OPTIMIZERS, "rhoprop", entry)
    return entry


def test_a_seventh_optimizer_gets_its_colour_name_and_1_minus_x_panel_from_its_entry(seventh):
    rng = np.random.default_rng(0)
    trials = pd.DataFrame({"dataset": "d", "optimizer": ["gd"] * 4 + ["rhoprop"] * 4, "batch_size": "full",
                           "state": ["COMPLETE", "COMPLETE", "DIVERGED", "COMPLETE"] * 2,
                           "value": rng.uniform(0.1, 1.0, 8), "eta": rng.uniform(1e-3, 1e-1, 8),
                           "rho": [np.nan] * 4 + [0.9, 0.99, 0.5, 0.999]})
    assert tuning.hyperparameter_panels(trials, ["gd", "rhoprop"], averaging=True) == [("rhoprop", "rho", True)]
    panels = tuning.hyperparameter_panels(trials, ["gd", "rhoprop"], averaging=True)
    fig = tuning_figures.loss_against(trials, panels, ["full"], pd.Series({"d": 0.1}))
    ax = fig.axes[0]
    assert ax.get_title() == "rhoprop: 1 - rho"
    drawn = np.concatenate([c.get_offsets()[:, 0] for c in ax.collections])
    assert sorted(drawn) == pytest.approx(sorted(1 - np.array([0.9, 0.99, 0.999, 0.5])))  # 1 - x, diverged too
    median = pd.DataFrame({"dataset": "d", "optimizer": ["gd", "gd", "rhoprop", "rhoprop"], "batch_size": "full",
                           "track": "tuned", "epoch": [1, 2, 1, 2], "median": [1.0, 0.5, 0.9, 0.4],
                           "q25": [0.9, 0.4, 0.8, 0.3], "q75": [1.1, 0.6, 1.0, 0.5]})
    fig = figures.dataset_curves(median, "d", ["full"], ["gd", "rhoprop"], 0.45)
    lines = {line.get_label(): to_hex(line.get_color()) for line in fig.axes[0].get_lines()
             if not line.get_label().startswith("_")}
    assert lines == {"gd": optim.OPTIMIZERS["gd"].color, "rhoprop": seventh.color}
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["gd", seventh.name]
    assert figures.png_bytes(fig).startswith(b"\x89PNG")


def test_importing_and_drawing_the_report_chooses_no_backend(tmp_path):
    """No matplotlib.use and no pyplot in the report: the caller's backend (here svg, from MPLBACKEND) stays its own
    while the report imports and draws; the figures draw on their own Agg canvas. (scikit-posthocs imports pyplot
    for its own plots; importing pyplot chooses no backend.)"""
    for path in REPORT.rglob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert "matplotlib.pyplot" not in imported, path
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "use"
                    and isinstance(n.value, ast.Name) and n.value.id == "matplotlib"], path
    code = ("import matplotlib, pandas as pd\n"
            "import study.report.build, study.report.analysis, study.report.document.compose\n"
            "from study.report.document import figures\n"
            "profile = pd.DataFrame({'gd': [0.5, 1.0]}, index=pd.Index([1.0, 2.0], name='tau'))\n"
            "png = figures.png_bytes(figures.performance_profiles([('epochs', 'epochs to the target', profile)]))\n"
            "print(png.startswith(b'\\x89PNG'), matplotlib.get_backend())\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "MPLBACKEND": "svg", "MPLCONFIGDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "svg"]
