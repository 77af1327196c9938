"""Synthetic sweep results with effects planted on purpose, for testing the report without running a sweep.

``make_results(...)`` returns a ``SweepResults`` in the shape of the contract of issue 18 (notes/DESIGN18.md), as
``study.report.inputs.load`` gives it: evaluations per (cell, track, tuning run, budget, seed), each budget served
by its own choice of hyperparameters (the updates and seconds budgets share one that trains faster and ends a
little higher; ``budget_choices=False``: one evaluation serves every budget), checkpoint curves with intra-epoch
rows (every epoch end and a log grid of 8 per decade of updates), the tuning trials of every run and arm with
their test loss, cells with seconds_per_epoch and updates_per_epoch, and the caps.

The planted model, per dataset d, optimizer o, batch size b, tuning run r and seed s:
  test loss at E_d = scale_d (1 + optimizer_effect[o]) (1 + batch_effect[b]) exp(interaction_dob)
                     x exp(tuning_dobr) (1 + run_effect[r][o]) x exp(seed noise)     (tuned)
                     x exp(DEFAULT_GAP[o]) instead of the tuning terms                 (default)
  validation loss at E_d = test loss x (1 + val_effect[o]) x exp(split_ds + val noise)
``split_ds`` is shared by every cell at seed s (the same split), so it cancels in paired differences: the loss unit
(the SD of paired same-seed validation differences) is about sqrt(2 (seed_sd^2 + val_sd^2)) of the loss. Curves
come down as 1 + 3 exp(-epoch / tau) to their value at E_d.

``fast_settings(...)`` is the shipped configuration with fewer posterior draws and resamples (conf/report.yaml's
models, copied with the few values changed).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from study.report import settings
from study.report.inputs import (CURVE_COLUMNS, DEFAULT_RUN, EVAL_COLUMNS, TRIAL_COLUMNS, SweepResults, caps_from,
                                 updates_per_epoch)

# the values a test may lower, and where conf/report.yaml declares them: (block, key)
FAST = {"bayes_samples": ("statistics", "bayes_samples"), "bootstrap_resamples": ("statistics", "bootstrap_resamples"),
        "stability_resamples": ("stability", "resamples"), "band_resamples": ("stability", "band_resamples"),
        "stability_bayes_samples": ("stability", "bayes_samples"), "target_factor": ("target", "factor")}


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
DEFAULT_DATASETS = DATASETS[:7] + ("diabetes", "clf_easy", "clf_hard", "clf_multi", "clf_wide", "quantiles",
                                   "quantiles_3d", "blobs")  # the default profile's fifteen
DEFAULT_EPOCHS = {d: {"iris": 200, "wine": 150, "diabetes": 100, "digits": 30, "clf_hard": 50, "circles": 80,
                      "sparse": 80, "quantiles_3d": 100}.get(d, 60) for d in DEFAULT_DATASETS}
N_TRAIN = {"moons": 360, "circles": 360, "iris": 90, "wine": 106, "breast_cancer": 341, "digits": 1078,
           "sparse": 600, "clf_easy": 360, "clf_hard": 600, "clf_multi": 480, "clf_wide": 300, "diabetes": 265}
REGRESSION = {"diabetes"}
HYPER = ("eta", "gamma", "beta", "beta1", "beta2", "eps")
BUDGETS = ("epochs", "updates", "seconds")


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
SPEED_CHOICE = (0.6, 1.03)  # the updates / seconds budgets' choice: tau x 0.6, final loss x 1.03


def checkpoints(epochs: int, per_epoch: int) -> np.ndarray:
    """The contract's checkpoint grid in updates: every epoch end, and a log grid of 8 per decade inside epochs."""
    last = epochs * per_epoch
    grid = np.unique(np.round(10.0 ** (np.arange(0, 8 * math.log10(max(last, 1)) + 1) / 8)).astype(int))
    return np.union1d(grid[grid <= last], per_epoch * np.arange(1, epochs + 1))


def _sample_params(rng, optimizer: str) -> dict:
    params = {}
    for name, space in SEARCH_SPACES[optimizer].items():
        if space["fixed"] is not None:
            params[name] = space["fixed"]
            continue
        x = math.exp(rng.uniform(math.log(space["low"]), math.log(space["high"])))
        params[name] = 1.0 - x if space.get("one_minus") else x
    return params


def _trials(rng, cell: tuple, level: float, runs, trials: int, random_arm: bool, initial: tuple,
            tpe_factor: float) -> list[dict]:
    """Every tuning trial of a cell: TPE per run (pruned now and then, getting better), a random arm on run 0."""
    rows = []
    for r, run_level in enumerate(runs):
        for arm in ["tpe"] + (["random"] if random_arm and r == 0 else []):
            for number in range(trials):
                params = _sample_params(rng, cell[1])
                shrink = 1.0 - 0.7 * number / max(trials - 1, 1) if arm == "tpe" else 1.0
                value = run_level * math.exp(abs(rng.normal(0.0, 0.6)) * shrink) * (tpe_factor if arm == "tpe"
                                                                                    else 1.0)
                state, draw = "COMPLETE", rng.random()
                held_out = value * math.exp(rng.normal(0, 0.05))
                if number > 0 and arm == "tpe" and draw < 0.15:
                    state, value, held_out = "PRUNED", math.nan, math.nan
                elif number > 0 and draw > 1.0 - (0.12 if cell[1] == "gd" else 0.04):
                    state, value, held_out = "DIVERGED", initial[0], initial[1]
                rows.append({**dict(zip(("dataset", "optimizer", "batch_size"), cell)), "tuning_run": r, "arm": arm,
                             "number": number, "state": state, "value": value, "test_loss": held_out,
                             **{h: params.get(h, math.nan) for h in HYPER}, "_params": params})
    return rows


def _chosen(rows: list[dict], run: int) -> tuple[dict, dict]:
    """The hyperparameters a run chooses for the epochs budget (its best trial, both arms) and for the updates and
    seconds budgets (planted: its second best, a different choice)."""
    mine = sorted((t for t in rows if t["tuning_run"] == run and t["state"] == "COMPLETE"), key=lambda t: t["value"])
    return mine[0]["_params"], mine[min(1, len(mine) - 1)]["_params"]


def make_results(datasets=DATASETS, optimizers=OPTIMIZERS, batch_sizes=BATCH_SIZES, seeds=5, epochs=20, trials=20,
                 tuning_runs=2, optimizer_effect: dict | None = None, batch_effect: dict | None = None,
                 interaction_sd=0.03, seed_sd=0.02, val_sd=0.04, tuning_sd=0.01, default_gap=True, random_arm=True,
                 diverged_evals=2, seed=0, name="fixture", val_effect: dict | None = None,
                 speed_effect: dict | None = None, cost_effect: dict | None = None, train_effect: dict | None = None,
                 run_effect: dict | None = None, tpe_effect: dict | None = None,
                 budget_choices=True) -> SweepResults:
    """A synthetic sweep. ``optimizer_effect`` / ``batch_effect`` map a treatment to a relative change of its
    test loss (-0.2 = 20% lower on every dataset); ``val_effect`` one of its validation loss only (validation and
    test disagree); ``speed_effect`` a factor on how many epochs an optimizer's curves take to come down (2 = twice
    as slow); ``cost_effect`` a factor on its seconds per epoch; ``train_effect`` a relative change of its final
    training loss only (a generalisation gap); ``run_effect`` {tuning run: {optimizer: relative change}} of what
    one tuning run found (two runs that disagree); ``tpe_effect`` {optimizer: factor} on its TPE trials' losses
    against the random arm's. ``epochs``: an int for every dataset, or {dataset: epochs}. Everything unplanted is
    equal up to noise."""
    rng = np.random.default_rng(seed)
    optimizer_effect, batch_effect, val_effect = optimizer_effect or {}, batch_effect or {}, val_effect or {}
    speed_effect, cost_effect, train_effect = speed_effect or {}, cost_effect or {}, train_effect or {}
    run_effect, tpe_effect = run_effect or {}, tpe_effect or {}
    epochs_per = dict(epochs) if isinstance(epochs, dict) else {d: epochs for d in datasets}
    seed_list = list(range(seeds))
    evals, curves, trial_rows, importance_rows, cell_rows = [], [], [], [], []
    for dataset in datasets:
        n_train, e_max = N_TRAIN.get(dataset, 300), epochs_per[dataset]
        scale = float(np.exp(rng.uniform(np.log(0.05), np.log(1.0))))
        initial = (2.0 + 5.0 * scale, 2.1 + 5.0 * scale)  # the untrained network's validation and test loss
        split = rng.normal(0.0, 0.05, seeds)  # one per seed: shared by every cell on that split
        for optimizer in optimizers:
            for batch in batch_sizes:
                cell = (dataset, optimizer, batch)
                level = scale * (1 + optimizer_effect.get(optimizer, 0.0)) * (1 + batch_effect.get(batch, 0.0))
                level *= math.exp(rng.normal(0.0, interaction_sd))
                runs = [level * math.exp(rng.normal(0.0, tuning_sd)) * (1 + run_effect.get(r, {}).get(optimizer, 0))
                        for r in range(tuning_runs)]
                tried = _trials(rng, cell, level, runs, trials, random_arm, initial, tpe_effect.get(optimizer, 1.0))
                trial_rows += tried
                tunable = [p for p, s in SEARCH_SPACES[optimizer].items() if s["fixed"] is None]
                for param, weight in zip(tunable, rng.dirichlet(np.ones(len(tunable)))):
                    importance_rows.append({**dict(zip(("dataset", "optimizer", "batch_size"), cell)),
                                            "param": param, "importance": float(weight)})
                per_epoch = updates_per_epoch(n_train, batch)
                spe = (0.0005 * per_epoch + 0.01) * cost_effect.get(optimizer, 1.0)
                cell_rows.append({**dict(zip(("dataset", "optimizer", "batch_size"), cell)),
                                  "seconds_per_epoch": spe, "updates_per_epoch": per_epoch, "diverged_share": 0.0})
                # the evaluation runs: (track, tuning run, budgets served, hyperparameters, level, tau factor)
                plan = []
                for r, run_level in enumerate(runs):
                    slow, fast = _chosen(tried, r)
                    if budget_choices:
                        plan += [("tuned", r, ("epochs",), slow, run_level, 1.0),
                                 ("tuned", r, ("updates", "seconds"), fast, run_level * SPEED_CHOICE[1],
                                  SPEED_CHOICE[0])]
                    else:
                        plan.append(("tuned", r, BUDGETS, slow, run_level, 1.0))
                gap = DEFAULT_GAP[optimizer] if default_gap else 0.0
                plan.append(("default", DEFAULT_RUN, BUDGETS, DEFAULTS[optimizer], level * math.exp(gap), 1.0))
                updates = checkpoints(e_max, per_epoch)
                epoch = updates / per_epoch
                ends = np.isclose(epoch, np.round(epoch))
                samples = n_train if batch == "full" else min(int(batch), n_train)
                n_runs, k = len(plan) * seeds, len(epoch)
                levels = np.repeat([p[4] for p in plan], seeds)
                taus = np.repeat([(2.0 + 3.0 * (gap if p[0] == "default" else 0.0) + (4.0 if batch == "full"
                                  else 0.0)) * speed_effect.get(optimizer, 1.0) * p[5] for p in plan], seeds)
                shape = (1.0 + 3.0 * np.exp(-epoch[None, :] / taus[:, None])) / (
                    1.0 + 3.0 * np.exp(-e_max / taus[:, None]))
                test = levels * np.exp(rng.normal(0.0, seed_sd, n_runs))
                s_of = np.tile(seed_list, len(plan))
                val = test * (1 + val_effect.get(optimizer, 0.0)) * np.exp(split[s_of] + rng.normal(0, val_sd, n_runs))
                noise = rng.lognormal(0.0, 0.01 + 0.1 / math.sqrt(samples), (n_runs, k))
                noise[:, -1] = 1.0
                val_curve = val[:, None] * shape * noise
                test_noise = rng.lognormal(0, 0.01, (n_runs, k))
                test_noise[:, -1] = 1.0
                test_curve = test[:, None] * shape * test_noise
                ids = [f"{dataset}/{optimizer}/{batch}/{p[0]}/{p[1]}/{p[2][0]}/{s}" for p in plan for s in seed_list]
                accuracy = np.nan if dataset in REGRESSION else 1.0
                curves.append({
                    "run_id": np.repeat(ids, k), "dataset": dataset, "optimizer": optimizer, "batch_size": batch,
                    "track": np.repeat([p[0] for p in plan], seeds * k),
                    "tuning_run": np.repeat([p[1] for p in plan], seeds * k), "seed": np.repeat(s_of, k),
                    "epoch": np.tile(epoch, n_runs), "updates": np.tile(updates, n_runs),
                    "val_loss": val_curve.ravel(), "test_loss": test_curve.ravel(),
                    "val_accuracy": (np.clip(1.0 - 0.3 * val_curve, 0, 1) * accuracy).ravel(),
                    "test_accuracy": (np.clip(1.0 - 0.3 * test_curve, 0, 1) * accuracy).ravel(),
                    "train_loss": np.where(ends, 0.9 * val_curve, np.nan).ravel(),
                    "grad_norm": np.where(ends, 0.5 * np.exp(-epoch[None, :] / taus[:, None])
                                          + 0.05 * (1 + 3 / math.sqrt(samples)), np.nan).ravel()})
                for i, (track, run, served, params, _, _) in enumerate(plan):
                    for j, s in enumerate(seed_list):
                        t = float(test[i * seeds + j])
                        final = {"test_loss": t, "test_accuracy": math.nan if dataset in REGRESSION
                                 else max(0.0, 1.0 - 0.3 * t), "diverged": 0, "seconds": e_max * spe,
                                 "initial_val_loss": initial[0], "initial_test_loss": initial[1],
                                 "final_train_loss": 0.8 * t * (1 + train_effect.get(optimizer, 0.0))}
                        for budget in served:
                            evals.append({**dict(zip(("dataset", "optimizer", "batch_size"), cell)), "track": track,
                                          "tuning_run": run, "budget": budget, "seed": s,
                                          "run_id": ids[i * seeds + j], **final, "n_train": n_train,
                                          **{h: params.get(h, math.nan) for h in HYPER}})
    evals = pd.DataFrame(evals).reindex(columns=EVAL_COLUMNS)
    lengths = [len(part["epoch"]) for part in curves]
    curves = pd.DataFrame({c: np.concatenate([np.broadcast_to(np.asarray(part[c]), (n,)) for part, n in
                                              zip(curves, lengths)]) for c in CURVE_COLUMNS})
    # a few default-track runs blow up, as plain GD with a stochastic batch sometimes does: the untrained network's
    # losses, and no curve after epoch 3
    default_runs = evals.loc[evals["track"] == "default", "run_id"].unique()
    for run_id in rng.choice(default_runs, size=diverged_evals, replace=False):
        rows = evals["run_id"] == run_id
        evals.loc[rows, ["test_loss", "test_accuracy", "diverged"]] = [evals.loc[rows, "initial_test_loss"].iloc[0],
                                                                      0.1, 1]
        late = (curves["run_id"] == run_id) & (curves["epoch"] > 3)
        curves.loc[late, ["val_loss", "test_loss", "val_accuracy", "test_accuracy", "train_loss", "grad_norm"]] = \
            math.nan
    cells = pd.DataFrame(cell_rows)
    config = {"name": name, "datasets": list(datasets), "optimizers": list(optimizers),
              "batch_sizes": list(batch_sizes), "trials": trials, "tuning_runs": tuning_runs, "epochs": epochs_per,
              "seeds": seed_list, "tuning_seed": 1000, "random_arm": random_arm, "population": 1,
              "search_spaces": {o: SEARCH_SPACES[o] for o in optimizers},
              "defaults": {o: DEFAULTS[o] for o in optimizers}}
    meta = {"git_commit": "0" * 40, "versions": {"numpy": "2.4.6", "optuna": "5.0.0", "mlflow": "3.17.2"},
            "machine": "fixture (2 cores)", "config_hash": "f" * 16, "command": "make_results()",
            "tracking_uri": "sqlite:///fixture.db", "optuna_storage": "journal:fixture.log"}
    trials_frame = pd.DataFrame(trial_rows).reindex(columns=TRIAL_COLUMNS)
    return SweepResults(name, config, evals, curves, trials_frame, pd.DataFrame(importance_rows), meta, cells,
                        caps_from(epochs_per, cells))


def default_size(seed: int = 0, **planted) -> SweepResults:
    """The default profile's shape: 15 datasets (its epochs), 6 optimizers, 5 batch sizes, 5 seeds, 2 tuning runs,
    20 trials per run and arm."""
    return make_results(datasets=DEFAULT_DATASETS, epochs=DEFAULT_EPOCHS, seed=seed, **planted)


def hand_made(runs: list[dict], epochs: int, n_train: int = 96, seconds_per_epoch: dict | None = None,
              datasets=None) -> SweepResults:
    """A sweep written out by hand: each run a dict with dataset, optimizer, batch_size, track, tuning_run, seed,
    budgets (those it serves), curve [(updates, val_loss, test_loss), ...] and optionally diverged,
    initial_val_loss, initial_test_loss, test_loss (else its curve's last). Caps from ``epochs`` (every dataset)
    and ``seconds_per_epoch`` {(dataset, optimizer, batch_size): seconds}."""
    evals, curves, cells = [], [], {}
    for i, run in enumerate(runs):
        key = (run["dataset"], run["optimizer"], run["batch_size"])
        per_epoch = updates_per_epoch(n_train, run["batch_size"])
        cells[key] = {"dataset": key[0], "optimizer": key[1], "batch_size": key[2],
                      "seconds_per_epoch": (seconds_per_epoch or {}).get(key, 0.01 * per_epoch),
                      "updates_per_epoch": per_epoch, "diverged_share": 0.0}
        run_id = f"run{i}"
        for updates, val, test in run["curve"]:
            epoch = updates / per_epoch
            end = float(epoch).is_integer()
            curves.append({"run_id": run_id, "dataset": key[0], "optimizer": key[1], "batch_size": key[2],
                           "track": run["track"], "tuning_run": run["tuning_run"], "seed": run["seed"],
                           "epoch": epoch, "updates": updates, "val_loss": val, "test_loss": test,
                           "val_accuracy": math.nan, "test_accuracy": math.nan,
                           "train_loss": val if end else math.nan, "grad_norm": 1.0 if end else math.nan})
        for budget in run["budgets"]:
            evals.append({"dataset": key[0], "optimizer": key[1], "batch_size": key[2], "track": run["track"],
                          "tuning_run": run["tuning_run"], "budget": budget, "seed": run["seed"],
                          "run_id": run_id, "test_loss": run.get("test_loss", run["curve"][-1][2]),
                          "test_accuracy": math.nan, "diverged": int(run.get("diverged", 0)),
                          "seconds": 1.0, "initial_val_loss": run.get("initial_val_loss", 2.5),
                          "initial_test_loss": run.get("initial_test_loss", 2.6), "final_train_loss": 0.1,
                          "n_train": n_train, "eta": 0.01})
    cells = pd.DataFrame(list(cells.values()))
    datasets = datasets or sorted(cells["dataset"].unique())
    config = {"name": "hand", "datasets": list(datasets), "optimizers": sorted(cells["optimizer"].unique()),
              "batch_sizes": list(dict.fromkeys(cells["batch_size"])), "seeds": sorted({r["seed"] for r in runs}),
              "tuning_runs": 1 + max(r["tuning_run"] for r in runs), "epochs": {d: epochs for d in datasets}}
    return SweepResults("hand", config, pd.DataFrame(evals).reindex(columns=EVAL_COLUMNS),
                        pd.DataFrame(curves).reindex(columns=CURVE_COLUMNS), pd.DataFrame(columns=TRIAL_COLUMNS),
                        pd.DataFrame(columns=["dataset", "optimizer", "batch_size", "param", "importance"]), {},
                        cells, caps_from({d: epochs for d in datasets}, cells))
