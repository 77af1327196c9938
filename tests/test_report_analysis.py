"""The report's measurements on small hand-made inputs: penalties, targets, update counts, tuning budgets, edges,
and the claims' verdict rule (the u-turns the lecture counts: tests/test_lecture_evidence.py)."""
import math

import numpy as np
import pandas as pd
import pytest

from report_fixtures import SEARCH_SPACES
from study.report.checks import claims
from study.report.judge import batchmodes, decide, progress, scoring, trials
from study.schema.report import Verdict


def test_a_diverged_run_scores_the_untrained_network_and_never_reaches_a_target():
    keys = {"optimizer": "adam", "batch_size": "32", "track": "tuned"}
    evals = pd.DataFrame([{**keys, "dataset": "d", "seed": s, "test_loss": t, "test_accuracy": np.nan,
                           "diverged": bad, "initial_val_loss": 2.5} for s, t, bad in ((0, 0.3, 0), (1, 2.9, 1))])
    curves = pd.DataFrame([{**keys, "dataset": "d", "seed": s, "epoch": e, "val_loss": v, "test_loss": t,
                            "updates": 3.0 * e}
                           for s, rows in ((0, [(1, 1.0, 1.1), (2, 0.2, 0.25)]), (1, [(1, 1.0, 1.0), (2, 1e9, 1e9)]))
                           for e, v, t in rows])
    cells = pd.DataFrame([{"dataset": "d", "optimizer": "adam", "batch_size": "32", "seconds_per_epoch": 0.5}])
    runs = scoring.run_scores(evals, curves, cells, 1.5).set_index("seed")
    assert runs.loc[1, "val_epochs"] == 2.5 and runs.loc[1, "test_epochs"] == 2.9  # the untrained network's
    assert runs.loc[0, "val_epochs"] == 0.2
    # target 1.5 x 0.2 (the only tuned cell, median over seeds of 0.2 and 2.5 = 1.35): both reach it at epoch 1
    assert runs.loc[0, "val_updates"] == 3.0 and runs.loc[0, "test_updates"] == 3.0
    assert runs.loc[0, "test_seconds"] == 0.5


def test_costs_to_target_are_inf_when_never_reached_and_nan_when_not_recorded():
    keys = {"dataset": "d", "optimizer": "gd", "batch_size": "full", "track": "tuned"}
    evals = pd.DataFrame([{**keys, "seed": s, "test_loss": 0.5, "test_accuracy": np.nan, "diverged": 0,
                           "initial_val_loss": 2.0} for s in (0, 1)])
    curves = pd.DataFrame([{**keys, "seed": s, "epoch": e, "val_loss": v, "updates": float(e),
                            "test_loss": np.nan if s == 1 else v + 1.0}
                           for s in (0, 1) for e, v in ((1, 1.0), (2, 0.5))])
    runs = scoring.run_scores(evals, curves, pd.DataFrame(columns=["dataset", "optimizer", "batch_size",
                                                                  "seconds_per_epoch"]), 1.1).set_index("seed")
    assert runs.loc[0, "val_updates"] == 2.0 and math.isinf(runs.loc[0, "test_updates"])  # test never gets there
    assert math.isnan(runs.loc[1, "test_updates"])  # no test curve recorded
    assert math.isnan(runs.loc[0, "val_seconds"])  # no cost per epoch recorded


def _curves(val_losses: dict, updates_per_epoch=3):
    rows = []
    for (optimizer, seed), values in val_losses.items():
        for epoch, value in enumerate(values, start=1):
            rows.append({"dataset": "d", "optimizer": optimizer, "batch_size": "32", "track": "tuned", "seed": seed,
                         "epoch": epoch, "val_loss": value, "updates": float(epoch * updates_per_epoch),
                         "grad_norm": 1.0})
    return pd.DataFrame(rows)


def test_target_is_factor_times_best_median_final_loss_and_time_is_first_epoch_below():
    curves = _curves({("adam", 0): [1.0, 0.5, 0.20], ("adam", 1): [1.0, 0.4, 0.22],
                      ("gd", 0): [1.0, 0.9, 0.8], ("gd", 1): [1.0, 0.7, 0.21],
                      ("nag", 0): [1.0, 0.01, np.nan], ("nag", 1): [1.0, 0.02, np.nan]})
    evals = curves[scoring.RUN].drop_duplicates().assign(diverged=0.0, initial_val_loss=1.0)
    evals.loc[evals["optimizer"] == "nag", "diverged"] = 1.0  # low just before blowing up: scores as untrained
    target = scoring.targets(curves, evals, 1.1)
    assert target.loc["d", "optimizer"] == "adam"
    assert target.loc["d", "target"] == pytest.approx(1.1 * 0.21)  # median of adam's 0.20 and 0.22
    runs = progress.runs_to_target(curves, target["target"]).set_index(["optimizer", "seed"])
    assert runs.loc[("adam", 0), "epochs_to_target"] == 3 and runs.loc[("adam", 0), "updates_to_target"] == 9
    assert runs.loc[("gd", 1), "epochs_to_target"] == 3 and math.isinf(runs.loc[("gd", 0), "epochs_to_target"])
    cells = progress.cells_to_target(runs.reset_index()).set_index("optimizer")
    assert cells.loc["gd", "reached_share"] == 0.5 and math.isinf(cells.loc["gd", "epochs_to_target"])


def test_measured_updates_per_epoch_against_the_lecture_table():
    assert [batchmodes.expected_updates(100, b) for b in ("full", "32", "1")] == [1, 4, 100]
    curves = _curves({("adam", 0): [1.0, 0.5, 0.4]}, updates_per_epoch=4)
    table = batchmodes.updates_per_epoch(curves, pd.DataFrame({"dataset": ["d"], "n_train": [100]}))
    assert table[["measured_min", "measured_max", "expected"]].iloc[0].tolist() == [4, 4, 4]
    assert bool(table["matches"].iloc[0])


def test_budget_curves_use_the_random_arm_when_there_is_one():
    tried = pd.DataFrame({"dataset": "d", "optimizer": "gd", "batch_size": "full",
                          "arm": ["tpe"] * 3 + ["random"] * 3, "number": [0, 1, 2, 0, 1, 2],
                          "state": ["COMPLETE", "PRUNED", "COMPLETE", "COMPLETE", "DIVERGED", "COMPLETE"],
                          "value": [3.0, np.nan, 1.0, 1.0, 9.0, 2.0]})
    curves = trials.best_after_k(tried, 3)
    assert set(curves["method"]) == {trials.RANDOM_METHOD}
    assert curves["best_val_loss"].iloc[0] == pytest.approx(4.0)  # mean of 1, 9, 2 (the diverged at its penalty)
    tpe_only = trials.best_after_k(tried[tried["arm"] == "tpe"], 3)
    assert set(tpe_only["method"]) == {trials.TPE_METHOD}
    assert tpe_only["best_val_loss"].tolist() == [3.0, 3.0, 1.0]


def test_edge_warnings_flag_values_at_the_ends_of_their_ranges():
    evals = pd.DataFrame({"dataset": "d", "optimizer": ["gd", "momentum", "adam"], "batch_size": "32",
                          "track": "tuned", "eta": [9.5, 0.01, 0.01], "gamma": [np.nan, 0.9995, np.nan],
                          "beta1": [np.nan, np.nan, 0.9], "beta2": [np.nan, np.nan, 0.999],
                          "eps": [np.nan, np.nan, 1e-8]})
    edges = trials.edge_warnings(evals, SEARCH_SPACES, 0.05)
    found = {(r.optimizer, r.param, r.edge) for r in edges.itertuples()}
    # gd's eta 9.5 is near 10 (log scale); momentum's 1 - gamma = 5e-4 is below 1e-3; adam's values are inside
    assert found == {("gd", "eta", "high"), ("momentum", "gamma", "low")}


def test_a_value_at_its_natural_limit_is_no_edge_warning():
    """1 - gamma searched up to 1 reaches gamma = 0 (no momentum): a tuned gamma near 0 is reported apart, and a
    range that stops short of that limit still warns."""
    evals = pd.DataFrame({"dataset": "d", "optimizer": "momentum", "batch_size": ["32", "64"], "track": "tuned",
                          "eta": [0.01, 0.01], "gamma": [0.02, 0.9]})
    to_the_limit = {"momentum": {"eta": {"low": 1e-4, "high": 10.0, "log": True},
                                 "gamma": {"low": 1e-4, "high": 1.0, "log": True, "one_minus": True}}}
    short = {"momentum": {**to_the_limit["momentum"],
                          "gamma": {"low": 1e-4, "high": 0.99, "log": True, "one_minus": True}}}
    assert trials.edge_warnings(evals, to_the_limit, 0.05).empty
    natural = trials.edge_warnings(evals, to_the_limit, 0.05, natural=True)
    assert natural[["batch_size", "param", "edge"]].values.tolist() == [["32", "gamma", "high"]]
    warned = trials.edge_warnings(evals, short, 0.05)
    assert warned[["batch_size", "param", "edge"]].values.tolist() == [["32", "gamma", "high"]]
    assert trials.edge_warnings(evals, short, 0.05, natural=True).empty


def test_claim_verdict_rule():
    rules = Verdict(support=0.8, contradict=0.2, min_cases=3)
    assert claims._verdict(0.9, 10, rules) == decide.SUPPORTED
    assert claims._verdict(0.1, 10, rules) == decide.CONTRADICTED
    assert claims._verdict(0.5, 10, rules) == decide.INCONCLUSIVE
    assert claims._verdict(1.0, 2, rules) == decide.INCONCLUSIVE  # too few cases to say anything
