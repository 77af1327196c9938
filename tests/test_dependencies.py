"""Every third-party package the project imports is declared in pyproject.toml, at the version requirements.lock pins.

The imports are read from the source (every ``import`` and ``from ... import`` statement, at module level or inside a
function), mapped to the distributions that provide them by the installed metadata (``sklearn`` is scikit-learn,
``yaml`` PyYAML), and looked up among the declared dependencies: study/ and pipelines/ in ``dependencies``, tests/
in ``dependencies`` or the ``test`` extra.
"""
from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
OURS = {"study", "pipelines", "tests", "__future__"} | {p.stem for p in (ROOT / "tests").glob("*.py")}  # helpers


def _normal(name: str) -> str:
    """A distribution's name as PEP 503 compares them: scikit_learn, Scikit-Learn and scikit-learn are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement(spec: str) -> tuple[str, str]:
    """("mlflow", "3.17.2") from "mlflow[auth]==3.17.2"."""
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;]+)", spec.strip())
    assert match, f"pyproject.toml: {spec!r} is not pinned as name==version"
    return _normal(match[1]), match[2]


RUNTIME = dict(map(_requirement, PROJECT["dependencies"]))
TEST = dict(map(_requirement, PROJECT.get("optional-dependencies", {}).get("test", [])))


def _third_party_imports(folder: str) -> dict[str, str]:
    """{top-level module: a file importing it} over every .py file under the folder, stdlib and ours excluded."""
    found = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in OURS:
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def _undeclared(folder: str, declared: set[str]) -> list[str]:
    providers = importlib.metadata.packages_distributions()
    missing = []
    for module, where in sorted(_third_party_imports(folder).items()):
        distributions = {_normal(d) for d in providers.get(module, [])}
        if not distributions & declared:
            provided = sorted(distributions) or "nothing installed"
            missing.append(f"{module} (imported by {where}; provided by {provided})")
    return missing


@pytest.mark.parametrize("folder", ["study", "pipelines"])
def test_every_import_of_the_project_is_a_declared_dependency(folder):
    assert _undeclared(folder, set(RUNTIME)) == []


def test_every_import_of_the_tests_is_a_dependency_or_in_the_test_extra():
    assert {"pytest", "playwright"} <= set(_third_party_imports("tests"))
    assert _undeclared("tests", set(RUNTIME) | set(TEST)) == []


def test_test_only_packages_are_not_runtime_dependencies():
    assert {"pytest", "playwright"} <= set(TEST)
    assert not set(TEST) & set(RUNTIME)


def test_every_declared_version_is_the_locked_one():
    """requirements.lock pins everything `make setup` installs; pyproject.toml declares the same versions."""
    locked = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = _requirement(line)
            locked[name] = version
    for name, version in {**RUNTIME, **TEST}.items():
        assert locked.get(name) == version, f"{name}: pyproject.toml {version}, requirements.lock {locked.get(name)}"


def test_the_scan_sees_a_missing_declaration():
    """The check can fail: without pydantic among the declared dependencies, study/ has an undeclared import."""
    assert {"numpy", "numba", "pydantic", "sqlalchemy"} <= set(_third_party_imports("study"))
    assert any(m.startswith("pydantic ") for m in _undeclared("study", set(RUNTIME) - {"pydantic"}))
