"""The stores a sweep opens: passwords masked wherever a URL is shown, bad stores and URLs refused in one line before
anything is written, and a new store created once when two sweeps start together.

Bad stores are tried through the real entry point: a mlflow.db of random bytes or cut to half, a tracking URI MLflow 3
would not open, a storage URL of the wrong shape, a journal where no file can be written. Each is one line on
stderr, exit status 2, in seconds, with nothing written and every file that was there before byte for byte the
same. One case of each kind runs as ``python -m pipelines.sweep`` in a subprocess; the others run the same entry
point in this process (``pipelines.cli.run(pipelines.sweep.main)``, the environment set with monkeypatch, the output
captured at the file descriptors), since what they check is the line and the files, and a subprocess each cost its
imports (20 s a case on a loaded machine).
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from study.sweep.tracking import mask_url

REPO = Path(__file__).resolve().parents[1]
GRID = ["--profile", "smoke", "datasets=iris", "optimizers=gd,adam", "batch_sizes=full", "trials=2", "epochs=2",
        "seeds=1", "--workers", "1"]

# --- masking -----------------------------------------------------------------------------------------------------
PASSWORDS = ["Pr0be/S3cret", "p@ss3cr3t", "a:b:c", "100%sure", "p%40ss%2Fw%3Ard", "pässwörd€", "x/y@z:w%20q?#",
             "@", "/", ":", "%", "@@/:", "it's"]
URLS = ["postgresql://optuna:{pw}@db.example:5432/optuna", "postgresql+psycopg://optuna:{pw}@db.example/optuna",
        "postgres://optuna:{pw}@10.0.0.7/optuna?sslmode=require", "mysql://root:{pw}@127.0.0.1:3306/mlflow",
        "mysql+pymysql://root:{pw}@db.example/mlflow", "mssql+pyodbc://sa:{pw}@db.example/mlflow",
        "http://worker:{pw}@127.0.0.1:5000", "https://worker:{pw}@mlflow.example:8443/prefix/"]


@pytest.mark.parametrize("pw", PASSWORDS)
@pytest.mark.parametrize("url", URLS)
def test_a_urls_password_is_masked_whole_and_nothing_else(url, pw):
    assert mask_url(url.format(pw=pw)) == url.format(pw="***")


@pytest.mark.parametrize("pw", PASSWORDS)
def test_every_url_in_a_command_line_is_masked(pw):
    first, second = URLS[1].format(pw=pw), URLS[6].format(pw=pw)
    line = f"python -m pipelines.dashboard --storage {first} --tracking {second} --port 8080"
    assert mask_url(line) == (f"python -m pipelines.dashboard --storage {URLS[1].format(pw='***')} "
                              f"--tracking {URLS[6].format(pw='***')} --port 8080")
    quoted = shlex.join(["python", "-m", "pipelines.sweep", f"note=see {first}", "name=x"])  # quoted by the shell
    assert mask_url(quoted) == shlex.join(["python", "-m", "pipelines.sweep", f"note=see {URLS[1].format(pw='***')}",
                                           "name=x"])
    assert mask_url(f"OPTUNA_STORAGE={first} python -m pipelines.sweep") == \
        f"OPTUNA_STORAGE={URLS[1].format(pw='***')} python -m pipelines.sweep"


@pytest.mark.parametrize("text", ["sqlite:////tmp/runs/mlflow.db", "http://127.0.0.1:5000/#/experiments/1/runs",
                                  "postgresql://optuna@db.example:5432/optuna", "/tmp/runs/optuna/smoke.journal",
                                  "cannot reach http://127.0.0.1:5000: ConnectionError", "file:///tmp/x.journal"])
def test_what_holds_no_password_is_shown_as_it_is(text):
    assert mask_url(text) == text


def test_a_password_with_a_blank_is_masked_when_the_text_is_the_url():
    assert mask_url("postgresql://u:two words@h/db") == "postgresql://u:***@h/db"


def test_what_sqlalchemy_hides_is_hidden_too():
    """The rule SQLAlchemy's parser applies, and more: it splits u:p@ss@host at the first @ and would show 'ss'."""
    from sqlalchemy.engine import make_url

    parsed_alike = [pw for pw in PASSWORDS if "@" not in pw and len(pw) > 3]  # one '@': SQLAlchemy reads them right
    for url in (u.format(pw=pw) for u in URLS[:6] for pw in parsed_alike):
        hidden = make_url(url).render_as_string(hide_password=True)
        assert "***" in hidden and make_url(url).password not in mask_url(url), (url, hidden)
    assert make_url("postgresql://u:p@ss3cr3t@host/db").render_as_string(hide_password=True) == \
        "postgresql://u:***@ss3cr3t@host/db"  # why we do not use it as it is
    assert mask_url("postgresql://u:p@ss3cr3t@host/db") == "postgresql://u:***@host/db"


# --- bad stores through the entry point ---------------------------------------------------------------------------
def sweep_env(**changes) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_", "OPTSTUDY_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.update(changes)
    return env


def real_mlflow_db(folder: Path) -> Path:
    """A real MLflow store with an experiment, written and closed by another process (so checkpointed whole)."""
    code = "import sys; from study.sweep import tracking; c = tracking.client(sys.argv[1]); " \
           "tracking.experiment_id(c, 'real', sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(folder)], cwd=REPO, env=sweep_env(), check=True,
                   capture_output=True, timeout=120)
    (folder / "mlflow.db.writer").unlink()
    return folder / "mlflow.db"


def random_bytes(path: Path, n: int = 300_000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(n))


def cut_to_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


@dataclass
class Case:
    env: dict  # "{runs}" is the case's fresh runs directory, "{tmp}" a folder beside it
    words: list  # the one line names each of these
    prepare: object = None  # prepare(runs, tmp): files the case starts with (they must stay as they are)
    outside: list = field(default_factory=list)  # paths outside the runs directory that must not appear
    args: list = field(default_factory=list)  # more key=value overrides
    sub: bool = False  # in a subprocess (one case of each kind), or in this process


CASES = {
    # MLflow's store
    "mlflow-db-random-bytes": Case({}, ["{runs}/mlflow.db", "not an SQLite database"],
                                   lambda runs, tmp: random_bytes(runs / "mlflow.db"), sub=True),
    "mlflow-db-cut-to-half": Case({}, ["{runs}/mlflow.db", "truncated"],
                                  lambda runs, tmp: cut_to_half(real_mlflow_db(runs))),
    "mlflow-uri-sqlite-random-bytes": Case({"MLFLOW_TRACKING_URI": "sqlite:///{tmp}/store.db"},
                                           ["{tmp}/store.db", "not an SQLite database"],
                                           lambda runs, tmp: random_bytes(tmp / "store.db", 5000)),
    "mlflow-uri-garbage": Case({"MLFLOW_TRACKING_URI": "garbage"},
                               ["MLFLOW_TRACKING_URI", "garbage", "file store", "sqlite:///"], outside=["garbage"],
                               sub=True),
    "mlflow-uri-file-store": Case({"MLFLOW_TRACKING_URI": "file://{tmp}/mlruns"},
                                  ["MLFLOW_TRACKING_URI", "file store", "MLflow 3"], outside=["{tmp}/mlruns"]),
    "mlflow-uri-unsupported-scheme": Case({"MLFLOW_TRACKING_URI": "ftp://files.example/mlflow"},
                                          ["MLFLOW_TRACKING_URI", "'ftp'"]),
    "mlflow-uri-in-memory": Case({"MLFLOW_TRACKING_URI": "sqlite://"}, ["MLFLOW_TRACKING_URI", "in-memory"]),
    "mlflow-uri-port-not-a-number": Case({"MLFLOW_TRACKING_URI": "postgresql://u:Pr0be/S3cret@db.example:port/m"},
                                         ["MLFLOW_TRACKING_URI", "malformed", "u:***@db.example"]),
    # Optuna's storage
    "storage-sqlite-random-bytes": Case({"OPTUNA_STORAGE": "sqlite:///{tmp}/optuna.db"},
                                        ["{tmp}/optuna.db", "not an SQLite database"],
                                        lambda runs, tmp: random_bytes(tmp / "optuna.db", 5000), sub=True),
    "storage-scheme-without-slashes": Case({"OPTUNA_STORAGE": "postgresql:/db.example/optuna"},
                                           ["OPTUNA_STORAGE", "malformed"], outside=["postgresql:"]),
    "storage-in-memory": Case({"OPTUNA_STORAGE": "sqlite://"}, ["OPTUNA_STORAGE", "in-memory"]),
    "storage-unsupported-scheme": Case({"OPTUNA_STORAGE": "redis://cache.example:6379"}, ["OPTUNA_STORAGE", "'redis'"],
                                       sub=True),
    "storage-relative-file-url": Case({"OPTUNA_STORAGE": "file://optuna/x.journal"},
                                      ["OPTUNA_STORAGE", "file:///"], outside=["optuna/x.journal"]),
    "journal-in-proc-url": Case({"OPTUNA_STORAGE": "file:///proc/optstudy/x/sweep.journal"},
                                ["OPTUNA_STORAGE", "/proc/optstudy/x/sweep.journal"]),
    "journal-in-proc-path": Case({"OPTUNA_STORAGE": "/proc/optstudy/sweep.journal"},
                                 ["OPTUNA_STORAGE", "/proc/optstudy/sweep.journal"], sub=True),
    "journal-under-a-file": Case({"OPTUNA_STORAGE": "{tmp}/a-file/sweep.journal"},
                                 ["OPTUNA_STORAGE", "{tmp}/a-file/sweep.journal"],
                                 lambda runs, tmp: (tmp / "a-file").write_text("not a folder\n")),
    "journal-is-a-folder": Case({"OPTUNA_STORAGE": "{tmp}/folder"}, ["OPTUNA_STORAGE", "is a folder"],
                                lambda runs, tmp: (tmp / "folder").mkdir()),
    # a password with '/', ':', '%'-encoded '@' and '%', and non-ASCII: masked whole in every message
    "storage-unreachable-with-a-password": Case(
        {"OPTUNA_STORAGE": "postgresql+psycopg://optuna:Pr0be/S3cr:et%40ü%25ZqWv@127.0.0.1:9/optuna"},
        ["OPTUNA_STORAGE", "cannot open", "postgresql+psycopg://optuna:***@127.0.0.1:9/optuna"], sub=True),
    "storage-two-ats-in-the-password": Case(  # SQLAlchemy would take 'x@127.0.0.1' for the host, and say so
        {"OPTUNA_STORAGE": "postgresql://optuna:Pr0be/S3cr:et@x@127.0.0.1:9/optuna"},
        ["OPTUNA_STORAGE", "%40", "postgresql://optuna:***@127.0.0.1:9/optuna"]),
    "mlflow-uri-password-with-a-slash": Case(  # an http client would take 'Pr0be' for the port, and say so
        {"MLFLOW_TRACKING_URI": "http://worker:Pr0be/S3cr@127.0.0.1:9"},
        ["MLFLOW_TRACKING_URI", "%2F", "http://worker:***@127.0.0.1:9"]),
    "mlflow-uri-unreachable-with-a-password": Case(
        {"MLFLOW_TRACKING_URI": "http://worker:Pr0be%2FS3cr%3Aet%40%C3%BCZqWv@127.0.0.1:9"},
        ["MLFLOW_TRACKING_URI", "cannot reach", "http://worker:***@127.0.0.1:9"], sub=True),
}
SECRETS = ("Pr0be", "S3cr", "et%40", "et@", "ü%25", "ZqWv", "%C3%BC")


def files_in(folder: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


CONTROL = Case({}, [], args=["trials=two"])  # a bad profile key, refused after the same imports, before any store


def _prepare(base: Path, name: str, case: Case) -> dict:
    """The case's runs directory and the folder beside it, with the files it starts with; its command line and
    environment."""
    runs, tmp = base / name / "runs", base / name / "beside"
    tmp.mkdir(parents=True)

    def fill(text: str) -> str:
        return text.replace("{runs}", str(runs)).replace("{tmp}", str(tmp))

    if case.prepare:
        case.prepare(runs, tmp)
    return {"runs": runs, "tmp": tmp, "fill": fill, "before": {**files_in(runs), **files_in(tmp)},
            "args": ["--runs-dir", str(runs), *GRID, f"name=bad-{name}", *case.args],
            "env": {k: fill(v) for k, v in case.env.items()}}


def _outcome(case: dict, returncode: int, stdout: str, stderr: str, seconds: float) -> dict:
    return {"returncode": returncode, "stdout": stdout, "stderr": stderr, "seconds": seconds,
            "before": case["before"], "after": {**files_in(case["runs"]), **files_in(case["tmp"])},
            "fill": case["fill"]}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """The subprocess cases and their control, two at a time."""
    base = tmp_path_factory.mktemp("bad-stores")

    def run(name: str, case: Case):
        prepared = _prepare(base, name, case)
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "pipelines.sweep", *prepared["args"]], cwd=REPO,
                              env=sweep_env(**prepared["env"]), capture_output=True, text=True, timeout=300)
        return _outcome(prepared, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run, name, case) for name, case in CASES.items() if case.sub}
        futures["control"] = pool.submit(run, "control", CONTROL)
        return {name: f.result() for name, f in futures.items()}


def _run_in_process(base: Path, name: str, case: Case, monkeypatch, capfd) -> dict:
    from pipelines import cli, sweep as sweep_cli

    prepared = _prepare(base, name, case)
    for key in [k for k in os.environ if k.startswith(("MLFLOW_", "OPTUNA_", "OPTSTUDY_"))]:
        monkeypatch.delenv(key)  # as sweep_env does for a subprocess (the sweep sets one of them itself)
    for key, value in prepared["env"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(REPO)
    capfd.readouterr()
    started = time.monotonic()
    with pytest.raises(SystemExit) as exited:
        cli.run(sweep_cli.main, prepared["args"])
    seconds = time.monotonic() - started
    out = capfd.readouterr()
    for key in [k for k in os.environ if k.startswith("OPTSTUDY_")]:
        monkeypatch.delenv(key)  # what the sweep set for its workers: gone with this test
    return _outcome(prepared, exited.value.code, out.out, out.err, seconds)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_store_is_one_line_exit_2_at_once_and_nothing_written(name, request, tmp_path, monkeypatch, capfd):
    case = CASES[name]
    if case.sub:
        out, control = request.getfixturevalue("outcomes")[name], request.getfixturevalue("outcomes")["control"]
    else:  # compared with the control run the same way
        control = _run_in_process(tmp_path, "control", CONTROL, monkeypatch, capfd)
        out = _run_in_process(tmp_path, name, case, monkeypatch, capfd)
    fill = out["fill"]
    lines = [line for line in out["stderr"].splitlines() if line.strip()]
    shown = f"exit {out['returncode']} after {out['seconds']:.1f} s:\n{(out['stdout'] + out['stderr'])[-3000:]}"
    assert out["returncode"] == 2, shown
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    for word in case.words:
        assert fill(word) in lines[0], f"{fill(word)!r} not named; {shown}"
    assert control["returncode"] == 2 and "trials" in control["stderr"], control["stderr"]
    # At once: no slower than a bad profile key, whose refusal comes after the same imports (5-20 s on a busy
    # machine), with room for the load to change meanwhile; MLflow's retries took 105 s.
    assert out["seconds"] < max(30.0, 3 * control["seconds"]), f"not at once ({control['seconds']:.1f} s); {shown}"
    assert out["after"] == out["before"], "files written or changed: " + \
        str(sorted(set(out["after"]) ^ set(out["before"])) or "changed bytes")
    for path in case.outside:
        assert not (REPO / fill(path)).exists() and not Path(fill(path)).exists(), f"{fill(path)} was written"
    for secret in SECRETS:
        assert secret not in out["stdout"] + out["stderr"], f"a password is printed; {shown}"


# --- two first starts at once -------------------------------------------------------------------------------------
def _open_new_store(runs_dir: str, barrier, results) -> None:
    from study.sweep import tracking

    barrier.wait()  # both create the same new store at the same moment, as two sweeps started together
    try:
        client = tracking.client(runs_dir)
        results.put(("ok", tracking.experiment_id(client, "together", runs_dir)))
    except Exception as e:  # reported to the test, which names it
        results.put((f"{type(e).__name__}: {str(e).splitlines()[0][:300]}", None))


def test_two_processes_creating_one_new_store_at_once_both_succeed(tmp_path):
    """MLflow creates a new store's schema with its first client: two at once collided ("table
    _alembic_tmp_experiments already exists", or "alembic_version"). Both get the store and the same experiment."""
    ctx = multiprocessing.get_context("spawn")
    for attempt in range(4):
        runs_dir = tmp_path / f"runs-{attempt}"
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_open_new_store, args=(str(runs_dir), barrier, results)) for _ in range(2)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=180) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert [o[0] for o in outcomes] == ["ok", "ok"], (attempt, outcomes)
        assert outcomes[0][1] == outcomes[1][1], outcomes


@pytest.mark.slow
def test_two_sweeps_started_together_on_a_new_runs_dir_both_finish_with_exact_counts(tmp_path):
    from test_sweep import check_counts, config_of, read_store, tail

    command = [sys.executable, "-m", "pipelines.sweep", *GRID]
    for attempt in range(3):
        runs_dir = tmp_path / f"runs-{attempt}"
        procs = [subprocess.Popen([*command, "--runs-dir", str(runs_dir)], cwd=REPO, env=sweep_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outputs = [p.communicate(timeout=600) for p in procs]
        for p, (_, err) in zip(procs, outputs):
            assert p.returncode == 0, f"round {attempt}: exit {p.returncode}\n{tail(err)}"
        check_counts(read_store(runs_dir, config_of(GRID)))


# --- a password in both store URLs, end to end ---------------------------------------------------------------------
PASSWORD = "Qx7Pr0be/S3cr3tZk:Wq9LnMvb%Kv8ü@Hy5GdWpx"  # '/', ':', '%', '@' and a non-ASCII letter
# The tracking server's: ASCII, since requests sends a URL's userinfo as Latin-1 and the server reads UTF-8 (a
# non-ASCII password logs in through MLFLOW_TRACKING_PASSWORD, which MLflow encodes as UTF-8)
SERVER_PASSWORD = PASSWORD.replace("ü", "Jq")
PIECES = ("Qx7Pr0be", "S3cr3tZk", "Wq9LnMvb", "Hy5GdWpx", "Kv8ü", "Kv8%C3%BC", "%25Kv8", "%40Hy5")
PROBE_USER = "pw_probe"
# a grid the report can judge (two batch sizes; the tiny GRID's report is item 7 of issue 16, another's part)
REPORT_GRID = ["--profile", "smoke", "datasets=iris", "optimizers=gd,adam", "batch_sizes=full,32", "trials=3",
               "epochs=4", "seeds=2", "--workers", "2"]


def _probe_accounts(state: dict) -> None:
    """A PostgreSQL role with the password (a member of the role that owns Optuna's tables), and an MLflow
    basic-auth user with it, both made by the services' administrators."""
    import psycopg
    import requests
    from psycopg import sql

    from study.tools import mlflow_server, postgres

    with psycopg.connect(host="127.0.0.1", port=state["pg_port"], user=postgres.PG_USER, dbname="postgres",
                         password=state["superuser_password"], autocommit=True, connect_timeout=10) as conn:
        verifier = conn.pgconn.encrypt_password(PASSWORD.encode(), PROBE_USER.encode(), b"scram-sha-256").decode()
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (PROBE_USER,)).fetchone()
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}" if exists else
                             "CREATE ROLE {} LOGIN PASSWORD {} IN ROLE optuna")
                     .format(sql.Identifier(PROBE_USER), sql.Literal(verifier)))
    uri, admin = mlflow_server.tracking_uri(state, local=True), ("admin", state["admin_password"])
    found = requests.get(f"{uri}/api/2.0/mlflow/users/get", params={"username": PROBE_USER}, auth=admin, timeout=10)
    if found.status_code == 200:
        requests.patch(f"{uri}/api/2.0/mlflow/users/update-password", auth=admin, timeout=10,
                       json={"username": PROBE_USER, "password": SERVER_PASSWORD}).raise_for_status()
    else:
        requests.post(f"{uri}/api/2.0/mlflow/users/create", auth=admin, timeout=10,
                      json={"username": PROBE_USER, "password": SERVER_PASSWORD}).raise_for_status()


def _leaks(text: str) -> list[str]:
    import html

    return [piece for piece in PIECES if piece in text or piece in html.unescape(text)]


@pytest.mark.slow
def test_a_password_in_the_store_urls_is_in_no_output_mlflow_record_or_report(tmp_path, request):
    """A sweep and its report over PostgreSQL and an MLflow server, both URLs carrying the password (the tracking
    server's as the URL's userinfo, percent-encoded; PostgreSQL's with '/', ':', 'ü' as they are): the summary
    shows both stores masked, and no piece of the password is on stdout or stderr, in any MLflow tag or param of the
    sweep's runs, or in any file of the report."""
    import uuid
    from urllib.parse import quote

    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    from services_support import shared_services
    from study.tools import mlflow_server, postgres

    services = shared_services(request)
    _probe_accounts(services.state)
    pg_password = PASSWORD.replace("%", "%25").replace("@", "%40")  # SQLAlchemy decodes these; '/', ':' as they are
    optuna_url = f"postgresql://{PROBE_USER}:{pg_password}@127.0.0.1:{services.state['pg_port']}/{postgres.OPTUNA_DB}"
    server = mlflow_server.tracking_uri(services.state, local=True)
    mlflow_url = server.replace("://", f"://{PROBE_USER}:{quote(SERVER_PASSWORD, safe='')}@", 1)
    env = services.env(OPTUNA_STORAGE=optuna_url, MLFLOW_TRACKING_URI=mlflow_url, MLFLOW_TRACKING_USERNAME=None,
                       MLFLOW_TRACKING_PASSWORD=None)
    name = f"pw-probe-{uuid.uuid4().hex[:8]}"
    runs_dir, out = tmp_path / "runs", tmp_path / "report"
    sweep = subprocess.run([sys.executable, "-m", "pipelines.sweep", "--runs-dir", str(runs_dir), *REPORT_GRID,
                            f"name={name}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    report = subprocess.run([sys.executable, "-m", "pipelines.report", "--runs-dir", str(runs_dir), "--sweep", name,
                             "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert report.returncode == 0, report.stderr[-3000:]

    printed = sweep.stdout + sweep.stderr + report.stdout + report.stderr
    assert not _leaks(printed), (_leaks(printed), printed[-3000:])
    for masked in (f"postgresql://{PROBE_USER}:***@127.0.0.1", f"http://{PROBE_USER}:***@127.0.0.1"):
        assert masked in sweep.stderr, sweep.stderr[-3000:]  # the summary names both stores
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = PROBE_USER, SERVER_PASSWORD
    try:
        client = MlflowClient(tracking_uri=server)
        experiment = client.get_experiment_by_name(name)
        runs = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL, max_results=1000)
    finally:
        os.environ.pop("MLFLOW_TRACKING_USERNAME")
        os.environ.pop("MLFLOW_TRACKING_PASSWORD")
    assert {r.data.tags.get("role") for r in runs} >= {"cell", "trial", "eval", "report"}
    recorded = [f"{k}={v}" for r in runs for k, v in {**r.data.tags, **r.data.params}.items()]
    assert any(line.startswith("command=") for line in recorded)
    assert not [line for line in recorded if _leaks(line)], [line for line in recorded if _leaks(line)]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and not [p for p in files if _leaks(p.read_bytes().decode("utf-8", "replace"))]
    assert any(f"{PROBE_USER}:***@" in p.read_text(errors="replace") for p in files if p.suffix in (".md", ".html"))
