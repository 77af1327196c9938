"""Bad profiles and arguments that used to end in a traceback, or in a sweep that ran for ever or wrote into the
wrong place, are one line naming the file and key, exit status 2, and nothing written (issue 16, items 1, 3, 10).

Every case goes through the real entry point, ``pipelines.sweep``: a few as subprocesses (``python -m``), the rest
in this process through ``pipelines.cli.run(pipelines.sweep.main, argv)`` (a subprocess each would add ~5 s of
imports). Each case runs in its own empty working directory with its runs directory inside it, so "nothing
written" is checked on everything the command could reach by a relative path (runs/, reports/, the working
directory itself): afterwards the directory holds exactly the files the case put there. No services are needed.

Besides: the bounds' edges (each maximum accepted, one more refused), the seeds at their bounds accepted by every
function that takes them, the split check's promise for every seed, the memory estimate against a hand computation,
and the shipped profiles' hashes as the code before these checks computed them.
"""
from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml

from study.core import data
from study.errors import BadInput
from study.schema import loader
from study.sweep import config, memory

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SMALL = ["datasets=iris", "optimizers=gd", "batch_sizes=full", "trials=2", "epochs=2", "seeds=1"]
SMOKE = (CONF / "sweep" / "smoke.yaml").read_text()
MOST_WORKERS = 4 * (os.cpu_count() or 1)
DUPLICATE_IN_SPACES = "    eta: {low: 1.0e-4, high: 10.0, log: true}\n"  # gd's line, written a second time


def _with_line_after(text: str, anchor: str, line: str) -> str:
    at = text.index(anchor) + len(anchor)
    return text[:at] + line + text[at:]


def _lines(text: str, key: str) -> str:
    """"lines A and B": the 1-based lines of the first two lines that begin with ``key:`` (after any indent)."""
    found = [text.count("\n", 0, m.start()) + 1 for m in re.finditer(rf"^ *{key}:", text, re.M)]
    return f"lines {found[0]} and {found[1]}"


@dataclass
class Case:
    args: list  # "{tmp}" is the case's directory; --profile smoke and --runs-dir {tmp}/runs unless given, SMALL
    words: list  # the one line names each of these
    files: dict = field(default_factory=dict)  # name -> text or bytes, written into the case's directory
    sub: bool = False  # a subprocess; else in this process
    tree: bool = False  # a subprocess on a copy of the code whose conf/search_spaces.yaml has a key twice


NOT_UTF8 = SMOKE.replace("name: smoke", "name: smoke\n# caf\xe9 in Latin-1").encode("latin-1")
BAD_BYTE = NOT_UTF8.index(b"\xe9")
BAD_LINE = NOT_UTF8.count(b"\n", 0, BAD_BYTE) + 1
TWICE_TOP = SMOKE + "trials: 5\n"
TWICE_NESTED = SMOKE.replace("sampler: {name: tpe, seed: 0, n_startup_trials: 2}",
                             "sampler:\n  name: tpe\n  seed: 0\n  n_startup_trials: 2\n  seed: 3")
TWICE_DEEP = SMOKE.replace("epochs: 8", "epochs:\n  default: 8\n  iris: 3\n  moons: 4\n  iris: 5")
CASES = {
    # item 1: path-safe names
    "name-dot-dot": Case(["name=.."], ["smoke.yaml: name: ", "'..'"], sub=True),
    "name-dot": Case(["name=."], ["smoke.yaml: name: ", "'.'"]),
    "name-300-characters": Case([f"name={'n' * 300}"], ["smoke.yaml: name: ", "300 characters"]),
    "name-101-characters": Case([f"name={'n' * 101}"], ["smoke.yaml: name: ", "101 characters"]),
    "name-with-slash": Case(["name=a/b"], ["smoke.yaml: name: ", "'a/b'"]),
    "name-hidden": Case(["name=.hidden"], ["smoke.yaml: name: "]),
    "name-like-a-flag": Case(["name=-x"], ["smoke.yaml: name: "]),
    "name-with-space": Case(["name=my sweep"], ["smoke.yaml: name: "]),
    "name-in-a-file": Case(["--profile", "{tmp}/p.yaml"], ["p.yaml: name: ", "'..'"],
                           files={"p.yaml": SMOKE.replace("name: smoke", "name: ..")}),
    # item 3: every count bounded, with its reason
    "trials-and-population-10**12": Case([f"trials={10**12}", f"population={10**12}"],
                                         ["smoke.yaml: trials: ", "at most 10000", "MLflow run"], sub=True),
    "trials-10001": Case(["trials=10001"], ["smoke.yaml: trials: ", "at most 10000"]),
    "population-1025": Case(["population=1025"], ["smoke.yaml: population.default: ", "at most 1024"]),
    "population-of-a-batch-size": Case(["population.full=2000"], ["smoke.yaml: population.full: "]),
    "epochs-10**12": Case([f"epochs={10**12}"], ["smoke.yaml: epochs.default: ", "at most 10000"]),
    "epochs-of-a-dataset": Case(["epochs.iris=10001"], ["smoke.yaml: epochs.iris: ", "at most 10000"]),
    "hidden-10**12": Case([f"network.hidden={10**12}"], ["smoke.yaml: network.hidden.0: ", "at most 4096"]),
    "hidden-4097-second-layer": Case(["network.hidden=8,4097"], ["smoke.yaml: network.hidden.1: "]),
    "hidden-17-layers": Case([f"network.hidden={','.join(['4'] * 17)}"],
                             ["smoke.yaml: network.hidden: ", "at most 16 hidden layers"]),
    "seeds-1001": Case(["seeds=1001"], ["smoke.yaml: seeds: ", "at most 1000"]),
    "sampler-startup-10001": Case(["sampler.n_startup_trials=10001"], ["smoke.yaml: sampler.n_startup_trials: "]),
    "pruner-startup-10001": Case(["pruner.n_startup_trials=10001"], ["smoke.yaml: pruner.n_startup_trials: "]),
    "pruner-warmup-10001": Case(["pruner.n_warmup_steps=10001"], ["smoke.yaml: pruner.n_warmup_steps: "]),
    "lease-a-day-and-more": Case(["lease_seconds=86401"], ["smoke.yaml: lease_seconds: ", "at most 86400"]),
    # item 3: what the bounds cannot see, the memory estimate does
    "memory-networks": Case(["population=1024", "network.hidden=4096,4096"],
                            ["smoke.yaml: population, network.hidden: ", "largest cell (iris/gd/full)", "networks"]),
    "memory-journal": Case(["trials=10000", "epochs=10000", "datasets=iris,moons,wine,digits",
                            "optimizers=gd,momentum,nag,adagrad,rmsprop,adam", "batch_sizes=full,128,64,32,1"],
                           ["smoke.yaml: trials, epochs: ", "journal"]),
    # item 10: seeds out of range
    "tuning-seed-2**32": Case([f"tuning_seed={2**32}"], ["smoke.yaml: tuning_seed: ", "below 2**32"]),
    "tuning-seed-negative": Case(["tuning_seed=-1"], ["smoke.yaml: tuning_seed: "]),
    "sampler-seed-2**31": Case([f"sampler.seed={2**31}"], ["smoke.yaml: sampler.seed: ", "below 2**31"]),
    "sampler-seed-negative": Case(["sampler.seed=-1"], ["smoke.yaml: sampler.seed: "]),
    # item 10: a file that is not UTF-8, a key twice (at the top, nested, deeper; in a profile and under conf/)
    "not-utf8": Case(["--profile", "{tmp}/latin1.yaml"],
                     ["latin1.yaml: not UTF-8", f"byte {BAD_BYTE} (line {BAD_LINE})", "0xe9"],
                     files={"latin1.yaml": NOT_UTF8}, sub=True),
    "key-twice": Case(["--profile", "{tmp}/twice.yaml"],
                      ["twice.yaml: trials: written twice", _lines(TWICE_TOP, "trials")],
                      files={"twice.yaml": TWICE_TOP}),
    "key-twice-in-an-override": Case(["split={val: 0.1, val: 0.3}"],
                                     ["override 'split={val: 0.1, val: 0.3}': split.val: written twice",
                                      "columns 2 and 12"]),
    "key-twice-nested": Case(["--profile", "{tmp}/nested.yaml"], ["nested.yaml: sampler.seed: written twice",
                                                                 _lines(TWICE_NESTED, "seed")],
                             files={"nested.yaml": TWICE_NESTED}),
    "key-twice-deeper": Case(["--profile", "{tmp}/deep.yaml", "datasets=iris,moons"], [
        "deep.yaml: epochs.iris: written twice", _lines(TWICE_DEEP, "iris")], files={"deep.yaml": TWICE_DEEP}),
    "key-twice-in-search-spaces": Case([], ["search_spaces.yaml: gd.search.eta: written twice"], tree=True,
                                       sub=True),
    # item 10: a split too small for a dataset's classes (or a regression set's two samples)
    "split-val-0.001": Case(["split.val=0.001"], ["smoke.yaml: split.val: ", "on iris", "3 classes"], sub=True),
    "split-test-0.001": Case(["split.test=0.001"], ["smoke.yaml: split.test: ", "on iris"]),
    "split-names-the-dataset": Case(["datasets=moons,wine", "split.val=0.01"], ["smoke.yaml: split.val: ",
                                                                               "on wine", "split.val=0.017"]),
    "split-regression": Case(["datasets=diabetes", "split.val=0.001"], ["smoke.yaml: split.val: ", "on diabetes"]),
    # item 10: arguments
    "runs-dir-empty": Case(["--runs-dir", ""], ["--runs-dir", "''"]),
    "runs-dir-blank": Case(["--runs-dir", "  "], ["--runs-dir"]),
    "workers-too-many": Case(["--workers", str(MOST_WORKERS + 1)], ["--workers", f"at most {MOST_WORKERS}"]),
}


def _prepare(name: str, case: Case, base: Path) -> tuple[Path, list]:
    tmp = base / name
    tmp.mkdir()
    for file, content in case.files.items():
        (tmp / file).write_bytes(content if isinstance(content, bytes) else content.encode())
    args = [a.replace("{tmp}", str(tmp)) for a in case.args]
    if "--runs-dir" not in args:
        args = ["--runs-dir", str(tmp / "runs"), *args]
    if "--profile" not in args:
        args = ["--profile", "smoke", *args]
    flags = [a for a in args if "=" not in a]
    return tmp, flags + SMALL + [a for a in args if "=" in a]  # the case's overrides last: they win


def _tree_with_a_key_twice(root: Path) -> Path:
    """The code and conf/ copied, gd's eta written twice in conf/search_spaces.yaml."""
    for part in ("study", "pipelines", "conf"):
        shutil.copytree(REPO / part, root / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    spaces = root / "conf" / "search_spaces.yaml"
    spaces.write_text(_with_line_after(spaces.read_text(), "gd:\n  search:\n" + DUPLICATE_IN_SPACES,
                                       DUPLICATE_IN_SPACES))
    return root


@dataclass
class Outcome:
    code: int
    stderr: str
    left: set  # what the case's directory holds afterwards, relative to it


def _left(tmp: Path) -> set:
    return {str(p.relative_to(tmp)) for p in tmp.rglob("*")}


def _subprocess(name: str, case: Case, base: Path) -> Outcome:
    tmp, args = _prepare(name, case, base)
    expected = _left(tmp)
    root = _tree_with_a_key_twice(base / f"{name}-tree") if case.tree else REPO
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE")}
    env.update(PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-m", "pipelines.sweep", *args], cwd=tmp, env=env, capture_output=True,
                          text=True, timeout=180)
    return Outcome(proc.returncode, proc.stderr, _left(tmp) - expected)


@pytest.fixture(scope="module")
def subprocess_outcomes(tmp_path_factory):
    base = tmp_path_factory.mktemp("profile-input")
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(_subprocess, name, case, base) for name, case in CASES.items() if case.sub}
        return {name: f.result() for name, f in futures.items()}


def _in_process(name: str, case: Case, base: Path, monkeypatch, capsys) -> Outcome:
    from pipelines import cli, sweep as sweep_cli
    from study.sweep import names

    tmp, args = _prepare(name, case, base)
    expected = _left(tmp)
    for variable in (names.MLFLOW_TRACKING_URI, names.OPTUNA_STORAGE, names.OPTSTUDY_COMMAND):
        monkeypatch.delenv(variable, raising=False)  # and put back afterwards, as the sweep sets one
    monkeypatch.chdir(tmp)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        cli.run(sweep_cli.main, args)
    return Outcome(exited.value.code, capsys.readouterr().err, _left(tmp) - expected)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2_and_nothing_written(name, request, tmp_path, monkeypatch, capsys):
    case = CASES[name]
    out = (request.getfixturevalue("subprocess_outcomes")[name] if case.sub
           else _in_process(name, case, tmp_path, monkeypatch, capsys))
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    shown = f"exit {out.code}, stderr:\n{out.stderr}"
    assert out.code == 2, shown
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    for word in case.words:
        assert word in lines[0], f"{word!r} not named; {shown}"
    assert not out.left, f"written despite bad input: {sorted(out.left)}; {shown}"


# --- the edges of the bounds -------------------------------------------------------------------------------------
AT_MOST = ["trials=10000", "population=1024", "epochs=10000", "epochs.iris=10000", "network.hidden=4096",
           f"network.hidden={','.join(['4'] * 16)}", "seeds=1000", f"tuning_seed={2**32 - 1}", "tuning_seed=1",
           f"sampler.seed={2**31 - 1}", "sampler.n_startup_trials=10000", "pruner.n_startup_trials=10000",
           "pruner.n_warmup_steps=10000", "lease_seconds=86400", "name=" + "n" * 100, "name=a", "name=v1.2_b-3"]


@pytest.mark.parametrize("override", AT_MOST, ids=lambda o: o[:40])
def test_each_bound_itself_is_accepted(override):
    """The bounds refuse one past the largest value a study may want (the cases above), not the value itself."""
    cfg = config.load_sweep("smoke", [*SMALL, override])
    assert cfg.hash != config.load_sweep("smoke", SMALL).hash, "the override was not applied"


def test_seeds_at_their_bounds_are_valid_everywhere_they_go():
    """The tuning seed goes as it is into the split, the initial weights and the data order (study.sweep.cell); at
    its bound every one of them takes it, and one more is what scikit-learn refuses: the bound is the real one.
    Each cell's sampler seed is derived from the sampler seed (study.sweep.tuning.studies): at its bound every cell's
    TPE and random samplers are made and sample."""
    import optuna

    from study.core import batches
    from study.sweep import cell, tuning

    cfg = config.load_sweep("smoke", ["datasets=iris,moons", "optimizers=gd,adam", "batch_sizes=full,32",
                                      f"tuning_seed={2**32 - 1}", f"sampler.seed={2**31 - 1}"])
    seed = cfg.profile.tuning_seed
    split = data.load("iris", seed)
    net = cell.network(cfg, split)
    assert net.init(seed, 2).shape == (2, net.n_params)
    assert len(list(batches.BatchIterator(90, 32, seed=seed).epoch())) == 3
    with pytest.raises(ValueError):
        data.load("iris", seed + 1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    for one in cfg.cells():
        for arm in tuning.ARMS:
            study = tuning.cell_study(storage, cfg, one, arm)
            assert 0 < tuning.ask(study, cfg, one, arm, 0, "w")[1]["eta"]


def test_the_split_check_keeps_its_promise_for_every_seed():
    """At the smallest validation fraction the check lets through (in thousandths), every part of every
    classification set holds every class, whatever the seed."""
    for name, spec in data.DATASETS.items():
        if spec.task != "classification":
            continue
        fraction = next(k / 1000 for k in range(1, 900) if _split_passes(name, k / 1000))
        classes = len(np.unique(spec.load()[1]))
        for seed in range(8):
            split = data.load(name, seed, fraction, 0.2)
            for part in ("train", "val", "test"):
                assert len(np.unique(split.labels(part))) == classes, (name, fraction, seed, part)


def _split_passes(dataset: str, val: float) -> bool:
    try:
        config.load_sweep("smoke", [f"datasets={dataset}", "batch_sizes=full", f"split.val={val}"])
        return True
    except BadInput:
        return False


def test_the_split_sizes_are_scikit_learns():
    for name in ("iris", "wine", "digits", "diabetes"):
        n = len(data.DATASETS[name].load()[1])
        for val, test in ((0.2, 0.2), (0.1, 0.3), (0.05, 0.05), (0.15, 0.1)):
            split = data.load(name, 3, val, test)
            assert config.split_sizes(n, val, test) == {part: len(getattr(split, f"X_{part}"))
                                                         for part in ("train", "val", "test")}


# --- the memory estimate -----------------------------------------------------------------------------------------
def test_memory_estimate_of_a_small_profile_by_hand():
    """iris (150 samples: 90 train, 30 validation, 30 test; 4 features, 3 classes) with Adam at full batch, K = 4
    networks of 4-16-3, 8 epochs, 4 trials per arm with the random arm, 2 evaluation seeds: one cell."""
    cfg = config.load_sweep("smoke", ["datasets=iris", "optimizers=adam", "batch_sizes=full", "population=4"])
    p = cfg.profile
    assert (p.trials, cfg.epochs_of("iris"), p.network.hidden, len(cfg.seeds), p.random_arm) == (4, 8, (16,), 2, True)
    estimate = memory.largest_cell(cfg)
    params = (4 * 16 + 16) + (16 * 3 + 3)  # 131
    assert estimate.cell == ("iris", "adam", "full")
    assert estimate.parts == {
        "networks": 4 * params * 8 * (5 + 2 * 2),  # 5 copies of (K, P) and Adam's m and v, twice
        "activations": 4 * 90 * (16 + 3) * 8 * 3,  # the training part through both layers, three times
        "history": 4 * 8 * 8 * 8,  # K x epochs x 8 metrics
        "curves": (4 * 2 + 2 * 2) * 8 * 8 * (32 + 8),  # 12 runs x epochs x metrics, Python floats then parquet
        "journal": 4 * 2 * 8 * 600,  # trials x arms x epochs of the sweep's only cell
        "dataset": 150 * (4 + 3) * 8 * 4,
        "process": 300 * 2**20,
    }
    assert estimate.total == 37_728 + 164_160 + 2_048 + 30_720 + 38_400 + 33_600 + 314_572_800
    assert estimate.largest == "process"


def test_the_largest_cell_is_the_one_that_needs_most():
    cfg = config.load_sweep("smoke", ["datasets=iris,digits", "optimizers=gd,adam", "batch_sizes=full,32",
                                      "population.full=8", "population.32=2", "network.hidden=256"])
    estimate = memory.largest_cell(cfg)
    assert estimate.cell == ("digits", "adam", "full")  # the most inputs, the most state, the largest population
    assert all(memory.cell_estimate(cfg, c, {d: memory.dataset_shape(d, 0.2, 0.2) for d in cfg.profile.datasets}).total
               <= estimate.total for c in cfg.cells())


def test_the_journal_counts_only_when_the_storage_is_a_journal_file():
    """Every worker replays Optuna's journal file whole; a database is read one study at a time. A grid of 120
    cells of 1,000 trials and epochs each is 144 GB of journal, but one cell alone needs less than a gigabyte."""
    grid = ["datasets=iris,moons,wine,digits", "optimizers=gd,momentum,nag,adagrad,rmsprop,adam",
            "batch_sizes=full,128,64,32,1", "trials=1000", "epochs=1000"]
    cfg = config.load_sweep("smoke", grid)
    with_journal, without = memory.largest_cell(cfg), memory.largest_cell(cfg, journal=False)
    assert with_journal.parts["journal"] == 120 * 1000 * 2 * 1000 * 600 and without.parts["journal"] == 0
    assert without.total < 2**30 and with_journal.total - without.total == with_journal.parts["journal"]
    if memory.available()[0] < with_journal.total:  # else this machine holds even the journal
        with pytest.raises(BadInput, match=r"smoke.yaml: trials, epochs: .*\(journal "):
            memory.refuse_if_too_large(cfg, "smoke.yaml")
    memory.refuse_if_too_large(cfg, "smoke.yaml", journal=False)


def test_the_machines_memory_is_read():
    have, source = memory.available()
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < have <= physical and source
    assert memory.size(512) == "512 B" and memory.size(1.5 * 2**30) == "1.5 GB"


def test_too_many_workers_for_the_memory_are_refused(tmp_path, monkeypatch, capsys):
    """A cell that needs a third of what this machine has fits alone, not four times over: --workers 4 is refused
    in one line (nothing written), the same profile passes the one-worker check."""
    if MOST_WORKERS < 4:
        pytest.skip("needs a machine where --workers 4 is within the bound")
    have, _ = memory.available()
    grid = ["datasets=iris", "optimizers=gd,momentum,nag,adam", "batch_sizes=full", "network.hidden=4096,4096"]
    one = memory.largest_cell(config.load_sweep("smoke", [*grid, "population=1"]))
    k = max(1, int(have / 3 / (one.parts["networks"] + one.parts["activations"])))
    assert k <= 1024, "the machine has more memory than the bounds can fill; the test needs another grid"
    cfg = config.load_sweep("smoke", [*grid, f"population={k}"])
    memory.refuse_if_too_large(cfg, "smoke.yaml")  # alone it fits
    with pytest.raises(BadInput):  # checked first: were it not refused, the command below would train 4 of them
        memory.refuse_too_many_workers(cfg, 4)
    case = Case(["--workers", "4", *grid, f"population={k}"], ["error: --workers: 4 workers need about"])
    out = _in_process("workers-memory", case, tmp_path, monkeypatch, capsys)
    assert out.code == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert case.words[0] in out.stderr and "at most" in out.stderr and not out.left, out.stderr


# --- the loader, on every file under conf/ ------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(CONF.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONF)))
def test_a_key_twice_anywhere_under_conf_is_refused(path, tmp_path):
    """The file's first key written again at its end, and its first key inside a block written again on the next
    line: each is one line naming the dotted key and both lines."""
    text = path.read_text()
    text += "" if text.endswith("\n") else "\n"
    line = lambda at: text.count("\n", 0, at) + 1  # noqa: E731
    top = re.search(r"^(\w+):", text, re.M)
    variants = [(text + f"{top.group(1)}: 1\n", top.group(1), (line(top.start()), text.count("\n") + 1))]
    nested = re.search(r"^  (\w+):.*\n", text, re.M)
    if nested:  # smoke.yaml writes every block on one line
        parent = re.findall(r"^(\w+):", text[:nested.start()], re.M)[-1]
        variants.append((text[:nested.end()] + nested.group(0) + text[nested.end():], f"{parent}.{nested.group(1)}",
                         (line(nested.start()), line(nested.start()) + 1)))
    for changed, dotted, lines in variants:
        bad = tmp_path / path.name
        bad.write_text(changed)
        with pytest.raises(BadInput) as caught:
            loader.read_yaml(bad)
        assert str(caught.value) == f"{loader.shown(bad)}: {dotted}: written twice in one mapping (lines " \
                                    f"{lines[0]} and {lines[1]}); keep one"


def test_merged_keys_and_aliases_are_not_duplicates(tmp_path):
    """``<<: *base`` and then a key of base is an override (what a merge is for); aliases nested ten deep are read
    at once, not walked ten billion times."""
    laughs = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 11))
    path = tmp_path / "ok.yaml"
    path.write_text("base: &base {a: 1, b: 2}\nmine:\n  <<: *base\n  b: 3\nl0: &l0 [x]\n" + laughs)
    loaded = loader.read_yaml(path)
    assert loaded["mine"] == {"a": 1, "b": 3} and len(loaded["l10"]) == 10


def test_the_shipped_profiles_hash_as_before():
    """The hash names a sweep's records: these are the hashes the code computed before the checks of issue 16
    (in a checkout of that code, ``.venv/bin/python -c "from study.sweep import config;
    print(config.load_sweep('default').hash)"``, and the same for smoke and full)."""
    assert {p: config.load_sweep(p).hash for p in ("smoke", "default", "full")} == {
        "smoke": "b7192bbcdad7", "default": "f00140f4bd16", "full": "952723b3696c"}
    assert yaml.safe_load(SMOKE)["name"] == "smoke"
