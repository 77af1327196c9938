"""The optimizer registry declares each optimizer whole: label, colour, family and every hyperparameter's meaning,
valid range, default, averaging flag and fallback search range; and the one mapping between a hyperparameter and
the name and value it is searched under.

Loops over the registry: a new optimizer is checked without an edit here.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pydantic
import pytest
import yaml

from study.core import hyperparams as hp, optim
from study.schema.sweep import RangeSpec

ALL = sorted(optim.OPTIMIZERS)
CONF = Path(__file__).resolve().parents[1] / "conf"
# What the report (study/report/figures.py OPTIMIZER_COLORS) and the lecture (study/lecture/figures.py NAMES,
# ADAPTIVE) wrote before the registry carried them: the report's figures must keep their colours byte for byte.
REPORT_COLORS = {"gd": "#7f7f7f", "momentum": "#1f77b4", "nag": "#17becf", "adagrad": "#2ca02c",
                 "rmsprop": "#ff7f0e", "adam": "#d62728"}
LECTURE_NAMES = {"gd": "GD", "momentum": "Momentum GD", "nag": "NAG", "adagrad": "AdaGrad", "rmsprop": "RMSProp",
                 "adam": "Adam"}
REPORT_AVERAGING = {"momentum": ["gamma"], "nag": ["gamma"], "rmsprop": ["beta"], "adam": ["beta1", "beta2"]}


def test_the_six_keep_the_reports_colours_and_the_lectures_names_and_family():
    six = {name: optim.OPTIMIZERS[name] for name in REPORT_COLORS}
    assert {n: o.color for n, o in six.items()} == REPORT_COLORS
    assert {n: o.label for n, o in six.items()} == LECTURE_NAMES
    assert optim.adaptive()[:3] == ("adagrad", "rmsprop", "adam")
    assert {n: list(o.averaging) for n, o in six.items() if o.averaging} == REPORT_AVERAGING


def test_every_optimizer_has_its_own_label_and_colour():
    opts = optim.OPTIMIZERS.values()
    assert all(re.fullmatch(r"#[0-9a-f]{6}", o.color) for o in opts)
    assert len({o.color for o in opts}) == len(opts) and len({o.label for o in opts}) == len(opts)
    assert all(o.name == name for name, o in optim.OPTIMIZERS.items())


@pytest.mark.parametrize("name", ALL)
def test_every_hyperparameter_is_described_and_its_default_and_search_lie_where_it_is_valid(name):
    opt = optim.OPTIMIZERS[name]
    assert opt.hyper == tuple(h.name for h in opt.hyperparameters)
    assert opt.defaults == {h.name: h.default for h in opt.hyperparameters}
    for h in opt.hyperparameters:
        assert h.meaning and h.symbol and opt.hyperparameter(h.name) is h
        assert h.default in h.valid
        assert h.search.one_minus == h.averaging
        spec = RangeSpec(**dataclasses.asdict(h.search))  # the fallback is a valid conf entry, as the doc says
        assert spec.one_minus == h.averaging and spec.fixed == h.search.fixed
        if h.search.fixed is None:
            low, high = h.search.values()
            assert low in h.valid and high in h.valid and low < high
            x = hp.search_value(h.default, h.averaging)  # the default is reachable by tuning
            assert h.search.low <= x <= h.search.high
        else:
            assert h.search.fixed in h.valid


def test_defaults_are_a_fresh_copy():
    optim.OPTIMIZERS["adam"].defaults["eta"] = 1.0
    assert optim.OPTIMIZERS["adam"].defaults["eta"] == 0.001
    with pytest.raises(KeyError, match="no hyperparameter 'gamma'"):
        optim.OPTIMIZERS["adam"].hyperparameter("gamma")


def test_todays_search_spaces_search_as_1_minus_x_exactly_the_averaging_constants():
    """conf wins over the registry's flag, and today the two agree (the report's 1 - x panels follow the flag)."""
    spaces = yaml.safe_load((CONF / "search_spaces.yaml").read_text())
    for name, opt in optim.OPTIMIZERS.items():
        if name in spaces:
            searched = {p for p, r in spaces[name]["search"].items() if isinstance(r, dict) and r.get("one_minus")}
            assert searched == set(opt.averaging), name


def test_a_declaration_the_rule_cannot_take_is_refused_at_once():
    eta = (hp.learning_rate(0.1, 1e-3, 1.0),)
    with pytest.raises(TypeError, match="momentum_rule takes 4 arguments; the declaration gives 2"):
        optim.Optimizer("bad", "Bad", "#000000", False, optim.momentum_rule, (), eta)  # no state v declared
    with pytest.raises(TypeError, match="without step_terms"):
        optim.Optimizer("bad", "Bad", "#000000", False, lambda g, eta, c: (g,), (), eta, terms=("c",))
    with pytest.raises(ValueError, match="outside its valid range"):
        hp.averaging("gamma", "γ", "momentum", 1.0, 1e-4)  # gamma = 1 never forgets: not an average
    with pytest.raises(ValueError, match="outside its valid range"):
        hp.Hyperparameter("gamma", "γ", "momentum", 0.9, hp.FRACTION, hp.SearchRange(1e-4, 2.0, one_minus=True),
                          averaging=True)  # 1 - 2 = -1


@pytest.mark.parametrize("name", ALL)
def test_a_hyperparameters_search_name_maps_back(name):
    for h in optim.OPTIMIZERS[name].hyperparameters:
        for one_minus in (False, True):
            searched = hp.search_name(h.name, one_minus)
            assert hp.lecture_name(searched) == (h.name, one_minus)
            # the report's spelling so far: Optuna's name with its prefix replaced
            assert hp.searched_as(*hp.lecture_name(searched)) == searched.replace("one_minus_", "1 - ")
    assert hp.search_name("gamma", True) == "one_minus_gamma" and hp.search_name("eta", False) == "eta"


def test_the_1_minus_x_conversion_is_the_same_arithmetic_everywhere():
    """1.0 - value, as tuning/spaces.py, report/budget.py, verdict.py and figures.py compute it: the same bits."""
    rng = np.random.default_rng(0)
    values = 1.0 - 10.0 ** rng.uniform(-6, 0, 1000)
    np.testing.assert_array_equal(hp.search_value(values, True), 1.0 - values)
    np.testing.assert_array_equal(hp.lecture_value(values, True), 1.0 - values)
    assert hp.search_value(0.9, False) == 0.9 and hp.lecture_value(0.1, True) == 1.0 - 0.1
    assert hp.SearchRange(1e-4, 1.0, one_minus=True).values() == (0.0, 1.0 - 1e-4)


def test_a_valid_range_reads_as_pydantic_bounds():
    assert hp.POSITIVE.bounds() == {"gt": 0.0} and hp.FRACTION.bounds() == {"ge": 0.0, "lt": 1.0}
    assert str(hp.POSITIVE) == "(0, inf)" and str(hp.FRACTION) == "[0, 1)"
    for interval in (hp.POSITIVE, hp.FRACTION, hp.Interval(-1.0, 2.0, high_closed=True)):
        field = pydantic.create_model("M", x=(float, pydantic.Field(**interval.bounds())))
        for probe in (-1.0, 0.0, 1e-300, 0.5, 1.0, 2.0, 3.0):
            try:
                field(x=probe)
                accepted = True
            except pydantic.ValidationError:
                accepted = False
            assert accepted == (probe in interval), (interval, probe)
