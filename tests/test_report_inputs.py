"""What the report reads, in the shape of issue 18's contract (notes/DESIGN18.md): a cell's evaluations with the
budgets each serves, its curves.parquet with intra-epoch checkpoints, its trials.parquet, the sweep's caps; and a
store from before the contract (one tuning run, every budget served by one evaluation, epoch ends only) read as the
same shape. The stores themselves are read by tests/test_report_partial.py (real sweeps)."""
import math

import numpy as np
import pandas as pd
import pytest

from study.report import inputs

CELL = ("iris", "adam", "32")


def _evaluation(track, tuning_run, seed, budgets, run_id, test_loss):
    return {"track": track, "tuning_run": tuning_run, "seed": seed, "budgets": budgets, "run_id": run_id,
            "final": {"test_loss": test_loss, "test_accuracy": 0.9, "diverged": False, "seconds": 1.5,
                      "initial_val_loss": 1.1, "initial_test_loss": 1.2, "final_train_loss": 0.2},
            "hyper": {"eta": 0.01, "beta1": 0.9}}


EVALUATIONS = [_evaluation("tuned", 0, 0, ["epochs"], "r-epochs", 0.30),
               _evaluation("tuned", 0, 0, ["updates", "seconds"], "", 0.35),  # MLflow does not hold it yet
               _evaluation("tuned", 1, 0, ["epochs", "updates", "seconds"], "r-run1", 0.31),
               _evaluation("default", -1, 0, ["epochs", "updates", "seconds"], "r-default", 0.5)]


def _parquet(rows):
    """curves.parquet rows: role, arm, tuning_run, trial_number, track, budgets, seed, run_id, epoch, updates and
    the curve columns, train_loss and grad_norm at epoch ends only."""
    out = []
    for run_id, track, tuning_run, budgets, seed in rows:
        for updates in (1, 2, 3, 4, 6):
            epoch = updates / 3
            out.append({"role": "eval", "arm": "tpe" if track == "tuned" else "", "tuning_run": tuning_run,
                        "trial_number": 4, "track": track, "budgets": budgets, "seed": seed, "run_id": run_id,
                        "epoch": epoch, "updates": updates, "val_loss": 1.0 / updates, "test_loss": 1.1 / updates,
                        "val_accuracy": 0.5, "test_accuracy": 0.5,
                        "train_loss": 0.9 / updates if epoch.is_integer() else math.nan,
                        "grad_norm": 1.0 if epoch.is_integer() else math.nan, "seconds": 0.1 * epoch})
    out.append({**out[0], "role": "trial", "run_id": "a-trial"})  # a trial's row is no evaluation's
    return pd.DataFrame(out)


def test_evaluations_give_one_row_per_budget_served():
    evals = inputs.evals_table(CELL, inputs._evaluations(type("Record", (), {"evaluations": lambda s: EVALUATIONS})()),
                               90)
    # the evaluation MLflow does not hold is left out, as an orphan would be
    assert sorted(set(evals["run_id"])) == ["r-default", "r-epochs", "r-run1"]
    assert len(evals) == 1 + 3 + 3
    assert list(evals.columns) == inputs.EVAL_COLUMNS
    row = evals[(evals["run_id"] == "r-run1") & (evals["budget"] == "seconds")].iloc[0]
    assert (row["tuning_run"], row["test_loss"], row["initial_test_loss"], row["eta"]) == (1, 0.31, 1.2, 0.01)
    assert math.isnan(row["gamma"])


def test_curves_keep_intra_epoch_checkpoints_and_find_each_run():
    record = type("Record", (), {"evaluations": lambda s: EVALUATIONS})()
    evals = inputs.evals_table(CELL, inputs._evaluations(record), 90)
    # one run found by its MLflow id, one by (track, tuning run, seed, budgets) because its id is missing there
    parquet = _parquet([("r-epochs", "tuned", 0, "epochs", 0), ("", "tuned", 1, "epochs,updates,seconds", 0),
                        ("r-default", "default", -1, "epochs,updates,seconds", 0)])
    curves = inputs.curves_table(CELL, parquet, evals)
    assert list(curves.columns) == inputs.CURVE_COLUMNS
    assert sorted(set(curves["run_id"])) == ["r-default", "r-epochs", "r-run1"]
    one = curves[curves["run_id"] == "r-epochs"]
    assert one["epoch"].tolist() == pytest.approx([1 / 3, 2 / 3, 1.0, 4 / 3, 2.0])
    assert one["train_loss"].notna().tolist() == [False, False, True, False, True]


def test_trials_come_from_each_cells_table_with_their_test_loss():
    table = pd.DataFrame({"tuning_run": [0, 0, 1], "arm": ["tpe", "random", "tpe"], "number": [0, 0, 0],
                          "state": "COMPLETE", "value": [0.3, 0.4, 0.35], "eta": 0.01, "test_loss": [0.31, 0.41, 0.36]})
    trials = inputs.trials_table(CELL, table, [])
    assert list(trials.columns) == inputs.TRIAL_COLUMNS
    assert trials["test_loss"].tolist() == [0.31, 0.41, 0.36] and set(trials["dataset"]) == {"iris"}


def test_caps_from_the_contract_rule():
    cells = pd.DataFrame({"dataset": "iris", "optimizer": ["gd", "adam", "gd"], "batch_size": ["full", "full", "32"],
                          "seconds_per_epoch": [0.02, 0.01, 0.05]})
    caps = inputs.caps_from({"iris": 200}, cells).set_index("budget")["cap"].to_dict()
    # E_d x the slowest full-batch epoch (the sweep's rule: every full-batch cell has its E_d epochs at every cap)
    assert caps == {"epochs": 200.0, "updates": 200.0, "seconds": pytest.approx(4.0)}


def test_a_store_from_before_the_contract_reads_as_the_same_shape():
    """A record keyed by track and seed (one tuning run), curves at epoch ends without tuning_run or budgets."""
    class Old:
        def eval_scores(self):
            return {("tuned", 0): {"test_loss": 0.3, "diverged": 0, "hyper": {"eta": 0.02}},
                    ("default", 0): {"test_loss": 0.5, "diverged": 1}}

        def eval_runs(self):
            return {("tuned", 0): "old-tuned", ("default", 0): "old-default"}

    evals = inputs.evals_table(CELL, inputs._evaluations(Old()), 90)
    assert sorted(zip(evals["run_id"], evals["tuning_run"], evals["budget"])) == sorted(
        (r, u, b) for r, u in (("old-tuned", 0), ("old-default", -1)) for b in inputs.BUDGETS)
    parquet = _parquet([("old-tuned", "tuned", 0, "", 0), ("", "default", -1, "", 0)]).drop(
        columns=["tuning_run", "budgets"])
    parquet = parquet[np.isclose(parquet["epoch"], np.round(parquet["epoch"]))]
    curves = inputs.curves_table(CELL, parquet, evals)
    assert sorted(set(curves["run_id"])) == ["old-default", "old-tuned"]
    assert set(curves.loc[curves["track"] == "default", "tuning_run"]) == {-1}
