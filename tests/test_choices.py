"""Per-budget choices (issue 18 item 2): on validation at each budget's cap checkpoint, from both arms' trials (run
0), a run's own TPE trials (run r >= 1); a trial pruned before a checkpoint has no value there. Real Optuna studies
holding planted trial payloads."""
from __future__ import annotations

import math

import optuna
import pytest

from study.sweep import choices, config
from study.sweep.tuning import ledger

CELL = ("iris", "gd", "32")
CAPS = {"epochs": 30, "updates": 5, "seconds": 12}  # update counts of the caps


def _study(storage, name, trials):
    """A study whose trials carry checkpoint curves: ``trials`` is a list of {update count: val_loss}."""
    study = optuna.create_study(storage=storage, study_name=name)
    for number, points in enumerate(trials):
        trial = study.ask()
        counts = sorted(points)
        ledger.keep_trial_payload(trial, {"hyper": {"eta": 0.1 * (number + 1)}, "final": {},
                                          "curves": ledger.pack_curves({}),
                                          "checkpoints": ledger.pack_curves({
                                              "updates": [float(c) for c in counts],
                                              "val_loss": [points[c] for c in counts]})})
        if 30 in points:
            study.tell(trial, points[30])
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return study


@pytest.fixture
def cfg():
    return config.load_sweep("smoke", ["datasets=iris", "optimizers=gd", "batch_sizes=32", "tuning_runs=2"])


def test_each_budget_takes_the_trial_lowest_at_its_cap_and_a_pruned_trial_has_no_value_after_it_stopped(cfg):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    fast = {5: 0.3, 12: 0.25, 30: 0.24}  # quickest early, not best at the end
    slow = {5: 0.9, 12: 0.5, 30: 0.10}
    pruned_early_star = {5: 0.05}  # best at the updates cap, pruned before the others
    studies = {(0, "tpe"): _study(storage, "s/tpe", [fast, slow, pruned_early_star]),
               (0, "random"): _study(storage, "s/random", [{5: 0.4, 12: 0.2, 30: 0.3}]),
               (1, "tpe"): _study(storage, "s/tpe-1", [{5: 0.01, 12: 0.01, 30: 0.5}, {5: 1.0, 12: 1.0, 30: 1.0}])}
    chosen = choices.choose(cfg, CELL, studies, CAPS)
    assert (chosen["0:epochs"]["arm"], chosen["0:epochs"]["number"]) == ("tpe", 1)
    assert (chosen["0:updates"]["arm"], chosen["0:updates"]["number"]) == ("tpe", 2)
    assert (chosen["0:seconds"]["arm"], chosen["0:seconds"]["number"]) == ("random", 0)  # both arms compete
    assert chosen["0:seconds"]["value"] == pytest.approx(0.2)
    # run 1 chooses among its own trials only: its split's losses do not compare with run 0's
    assert all(chosen[f"1:{b}"]["arm"] == "tpe" and chosen[f"1:{b}"]["number"] == 0 for b in CAPS)
    planned = choices.plan(cfg, CELL, chosen)
    served = {key: budgets for key, _, budgets in planned}
    assert served[("tuned", 0, "tpe-1")] == ["epochs"] and served[("tuned", 0, "tpe-2")] == ["updates"]
    assert served[("tuned", 1, "tpe-0")] == ["epochs", "updates", "seconds"]
    assert served[("default", -1, "defaults")] == ["epochs", "updates", "seconds"]


def test_a_cap_no_trial_reached_is_served_by_the_defaults(cfg):
    storage = optuna.storages.InMemoryStorage()
    only_early = {5: 0.3}
    studies = {(0, "tpe"): _study(storage, "s/tpe", [only_early]), (1, "tpe"): _study(storage, "s/tpe-1", [])}
    chosen = choices.choose(cfg, CELL, studies, CAPS)
    assert chosen["0:updates"]["number"] == 0
    assert chosen["0:epochs"]["trial"] == ledger.DEFAULTS and chosen["0:epochs"]["hyper"] == cfg.defaults("gd")
    assert chosen["1:seconds"]["trial"] == ledger.DEFAULTS and chosen["1:seconds"]["value"] is None
    assert not math.isnan(chosen["0:updates"]["value"])
