"""What the report reads: one sweep's results, gathered from the MLflow and Optuna stores.

``load(runs_dir, sweep)`` reads the stores through study.sweep.tracking and study.sweep.tuning (never earlier reports)
and returns a ``SweepResults``; the report is a pure function of it. The sweep's own config is the dict the sweep
wrote into its Optuna store: only this module reads its keys (``SweepResults``' accessors below), so that it can
become the sweep's model in one step. A dataset read from a CSV file (``csv:PATH`` in the config) is named by its
file's stem (``study.core.data.display_name``) in every table, as the sweep names it in MLflow and Optuna.

What the stores hold is the contract of issue 18 (notes/DESIGN18.md): the sweep meta's ``config``, ``timing`` and
``caps``; each cell's ledger (its evaluations, keyed by track, tuning run, trial and seed, with the budgets each
serves, and their final values); each cell run's ``curves.parquet`` (one row per run and checkpoint) and
``trials.parquet`` (every tuning trial of every run and arm). A store written before that contract (one tuning run,
one evaluation per track and seed serving every budget, curves at epoch ends) reads as the same shape.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from study.core.data import display_name
from study.core.optim import OPTIMIZERS

TRACKS = ("tuned", "default")  # the evaluation tracks: the tuned hyperparameters, the registry's defaults
BUDGETS = ("epochs", "updates", "seconds")  # equal epochs, equal updates, equal wall time
UNITS = {"epochs": "epochs", "updates": "updates", "seconds": "seconds"}
DEFAULT_RUN = -1  # the tuning_run of the default track: no tuning run chose its hyperparameters


@dataclass(frozen=True)
class SweepResults:
    name: str
    # The resolved sweep config as the sweep logged it: datasets, optimizers, batch_sizes (strings), trials,
    # tuning_runs, epochs {dataset: int}, seeds (list of int), tuning_seed, random_arm (bool), population,
    # search_spaces {optimizer: {param: {"low", "high", "log", "one_minus"} or {"fixed": value}}},
    # defaults {optimizer: {param: value}}.
    config: dict
    # One row per (dataset, optimizer, batch_size, track, tuning_run, budget, seed): the evaluation run that serves
    # that budget (one run may serve several: one row each). tuning_run is -1 on the default track, which has a row
    # per budget too. run_id (unique per evaluation run), test_loss and test_accuracy at the epochs cap (NaN
    # accuracy for regression; a diverged run's are the untrained network's), diverged (0/1), seconds (measured
    # wall), initial_val_loss and initial_test_loss (the untrained network's: what a diverged run scores),
    # final_train_loss, n_train, and the hyperparameters used (every one the registry declares,
    # ``hyperparameter_names()``; NaN where the optimizer has none).
    evals: pd.DataFrame
    # One row per evaluation run and checkpoint: run_id, dataset, optimizer, batch_size, track, tuning_run, seed,
    # epoch (float: updates / updates_per_epoch; whole at epoch ends), updates (int), val_loss, test_loss,
    # val_accuracy, test_accuracy (every checkpoint), train_loss and grad_norm (epoch ends only, NaN inside).
    curves: pd.DataFrame
    # One row per tuning trial that finished: dataset, optimizer, batch_size, tuning_run, arm ("tpe" | "random"),
    # number (0-based, in the order the trials were asked within cell, run and arm), state (COMPLETE | PRUNED |
    # FAIL | DIVERGED), value (final validation loss; the finite penalty for DIVERGED; NaN for PRUNED and FAIL), the
    # hyperparameters (as in evals), test_loss (its final test loss: recorded, never read by a choice).
    trials: pd.DataFrame
    # Parameter importances per cell (Optuna's default evaluator): dataset, optimizer, batch_size, param, importance.
    importances: pd.DataFrame
    # git_commit, versions {package: version}, machine, config_hash, command, tracking_uri (masked), optuna_storage
    # (masked).
    meta: dict = field(default_factory=dict)
    # One row per cell: dataset, optimizer, batch_size, seconds_per_epoch (measured before tuning, one network
    # alone; NaN if not measured), updates_per_epoch, diverged_share (of its tuning trials).
    cells: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CELL_COLUMNS))
    # One row per dataset and budget: dataset, budget, cap, unit (E_d epochs, U_d updates, T_d seconds).
    caps: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CAP_COLUMNS))

    # --- the sweep's config, read here only ---------------------------------------------------------------------
    @property
    def config_as_logged(self) -> dict:
        """The whole config as the sweep logged it (the report's provenance hashes it and shows it)."""
        return self.config

    @property
    def datasets(self) -> tuple[str, ...]:
        """The config's datasets, in its order, as the tables name them (a CSV file by its stem)."""
        return tuple(map(display_name, self.config.get("datasets", [])))

    @property
    def optimizers(self) -> tuple[str, ...]:
        return tuple(self.config.get("optimizers", []))

    @property
    def batch_sizes(self) -> tuple[str, ...]:
        """The config's batch sizes as text ("full", "128", ...), in its order."""
        return tuple(str(b) for b in self.config.get("batch_sizes", []))

    @property
    def seeds(self) -> tuple[int, ...]:
        """The evaluation seeds."""
        return tuple(int(s) for s in self.config.get("seeds", []))

    @property
    def trials_per_cell(self) -> int | None:
        """TPE trials per cell and tuning run (None in a config that does not say)."""
        return self.config.get("trials")

    @property
    def tuning_runs(self) -> int:
        """Independent TPE tuning runs per cell (1 in a sweep from before they were counted)."""
        return int(self.config.get("tuning_runs", 1))

    @property
    def tuning_seed(self) -> int | None:
        return self.config.get("tuning_seed")

    @property
    def search_spaces(self) -> dict:
        """optimizer -> {param: {"low", "high", "log", "one_minus"} or {"fixed": value}}."""
        return self.config.get("search_spaces", {})

    def epochs(self, dataset: str) -> int | str:
        """The dataset's epochs ("n/a" when the config does not say)."""
        epochs = self.config.get("epochs", {})
        if not isinstance(epochs, dict):
            return epochs
        return {display_name(d): e for d, e in epochs.items()}.get(dataset, "n/a")


@dataclass(frozen=True)
class Grid:
    """What the report compares, each in the config's order (then any extra the stores hold, sorted)."""
    datasets: tuple[str, ...]
    optimizers: tuple[str, ...]
    batches: tuple[str, ...]  # batch sizes as text
    tracks: tuple[str, ...]  # the evaluation tracks present, in TRACKS' order


def ordered(values, order) -> tuple:
    """``values`` in the config's order (then any extras, sorted), so tables and figures list them stably."""
    present = list(dict.fromkeys(values))
    return tuple([v for v in order if v in present] + sorted(v for v in present if v not in order))


def grid(results: SweepResults) -> Grid:
    evals = results.evals
    return Grid(ordered(evals["dataset"], results.datasets), ordered(evals["optimizer"], results.optimizers),
                ordered(evals["batch_size"].astype(str), results.batch_sizes),
                tuple(t for t in TRACKS if (evals["track"] == t).any()))


ROW_ORDER = {"evals": ["dataset", "optimizer", "batch_size", "track", "tuning_run", "budget", "seed"],
             "curves": ["dataset", "optimizer", "batch_size", "track", "tuning_run", "seed", "run_id", "updates"],
             "trials": ["dataset", "optimizer", "batch_size", "tuning_run", "arm", "number"],
             "importances": ["dataset", "optimizer", "batch_size", "param"],
             "cells": ["dataset", "optimizer", "batch_size"], "caps": ["dataset", "budget"]}


def canonical(results: SweepResults) -> SweepResults:
    """The same results with every table's rows in one fixed order and batch sizes as text: the report must not
    depend on the order in which a store happens to return runs (bootstrap draws are assigned by row)."""
    frames = {}
    for name, keys in ROW_ORDER.items():
        frame = getattr(results, name)
        if "batch_size" in frame.columns:
            frame = frame.assign(batch_size=frame["batch_size"].astype(str))
        present = [k for k in keys if k in frame.columns]
        frames[name] = frame.sort_values(present, kind="mergesort").reset_index(drop=True) if len(frame) else frame
    return dataclasses.replace(results, **frames)


def hyperparameter_names() -> tuple[str, ...]:
    """Every hyperparameter the registry declares, under its lecture name: one column each in evals and trials."""
    return tuple(dict.fromkeys(h for opt in OPTIMIZERS.values() for h in opt.hyper))


CURVE_METRICS = ("val_loss", "test_loss", "val_accuracy", "test_accuracy", "train_loss", "grad_norm")
RUN_KEYS = ["dataset", "optimizer", "batch_size", "track", "tuning_run", "seed"]
CELL_COLUMNS = ["dataset", "optimizer", "batch_size", "seconds_per_epoch", "updates_per_epoch", "diverged_share"]
CAP_COLUMNS = ["dataset", "budget", "cap", "unit"]
FINALS = ("test_loss", "test_accuracy", "diverged", "seconds", "initial_val_loss", "initial_test_loss",
          "final_train_loss")


def updates_per_epoch(n_train: int, batch_size: str) -> int:
    """Full batch 1, mini-batch ceil(N / B) (the last, smaller batch kept), stochastic N."""
    return 1 if str(batch_size) == "full" else math.ceil(n_train / min(int(batch_size), n_train))


def caps_from(epochs: dict, cells: pd.DataFrame) -> pd.DataFrame:
    """The contract's caps, where a store has none (a sweep from before them): E_d epochs, U_d = E_d updates (what
    a full-batch cell makes in E_d epochs), T_d = E_d x the slowest full-batch epoch among the dataset's cells (the
    sweep's own rule, study.sweep.timing.caps_of; the cheapest of any batch where a store has no full batch)."""
    full = cells[cells["batch_size"].astype(str) == "full"] if len(cells) else cells
    cheapest = (full.groupby("dataset")["seconds_per_epoch"].max() if len(full)
                else cells.groupby("dataset")["seconds_per_epoch"].min() if len(cells) else pd.Series(dtype=float))
    rows = []
    for dataset, e in epochs.items():
        for budget, cap in (("epochs", e), ("updates", e), ("seconds", e * float(cheapest.get(dataset, np.nan)))):
            rows.append({"dataset": dataset, "budget": budget, "cap": float(cap), "unit": UNITS[budget]})
    return pd.DataFrame(rows, columns=CAP_COLUMNS)


# --- reading the stores ----------------------------------------------------------------------------------------------
def read_optuna(url: str, sweep: str) -> dict:
    """The Optuna side of a sweep: its meta (config, timing, caps), the trials, the importances and each cell's
    record. Run in a child process while the parent reads MLflow; a problem comes back as ``{"bad": (where,
    problem)}``."""
    from study.sweep import tracking, tuning

    if "://" not in url and not Path(url).exists():  # never create a journal just by looking
        return {"bad": ("--sweep", f"no Optuna journal for sweep {sweep!r} at {url}")}
    storage = tuning.open_storage(url)
    meta = tuning.sweep_meta(storage, sweep)
    if not meta.get("config"):
        return {"bad": ("--sweep", f"no sweep {sweep!r} in the Optuna store {tracking.mask_url(url)}")}
    trials, importances, records = tuning.read_trials(storage, sweep, meta["config"])
    return {"meta": meta, "trials": trials, "importances": importances, "records": records}


def _evaluations(record) -> list[dict]:
    """A cell record's evaluations: track, tuning_run, seed, budgets, run_id, final values and hyper. The record
    of issue 18 lists them (``evaluations()``, keyed by track, tuning run, trial and seed with the budgets each
    serves); an older record keys them by track and seed, one tuning run, every budget served. Only evaluations
    MLflow holds count (an orphan MLflow never took is not a result)."""
    if hasattr(record, "evaluations"):
        return [e for e in record.evaluations() if e.get("run_id")]
    scores, out = record.eval_scores(), []
    for (track, seed), run_id in sorted(record.eval_runs().items()):
        final = scores.get((track, seed), {})
        out.append({"track": track, "tuning_run": 0 if track == "tuned" else DEFAULT_RUN, "seed": seed,
                    "budgets": list(BUDGETS), "run_id": run_id, "final": final, "hyper": final.get("hyper", {})})
    return out


def evals_table(cell: tuple, evaluations: list[dict], n_train: int) -> pd.DataFrame:
    """One cell's evaluations as ``SweepResults.evals`` rows: one per budget each serves."""
    names, rows = hyperparameter_names(), []
    for e in evaluations:
        final = e.get("final") or e
        for budget in e["budgets"]:
            rows.append({**dict(zip(("dataset", "optimizer", "batch_size"), cell)), "track": e["track"],
                         "tuning_run": int(e["tuning_run"]), "budget": budget, "seed": int(e["seed"]),
                         "run_id": e["run_id"], **{k: float(final.get(k, np.nan)) for k in FINALS},
                         "n_train": n_train, **{h: float((e.get("hyper") or {}).get(h, np.nan)) for h in names}})
    out = pd.DataFrame(rows, columns=EVAL_COLUMNS)
    out["diverged"] = out["diverged"].fillna(0).astype(int)
    return out


def _budgets_of(text) -> frozenset:
    return frozenset(b for b in str(text).split(",") if b) if isinstance(text, str) and text else frozenset(BUDGETS)


def curves_table(cell: tuple, parquet: pd.DataFrame, evals: pd.DataFrame) -> pd.DataFrame:
    """One cell's evaluation rows of curves.parquet as ``SweepResults.curves``, each run found by its run id, else
    by (track, tuning run, seed, the budgets it serves): one evaluation per budget, so that key is unique. A
    curves.parquet from before issue 18 has neither tuning_run nor budgets nor intra-epoch rows."""
    table = parquet[parquet["role"] == "eval"]
    if table.empty or evals.empty:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    tuning_run = table["tuning_run"].astype(int) if "tuning_run" in table else np.where(
        table["track"] == "tuned", 0, DEFAULT_RUN)
    served = [_budgets_of(b) for b in table["budgets"]] if "budgets" in table else [frozenset(BUDGETS)] * len(table)
    served_by = {run_id: frozenset(g) for run_id, g in evals.groupby("run_id", sort=False)["budget"]}
    runs = evals.drop_duplicates("run_id")
    by_key = {(t, int(u), int(s), served_by[r]): r for r, t, u, s in
              zip(runs["run_id"], runs["track"], runs["tuning_run"], runs["seed"])}
    known = set(served_by)
    run_id = [rid if rid in known else by_key.get((t, int(u), int(s), b))
              for rid, t, u, s, b in zip(table["run_id"].astype(str), table["track"], tuning_run,
                                         table["seed"].astype(int), served)]
    out = pd.DataFrame({"run_id": run_id, **dict(zip(("dataset", "optimizer", "batch_size"), cell)),
                        "track": table["track"].to_numpy(), "tuning_run": np.asarray(tuning_run, int),
                        "seed": table["seed"].astype(int).to_numpy(), "epoch": table["epoch"].astype(float).to_numpy(),
                        "updates": table["updates"].to_numpy(float),
                        **{m: table[m].to_numpy(float) if m in table else np.full(len(table), np.nan)
                           for m in CURVE_METRICS}})
    return out[out["run_id"].notna()][CURVE_COLUMNS]


def trials_table(cell: tuple, parquet: pd.DataFrame | None, from_optuna: list[dict]) -> pd.DataFrame:
    """One cell's tuning trials: its trials.parquet (every run and arm, each with its final test loss) where the
    cell run has one, else what Optuna holds (one tuning run)."""
    keys = dict(zip(("dataset", "optimizer", "batch_size"), cell))
    if parquet is not None:
        frame = parquet.assign(**keys)
    else:
        frame = pd.DataFrame([t for t in from_optuna if (t["dataset"], t["optimizer"], t["batch_size"]) == cell])
        frame = frame.assign(tuning_run=0) if len(frame) else frame
    return frame.reindex(columns=TRIAL_COLUMNS) if len(frame) else pd.DataFrame(columns=TRIAL_COLUMNS)


def load(runs_dir: str | Path, sweep: str) -> SweepResults:
    """Read one sweep's results from its stores: the meta, the trials' importances and each cell's record (its
    evaluations and their final values) from Optuna; the cell runs, their curves.parquet and trials.parquet from
    MLflow. The two stores are read at the same time, Optuna's in a child process."""
    import concurrent.futures
    import multiprocessing
    import tempfile

    from study.core import data
    from study.errors import BadInput
    from study.sweep import tracking, tuning

    url = tuning.storage_url(runs_dir, sweep)
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        optuna_part = pool.submit(read_optuna, url, sweep)
        mlflow_client = tracking.client(runs_dir)
        experiment = mlflow_client.get_experiment_by_name(sweep)
        if experiment is None:
            raise BadInput("--sweep", f"no MLflow experiment {sweep!r} in "
                                      f"{tracking.mask_url(tracking.tracking_uri(runs_dir))}")
        cell_runs = {r.info.run_id: r for r in tracking.runs(mlflow_client, experiment.experiment_id,
                                                             "tags.role = 'cell'")}
        with tempfile.TemporaryDirectory() as tmp:
            artifacts = {run_id: {name: _read(tracking.download(run, name, Path(tmp) / run_id))
                                  for name in ("curves.parquet", "trials.parquet")}
                         for run_id, run in cell_runs.items()}
        try:
            found = optuna_part.result()
        except concurrent.futures.process.BrokenProcessPool:  # no child here (an interactive __main__): in turn
            found = read_optuna(url, sweep)
    if "bad" in found:
        raise BadInput(*found["bad"])
    meta, records = found["meta"], found["records"]
    config = meta["config"]
    missing = config.get("missing_values", "refuse")  # a CSV file's rule; the key is there when a file is
    n_train = {d: data.load(d, 0, config["val_fraction"], config["test_fraction"], missing).X_train.shape[0]
               for d in config["datasets"]}
    timing = meta.get("timing") or {}
    evals, curves, trials, cells = [], [], [], []
    for cell, record in records.items():
        dataset, optimizer, batch = cell[0], cell[1], str(cell[2])
        key = (display_name(dataset), optimizer, batch)  # the stores' timing and n_train use the config's name
        mine = evals_table(key, _evaluations(record), n_train[dataset])
        evals.append(mine)
        run = cell_runs.get(record.cell_run_id) if record.cell_run_id else None
        parquet = artifacts[run.info.run_id] if run is not None else {}
        if parquet.get("curves.parquet") is not None:  # else MLflow lost the cell run: the coverage says so
            curves.append(curves_table(key, parquet["curves.parquet"], mine))
        trials.append(trials_table(key, parquet.get("trials.parquet"), found["trials"]))
        if run is None:
            continue
        spe = timing.get(f"{dataset}/{optimizer}/{batch}", record.seconds_per_epoch)
        cells.append({"dataset": key[0], "optimizer": optimizer, "batch_size": batch,
                      "seconds_per_epoch": float(spe) if spe is not None else run.data.metrics.get(
                          "seconds_per_epoch", np.nan),
                      "updates_per_epoch": updates_per_epoch(n_train[dataset], batch),
                      "diverged_share": run.data.metrics.get("diverged_share", np.nan)})
    cells = pd.DataFrame(cells, columns=CELL_COLUMNS)
    caps = pd.DataFrame([{"dataset": display_name(d), "budget": b, "cap": float(v), "unit": UNITS[b]}
                         for d, by in (meta.get("caps") or {}).items() for b, v in by.items()], columns=CAP_COLUMNS)
    if caps.empty:
        epochs = ({display_name(d): e for d, e in config["epochs"].items()} if isinstance(config["epochs"], dict)
                  else {display_name(d): config["epochs"] for d in config["datasets"]})
        caps = caps_from(epochs, cells)
    sample = next(iter(cell_runs.values())).data.tags if cell_runs else {}
    concat = lambda parts, columns: (pd.concat(parts, ignore_index=True) if parts  # noqa: E731
                                     else pd.DataFrame(columns=columns))
    return SweepResults(
        name=sweep, config=config, evals=concat(evals, EVAL_COLUMNS), curves=concat(curves, CURVE_COLUMNS),
        trials=concat(trials, TRIAL_COLUMNS),
        importances=pd.DataFrame(found["importances"], columns=["dataset", "optimizer", "batch_size", "param",
                                                                "importance"]),
        meta={"git_commit": sample.get("git_commit", "unknown"),
              "versions": {k.removeprefix("version."): v for k, v in sorted(sample.items())
                           if k.startswith("version.")},
              "machine": meta.get("machine", "unknown"), "config_hash": meta.get("config_hash", ""),
              "command": sample.get("command", ""),
              "tracking_uri": tracking.mask_url(tracking.tracking_uri(runs_dir)),
              "optuna_storage": tracking.mask_url(url)},
        cells=cells, caps=caps)


def _read(path: Path | None) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path is not None else None


EVAL_COLUMNS = ["dataset", "optimizer", "batch_size", "track", "tuning_run", "budget", "seed", "run_id", *FINALS,
                "n_train", *hyperparameter_names()]
CURVE_COLUMNS = ["run_id", *RUN_KEYS, "epoch", "updates", *CURVE_METRICS]
TRIAL_COLUMNS = ["dataset", "optimizer", "batch_size", "tuning_run", "arm", "number", "state", "value",
                 *hyperparameter_names(), "test_loss"]
