"""The names other people and programs see, written once: MLflow's tag keys and values (DESIGN §3, "keep them
stable": a person filters the UI with them, the report reads them) and the environment variables the sweep reads.

A plain module of constants, importing nothing: the tuning door, the tools and the pipelines read it without paying
for MLflow's import (which ``study.sweep.tracking`` costs).
"""
from __future__ import annotations

# --- tag keys -------------------------------------------------------------------------------------------------
ROLE = "role"  # what a run is: one of the roles below
DATASET, OPTIMIZER, BATCH_SIZE = "dataset", "optimizer", "batch_size"  # the cell of a run ("full" or the number)
TRIAL_NUMBER, STATE, ARM = "trial_number", "state", "arm"  # a trial's
SCORED_ON_TEST = "scored_on_test"  # a random-arm trial whose final test_loss only the expected best-of-k reads
TRACK, SEED = "track", "seed"  # an evaluation's
TUNED_FROM = "tuned_from"  # the tuned track's: which trial its hyperparameters come from
ORPHANED = "orphaned"  # a run the Optuna storage does not record, marked FAILED
PARENT_RUN = "mlflow.parentRunId"  # MLflow's own: nests a trial or evaluation under its cell run
NOTE = "mlflow.note.content"  # MLflow's own: the experiment's description, shown above its runs
COMMAND, GIT_COMMIT, MLFLOW_GIT_COMMIT = "command", "git_commit", "mlflow.source.git.commit"  # provenance
VERSION = "version."  # provenance: ``version.<package>``

# --- tag values -----------------------------------------------------------------------------------------------
CELL, TRIAL, EVAL, REPORT, LECTURE = "cell", "trial", "eval", "report", "lecture"  # the roles
TPE, RANDOM = "tpe", "random"  # the arms of a cell's tuning: TPE with pruning, and unpruned random search
TUNED, DEFAULT = "tuned", "default"  # the tracks of an evaluation
COMPLETE, PRUNED, FAIL, DIVERGED = "COMPLETE", "PRUNED", "FAIL", "DIVERGED"  # a trial's states
TRUE = "true"  # the value of a tag that is set or absent: SCORED_ON_TEST, ORPHANED

# --- environment variables ------------------------------------------------------------------------------------
OPTUNA_STORAGE = "OPTUNA_STORAGE"  # the Optuna storage's URL (PostgreSQL for many machines)
MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"  # MLflow's own convention
MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"
OPTSTUDY_COMMAND = "OPTSTUDY_COMMAND"  # the command line as typed, set by a pipeline for the workers it spawns
OPTSTUDY_MLFLOW_RETRY_SECONDS = "OPTSTUDY_MLFLOW_RETRY_SECONDS"  # after a failed MLflow write, wait this long
# one thread for every BLAS (and numba): set before numpy loads one, since threadpoolctl limits only those loaded
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                    "NUMBA_NUM_THREADS")


def tag_filter(**tags: str) -> str:
    """An MLflow search filter matching every tag given: ``tag_filter(role="cell")`` is ``tags.role = 'cell'``
    (a key that is no Python name as ``tag_filter(**{PARENT_RUN: run_id})``)."""
    return " and ".join(f"tags.{key} = '{value}'" for key, value in tags.items())
