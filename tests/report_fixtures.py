"""Synthetic sweep results with effects planted on purpose, for testing the report without running a sweep.

``make_results(...)`` returns a ``SweepResults`` shaped like the loader's (study/report/inputs.py): evaluation
runs, per-epoch curves, tuning trials (TPE and, optionally, a random arm), importances, config and meta. Test loss
is a product of a dataset scale, planted multiplicative effects per optimizer and per batch size, a per-(dataset,
treatment) interaction and seed noise, so a test knows which answer the statistics should find.

``fast_settings(...)`` is the shipped configuration with fewer posterior draws and resamples (conf/report.yaml's
models, copied with the few values changed).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from study.report import settings
from study.report.inputs import SweepResults

# the values a test may lower, and where conf/report.yaml declares them: (block, key)
FAST = {"bayes_samples": ("statistics", "bayes_samples"), "bootstrap_resamples": ("statistics", "bootstrap_resamples"),
        "stability_resamples": ("stability", "resamples"), "band_resamples": ("stability", "band_resamples"),
        "target_factor": ("target", "factor")}


def fast_settings(**values) -> settings.Settings:
    """conf/'s settings with ``values`` (names of FAST) in place of the declared ones."""
    loaded = settings.load()
    report = loaded.report
    for name, value in values.items():
        block, key = FAST[name]
        report = report.model_copy(update={block: getattr(report, block).model_copy(update={key: value})})
    return dataclasses.replace(loaded, report=report)

OPTIMIZERS = ("gd", "momentum", "nag", "adagrad", "rmsprop", "adam")
BATCH_SIZES = ("full", "128", "64", "32", "1")
DATASETS = ("moons", "circles", "iris", "wine", "breast_cancer", "digits", "sparse", "clf_easy", "clf_hard",
            "clf_multi", "clf_wide", "diabetes")
N_TRAIN = {"moons": 360, "circles": 360, "iris": 90, "wine": 106, "breast_cancer": 341, "digits": 1078,
           "sparse": 600, "clf_easy": 360, "clf_hard": 600, "clf_multi": 480, "clf_wide": 300, "diabetes": 265}
REGRESSION = {"diabetes"}
HYPER = ("eta", "gamma", "beta", "beta1", "beta2", "eps")

def _range(low, high, one_minus=False):
    """A search range in the shape the sweep records it (a search space's range as a dict)."""
    return {"low": low, "high": high, "log": True, "one_minus": one_minus, "fixed": None}


_FIXED_EPS = {"low": math.nan, "high": math.nan, "log": True, "one_minus": False, "fixed": 1e-8}
SEARCH_SPACES = {
    "gd": {"eta": _range(1e-4, 10.0)},
    "momentum": {"eta": _range(1e-4, 10.0), "gamma": _range(1e-3, 0.5, True)},
    "nag": {"eta": _range(1e-4, 10.0), "gamma": _range(1e-3, 0.5, True)},
    "adagrad": {"eta": _range(1e-4, 1.0), "eps": _FIXED_EPS},
    "rmsprop": {"eta": _range(1e-5, 1.0), "beta": _range(1e-3, 0.5, True), "eps": _FIXED_EPS},
    "adam": {"eta": _range(1e-5, 1.0), "beta1": _range(1e-3, 0.5, True), "beta2": _range(1e-4, 0.1, True),
             "eps": _FIXED_EPS},
}
DEFAULTS = {"gd": {"eta": 0.01}, "momentum": {"eta": 0.01, "gamma": 0.9}, "nag": {"eta": 0.01, "gamma": 0.9},
            "adagrad": {"eta": 0.01, "eps": 1e-8}, "rmsprop": {"eta": 0.001, "beta": 0.9, "eps": 1e-8},
            "adam": {"eta": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}}
# How much worse the default hyperparameters do than tuned ones (log factor), when ``default_gap`` is on
DEFAULT_GAP = {"gd": 0.8, "momentum": 0.4, "nag": 0.4, "adagrad": 0.5, "rmsprop": 0.2, "adam": 0.1}


def _steps(n_train: int, batch_size: str) -> int:
    return 1 if batch_size == "full" else math.ceil(n_train / min(int(batch_size), n_train))


def _batch_samples(n_train: int, batch_size: str) -> int:
    return n_train if batch_size == "full" else min(int(batch_size), n_train)


def _sample_params(rng, optimizer: str) -> dict:
    params = {}
    for name, space in SEARCH_SPACES[optimizer].items():
        if space["fixed"] is not None:
            params[name] = space["fixed"]
            continue
        x = math.exp(rng.uniform(math.log(space["low"]), math.log(space["high"])))
        params[name] = 1.0 - x if space.get("one_minus") else x
    return params


def make_results(datasets=DATASETS, optimizers=OPTIMIZERS, batch_sizes=BATCH_SIZES, seeds=5, epochs=20, trials=20,
                 optimizer_effect: dict | None = None, batch_effect: dict | None = None, interaction_sd=0.03,
                 seed_sd=0.02, default_gap=True, random_arm=True, diverged_evals=2, seed=0,
                 name="fixture", val_effect: dict | None = None, speed_effect: dict | None = None,
                 cost_effect: dict | None = None, train_effect: dict | None = None) -> SweepResults:
    """A synthetic sweep. ``optimizer_effect`` / ``batch_effect`` map a treatment to a relative change of its
    test loss (-0.2 = 20% lower on every dataset); ``val_effect`` one of its validation loss only (validation and
    test disagree); ``speed_effect`` a factor on how many epochs an optimizer's curves take to come down (2 = twice
    as slow); ``cost_effect`` a factor on its seconds per epoch; ``train_effect`` a relative change of its final
    training loss only (a generalisation gap). Everything unplanted is equal up to noise."""
    rng = np.random.default_rng(seed)
    optimizer_effect, batch_effect = optimizer_effect or {}, batch_effect or {}
    val_effect, speed_effect, cost_effect = val_effect or {}, speed_effect or {}, cost_effect or {}
    train_effect = train_effect or {}
    cell_rows = []
    seed_list = list(range(seeds))
    epochs_per = {d: epochs for d in datasets}
    eval_rows, curve_parts, trial_rows, importance_rows = [], [], [], []
    for d_index, dataset in enumerate(datasets):
        n_train = N_TRAIN.get(dataset, 300)
        scale = float(np.exp(rng.uniform(np.log(0.05), np.log(1.0))))
        initial_loss = 2.0 + 5.0 * scale
        for optimizer in optimizers:
            for batch in batch_sizes:
                interaction = rng.normal(0.0, interaction_sd)
                cell_best = scale * (1 + optimizer_effect.get(optimizer, 0.0)) * (1 + batch_effect.get(batch, 0.0))
                cell_best *= math.exp(interaction)
                # tuning trials: the best of them defines the tuned hyperparameters
                best_params, best_value = None, math.inf
                for arm in ["tpe"] + (["random"] if random_arm else []):
                    for number in range(trials):
                        params = _sample_params(rng, optimizer)
                        shrink = 1.0 - 0.7 * number / max(trials - 1, 1) if arm == "tpe" else 1.0
                        value = cell_best * math.exp(abs(rng.normal(0.0, 0.6)) * shrink)
                        state = "COMPLETE"
                        draw = rng.random()
                        if number > 0 and arm == "tpe" and draw < 0.15:
                            state, value = "PRUNED", math.nan
                        elif number > 0 and draw > 1.0 - (0.12 if optimizer == "gd" else 0.04):
                            state, value = "DIVERGED", initial_loss
                        if arm == "tpe" and state == "COMPLETE" and value < best_value:
                            best_value, best_params = value, params
                        held_out = math.nan  # the random arm is scored on test too
                        if arm == "random":
                            held_out = initial_loss if state == "DIVERGED" else value * math.exp(rng.normal(0, 0.05))
                        trial_rows.append({"dataset": dataset, "optimizer": optimizer, "batch_size": batch,
                                           "arm": arm, "number": number, "state": state, "value": value,
                                           **{h: params.get(h, math.nan) for h in HYPER}, "test_loss": held_out})
                tuned_params = best_params
                tunable = [p for p, s in SEARCH_SPACES[optimizer].items() if s["fixed"] is None]
                for param, weight in zip(tunable, rng.dirichlet(np.ones(len(tunable)))):
                    importance_rows.append({"dataset": dataset, "optimizer": optimizer, "batch_size": batch,
                                            "param": param, "importance": float(weight)})
                per_epoch_cost = (0.0005 * _steps(n_train, batch) + 0.01) * cost_effect.get(optimizer, 1.0)
                cell_rows.append({"dataset": dataset, "optimizer": optimizer, "batch_size": batch,
                                  "seconds_per_epoch": per_epoch_cost, "diverged_share": 0.0})
                for track in ("tuned", "default"):
                    gap = DEFAULT_GAP[optimizer] if (track == "default" and default_gap) else 0.0
                    params = tuned_params if track == "tuned" else DEFAULTS[optimizer]
                    tau = (2.0 + 3.0 * gap + (4.0 if batch == "full" else 0.0)) * speed_effect.get(optimizer, 1.0)
                    for s in seed_list:
                        test_loss = cell_best * math.exp(gap + rng.normal(0.0, seed_sd))
                        epoch = np.arange(1, epochs_per[dataset] + 1)
                        samples = _batch_samples(n_train, batch)
                        noise = rng.lognormal(0.0, 0.01 + 0.1 / math.sqrt(samples), len(epoch))
                        shape = 1.0 + 3.0 * np.exp(-epoch / tau)
                        val = test_loss * (1 + val_effect.get(optimizer, 0.0)) * shape * noise
                        test_curve = test_loss * shape * rng.lognormal(0.0, 0.01, len(epoch))
                        test_curve[-1] = test_loss
                        grad_norm = 0.5 * np.exp(-epoch / tau) + 0.05 * (1 + 3 / math.sqrt(samples))
                        updates = epoch * _steps(n_train, batch)
                        seconds = epoch * (0.0005 * _steps(n_train, batch) + 0.01)
                        accuracy = (np.full(len(epoch), np.nan) if dataset in REGRESSION
                                    else np.clip(1.0 - 0.3 * val, 0.0, 1.0))
                        curve_parts.append(((dataset, optimizer, batch, track, s), epoch, val, accuracy,
                                            grad_norm, updates.astype(float), seconds, test_curve))
                        eval_rows.append({
                            "dataset": dataset, "optimizer": optimizer, "batch_size": batch, "track": track,
                            "seed": s, "test_loss": test_loss,
                            "test_accuracy": math.nan if dataset in REGRESSION else max(0.0, 1.0 - 0.3 * test_loss),
                            "diverged": 0, "seconds": float(seconds[-1]), "n_train": n_train,
                            **{h: params.get(h, math.nan) for h in HYPER}, "initial_val_loss": initial_loss,
                            "final_train_loss": 0.8 * test_loss * (1 + train_effect.get(optimizer, 0.0))})
    evals = pd.DataFrame(eval_rows)
    lengths = [len(part[1]) for part in curve_parts]
    keys = np.repeat(np.array([part[0] for part in curve_parts], dtype=object), lengths, axis=0)
    val = np.concatenate([part[2] for part in curve_parts])
    curves = pd.DataFrame({"dataset": keys[:, 0], "optimizer": keys[:, 1], "batch_size": keys[:, 2],
                           "track": keys[:, 3], "seed": keys[:, 4].astype(int),
                           "epoch": np.concatenate([part[1] for part in curve_parts]), "train_loss": 0.9 * val,
                           "val_loss": val, "val_accuracy": np.concatenate([part[3] for part in curve_parts]),
                           "grad_norm": np.concatenate([part[4] for part in curve_parts]),
                           "updates": np.concatenate([part[5] for part in curve_parts]),
                           "seconds": np.concatenate([part[6] for part in curve_parts]),
                           "test_loss": np.concatenate([part[7] for part in curve_parts])})
    curves["test_accuracy"] = np.where(curves["dataset"].isin(REGRESSION), np.nan,
                                       np.clip(1.0 - 0.3 * curves["test_loss"], 0.0, 1.0))
    for column in ("dataset", "optimizer", "batch_size", "track"):
        curves[column] = curves[column].astype(str)
    # a few default-track runs blow up, as plain GD with a stochastic batch sometimes does
    for row in rng.choice(np.flatnonzero(evals["track"] == "default"), size=diverged_evals, replace=False):
        # a diverged run scores the untrained network, as the sweep records it
        untrained = 2.0 + 5.0 * float(np.exp(rng.uniform(np.log(0.05), 0.0)))
        evals.loc[row, ["test_loss", "test_accuracy", "diverged"]] = [untrained, 0.1, 1]
        key = evals.loc[row, ["dataset", "optimizer", "batch_size", "track", "seed"]]
        mask = (curves[key.index] == key.to_numpy()).all(axis=1) & (curves["epoch"] > 3)
        curves.loc[mask, ["train_loss", "val_loss", "val_accuracy", "grad_norm", "updates", "seconds", "test_loss",
                          "test_accuracy"]] = math.nan
    config = {"name": name, "datasets": list(datasets), "optimizers": list(optimizers),
              "batch_sizes": list(batch_sizes), "trials": trials, "epochs": epochs_per, "seeds": seed_list,
              "tuning_seed": 1000, "random_arm": random_arm, "population": 1,
              "search_spaces": {o: SEARCH_SPACES[o] for o in optimizers},
              "defaults": {o: DEFAULTS[o] for o in optimizers}}
    meta = {"git_commit": "0" * 40, "versions": {"numpy": "2.4.6", "optuna": "5.0.0", "mlflow": "3.17.2"},
            "machine": "fixture (2 cores)", "config_hash": "f" * 16, "command": "make_results()",
            "tracking_uri": "sqlite:///fixture.db", "optuna_storage": "journal:fixture.log"}
    return SweepResults(name, config, evals, curves, pd.DataFrame(trial_rows), pd.DataFrame(importance_rows), meta,
                        pd.DataFrame(cell_rows))
