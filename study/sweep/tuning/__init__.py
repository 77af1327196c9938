"""Optuna, through one door: this package is the only code that imports optuna.

- ``storage``: the storage of a sweep (a journal file, or PostgreSQL for many machines), retried through database
  restarts, and the sweep's own record (``<sweep>/_meta``);
- ``studies``: a study per cell and arm; a trial asked, reported to and told; the best trial; reading trials back;
- ``spaces``: search spaces as Optuna's parameters (lecture names, 1 - x ranges);
- ``claims``: which worker owns a cell, held by the storage engine's own locks;
- ``ledger``: what the storage records about a cell beyond its trials.

Outside this package a study and a trial are handles, passed back to these functions.
"""
from study.sweep.tuning import ledger
from study.sweep.tuning.claims import Claim, ClaimLost, Locks, cell_locks, new_worker_id
from study.sweep.tuning.spaces import hyper_from_params, param_name, suggest
from study.sweep.tuning.storage import (Storage, journal_path, open_storage, record_sweep, record_timing,
                                        storage_url, study_attrs, sweep_meta)
from study.sweep.tuning.studies import (ARMS, Best, ask, best, cell_study, fail_orphans, finished,
                                        importances, our_trials, read_trials, recover_abandoned, report, requeue,
                                        running_numbers, study_name, tell, trial_rows, trial_state_counts)

__all__ = ["ARMS", "Best", "Claim", "ClaimLost", "Locks", "Storage", "ask", "best", "cell_locks",
           "cell_study", "fail_orphans", "finished", "hyper_from_params", "importances", "journal_path", "ledger",
           "new_worker_id", "open_storage", "our_trials", "param_name", "read_trials", "record_sweep",
           "record_timing", "recover_abandoned", "report", "requeue", "running_numbers", "storage_url",
           "study_attrs", "study_name", "suggest", "sweep_meta", "tell", "trial_rows", "trial_state_counts"]
