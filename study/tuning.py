"""Optuna, through one door: storages, per-cell studies, search spaces, ask/tell, leases and cell claims.

Layout in the storage (one per sweep): a study per cell and arm, named ``<sweep>/<dataset>/<optimizer>/<batch>``
(``.../random`` for the unpruned random-search arm), and a claims study per cell, ``<sweep>/_claims/...``.
A worker owns a cell while its claim (a RUNNING trial in the claims study) is the oldest live one. Liveness is a
lease, not a state: the worker id (host, pid) and a heartbeat time kept as trial attributes; a lease expires when
its heartbeat is older than ``lease_seconds`` or, on the same host, when its process is gone.
"""
from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
import uuid
import warnings
from pathlib import Path

import optuna
import optuna.storages.journal
from optuna.trial import TrialState

from study.config import Range, SweepConfig
from study.errors import BadInput

optuna.logging.set_verbosity(optuna.logging.WARNING)
HOST = socket.gethostname()
RDB_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite")


# --- Storage -----------------------------------------------------------------------------------------------------
def storage_url(runs_dir: str | Path, sweep: str) -> str:
    """``OPTUNA_STORAGE`` if set, else a journal file under the runs directory (one per sweep)."""
    return os.environ.get("OPTUNA_STORAGE") or str(Path(runs_dir).resolve() / "optuna" / f"{sweep}.journal")


def open_storage(url: str):
    """An RDB URL (PostgreSQL for many machines) or a journal file path (the default: ~0.65 ms per operation,
    where SQLite costs ~9 ms and Optuna advises against it for parallel work)."""
    scheme = url.split("://", 1)[0].split("+", 1)[0] if "://" in url else ""
    if scheme in RDB_SCHEMES:
        try:
            # pre-ping: a connection broken by a database restart is replaced, not used; connect_timeout: an
            # unreachable host is an error in seconds, not after TCP's two minutes
            rdb = optuna.storages.RDBStorage(url, engine_kwargs={
                "pool_pre_ping": True, **({"connect_args": {"connect_timeout": 10}} if scheme.startswith("postgres")
                                          else {})})
            return RetryingStorage(optuna.storages.get_storage(rdb))
        except Exception as e:  # a wrong URL, password or host: one line, the password masked
            from study.tracking import mask_url  # the masking rule lives with the other URL handling
            raise BadInput("OPTUNA_STORAGE", f"cannot open {mask_url(url)}: {str(e).splitlines()[0][:200]}") \
                from None
    if scheme and scheme != "file":
        raise BadInput("OPTUNA_STORAGE", f"unsupported storage URL scheme {scheme!r}: use postgresql://... or a "
                                         f"journal file path")
    path = Path(url[len("file://"):] if scheme == "file" else url)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFile(str(path)))


class JournalFile(optuna.storages.journal.JournalFileBackend):
    """Optuna's journal file, locked with ``FlockLock`` and without an fsync per appended line.

    Every pruning report is a line: about half a million per default sweep, and Optuna's fsync of each cost 0.22 ms
    here, a fifth of a worker's time. What the fsync guarded against is a machine crash, not a killed process (the
    kernel keeps a dead process's writes), and after a machine crash the resumed sweep simply retrains the trials
    whose lines were lost: the cells that are not marked done are resumed, so nothing is counted twice.
    """

    def __init__(self, path: str):
        self._path, self._flock = path, FlockLock(path)
        super().__init__(path, lock_obj=self._flock)

    def append_logs(self, logs: list[dict]) -> None:
        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode("utf-8")
        self._flock.acquire()
        try:
            with open(self._path, "ab") as f:
                f.write(text)
        finally:
            self._flock.release()


class FlockLock(optuna.storages.journal.JournalFileOpenLock):  # the public lock type, with flock inside
    """The journal's lock as an flock(2) on a side file: the kernel releases it when its process dies, so a
    SIGKILLed worker never leaves a stale lock behind (Optuna's file locks wait out a 30 s grace period)."""

    def __init__(self, journal_path: str):
        self._path, self._fd = journal_path + ".flock", None

    def acquire(self) -> bool:
        import fcntl

        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return True

    def release(self) -> None:
        import fcntl

        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class RetryingStorage(optuna.storages.BaseStorage):
    """A storage whose every call is retried with exponential backoff when the database connection breaks, so a
    PostgreSQL restart in the middle of a sweep costs a pause, not the workers. (A write that committed just before
    the connection dropped could be applied twice; Optuna's writes here are idempotent or checked by the caller.)"""

    def __init__(self, inner, attempts: int = 9, first_wait: float = 0.5):
        self._inner, self._attempts, self._first_wait = inner, attempts, first_wait


def _retrying(name: str):
    def call(self, *args, **kwargs):
        import sqlalchemy.exc

        transient = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError,
                     sqlalchemy.exc.InterfaceError)
        wait = self._first_wait
        for attempt in range(self._attempts):
            try:
                return getattr(self._inner, name)(*args, **kwargs)
            except transient as e:
                if attempt == self._attempts - 1:
                    raise
                print(f"warning: Optuna storage unavailable ({type(e).__name__}); retrying in {wait:.1f} s",
                      file=sys.stderr)
                time.sleep(wait)
                wait = min(wait * 2, 30.0)
    call.__name__ = name
    return call


for _name in [m for m in dir(optuna.storages.BaseStorage) if not m.startswith("_")]:
    setattr(RetryingStorage, _name, _retrying(_name))
RetryingStorage.__abstractmethods__ = frozenset()


def study_name(sweep: str, cell: tuple, arm: str = "tpe") -> str:
    dataset, optimizer, batch = cell
    return f"{sweep}/{dataset}/{optimizer}/{batch}" + ("/random" if arm == "random" else "")


def _cell_seed(cfg: SweepConfig, cell: tuple, arm: str) -> int:
    """A sampler seed per cell and arm, fixed by the config: the same cell samples the same way in every run."""
    return (cfg.sampler_seed * 1_000_003 + cfg.cells().index(cell) * 2 + (arm == "random")) % (2**31)


def cell_study(storage, cfg: SweepConfig, cell: tuple, arm: str = "tpe") -> optuna.Study:
    seed = _cell_seed(cfg, cell, arm)
    if arm == "random" or cfg.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:  # constant_liar keeps the K trials of a population apart while they run
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.n_startup_trials, constant_liar=True)
    if arm == "random" or cfg.pruner == "none":
        pruner = optuna.pruners.NopPruner()
    else:
        pruner = optuna.pruners.MedianPruner(n_startup_trials=cfg.pruner_startup_trials,
                                             n_warmup_steps=cfg.pruner_warmup_epochs)
    return optuna.create_study(storage=storage, study_name=study_name(cfg.name, cell, arm), sampler=sampler,
                               pruner=pruner, direction="minimize", load_if_exists=True)


def study_attrs(storage, sweep: str) -> dict[str, dict]:
    """User attributes of every study of a sweep, by study name (one storage read)."""
    return {s.study_name: s.user_attrs for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
            if s.study_name.startswith(f"{sweep}/")}


def record_sweep(storage, cfg: SweepConfig, machine: str) -> None:
    """Keep the resolved config with the results; the same name with a different config is refused, since mixing
    two protocols under one name would make every count and comparison meaningless."""
    meta = optuna.create_study(storage=storage, study_name=f"{cfg.name}/_meta", load_if_exists=True)
    known = meta.user_attrs.get("config_hash")
    if known is None:
        meta.set_user_attr("config", cfg.as_dict())
        meta.set_user_attr("machine", machine)
        meta.set_user_attr("config_hash", cfg.hash)
    elif known != cfg.hash:
        raise BadInput(cfg.source, f"sweep {cfg.name!r} already exists in the store with another config "
                                   f"(hash {known}, now {cfg.hash}); resume it with the same settings or start a "
                                   f"new one with name=<new name>")


def record_timing(storage, sweep: str, worker: str, timing: dict) -> None:
    meta = optuna.create_study(storage=storage, study_name=f"{sweep}/_meta", load_if_exists=True)
    meta.set_user_attr(f"timing:{worker}", {k: float(v) for k, v in timing.items()})


def sweep_meta(storage, sweep: str) -> dict:
    """The config and machine recorded by ``record_sweep``; empty if the sweep is unknown."""
    names = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    summary = names.get(f"{sweep}/_meta")
    return dict(summary.user_attrs) if summary else {}


def read_trials(storage, sweep: str, config: dict) -> tuple[list[dict], list[dict], dict]:
    """Every finished tuning trial of a sweep as rows (hyperparameters under lecture names), parameter importances
    per cell, and the cell studies' attributes (evaluation run ids, done flags)."""
    spaces = {o: {p: Range(**r) for p, r in s.items()} for o, s in config["search_spaces"].items()}
    trials, importance_rows, cells = [], [], {}
    for dataset in config["datasets"]:
        for optimizer in config["optimizers"]:
            for batch in config["batch_sizes"]:
                cell = (dataset, optimizer, batch)
                keys = {"dataset": dataset, "optimizer": optimizer, "batch_size": str(batch)}
                for arm in ("tpe", "random"):
                    try:
                        study = optuna.load_study(study_name=study_name(sweep, cell, arm), storage=storage)
                    except KeyError:
                        continue
                    if arm == "tpe":
                        cells[cell] = dict(study.user_attrs)
                        importance_rows += [{**keys, "param": p, "importance": v}
                                            for p, v in sorted(study.user_attrs.get("importances", {}).items())]
                    done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
                    for order, t in enumerate(sorted(done, key=lambda t: t.number)):
                        hyper = hyper_from_params(t.params, spaces[optimizer]) if t.params else {}
                        state = t.user_attrs.get("state", t.state.name)
                        trials.append({**keys, "arm": arm, "number": t.number, "state": state,
                                       "value": t.value if state in ("COMPLETE", "DIVERGED") else math.nan,
                                       **hyper})
    return trials, importance_rows, cells


def trial_state_counts(storage, sweep: str) -> dict[str, int]:
    """Tuning trials of a sweep by state (DIVERGED counted apart from COMPLETE); claims are not trials."""
    counts: dict[str, int] = {}
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        name = summary.study_name
        if not name.startswith(f"{sweep}/") or "/_claims/" in name or name.endswith("/_meta"):
            continue
        for t in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False):
            state = t.user_attrs.get("state", t.state.name)
            counts[state] = counts.get(state, 0) + 1
    return counts


# --- Search spaces -------------------------------------------------------------------------------------------------
def param_name(name: str, r: Range) -> str:
    return f"one_minus_{name}" if r.one_minus else name


def suggest(trial: optuna.Trial, space: dict[str, Range]) -> dict[str, float]:
    """The trial's hyperparameters under their lecture names (1 - x already applied)."""
    hyper = {}
    for name, r in space.items():
        if r.fixed is not None:
            hyper[name] = r.fixed
            continue
        x = trial.suggest_float(param_name(name, r), r.low, r.high, log=r.log)
        hyper[name] = 1.0 - x if r.one_minus else x
    return hyper


def hyper_from_params(params: dict, space: dict[str, Range]) -> dict[str, float]:
    """Lecture-named hyperparameters from a finished trial's Optuna params."""
    return {name: r.fixed if r.fixed is not None else
            (1.0 - params[param_name(name, r)] if r.one_minus else params[param_name(name, r)])
            for name, r in space.items()}


# --- Leases --------------------------------------------------------------------------------------------------------
def new_worker_id() -> str:
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def lease_alive(worker: str | None, heartbeat: float | None, lease_seconds: float, now: float | None = None) -> bool:
    if not worker or heartbeat is None:
        return False
    if (now or time.time()) - heartbeat > lease_seconds:
        return False
    host, _, rest = worker.partition(":")
    if host == HOST:  # on this machine we can do better than wait: is the process still there?
        try:
            os.kill(int(rest.split(":")[0]), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError):
            pass
    return True


def _trial_alive(t, lease_seconds: float) -> bool:
    heartbeat = t.user_attrs.get("heartbeat", t.datetime_start.timestamp() if t.datetime_start else None)
    return lease_alive(t.user_attrs.get("worker"), heartbeat, lease_seconds)


class Claim:
    """A worker's hold on a cell: the oldest live RUNNING trial of the cell's claims study."""

    def __init__(self, storage, cfg: SweepConfig, cell: tuple, worker: str):
        self.cfg, self.cell, self.worker = cfg, cell, worker
        self.study = optuna.create_study(storage=storage, study_name=study_name(cfg.name, cell).replace(
            f"{cfg.name}/", f"{cfg.name}/_claims/", 1), load_if_exists=True)
        self.trial = None
        self._beat = 0.0
        self.recovered: list[int] = []  # trials of a previous owner failed and queued again by acquire()

    def acquire(self, grace: float | None = None) -> bool:
        """Ask for the cell. The claim is created RUNNING with our worker id and heartbeat in one write (so no
        racing worker ever sees it without a lease); after a grace period for racing claims to land, it is ours if
        it is the oldest live one. A journal file numbers trials in the order their lines were appended, and every
        earlier line is visible once ours is written, so it needs no grace; a database numbers them by id, and a
        transaction holding a smaller id can commit after ours: 0.3 s lets it land. Then whatever a previous owner
        left RUNNING in the cell is failed and queued again: a cell has one owner, so a trial held by anyone else
        belongs to a worker whose claim has expired (its own trial heartbeats may be a little younger than its
        claim's, so their leases cannot decide)."""
        now = time.time()
        template = optuna.trial.create_trial(state=TrialState.RUNNING,
                                             user_attrs={"worker": self.worker, "heartbeat": now})
        trial_id = self.study._storage.create_new_trial(self.study._study_id, template_trial=template)
        self.trial, self._beat = optuna.Trial(self.study, trial_id), now
        if grace is None:
            grace = 0.0 if isinstance(self.study._storage, optuna.storages.JournalStorage) else 0.3
        time.sleep(grace)  # let a racing claim's write land before we look
        if self.owner() != self.trial.number:
            self.release(failed=True)
            return False
        self.recovered = self._take_over()
        return True

    def _take_over(self) -> list[int]:
        """Fail the expired claims and the RUNNING trials that others left in the cell; returns the trials' numbers
        (their parameters are queued again)."""
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.number != self.trial.number and not _trial_alive(t, self.cfg.lease_seconds):
                self.study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        recovered = []
        for arm in ("tpe", "random") if self.cfg.random_arm else ("tpe",):
            try:
                study = optuna.load_study(study_name=study_name(self.cfg.name, self.cell, arm),
                                          storage=self.study._storage)
            except KeyError:  # the cell has not been started yet
                continue
            recovered += recover_dead_trials(study, self.cfg.lease_seconds, owner=self.worker)
        return recovered

    def owner(self) -> int | None:
        """The number of the oldest live claim, or None."""
        live = [t.number for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if _trial_alive(t, self.cfg.lease_seconds)]
        return min(live) if live else None

    def heartbeat(self, force: bool = False) -> None:
        """Refresh the lease; throttled, since epochs take milliseconds and a storage write does not."""
        now = time.time()
        if force or now - self._beat > min(5.0, self.cfg.lease_seconds / 4):
            self.trial.set_user_attr("heartbeat", now)
            self._beat = now

    def release(self, failed: bool = False) -> None:
        if self.trial is not None:
            self.study.tell(self.trial, state=TrialState.FAIL if failed else TrialState.COMPLETE,
                            values=None if failed else 0.0, skip_if_finished=True)
            self.trial = None


class TrialLease:
    """Heartbeats of the K trials a worker is running, throttled like the claim's."""

    def __init__(self, worker: str, lease_seconds: float):
        self.worker, self.interval, self._beat = worker, min(5.0, lease_seconds / 4), 0.0

    def start(self, trial: optuna.Trial) -> None:
        trial.set_user_attr("worker", self.worker)
        trial.set_user_attr("heartbeat", time.time())

    def beat(self, trials) -> None:
        now = time.time()
        if now - self._beat > self.interval:
            for t in trials:
                t.set_user_attr("heartbeat", now)
            self._beat = now


def recover_dead_trials(study: optuna.Study, lease_seconds: float, owner: str | None = None) -> list[int]:
    """Fail RUNNING trials whose lease has expired (or, given the cell's ``owner``, any it does not hold) and queue
    their parameters again; returns their numbers."""
    dead = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _trial_alive(t, lease_seconds) and (owner is None or t.user_attrs.get("worker") == owner):
            continue
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        if t.params:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        dead.append(t.number)
    return dead


def finished(study: optuna.Study) -> list:
    """Trials that count against the budget: COMPLETE (DIVERGED included) and PRUNED. FAIL never counts."""
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def best_trial(study: optuna.Study):
    """The best COMPLETE trial that did not diverge, or None."""
    ok = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
          if t.user_attrs.get("state") != "DIVERGED" and t.value is not None and math.isfinite(t.value)]
    return min(ok, key=lambda t: (t.value, t.number)) if ok else None


def tell(study: optuna.Study, trial: optuna.Trial, state: str, value: float | None) -> None:
    """Finish a trial: COMPLETE / DIVERGED with its value (a diverged trial completes with its penalty), PRUNED,
    or FAIL. The MLflow tag's spelling is kept as the trial attribute ``state``."""
    trial.set_user_attr("state", state)
    if state in ("COMPLETE", "DIVERGED"):
        study.tell(trial, value)
    else:
        study.tell(trial, state=TrialState.PRUNED if state == "PRUNED" else TrialState.FAIL)


# PED-ANOVA's note when few trials make every parameter equally important: a fact the figure shows, not a problem
SAME_QUANTILES = "Target and region quantiles select the same set of trials"


def importances(study: optuna.Study) -> dict[str, float]:
    """Parameter importances over the completed trials (PED-ANOVA: fast and fine with few trials)."""
    params = {p for t in finished(study) for p in t.params}
    if len(params) < 2:
        return {p: 1.0 for p in params}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=SAME_QUANTILES)
            return dict(optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()))
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}


# Fixed margins for a cell's 6 x 4 inch figures: tight_layout measured every label and cost 45 ms a figure,
# three figures a cell (a tenth of a cell's tracking time)
FIGURE_MARGINS = {"left": 0.13, "right": 0.97, "bottom": 0.12, "top": 0.91}


def plot_history_and_importances(study: optuna.Study, out_dir: Path) -> list[Path]:
    """Optuna's own figures, drawn with matplotlib (plotly's image export would download a browser)."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    paths = []
    for name, draw in (("optuna_history.png", ovm.plot_optimization_history),
                       ("optuna_importances.png", ovm.plot_param_importances)):
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
                warnings.filterwarnings("ignore", message=SAME_QUANTILES)
                ax = draw(study)
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(6, 4)
        # the importances name parameters on the y axis (one_minus_beta2): room for them
        fig.subplots_adjust(**{**FIGURE_MARGINS, **({"left": 0.3} if "importances" in name else {})})
        fig.savefig(out_dir / name, dpi=80)
        plt.close(fig)
        paths.append(out_dir / name)
    return paths
