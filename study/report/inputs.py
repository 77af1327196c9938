"""What the report reads: one sweep's results, gathered from the MLflow and Optuna stores.

``load(runs_dir, sweep)`` reads the stores through study.sweep.tracking and study.sweep.tuning (never earlier reports)
and returns a ``SweepResults``; the report is a pure function of it. The sweep's own config is the dict the sweep
wrote into its Optuna store: only this module reads its keys (``SweepResults``' accessors below), so that it can
become the sweep's model in one step. A dataset read from a CSV file (``csv:PATH`` in the config) is named by its
file's stem (``study.core.data.display_name``) in every table, as the sweep names it in MLflow and Optuna.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from study.core.data import display_name
from study.core.optim import OPTIMIZERS

TRACKS = ("tuned", "default")  # the evaluation tracks: the tuned hyperparameters, the registry's defaults


@dataclass(frozen=True)
class SweepResults:
    name: str
    # The resolved sweep config as the sweep logged it: datasets, optimizers, batch_sizes (strings), trials,
    # epochs {dataset: int}, seeds (list of int), tuning_seed, random_arm (bool), population,
    # search_spaces {optimizer: {param: {"low", "high", "log", "one_minus"} or {"fixed": value}}},
    # defaults {optimizer: {param: value}}.
    config: dict
    # One row per evaluation run: dataset, optimizer, batch_size ("full", "128", ..., "1"), track ("tuned" |
    # "default"), seed, test_loss, test_accuracy (NaN for regression), diverged (0/1), seconds, n_train, and the
    # hyperparameters used (every one the registry declares, ``hyperparameter_names()``; NaN where the optimizer
    # has none), and
    # initial_val_loss (the untrained network's validation loss: what a diverged run scores on validation).
    evals: pd.DataFrame
    # One row per evaluation run and epoch (from the cell runs' curves.parquet): dataset, optimizer, batch_size,
    # track, seed, epoch (1-based), train_loss, val_loss, val_accuracy, grad_norm, updates, seconds, test_loss,
    # test_accuracy (the held-out curve; NaN in sweeps recorded before it was kept).
    curves: pd.DataFrame
    # One row per tuning trial that finished: dataset, optimizer, batch_size, arm ("tpe" | "random"), number
    # (0-based, in the order the trials were asked within cell and arm), state (COMPLETE | PRUNED | FAIL |
    # DIVERGED), value (final validation loss; the finite penalty for DIVERGED; NaN for PRUNED and FAIL),
    # the hyperparameters (as in evals); test_loss (random arm only, scored on test for the expected best-of-k
    # curves; NaN elsewhere).
    trials: pd.DataFrame
    # Parameter importances per cell (Optuna's default evaluator): dataset, optimizer, batch_size, param, importance.
    importances: pd.DataFrame
    # git_commit, versions {package: version}, machine, config_hash, command, tracking_uri (masked), optuna_storage
    # (masked).
    meta: dict = field(default_factory=dict)
    # One row per cell run: dataset, optimizer, batch_size, seconds_per_epoch (one network alone on the sweep's
    # machine; NaN if not measured), diverged_share (of its tuning trials).
    cells: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CELL_COLUMNS))

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
        """TPE trials per cell (None in a config that does not say)."""
        return self.config.get("trials")

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


ROW_ORDER = {"evals": ["dataset", "optimizer", "batch_size", "track", "seed"],
             "curves": ["dataset", "optimizer", "batch_size", "track", "seed", "epoch"],
             "trials": ["dataset", "optimizer", "batch_size", "arm", "number"],
             "importances": ["dataset", "optimizer", "batch_size", "param"],
             "cells": ["dataset", "optimizer", "batch_size"]}


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


CURVE_METRICS = ("train_loss", "val_loss", "val_accuracy", "grad_norm", "updates", "seconds", "test_loss",
                 "test_accuracy")
CELL_COLUMNS = ["dataset", "optimizer", "batch_size", "seconds_per_epoch", "diverged_share"]


def read_optuna(url: str, sweep: str) -> dict:
    """The Optuna side of a sweep: its config, every trial, the importances and each cell's record. Run in a child
    process while the parent reads MLflow (replaying a default sweep's journal takes a few seconds of one core);
    a problem comes back as ``{"bad": (where, problem)}``."""
    from study.sweep import tracking, tuning

    if "://" not in url and not Path(url).exists():  # never create a journal just by looking
        return {"bad": ("--sweep", f"no Optuna journal for sweep {sweep!r} at {url}")}
    storage = tuning.open_storage(url)
    meta = tuning.sweep_meta(storage, sweep)
    if not meta.get("config"):
        return {"bad": ("--sweep", f"no sweep {sweep!r} in the Optuna store {tracking.mask_url(url)}")}
    trials, importances, records = tuning.read_trials(storage, sweep, meta["config"])
    return {"meta": meta, "trials": trials, "importances": importances, "records": records}


def load(runs_dir: str | Path, sweep: str) -> SweepResults:
    """Read one sweep's results from its stores: the config, the trials and each cell's record (with the final
    values of every evaluation MLflow holds) from Optuna; the cell runs and their ``curves.parquet`` (every per-epoch
    value, at full precision) from MLflow. The two stores are read at the same time, Optuna's in a child process."""
    import concurrent.futures
    import multiprocessing
    import tempfile

    from study.core import data
    from study.sweep import tracking, tuning
    from study.errors import BadInput

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
        tmp = tempfile.TemporaryDirectory()
        tables = _download_curves(cell_runs, Path(tmp.name))
        try:
            found = optuna_part.result()
        except concurrent.futures.process.BrokenProcessPool:  # no child here (an interactive __main__): in turn
            found = read_optuna(url, sweep)
    if "bad" in found:
        raise BadInput(*found["bad"])
    meta, trials, importance_rows, records = found["meta"], found["trials"], found["importances"], found["records"]
    config = meta["config"]
    missing = config.get("missing_values", "refuse")  # a CSV file's rule; the key is there when a file is
    n_train = {d: data.load(d, 0, config["val_fraction"], config["test_fraction"], missing).X_train.shape[0]
               for d in config["datasets"]}
    eval_rows, hyper_names = [], hyperparameter_names()
    for (dataset, optimizer, batch), record in records.items():
        scores = record.eval_scores()
        for (track, seed), run_id in sorted(record.eval_runs().items()):  # what MLflow holds, orphans aside
            final = scores.get((track, seed), {})
            hyper = final.get("hyper", {})
            eval_rows.append({"dataset": display_name(dataset), "optimizer": optimizer, "batch_size": str(batch),
                              "track": track, "seed": seed, "test_loss": final.get("test_loss", np.nan),
                              "test_accuracy": final.get("test_accuracy", np.nan),
                              "diverged": int(final.get("diverged", 0)), "seconds": final.get("seconds", np.nan),
                              "n_train": n_train[dataset], **{h: float(hyper.get(h, np.nan)) for h in hyper_names},
                              "initial_val_loss": final.get("initial_val_loss", np.nan),
                              "final_train_loss": final.get("final_train_loss", np.nan)})
    recorded_cells = {r.cell_run_id for r in records.values() if r.cell_run_id}
    curves = _cell_curves(tables, records)
    tmp.cleanup()
    sample = next(iter(cell_runs.values())).data.tags if cell_runs else {}
    return SweepResults(
        name=sweep, config=config,
        evals=pd.DataFrame(eval_rows, columns=[*EVAL_KEYS, "test_loss", "test_accuracy", "diverged", "seconds",
                                               "n_train", *hyper_names, "initial_val_loss", "final_train_loss"]),
        cells=pd.DataFrame([{"dataset": r.data.tags.get("dataset"), "optimizer": r.data.tags.get("optimizer"),
                             "batch_size": r.data.tags.get("batch_size"),
                             "seconds_per_epoch": r.data.metrics.get("seconds_per_epoch", np.nan),
                             "diverged_share": r.data.metrics.get("diverged_share", np.nan)}
                            for run_id, r in sorted(cell_runs.items()) if run_id in recorded_cells],
                           columns=CELL_COLUMNS),
        curves=curves,
        trials=pd.DataFrame(trials, columns=["dataset", "optimizer", "batch_size", "arm", "number", "state", "value",
                                             *hyper_names, "test_loss"]),
        importances=pd.DataFrame(importance_rows, columns=["dataset", "optimizer", "batch_size", "param",
                                                           "importance"]),
        meta={"git_commit": sample.get("git_commit", "unknown"),
              "versions": {k.removeprefix("version."): v for k, v in sorted(sample.items())
                           if k.startswith("version.")},
              "machine": meta.get("machine", "unknown"), "config_hash": meta.get("config_hash", ""),
              "command": sample.get("command", ""),
              "tracking_uri": tracking.mask_url(tracking.tracking_uri(runs_dir)),
              "optuna_storage": tracking.mask_url(url)},
    )


def _download_curves(cell_runs: dict, tmp: Path) -> dict:
    """run id -> the evaluation rows of its curves.parquet."""
    from study.sweep import tracking

    tables = {}
    for run_id, run in cell_runs.items():
        path = tracking.download(run, "curves.parquet", tmp / run_id)
        if path is not None:
            table = pd.read_parquet(path)
            tables[run_id] = table[table["role"] == "eval"]
    return tables


def _cell_curves(tables: dict, records: dict) -> pd.DataFrame:
    """Every recorded cell run's evaluation curves, keyed like the evaluation runs."""
    parts = []
    for (dataset, optimizer, batch), record in records.items():
        table = tables.get(record.cell_run_id)
        if table is None:
            continue
        parts.append(pd.DataFrame({"dataset": display_name(dataset), "optimizer": optimizer, "batch_size": str(batch),
                                   "track": table["track"].to_numpy(), "seed": table["seed"].astype(int).to_numpy(),
                                   "epoch": table["epoch"].astype(int).to_numpy(),
                                   **{m: table[m].to_numpy(float) if m in table else np.full(len(table), np.nan)
                                      for m in CURVE_METRICS}}))
    columns = [*EVAL_KEYS, "epoch", *CURVE_METRICS]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


EVAL_KEYS = ["dataset", "optimizer", "batch_size", "track", "seed"]
