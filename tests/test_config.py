"""The sweep's configuration: every file under conf/ loads, the protocol's pinned numbers are what the issue says,
overrides work, and every kind of bad input is one line on stderr, exit status 2 and nothing written.

Bad input is tried through the real command line (``python -m pipelines.sweep`` in a subprocess). The subprocesses
start together in a module fixture (each pays ~2 s of imports; run one after the other they would cost a minute),
and each case's test then looks at its own result. A search-space file cannot be chosen on the command line, so its
bad ranges are tried on ``study.sweep.config.load_search_spaces`` with temporary files, and the two worst (an inverted
range, a NaN bound) also through the CLI of a copy of the code whose ``conf/search_spaces.yaml`` carries them.
"""
from __future__ import annotations

import concurrent.futures
import math
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from study.core import hyperparams, optim
from study.errors import BadInput
from study.schema.sweep import RangeSpec, Sweep
from study.sweep import config

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
PROFILES = sorted((CONF / "sweep").glob("*.yaml"))
ALL_OPTIMIZERS = ("gd", "momentum", "nag", "adagrad", "rmsprop", "adam")

# --- What the sweep issue pinned, widened where a default sweep put tuned values on an edge (issue 12) ----------
ETA = {"gd": (1e-4, 10.0), "momentum": (1e-6, 10.0), "nag": (1e-6, 10.0), "adagrad": (1e-4, 10.0),
       "rmsprop": (1e-5, 1.0), "adam": (1e-5, 3.0)}
ONE_MINUS = {"gamma": (1e-4, 1.0), "beta": (1e-5, 0.5), "beta1": (1e-5, 1.0), "beta2": (1e-6, 1.0)}
EPS_FIXED, EPS_TUNED = 1e-8, (1e-10, 1.0)
DEFAULTS = {"gd": {"eta": 0.01}, "momentum": {"eta": 0.01, "gamma": 0.9}, "nag": {"eta": 0.01, "gamma": 0.9},
            "adagrad": {"eta": 0.01, "eps": 1e-8}, "rmsprop": {"eta": 0.001, "beta": 0.9, "eps": 1e-8},
            "adam": {"eta": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}}
PROFILE_KEYS = ("name", "datasets", "optimizers", "batch_sizes", "trials", "epochs", "seeds", "population",
                "network", "sampler", "pruner")


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text.strip(), f"not one line: {text!r}"
    return text


# --- Every YAML loads ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(CONF.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONF)))
def test_every_yaml_under_conf_is_a_mapping(path):
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict) and loaded, f"{path} is not a non-empty mapping"


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_profile_loads_by_path_and_by_name(path):
    raw = yaml.safe_load(path.read_text())
    missing = [k for k in PROFILE_KEYS if k not in raw]
    assert not missing, f"{path.name} lacks {missing}"
    cfg = config.load_sweep(path)
    p = cfg.profile
    assert cfg.hash == config.load_sweep(path.stem).hash
    assert isinstance(cfg.name, str) and cfg.name and "/" not in cfg.name
    assert all(cfg.epochs_of(d) >= 1 for d in p.datasets)
    assert p.trials >= 1 and len(cfg.seeds) >= 1
    assert p.tuning_seed not in cfg.seeds, "tuning uses its own seed, distinct from the evaluation seeds"
    assert set(cfg.spaces) == set(p.optimizers)
    assert len(cfg.cells()) == len(p.datasets) * len(p.optimizers) * len(p.batch_sizes)
    assert len(set(cfg.cells())) == len(cfg.cells())
    assert all(b == "full" or int(b) >= 1 for b in p.batch_sizes)


def test_search_spaces_file_loads_both_ways():
    for tune_eps in (False, True):
        spaces = config.load_search_spaces(CONF / "search_spaces.yaml", tune_eps=tune_eps)
        assert set(spaces) == set(optim.OPTIMIZERS)
        for name, space in spaces.items():
            assert set(space) == set(optim.OPTIMIZERS[name].hyper)
            assert all(isinstance(r, RangeSpec) for r in space.values())


def _schema_of(path: Path):
    from study.schema import lecture, report, sweep

    if path.parent.name == "sweep":
        return sweep.Profile
    return {"search_spaces.yaml": sweep.search_spaces_model(), "lecture.yaml": lecture.Lecture,
            "report.yaml": report.Report, "claims.yaml": report.Claims}[path.name]


@pytest.mark.parametrize("path", sorted(CONF.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONF)))
def test_every_conf_file_is_read_into_a_frozen_model_that_refuses_unknown_keys(path, tmp_path):
    """One schema: every file under conf/ has its pydantic model (a new file without one fails here), is read
    through the one loader into an immutable object, and an undeclared key anywhere is one line naming the file
    and the dotted key."""
    import pydantic
    from study.schema import loader

    model = _schema_of(path)
    loaded = loader.load(model, path)
    assert isinstance(loaded, model) and model.model_config["extra"] == "forbid"
    first = next(iter(model.model_fields))
    with pytest.raises(pydantic.ValidationError):
        setattr(loaded, first, getattr(loaded, first))
    raw = yaml.safe_load(path.read_text())
    nested = next((k for k, v in raw.items() if isinstance(v, dict)), None)
    for where in filter(None, [None, nested]):  # at the top level, and inside the first block
        changed = yaml.safe_load(path.read_text())
        (changed[where] if where else changed)["surplus_key"] = 1
        bad = tmp_path / path.name
        bad.write_text(yaml.safe_dump(changed))
        with pytest.raises(BadInput) as caught:
            loader.load(model, bad)
        dotted = f"{where}.surplus_key" if where else "surplus_key"
        message = one_line(caught.value)
        assert message.startswith(f"{loader.shown(bad)}: {dotted}: "), message
        # a block of the schema knows no such key; a mapping of names (epochs per dataset) knows no such name
        assert message.split(": ")[2].startswith(("unknown", "not in the sweep")), message


@pytest.mark.parametrize("reader", ["profile", "search_spaces", "lecture", "report"])
def test_every_loader_words_a_yaml_error_the_same_way(reader, tmp_path):
    from study.lecture import toy as lecture
    from study.report import settings

    broken = "name: broken\ndatasets: [iris, moons\ntrials: 4\n"
    for name in ("report.yaml", "claims.yaml", "lecture.yaml"):
        (tmp_path / name).write_text((CONF / name).read_text())
    target = {"profile": "p.yaml", "search_spaces": "s.yaml", "lecture": "lecture.yaml", "report": "report.yaml"}
    path = tmp_path / target[reader]
    path.write_text(broken)
    load = {"profile": lambda: config.load_sweep(path), "search_spaces": lambda: config.load_search_spaces(path),
            "lecture": lambda: lecture.load_settings(path), "report": lambda: settings.load(tmp_path)}[reader]
    with pytest.raises(BadInput) as caught:
        load()
    assert f"{path.name}: not valid YAML (malformed at line 3): " in one_line(caught.value), caught.value


def test_yaml_exponent_floats_read_as_numbers_in_every_file(tmp_path):
    """1e-8 is a number (YAML 1.2), not the text YAML 1.1 makes of it, in files as in overrides."""
    text = (CONF / "search_spaces.yaml").read_text()
    assert "eps: {fixed: 1.0e-8}" in text
    (tmp_path / "s.yaml").write_text(text.replace("eps: {fixed: 1.0e-8}", "eps: {fixed: 1e-8}"))
    assert config.load_search_spaces(tmp_path / "s.yaml") == config.load_search_spaces(CONF / "search_spaces.yaml")


def test_the_toy_problem_is_written_once_the_claims_read_the_lectures(tmp_path):
    """conf/claims.yaml checks its claims on the lecture's toy problem: its start, epochs and settings come from
    conf/lecture.yaml, so editing the lecture's start moves the claims' start with it."""
    from study.lecture import toy as lecture
    from study.report import settings

    assert not {"start", "epochs", "gamma", "beta", "eps", "lecture_eta"} & set(
        yaml.safe_load((CONF / "claims.yaml").read_text())["toy"])
    shipped = lecture.load_settings(CONF / "lecture.yaml")
    toy = settings.load().toy
    assert toy.start == (shipped["start"]["w"], shipped["start"]["b"]) and toy.epochs == shipped["epochs"]
    assert (toy.lecture_eta, toy.gamma, toy.beta, toy.eps) == (
        shipped["optimizers"]["gd"]["eta"], shipped["optimizers"]["momentum"]["gamma"],
        shipped["optimizers"]["rmsprop"]["beta"], shipped["optimizers"]["rmsprop"]["eps"])
    for name in ("report.yaml", "claims.yaml"):
        (tmp_path / name).write_text((CONF / name).read_text())
    text = (CONF / "lecture.yaml").read_text()
    assert "start: {w: -2.0, b: -2.0}" in text
    (tmp_path / "lecture.yaml").write_text(text.replace("start: {w: -2.0, b: -2.0}", "start: {w: 1.5, b: -0.5}"))
    assert settings.load(tmp_path).toy.start == (1.5, -0.5)


def test_other_settings_files_load_through_their_loaders():
    from study.lecture import toy as lecture
    from study.report import settings

    assert lecture.load_settings(CONF / "lecture.yaml")
    assert settings.load(CONF)


# --- The protocol's numbers ------------------------------------------------------------------------------------
def test_default_profile_is_the_issue_grid():
    cfg = config.load_sweep("default")
    p = cfg.profile
    assert len(p.datasets) >= 12
    assert {"moons", "circles", "iris", "wine", "breast_cancer", "digits", "sparse"} <= set(p.datasets)
    assert set(p.optimizers) == set(ALL_OPTIMIZERS) and len(p.optimizers) == 6
    assert set(p.batch_sizes) == {"full", "128", "64", "32", "1"} and len(p.batch_sizes) == 5
    assert p.trials >= 20
    assert cfg.seeds == (0, 1, 2, 3, 4)
    assert not p.tune_eps and p.random_arm  # every profile has the random-search arm


def test_full_profile_is_larger_tunes_eps_and_has_a_random_arm():
    default, full = config.load_sweep("default"), config.load_sweep("full")
    assert full.profile.trials > default.profile.trials and len(full.seeds) > len(default.seeds)
    assert set(full.profile.datasets) >= set(default.profile.datasets)
    assert set(full.profile.optimizers) == set(ALL_OPTIMIZERS)
    assert all(full.epochs_of(d) > default.epochs_of(d) for d in default.profile.datasets)
    assert full.profile.tune_eps and full.profile.random_arm


@pytest.mark.parametrize("name", ALL_OPTIMIZERS)
@pytest.mark.parametrize("tune_eps", [False, True], ids=["eps-fixed", "eps-tuned"])
def test_search_space_bounds_are_pinned(name, tune_eps):
    space = config.load_search_spaces(CONF / "search_spaces.yaml", tune_eps=tune_eps)[name]
    assert set(space) == set(optim.OPTIMIZERS[name].defaults), "tune exactly the optimizer's hyperparameters"
    low, high = ETA[name]
    assert space["eta"] == RangeSpec(low=low, high=high, log=True, one_minus=False)
    for param, (low, high) in ONE_MINUS.items():
        if param in space:
            assert space[param] == RangeSpec(low=low, high=high, log=True, one_minus=True), param
    if "eps" in space:
        if tune_eps:
            assert space["eps"] == RangeSpec(low=EPS_TUNED[0], high=EPS_TUNED[1], log=True, one_minus=False)
        else:
            assert space["eps"].fixed == EPS_FIXED


@pytest.mark.parametrize("profile", ["default", "full"])
def test_profiles_tune_eps_only_in_full(profile):
    cfg = config.load_sweep(profile)
    for name, space in cfg.spaces.items():
        if "eps" in space:
            if profile == "full":
                assert space["eps"] == RangeSpec(low=EPS_TUNED[0], high=EPS_TUNED[1], log=True, one_minus=False)
            else:
                assert space["eps"].fixed == EPS_FIXED


@pytest.mark.parametrize("name", ALL_OPTIMIZERS)
def test_defaults_are_the_issue_values_and_the_registry_defaults(name):
    assert {k: float(v) for k, v in optim.OPTIMIZERS[name].defaults.items()} == DEFAULTS[name]
    for path in PROFILES:
        cfg = config.load_sweep(path)
        assert cfg.defaults(name) == DEFAULTS[name], path.name
        if name in cfg.profile.optimizers:
            assert cfg.stored()["defaults"][name] == DEFAULTS[name], path.name


# --- Overrides -----------------------------------------------------------------------------------------------------
SMOKE_EPOCHS = yaml.safe_load((CONF / "sweep" / "smoke.yaml").read_text())["epochs"]


def test_overrides_from_the_issue_example():
    cfg = config.load_sweep("smoke", ["datasets=iris,moons", "optimizers=gd,adam", "batch_sizes=full,32",
                                      "trials=4", "epochs=5", "seeds=2"])
    p = cfg.profile
    assert p.datasets == ("iris", "moons") and p.optimizers == ("gd", "adam")
    assert p.batch_sizes == ("full", "32")
    assert p.trials == 4 and p.per_name("epochs") == {"iris": 5, "moons": 5} and cfg.seeds == (0, 1)
    assert len(cfg.cells()) == 8
    assert set(cfg.spaces) == {"gd", "adam"}


def test_a_subset_of_datasets_keeps_the_profiles_own_epochs():
    """default.yaml pins epochs for fifteen datasets; choosing two of them on the command line keeps theirs."""
    full = config.load_sweep("default")
    cfg = config.load_sweep("default", ["datasets=iris,moons", "batch_sizes=full,32"])
    assert cfg.profile.per_name("epochs") == {"iris": full.epochs_of("iris"), "moons": full.epochs_of("moons")}
    assert full.epochs_of("iris") != full.epochs_of("moons"), "the test needs two datasets with different epochs"
    assert cfg.profile.per_name("population") == {"full": full.population_of("full"), "32": full.population_of("32")}


def test_single_item_list_and_nested_keys():
    assert isinstance(SMOKE_EPOCHS, int), "the test assumes smoke.yaml gives one epoch count for all datasets"
    cfg = config.load_sweep("smoke", ["datasets=iris,moons", "epochs.iris=7", "sampler.name=random",
                                      "pruner.warmup_fraction=0.5", "network.hidden=8,4"])
    assert (cfg.epochs_of("iris"), cfg.epochs_of("moons")) == (7, SMOKE_EPOCHS)
    p = cfg.profile
    assert p.sampler.name == "random" and p.pruner.warmup_fraction == 0.5 and p.network.hidden == (8, 4)
    assert config.load_sweep("smoke", ["datasets=iris"]).profile.datasets == ("iris",)
    assert config.load_sweep("smoke", ["batch_sizes=1"]).profile.batch_sizes == ("1",)


def test_float_overrides_in_exponent_notation():
    cfg = config.load_sweep("smoke", ["lease_seconds=1e-3", "split.val=1e-1", "split.test=0.25"])
    assert cfg.profile.lease_seconds == pytest.approx(1e-3) and isinstance(cfg.profile.lease_seconds, float)
    assert cfg.profile.split.val == pytest.approx(0.1) and cfg.profile.split.test == pytest.approx(0.25)


def test_name_override_and_the_config_hash():
    base = config.load_sweep("smoke")
    assert config.load_sweep("smoke").hash == base.hash, "the hash is a function of the config"
    renamed = config.load_sweep("smoke", ["name=my-sweep"])
    assert renamed.name == "my-sweep" and renamed.hash != base.hash
    assert config.load_sweep("smoke", ["trials=5"]).hash != base.hash


# --- The typed sweep and the record the stores keep of it --------------------------------------------------------
STORED_KEYS = ["name", "datasets", "optimizers", "batch_sizes", "trials", "epochs", "seeds", "tuning_seed",
               "population", "hidden", "activation", "sampler", "sampler_seed", "n_startup_trials", "pruner",
               "pruner_startup_trials", "pruner_warmup_fraction", "tuning_runs", "random_arm", "tune_eps", "val_fraction",
               "test_fraction", "lease_seconds", "search_spaces", "defaults", "source"]
VARIANTS = [("smoke", []), ("default", []), ("full", []),
            ("smoke", ["datasets=iris,diabetes", "optimizers=momentum,adam", "population.full=3", "tune_eps=true",
                       "sampler.name=random", "pruner.name=none", "network.hidden=8,4", "split.val=0.1"])]


@pytest.mark.parametrize("profile,overrides", VARIANTS, ids=["smoke", "default", "full", "overridden"])
def test_the_stored_record_is_flat_json_and_reads_back_as_the_same_sweep(profile, overrides):
    """What the stores keep (``stored``: the sweep's _meta record, config.yaml) is the flat mapping every earlier
    version wrote, in the same order, in JSON's types; ``from_stored`` reads it back as the sweep it came from (the
    report's way in), and the hash is a function of that mapping."""
    import json

    cfg = config.load_sweep(profile, overrides)
    stored = cfg.stored()
    assert list(stored) == STORED_KEYS
    assert json.dumps(json.loads(json.dumps(stored))) == json.dumps(stored) and isinstance(stored["seeds"], list)
    assert stored["seeds"] == list(cfg.seeds) and stored["epochs"] == cfg.profile.per_name("epochs")
    assert stored["pruner_warmup_fraction"] == cfg.profile.pruner.warmup_fraction
    assert stored["tuning_runs"] == cfg.profile.tuning_runs
    assert stored["val_fraction"] == cfg.profile.split.val and stored["hidden"] == list(cfg.profile.network.hidden)
    back = Sweep.from_stored(stored)  # the same sweep (its profile's mappings now name every swept name)
    assert json.dumps(back.stored()) == json.dumps(stored) and back.hash == cfg.hash
    assert back.cells() == cfg.cells() and back.spaces == cfg.spaces and back.seeds == cfg.seeds
    fixed = [r for space in stored["search_spaces"].values() for r in space.values() if r["fixed"] is not None]
    assert fixed or cfg.profile.tune_eps, "the test should meet a fixed range"
    assert all(math.isnan(r["low"]) and math.isnan(r["high"]) for r in fixed)


def test_an_older_record_reads_back_with_the_profile_defaults_and_a_bad_one_is_one_line():
    cfg = config.load_sweep("smoke", SMALL)
    older = {k: v for k, v in cfg.stored().items() if k not in ("lease_seconds", "tune_eps", "pruner_warmup_fraction",
                                                                 "tuning_runs")}
    back = Sweep.from_stored(older)
    assert back.profile.lease_seconds == 120.0 and back.profile.tune_eps is False
    assert back.profile.pruner.warmup_fraction == 0.2 and back.profile.tuning_runs == 1
    assert back.cells() == cfg.cells()
    bad = {**cfg.stored(), "trials": 0}
    with pytest.raises(BadInput) as caught:
        Sweep.from_stored(bad, where="runs/optuna/x.journal")
    assert one_line(caught.value).startswith("runs/optuna/x.journal: profile.trials: "), caught.value


def test_a_sweep_needs_a_space_for_exactly_its_optimizers_hyperparameters():
    from study.schema import loader

    cfg = config.load_sweep("smoke", SMALL)
    with pytest.raises(BadInput) as caught:
        loader.validate(Sweep, {"profile": cfg.profile,
                                "spaces": {**cfg.spaces, "adam": {"eta": cfg.spaces["adam"]["eta"]}}}, "here")
    assert one_line(caught.value) == "here: spaces.adam: must cover exactly eta, beta1, beta2, eps", caught.value


def test_an_optimizer_without_a_block_is_tuned_over_its_registry_ranges(tmp_path, monkeypatch):
    """An optimizer added in one file (its registry entry) can be swept: conf/search_spaces.yaml's block wins where
    there is one, else the entry's own ranges are the search space."""
    import dataclasses

    raw = _spaces_raw()
    del raw["nag"]
    path = tmp_path / "spaces.yaml"
    path.write_text(yaml.safe_dump(raw))
    spaces = config.load_search_spaces(path)
    registry = {h: RangeSpec(**dataclasses.asdict(r)) for h, r in optim.OPTIMIZERS["nag"].search_space().items()}
    assert spaces["nag"] == registry
    assert spaces["momentum"] == config.load_search_spaces()["momentum"], "a block is read as written"
    tuned = config.load_search_spaces(path, tune_eps=True)
    assert all(s["eps"] == tuned["adam"]["eps"] for s in tuned.values() if "eps" in s)
    # a seventh optimizer, declared in the registry alone, with a range of its own
    wide = hyperparams.learning_rate(0.05, 1e-3, 5.0)
    monkeypatch.setitem(optim.OPTIMIZERS, "gd_wide", dataclasses.replace(optim.OPTIMIZERS["gd"], name="gd_wide",
                                                                        hyperparameters=(wide,)))
    cfg = config.load_sweep("smoke", [*SMALL, "optimizers=gd,gd_wide"])
    assert cfg.spaces["gd_wide"] == {"eta": RangeSpec(low=1e-3, high=5.0)} and cfg.defaults("gd_wide") == {"eta": 0.05}
    assert cfg.stored()["search_spaces"]["gd_wide"]["eta"]["high"] == 5.0


def test_overrides_leave_the_raw_profile_alone():
    raw = yaml.safe_load((CONF / "sweep" / "smoke.yaml").read_text())
    before = yaml.safe_dump(raw)
    changed = config.apply_overrides(raw, ["trials=99", "epochs.iris=3", "datasets=iris"])
    assert yaml.safe_dump(raw) == before
    assert changed["trials"] == 99 and changed["datasets"] == ["iris"]


# --- Bad search spaces, on the loader --------------------------------------------------------------------------
def _spaces_raw() -> dict:
    return yaml.safe_load((CONF / "search_spaces.yaml").read_text())


def _edit(raw: dict, dotted: str, value):
    node, parts = raw, dotted.split(".")
    for part in parts[:-1]:
        node = node[part]
    if value is _DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return raw


_DELETE = object()
BAD_SPACES = {
    # id: (edits, tune_eps, words the message must contain)
    "inverted-range": ([("gd.search.eta", {"low": 10.0, "high": 1e-4, "log": True})], False, ["gd.search.eta"]),
    "empty-range": ([("adam.search.eta", {"low": 0.01, "high": 0.01})], False, ["adam.search.eta"]),
    "nan-bound": ([("momentum.search.eta.low", float("nan"))], False, ["momentum.search.eta.low"]),
    "infinite-bound": ([("nag.search.eta.high", float("inf"))], False, ["nag.search.eta.high"]),
    "negative-log-bound": ([("momentum.search.gamma.low", -0.1)], False, ["momentum.search.gamma.low"]),
    "one-minus-above-1": ([("rmsprop.search.beta.high", 1.5)], False, ["rmsprop.search.beta.high"]),
    "text-bound": ([("gd.search.eta.high", "ten")], False, ["gd.search.eta.high"]),
    "missing-bound": ([("adagrad.search.eta.high", _DELETE)], False, ["adagrad.search.eta"]),
    "missing-param": ([("adam.search.beta2", _DELETE)], False, ["adam.search", "beta2"]),
    "unknown-param": ([("gd.search.gamma", {"low": 0.1, "high": 0.5})], False, ["gd.search.gamma"]),
    "unknown-optimizer": ([("sgd", {"search": {"eta": {"low": 0.1, "high": 1.0}}, "default": {"eta": 0.1}})],
                          False, ["sgd"]),
    "block-not-a-mapping": ([("gd", 5)], False, ["gd"]),
    # the defaults live in the optimizer registry only (study/core/optim.py): a `default` block here is refused
    "a-default-block": ([("gd.default", {"eta": 0.01})], False, ["gd.default", "unknown key"]),
    "bool-bound": ([("adam.search.eta.low", True)], False, ["adam.search.eta.low"]),
    "negative-fixed-eps": ([("adam.search.eps", {"fixed": -1e-8})], False, ["adam.search.eps"]),
    "eps-tuned-missing": ([("eps_tuned", _DELETE)], True, ["eps_tuned"]),
    "eps-tuned-inverted": ([("eps_tuned", {"low": 1.0, "high": 1e-10})], True, ["eps_tuned"]),
}


@pytest.mark.parametrize("case", sorted(BAD_SPACES))
def test_bad_search_space_is_one_line_naming_file_and_key(case, tmp_path):
    edits, tune_eps, words = BAD_SPACES[case]
    raw = _spaces_raw()
    for dotted, value in edits:
        _edit(raw, dotted, value)
    path = tmp_path / f"spaces-{case}.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(BadInput) as caught:
        config.load_search_spaces(path, tune_eps=tune_eps)
    message = one_line(caught.value)
    assert path.name in message, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("text,words", [("gd: {search: [unclosed\n", ["malformed"]),
                                        ("- gd\n- adam\n", ["mapping"]),
                                        ("", ["mapping"])], ids=["malformed", "list", "empty"])
def test_search_space_file_of_the_wrong_shape(tmp_path, text, words):
    path = tmp_path / "spaces.yaml"
    path.write_text(text)
    with pytest.raises(BadInput) as caught:
        config.load_search_spaces(path)
    message = one_line(caught.value)
    assert path.name in message and all(w in message for w in words), message


# --- Bad input through the real CLI ----------------------------------------------------------------------------
def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _smoke_with(**changes) -> str:
    raw = yaml.safe_load((CONF / "sweep" / "smoke.yaml").read_text())
    raw.update(changes)
    return yaml.safe_dump(raw, sort_keys=False)


@dataclass
class Case:
    args: list  # after --runs-dir; "{tmp}" is replaced by the case's directory
    words: list  # the one line must contain each of these (the file and/or key, the problem)
    env: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)  # name -> text, written into the case's directory
    secret: str | None = None  # must not appear anywhere in the output
    tree: str = "repo"  # "repo", or "inverted" / "nan": a copy of the code with a broken search_spaces.yaml
    profile: str | None = "smoke"
    sub: bool = False  # in a subprocess, or in this process


CLOSED = free_port()
# In a subprocess (``sub=True``): one case of each kind of refusal, as a user meets it (a profile file that does not
# parse, an override the schema refuses, a batch larger than the data, an unknown flag, the wrong storage URL, the
# unreachable tracking server, a broken search_spaces.yaml in a copy of the code). In this process, through the
# same entry point (``pipelines.cli.run(pipelines.sweep.main)``, environment variables set with monkeypatch): the
# rest of the sweep issue's list and further cases, since what they check is the message (a subprocess each costs
# its imports: 2 s on an idle machine, 20-40 s on a loaded one with four at a time).
CASES = {
    "malformed-yaml": Case(["--profile", "{tmp}/bad.yaml"], ["bad.yaml", "malformed"], sub=True,
                           files={"bad.yaml": "name: broken\ndatasets: [iris, moons\ntrials: 4\n"}, profile=None),
    "yaml-list-not-mapping": Case(["--profile", "{tmp}/list.yaml"], ["list.yaml", "mapping"],
                                  files={"list.yaml": "- iris\n- moons\n"}, profile=None),
    "datasets-scalar": Case(["--profile", "{tmp}/shape.yaml"], ["shape.yaml", "datasets"],
                            files={"shape.yaml": _smoke_with(datasets=5)}, profile=None),
    "unknown-key-override": Case(["bogus=1"], ["bogus"], sub=True),
    "unknown-optimizer": Case(["optimizers=gd,sgd"], ["smoke.yaml", "optimizers", "sgd"]),
    "unknown-dataset": Case(["datasets=iris,mnist"], ["smoke.yaml", "datasets", "mnist"]),
    "batch-larger-than-training-set": Case(["datasets=iris", "batch_sizes=full,1000"], ["batch_sizes", "1000"],
                                           sub=True),
    "epochs-zero": Case(["epochs=0"], ["smoke.yaml", "epochs"]),
    "trials-negative": Case(["trials=-1"], ["smoke.yaml", "trials", "-1"]),
    "seeds-non-numeric": Case(["seeds=abc"], ["smoke.yaml", "seeds", "abc"]),
    "unknown-flag": Case(["--bogus"], ["--bogus"], sub=True),
    "runs-dir-not-writable": Case(["--runs-dir", "{tmp}/a-file/runs"], ["--runs-dir"],
                                  files={"a-file": "not a directory\n"}),
    "optuna-storage-refused": Case([], ["OPTUNA_STORAGE", "127.0.0.1"], secret="secret", sub=True,
                                   env={"OPTUNA_STORAGE": f"postgresql://u:secret@127.0.0.1:{CLOSED}/db"}),
    "optuna-storage-unknown-scheme": Case([], ["OPTUNA_STORAGE"], secret="secret",
                                          env={"OPTUNA_STORAGE": "redis://u:secret@127.0.0.1:1/0"}),
    "mlflow-server-down": Case([], ["MLFLOW_TRACKING_URI", f"127.0.0.1:{CLOSED}"], sub=True,
                               env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{CLOSED}"}),
    "mlflow-server-down-with-password": Case([], ["MLFLOW_TRACKING_URI"], secret="secret",
                                             env={"MLFLOW_TRACKING_URI": f"http://u:secret@127.0.0.1:{CLOSED}"}),
    # the search spaces cannot be chosen on the command line: a copy of the code carries the broken file
    "search-space-inverted-range": Case([], ["search_spaces.yaml", "gd.search.eta"], tree="inverted", sub=True),
    "search-space-nan-bound": Case([], ["search_spaces.yaml", "adam.search.eta.low"], tree="nan", sub=True),
    # in this process
    "unknown-key-in-file": Case(["--profile", "{tmp}/typo.yaml"], ["typo.yaml", "trails"],
                                files={"typo.yaml": _smoke_with(trails=4)}, profile=None),
    "epochs-list": Case(["--profile", "{tmp}/shape2.yaml"], ["shape2.yaml", "epochs"],
                        files={"shape2.yaml": _smoke_with(epochs=[1, 2])}, profile=None),
    "empty-profile": Case(["--profile", "{tmp}/empty.yaml"], ["empty.yaml", "mapping"],
                          files={"empty.yaml": "# nothing\n"}, profile=None),
    "profile-file-missing": Case(["--profile", "{tmp}/nowhere.yaml"], ["nowhere.yaml"], profile=None),
    "unknown-profile-name": Case(["--profile", "nosuchprofile"], ["--profile", "nosuchprofile"], profile=None),
    "override-without-value": Case(["trials"], ["trials"]),
    "unknown-nested-key": Case(["sampler.kind=tpe"], ["sampler.kind"]),
    "batch-size-zero": Case(["batch_sizes=full,0"], ["batch_sizes"]),
    "batch-size-text": Case(["batch_sizes=full,big"], ["batch_sizes", "big"]),
    "epochs-zero-for-one-dataset": Case(["datasets=iris,moons", "epochs.iris=0"], ["epochs.iris"]),
    "epochs-for-an-unknown-dataset": Case(["datasets=iris", "epochs.mnist=3"], ["epochs.mnist"]),
    "trials-fractional": Case(["trials=2.5"], ["trials"]),
    "seeds-negative": Case(["seeds=-2"], ["seeds"]),
    "nan-override": Case(["lease_seconds=nan"], ["lease_seconds"]),
    "negative-fraction": Case(["split.val=-0.1"], ["split.val"]),
    "duplicate-optimizer": Case(["optimizers=gd,gd"], ["optimizers"]),
    "empty-list": Case(["datasets="], ["datasets"]),
    "unknown-sampler": Case(["sampler.name=grid"], ["sampler.name", "grid"]),
    "workers-zero": Case(["--workers", "0"], ["--workers"]),
    "workers-non-numeric": Case(["--workers", "two"], ["--workers"]),
}
SMALL = ["datasets=iris", "optimizers=gd,adam", "batch_sizes=full", "trials=2", "epochs=2", "seeds=1"]


def _copy_with_bad_spaces(root: Path, kind: str) -> Path:
    """The code and conf/ copied, with one defect in conf/search_spaces.yaml."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("study", "pipelines", "conf"):
        shutil.copytree(REPO / part, root / part, ignore=ignore)
    raw = _spaces_raw()
    if kind == "inverted":
        _edit(raw, "gd.search.eta", {"low": 10.0, "high": 1e-4, "log": True})
    else:
        _edit(raw, "adam.search.eta.low", float("nan"))
    (root / "conf" / "search_spaces.yaml").write_text(yaml.safe_dump(raw))
    return root


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    runs_dir: Path
    files_written: list


def _prepare(name: str, case: Case, base: Path) -> tuple[Path, list, Path]:
    """The case's directory with its files, its argv, and its runs directory."""
    tmp = base / name
    tmp.mkdir()
    for file, text in case.files.items():
        (tmp / file).write_text(text)
    runs_dir = tmp / "runs"
    args = [a.replace("{tmp}", str(tmp)) for a in case.args]
    if "--runs-dir" in args:
        runs_dir = Path(args[args.index("--runs-dir") + 1])
    else:
        args = ["--runs-dir", str(runs_dir), *args]
    if case.profile and "--profile" not in args:
        args = ["--profile", case.profile, *args]
    if case.profile and not any("=" in a for a in case.args):
        args += SMALL  # a valid small grid, so that only the case's defect is wrong
    return tmp, args, runs_dir


def _written(runs_dir: Path) -> list:
    return [str(p) for p in runs_dir.rglob("*") if p.is_file()] if runs_dir.is_dir() else []


def _run_subprocess(name: str, case: Case, base: Path) -> Outcome:
    tmp, args, runs_dir = _prepare(name, case, base)
    root = REPO if case.tree == "repo" else _copy_with_bad_spaces(tmp / "tree", case.tree)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE")}
    env.update(PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1", **case.env)
    proc = subprocess.run([sys.executable, "-m", "pipelines.sweep", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=180)
    return Outcome(proc.returncode, proc.stdout, proc.stderr, runs_dir, _written(runs_dir))


@pytest.fixture(scope="module")
def cli_outcomes(tmp_path_factory):
    """Every subprocess case, four at a time."""
    base = tmp_path_factory.mktemp("bad-input")
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(_run_subprocess, name, case, base)
                   for name, case in CASES.items() if case.sub}
        return {name: f.result() for name, f in futures.items()}


def _run_in_process(name: str, case: Case, base: Path, monkeypatch, capsys) -> Outcome:
    from pipelines import cli, sweep as sweep_cli

    assert case.tree == "repo", "a copy of the code runs in a subprocess"
    tmp, args, runs_dir = _prepare(name, case, base)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(REPO)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        cli.run(sweep_cli.main, args)
    out = capsys.readouterr()
    return Outcome(exited.value.code, out.out, out.err, runs_dir, _written(runs_dir))


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_on_the_cli_is_one_line_exit_2_nothing_written(name, request, tmp_path, monkeypatch, capsys):
    case = CASES[name]
    if case.sub:
        out = request.getfixturevalue("cli_outcomes")[name]
    else:
        out = _run_in_process(name, case, tmp_path, monkeypatch, capsys)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    shown = f"exit {out.returncode}, stderr:\n{out.stderr}"
    assert out.returncode == 2, shown
    assert len(lines) == 1, f"expected exactly one line on stderr; {shown}"
    message = lines[0]
    assert message.startswith("error: "), shown
    for word in case.words:
        assert word in message, f"{word!r} not named; {shown}"
    if case.secret:
        assert case.secret not in out.stderr + out.stdout, f"the password is printed; {shown}"
    assert not out.files_written, f"written despite bad input: {out.files_written}; {shown}"
    assert not (out.runs_dir / "mlflow.db").exists() and not (out.runs_dir / "optuna").exists()


def test_a_good_command_line_passes_the_same_checks():
    """The control: the small grid the cases share is valid (so each case fails for its own defect only)."""
    cfg = config.load_sweep("smoke", SMALL)
    assert cfg.cells() == [("iris", "gd", "full"), ("iris", "adam", "full")]
    assert math.isfinite(cfg.profile.lease_seconds)
