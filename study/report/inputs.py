"""What the report reads: one sweep's results, gathered from the MLflow and Optuna stores.

``load(runs_dir, sweep)`` reads the stores through study.tracking and study.tuning (never earlier reports) and
returns a ``SweepResults``; the report is a pure function of it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass
class SweepResults:
    name: str
    # The resolved sweep config as the sweep logged it: datasets, optimizers, batch_sizes (strings), trials,
    # epochs {dataset: int}, seeds (list of int), tuning_seed, random_arm (bool), population,
    # search_spaces {optimizer: {param: {"low", "high", "log", "one_minus"} or {"fixed": value}}},
    # defaults {optimizer: {param: value}}.
    config: dict
    # One row per evaluation run: dataset, optimizer, batch_size ("full", "128", ..., "1"), track ("tuned" |
    # "default"), seed, test_loss, test_accuracy (NaN for regression), diverged (0/1), seconds, n_train, and the
    # hyperparameters used (eta, gamma, beta, beta1, beta2, eps; NaN where the optimizer has none).
    evals: pd.DataFrame
    # One row per evaluation run and epoch: dataset, optimizer, batch_size, track, seed, epoch (1-based),
    # train_loss, val_loss, val_accuracy, grad_norm, updates, seconds.
    curves: pd.DataFrame
    # One row per tuning trial that finished: dataset, optimizer, batch_size, arm ("tpe" | "random"), number
    # (0-based, in the order the trials were asked within cell and arm), state (COMPLETE | PRUNED | FAIL |
    # DIVERGED), value (final validation loss; the finite penalty for DIVERGED; NaN for PRUNED and FAIL),
    # eta, gamma, beta, beta1, beta2, eps.
    trials: pd.DataFrame
    # Parameter importances per cell (Optuna's default evaluator): dataset, optimizer, batch_size, param, importance.
    importances: pd.DataFrame
    # git_commit, versions {package: version}, machine, config_hash, command, tracking_uri (masked), optuna_storage
    # (masked).
    meta: dict = field(default_factory=dict)
