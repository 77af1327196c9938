"""Bad input to a worker of a shared sweep, tried systematically against the real services (PostgreSQL and an MLflow
server with basic-auth): a wrong storage URL or password, unreachable servers, refused credentials, a runs directory
that cannot be written, unknown flags, non-numeric and NaN overrides, a profile that is valid YAML of the wrong
shape, and the `pipelines.services` command's own flags. Each gets one line on stderr naming what is wrong, exit
status 2, and nothing written: no Optuna study, no MLflow experiment, no file under the runs directory. No password
is ever printed.

Search spaces cannot be chosen on the command line (study.sweep.config reads conf/search_spaces.yaml), so NaN and
negative bounds are tried on ``config.load_search_spaces(path)`` directly.
"""
from __future__ import annotations

import concurrent.futures
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from services_support import REPO, nothing_written, shared_services

pytestmark = pytest.mark.slow
GRID = ["--profile", "smoke", "datasets=iris", "optimizers=adam", "batch_sizes=full", "trials=2", "epochs=2",
        "seeds=1"]


@dataclass
class Case:
    args: list  # "{tmp}" is the case's directory; the grid and a fresh --runs-dir are added unless given
    words: list  # the one line names each of these
    env: dict = field(default_factory=dict)  # changes to the workers' environment; "{pw}" etc. filled in below
    files: dict = field(default_factory=dict)
    secrets: tuple = ()  # must appear nowhere in the output
    command: str = "pipelines.sweep"
    sub: bool = False  # a process of its own; else through the same entry point (pipelines.cli.run) in this one


def _profile(**changes) -> str:
    raw = yaml.safe_load((REPO / "conf" / "sweep" / "smoke.yaml").read_text())
    raw.update({"datasets": ["iris"], "optimizers": ["adam"], "batch_sizes": ["full"], "trials": 2, "epochs": 2,
                "seeds": 1, **changes})
    return yaml.safe_dump(raw)


CASES = {
    # the Optuna storage URL
    "storage-wrong-password": Case([], ["OPTUNA_STORAGE", "password authentication failed"],
                                   env={"OPTUNA_STORAGE": "postgresql://optuna:Wr0ngPass@{host}:{pg}/optuna"},
                                   secrets=("Wr0ngPass",), sub=True),
    "storage-wrong-user": Case([], ["OPTUNA_STORAGE", "nobody"],
                               env={"OPTUNA_STORAGE": "postgresql://nobody:{pw}@{host}:{pg}/optuna"}),
    "storage-no-such-database": Case([], ["OPTUNA_STORAGE", "nodb"],
                                     env={"OPTUNA_STORAGE": "postgresql://optuna:{pw}@{host}:{pg}/nodb"}),
    "storage-unknown-scheme": Case([], ["OPTUNA_STORAGE", "scheme"],
                                   env={"OPTUNA_STORAGE": "postgress://optuna:{pw}@{host}:{pg}/optuna"}),
    "storage-port-not-a-number": Case([], ["OPTUNA_STORAGE"],
                                      env={"OPTUNA_STORAGE": "postgresql://optuna:{pw}@{host}:port/optuna"}),
    "storage-server-unreachable": Case([], ["OPTUNA_STORAGE", "{closed}"], sub=True,
                                       env={"OPTUNA_STORAGE": "postgresql://optuna:{pw}@{host}:{closed}/optuna"}),
    # the MLflow server
    "mlflow-server-unreachable": Case([], ["MLFLOW_TRACKING_URI", "cannot reach", "{closed}"], sub=True,
                                      env={"MLFLOW_TRACKING_URI": "http://{host}:{closed}"}),
    "mlflow-wrong-password": Case([], ["MLFLOW_TRACKING_URI", "401", "MLFLOW_TRACKING_PASSWORD"], sub=True,
                                  env={"MLFLOW_TRACKING_PASSWORD": "Wr0ngPass"}, secrets=("Wr0ngPass",)),
    "mlflow-no-credentials": Case([], ["MLFLOW_TRACKING_URI", "401"],
                                  env={"MLFLOW_TRACKING_USERNAME": None, "MLFLOW_TRACKING_PASSWORD": None}),
    "mlflow-url-not-a-url": Case([], ["MLFLOW_TRACKING_URI"], env={"MLFLOW_TRACKING_URI": "http://{host}:port"}),
    # the runs directory (tests run as root, whom chmod does not stop: a path under a file, and /proc)
    "runs-dir-under-a-file": Case(["--runs-dir", "/etc/hostname/runs"], ["--runs-dir", "/etc/hostname/runs"]),
    "runs-dir-in-proc": Case(["--runs-dir", "/proc/optstudy-runs"], ["--runs-dir", "/proc/optstudy-runs"],
                             sub=True),
    # the command line
    "unknown-flag": Case(["--wrker"], ["--wrker"], sub=True),
    "unknown-flag-with-value": Case(["--lease", "5"], ["--lease"], sub=True),
    "trials-not-a-number": Case(["trials=four"], ["trials", "four"]),
    "lease-not-a-number": Case(["lease_seconds=soon"], ["lease_seconds", "soon"]),
    "lease-nan": Case(["lease_seconds=nan"], ["lease_seconds", "nan"]),
    "lease-negative": Case(["lease_seconds=-5"], ["lease_seconds", "-5"]),
    "population-not-a-number": Case(["population=many"], ["population", "many"]),
    # valid YAML, wrong shape
    "profile-datasets-mapping": Case(["--profile", "{tmp}/p.yaml"], ["p.yaml", "datasets"],
                                     files={"p.yaml": _profile(datasets={"iris": 1})}),
    "profile-network-scalar": Case(["--profile", "{tmp}/p.yaml"], ["p.yaml", "network"],
                                   files={"p.yaml": _profile(network=16)}),
    "profile-sampler-list": Case(["--profile", "{tmp}/p.yaml"], ["p.yaml", "sampler"],
                                 files={"p.yaml": _profile(sampler=["tpe", 0])}),
    "profile-a-string": Case(["--profile", "{tmp}/p.yaml"], ["p.yaml", "mapping"], files={"p.yaml": "just words\n"}),
    # pipelines.services
    "services-unknown-flag": Case(["start", "--prot", "5"], ["--prot"], command="pipelines.services", sub=True),
    "services-unknown-action": Case(["restart"], ["restart"], command="pipelines.services", sub=True),
    "services-port-out-of-range": Case(["start", "--pg-port", "70000"], ["--pg-port", "70000"],
                                       command="pipelines.services", sub=True),
    "services-runs-dir-under-a-file": Case(["start", "--runs-dir", "/etc/hostname/runs"], ["--runs-dir"],
                                           command="pipelines.services", sub=True),
}


@dataclass
class Outcome:
    returncode: int
    output: str
    lines: list
    runs_dir: Path
    name: str


@pytest.fixture(scope="module")
def services(request):
    return shared_services(request)


@pytest.fixture(scope="module")
def outcomes(services, tmp_path_factory):
    """Every case as a worker process against the real services, four at a time."""
    from study.tools.services import free_port

    base = tmp_path_factory.mktemp("bad-input")
    values = {"host": "127.0.0.1", "pg": str(services.state["pg_port"]), "pw": services.state["optuna_password"],
              "closed": str(free_port())}

    def fill(text: str) -> str:
        return text.format(**values) if isinstance(text, str) else text

    def prepare(name: str, case: Case) -> tuple[list, Path]:
        tmp = base / name
        tmp.mkdir()
        for file, text in case.files.items():
            (tmp / file).write_text(text)
        args = [a.replace("{tmp}", str(tmp)) for a in case.args]
        runs_dir = Path(args[args.index("--runs-dir") + 1]) if "--runs-dir" in args else tmp / "runs"
        if case.command == "pipelines.sweep":
            args = ["--worker", *([] if "--profile" in args else GRID), *args, f"name=bad-{name}"]
        if "--runs-dir" not in args:
            args += ["--runs-dir", str(runs_dir)]
        return args, runs_dir

    def run(name: str, case: Case) -> Outcome:
        args, runs_dir = prepare(name, case)
        env = services.env(**{k: fill(v) for k, v in case.env.items()})
        proc = subprocess.run([sys.executable, "-m", case.command, *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=120)
        output = proc.stdout + proc.stderr
        return Outcome(proc.returncode, output, [line for line in proc.stderr.splitlines() if line.strip()],
                       runs_dir, name)

    def run_here(name: str, case: Case) -> Outcome:
        import contextlib
        import io
        from pipelines import cli, sweep as sweep_cli

        args, runs_dir = prepare(name, case)
        saved = dict(os.environ)
        out, err = io.StringIO(), io.StringIO()
        try:
            os.environ.clear()
            os.environ.update(services.env(**{k: fill(v) for k, v in case.env.items()}))
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                    pytest.raises(SystemExit) as exited:
                cli.run(sweep_cli.main, args)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return Outcome(exited.value.code, out.getvalue() + err.getvalue(),
                       [line for line in err.getvalue().splitlines() if line.strip()], runs_dir, name)

    here = {name: run_here(name, case) for name, case in CASES.items() if not case.sub}
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run, name, case) for name, case in CASES.items() if case.sub}
        results = {**here, **{name: f.result() for name, f in futures.items()}}
    return {"results": results, "values": values}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2_and_nothing_written(services, outcomes, name):
    case, out, values = CASES[name], outcomes["results"][name], outcomes["values"]
    shown = f"exit {out.returncode}, output:\n{out.output[-2000:]}"
    assert out.returncode == 2, shown
    assert len(out.lines) == 1 and out.lines[0].startswith("error: "), shown
    for word in case.words:
        assert word.format(**values) in out.lines[0], f"{word!r} not named; {shown}"
    for secret in (*case.secrets, *services.secrets):
        assert secret not in out.output, f"a password is printed; {shown}"
    if case.command == "pipelines.sweep":
        nothing_written(services, f"bad-{name}", out.runs_dir if out.runs_dir.is_relative_to("/tmp") else None)
    elif out.runs_dir.is_dir():  # no service was set up, no server started
        assert not [p for p in out.runs_dir.rglob("*") if p.is_file()], list(out.runs_dir.rglob("*"))


def test_the_same_worker_with_good_settings_gets_past_every_check(services, tmp_path):
    """The control: the grid and environment the cases share are valid, so each case fails for its own defect."""
    from study.sweep import config, sweep

    cfg = config.load_sweep("smoke", [a for a in GRID if "=" in a] + ["name=bad-control"])
    saved = dict(os.environ)
    try:
        os.environ.update({k: v for k, v in services.env().items() if k.startswith(("OPTUNA_", "MLFLOW_"))})
        storage, client, experiment = sweep.open_stores(cfg, tmp_path)
        assert experiment and client.get_experiment(experiment).name == "bad-control"
    finally:
        os.environ.clear()
        os.environ.update(saved)


# --- search spaces: NaN and negative bounds, wrong shapes ---------------------------------------------------------
SPACES = yaml.safe_load((REPO / "conf" / "search_spaces.yaml").read_text())
NAN = float("nan")
SPACE_CASES = {
    "nan-low": ("gd.search.eta.low", NAN, ["gd.search.eta.low", "finite"]),
    "nan-high": ("adam.search.eta.high", NAN, ["adam.search.eta.high", "finite"]),
    "infinite-high": ("gd.search.eta.high", math.inf, ["gd.search.eta.high", "finite"]),
    "negative-low-log": ("gd.search.eta.low", -1.0, ["gd.search.eta.low", "positive"]),
    "negative-both-linear": ("gd.search.eta", {"low": -2.0, "high": -1.0, "log": False}, ["gd.search.eta"]),
    "negative-low-linear": ("momentum.search.eta", {"low": -1.0, "high": 1.0, "log": False},
                            ["momentum.search.eta"]),
    "negative-one-minus": ("adam.search.beta1.low", -0.1, ["adam.search.beta1.low", "positive"]),
    "one-minus-above-one": ("momentum.search.gamma.high", 1.5, ["momentum.search.gamma.high", "below 1"]),
    "a-default-block": ("rmsprop.default", {"eta": 0.001}, ["rmsprop.default", "unknown key"]),  # the registry's
    "negative-fixed": ("adam.search.eps.fixed", -1e-8, ["adam.search.eps.fixed", "positive"]),
    "bound-not-a-number": ("gd.search.eta.low", "small", ["gd.search.eta.low", "small"]),
    "block-a-list": ("nag", ["eta", "gamma"], ["nag", "mapping"]),
    "range-a-list": ("gd.search.eta", [1e-4, 10.0], ["gd.search.eta", "mapping"]),
}


def _edit(raw: dict, dotted: str, value) -> dict:
    node, parts = raw, dotted.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    return raw


@pytest.mark.parametrize("name", list(SPACE_CASES))
def test_search_space_bad_bounds_name_the_file_and_key(name, tmp_path):
    import copy
    from study.sweep import config
    from study.errors import BadInput

    key, value, words = SPACE_CASES[name]
    path = tmp_path / "spaces.yaml"
    path.write_text(yaml.safe_dump(_edit(copy.deepcopy(SPACES), key, value)))
    with pytest.raises(BadInput) as raised:
        config.load_search_spaces(path)
    message = str(raised.value)
    assert "\n" not in message and "spaces.yaml" in message, message
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize("text", ["- gd\n- adam\n", "just words\n", "gd: 5\n", "42\n"])
def test_search_space_file_of_the_wrong_shape(text, tmp_path):
    from study.sweep import config
    from study.errors import BadInput

    path = tmp_path / "spaces.yaml"
    path.write_text(text)
    with pytest.raises(BadInput) as raised:
        config.load_search_spaces(path)
    assert "spaces.yaml" in str(raised.value) and "\n" not in str(raised.value)
