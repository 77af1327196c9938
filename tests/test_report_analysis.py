"""The report's measurements on small hand-made inputs: penalties, targets, costs at checkpoint resolution and their
censoring, the loss unit, update counts, tuning budgets, edges, and the claims' verdict rule (the u-turns the lecture
counts: tests/test_lecture_evidence.py)."""
import math

import numpy as np
import pandas as pd
import pytest

from report_fixtures import SEARCH_SPACES, fast_settings, hand_made
from study.report.checks import claims
from study.report.document import sentences
from study.report.inputs import canonical, grid
from study.report.judge import batchmodes, decide, progress, protocol, scoring, stats, tolerance, trials
from study.schema.report import Verdict


ALL = ("epochs", "updates", "seconds")


def _run(optimizer, batch, seed, curve, track="tuned", tuning_run=0, budgets=ALL, dataset="d", **more):
    return {"dataset": dataset, "optimizer": optimizer, "batch_size": batch, "track": track,
            "tuning_run": tuning_run, "seed": seed, "budgets": budgets, "curve": curve, **more}


def _scored(results, factor):
    settings = fast_settings(target_factor=factor)
    return scoring.score(canonical(results), grid(canonical(results)), settings.report)


def test_a_diverged_run_scores_the_untrained_network_and_never_reaches_a_target():
    """Batch 32 of 96 samples: 3 updates an epoch, checkpoints at 1, 2, 3, 4, 5, 6 updates. The diverged run's
    curve is low at its first checkpoint, yet it never reaches the target, and scores the untrained network."""
    results = hand_made([_run("adam", "32", 0, [(1, 1.0, 1.1), (3, 0.5, 0.6), (4, 0.3, 0.32), (6, 0.2, 0.25)]),
                         _run("adam", "32", 1, [(1, 1.0, 1.0), (3, 1e9, 1e9)], diverged=1, test_loss=2.9,
                              initial_val_loss=2.5, initial_test_loss=2.9)], epochs=2)
    runs = _scored(results, 1.5).runs.set_index("seed")
    assert runs.loc[1, "val_epochs"] == 2.5 and runs.loc[1, "test_epochs"] == 2.9  # the untrained network's
    assert runs.loc[0, "val_epochs"] == 0.2
    # target 1.5 x the median of 0.2 and 2.5 (the only cell is the reference batch): both curves start below it
    assert runs.loc[0, "val_updates"] == 1.0 and runs.loc[0, "test_updates"] == 1.0
    assert runs.loc[0, "test_seconds"] == pytest.approx(0.01)  # 1 update x 0.03 s per epoch / 3 updates per epoch
    assert math.isinf(runs.loc[1, "val_updates"]) and math.isinf(runs.loc[1, "test_seconds"])
    assert math.isinf(runs.loc[1, "val_epochs_to_target"])


def test_a_run_that_reaches_the_target_between_two_epochs_is_credited_at_the_checkpoint():
    """Epoch 1 ends at 3 updates (loss 1.0), epoch 2 at 6 (0.25); the checkpoint at 4 updates (epoch 1.33) is
    already at 0.3, below the target: credited 4 updates, not the 6 of the epoch end."""
    curve = [(1, 2.0, 2.0), (2, 1.5, 1.5), (3, 1.0, 1.0), (4, 0.3, 0.3), (5, 0.28, 0.28), (6, 0.25, 0.25)]
    results = hand_made([_run("gd", "full", 0, [(1, 0.5, 0.5), (2, 0.4, 0.4)]),
                         _run("gd", "32", 0, curve)], epochs=2)
    scores = _scored(results, 1.0)  # target = the full-batch cell's 0.4
    assert scores.targets.loc["d", "target"] == pytest.approx(0.4)
    row = scores.runs.set_index("batch_size").loc["32"]
    assert row["val_epochs_to_target"] == pytest.approx(4 / 3) and row["val_updates_to_target"] == 4.0
    assert row["test_epochs_to_target"] == pytest.approx(4 / 3)


def test_costs_are_censored_at_the_cap_ranked_last_and_nan_when_not_recorded():
    """E_d = 4 epochs: U_d = 4 updates for every cell. Full batch (1 update an epoch) reaches the target in 2;
    batch 32 (3 an epoch) in 6, beyond the cap: censored (inf, "> cap"), though its curve gets there; a run
    without a test curve has no test cost (NaN), and a cell without a cost per epoch no seconds."""
    full = [(1, 1.0, 1.0), (2, 0.4, 0.4), (3, 0.35, 0.35), (4, 0.3, 0.3)]
    slow = [(u, 1.0 if u < 6 else 0.3, math.nan) for u in range(1, 13)]
    results = hand_made([_run("gd", "full", 0, full), _run("gd", "32", 0, slow)], epochs=4,
                        seconds_per_epoch={("d", "gd", "full"): 0.5, ("d", "gd", "32"): math.nan})
    scores = _scored(results, 1.5)  # target 0.45
    runs = scores.runs.set_index("batch_size")
    assert scores.caps.set_index("budget").loc["updates", "cap"] == 4.0
    assert runs.loc["full", "val_updates"] == 2.0 and math.isinf(runs.loc["32", "val_updates"])
    assert runs.loc["32", "val_updates_to_target"] == 6.0  # within its E_d epochs, uncapped in updates
    assert math.isnan(runs.loc["32", "test_updates"])  # no test curve recorded
    assert math.isnan(runs.loc["32", "val_seconds"])  # no cost per epoch recorded
    assert sentences.capped(runs.loc["32", "val_updates"], 4.0) == "> 4"
    table = pd.DataFrame({"full": [2.0, 3.0], "32": [np.inf, np.inf], "64": [np.inf, 5.0]})
    assert stats.mean_ranks(table).to_dict() == {"full": 1.0, "32": 2.75, "64": 2.25}  # censored last, tied


def test_target_is_factor_times_the_best_full_batch_cell_not_the_best_cell():
    """Batch 32 has the lowest losses; the target is tied to the best full-batch cell (adam: median of 0.20 and
    0.22), where nag's low loss just before it diverged scores the untrained network's."""
    runs = [_run("adam", "full", s, [(1, 1.0, 1.0), (2, v, v)]) for s, v in ((0, 0.20), (1, 0.22))]
    runs += [_run("gd", "full", s, [(1, 1.0, 1.0), (2, v, v)]) for s, v in ((0, 0.8), (1, 0.21))]
    runs += [_run("nag", "full", s, [(1, 0.01, 0.01)], diverged=1, initial_val_loss=1.0) for s in (0, 1)]
    runs += [_run(o, "32", s, [(3, 0.5, 0.5), (6, 0.05, 0.05)]) for o in ("adam", "gd", "nag") for s in (0, 1)]
    scores = _scored(hand_made(runs, epochs=2), 1.1)
    target = scores.targets.loc["d"]
    assert (target["optimizer"], target["batch_size"]) == ("adam", "full")
    assert target["target"] == pytest.approx(1.1 * 0.21)
    cells = scores.cells.set_index(["optimizer", "batch_size"])
    assert cells.loc[("gd", "full"), "val_epochs_to_target_reached"] == 0.5  # one of its two runs gets there
    budgets = protocol.budgets(scores, ["full", "32"]).set_index("budget")
    assert budgets["reaches_target"].all() and (budgets["best_full_batch"] == "adam/full").all()


def test_measured_updates_per_epoch_against_the_lecture_table():
    assert [batchmodes.expected_updates(100, b) for b in ("full", "32", "1")] == [1, 4, 100]
    curves = pd.DataFrame({"run_id": "r", "dataset": "d", "batch_size": "32", "epoch": [0.25, 0.5, 1.0, 1.5, 2.0],
                           "updates": [1, 2, 4, 6, 8]})
    ends = progress.epoch_ends(curves, ["r"])  # the intra-epoch checkpoints are no epoch
    table = batchmodes.updates_per_epoch(ends, pd.DataFrame({"dataset": ["d"], "n_train": [100]}))
    assert table[["measured_min", "measured_max", "expected"]].iloc[0].tolist() == [4, 4, 4]
    assert bool(table["matches"].iloc[0])


def test_the_loss_unit_is_the_paired_sd_of_validation_differences():
    """Two cells whose validation losses move together from seed to seed (the same split) differ by a constant:
    their paired SD is 0 however much each moves; a third, independent one sets the unit."""
    split = np.array([0.0, 0.3, -0.2, 0.1])
    noise = np.array([0.05, -0.05, 0.02, -0.02])
    runs = pd.DataFrame({"dataset": "d", "track": "tuned", "batch_size": "full",
                         "optimizer": np.repeat(["a", "b", "c"], 4), "tuning_run": 0, "seed": np.tile(range(4), 3),
                         "val_epochs": np.r_[1 + split, 1.1 + split, 1 + split + noise],
                         "test_epochs": 99.0})  # test never enters
    pairs = [np.std(noise, ddof=1), np.std(noise + 0.1, ddof=1), 0.0]
    assert tolerance.paired_sd(runs).loc["d"] == pytest.approx(np.median(pairs))


def test_budget_curves_use_the_random_arm_when_there_is_one():
    tried = pd.DataFrame({"dataset": "d", "optimizer": "gd", "batch_size": "full", "tuning_run": 0,
                          "arm": ["tpe"] * 3 + ["random"] * 3, "number": [0, 1, 2, 0, 1, 2],
                          "state": ["COMPLETE", "PRUNED", "COMPLETE", "COMPLETE", "DIVERGED", "COMPLETE"],
                          "value": [3.0, np.nan, 1.0, 1.0, 9.0, 2.0]})
    curves = trials.best_after_k(tried, 3)
    assert set(curves["method"]) == {trials.RANDOM_METHOD}
    assert curves["best_val_loss"].iloc[0] == pytest.approx(4.0)  # mean of 1, 9, 2 (the diverged at its penalty)
    tpe_only = trials.best_after_k(tried[tried["arm"] == "tpe"], 3)
    assert set(tpe_only["method"]) == {trials.TPE_METHOD}
    assert tpe_only["best_val_loss"].tolist() == [3.0, 3.0, 1.0]
    second = tried[tried["arm"] == "tpe"].assign(tuning_run=1, value=[2.0, 1.5, 0.5])  # another run: the mean
    both = trials.best_after_k(pd.concat([tried[tried["arm"] == "tpe"], second]), 3)
    assert both["best_val_loss"].tolist() == [2.5, 2.25, 0.75]


def test_edge_warnings_flag_values_at_the_ends_of_their_ranges():
    evals = pd.DataFrame({"dataset": "d", "optimizer": ["gd", "momentum", "adam"], "batch_size": "32",
                          "track": "tuned", "tuning_run": 0, "budget": "epochs", "eta": [9.5, 0.01, 0.01], "gamma": [np.nan, 0.9995, np.nan],
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
                          "tuning_run": 0, "budget": "epochs", "eta": [0.01, 0.01], "gamma": [0.02, 0.9]})
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
