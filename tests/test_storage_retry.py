"""The storage retry (study.sweep.tuning.storage.RetryingStorage) when a write commits and its reply is lost, as in a
PostgreSQL restart: against a real Optuna RDB storage on SQLite. Between the retry and the real storage sits a
connection that drops once, at a chosen call: that call lands (or, for a control, does not), then the caller sees
sqlalchemy's OperationalError, which is what a restart looks like to it, and the retry calls again."""
from __future__ import annotations

import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import TrialState

from study.sweep.tuning.storage import RetryingStorage

NAME = "retry/iris/adam/full"


class DropsOnce:
    """The real storage, except at the first call of ``method``: ``meanwhile()`` runs first (another worker's
    write, if any), the call is applied if ``lands``, and the caller is answered with the error of a dropped
    connection. Every other call, and every later call of ``method``, goes straight through."""

    def __init__(self, real, method: str, lands: bool = True, meanwhile=None):
        self.real, self.method, self.lands, self.meanwhile = real, method, lands, meanwhile
        self.calls = 0

    def __getattr__(self, name):
        real_call = getattr(self.real, name)
        if name != self.method:
            return real_call

        def call(*args, **kwargs):
            self.calls += 1
            if self.calls > 1:
                return real_call(*args, **kwargs)
            if self.meanwhile is not None:
                self.meanwhile()
            if self.lands:
                real_call(*args, **kwargs)  # committed; its reply is what is lost
            raise sqlalchemy.exc.OperationalError("COMMIT", {}, Exception("server closed the connection"))
        return call


@pytest.fixture
def url(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def storage_of(url: str):
    return optuna.storages.get_storage(optuna.storages.RDBStorage(url))


def retrying(url: str, method: str = "set_trial_state_values", **drop) -> tuple[RetryingStorage, DropsOnce]:
    flaky = DropsOnce(storage_of(url), method, **drop)
    return RetryingStorage(flaky, attempts=3, first_wait=0.01), flaky


@pytest.mark.parametrize("outcome", ["complete", "pruned", "fail"])
def test_a_trial_told_whose_first_attempt_landed_is_told_once(url, outcome, capsys):
    storage, flaky = retrying(url)
    study = optuna.create_study(storage=storage, study_name=NAME)
    trial = study.ask()
    trial.suggest_float("eta", 1e-4, 1.0, log=True)
    trial.report(0.75, 1)
    if outcome == "complete":
        study.tell(trial, 0.5)
    else:
        study.tell(trial, state=TrialState.PRUNED if outcome == "pruned" else TrialState.FAIL)
    assert flaky.calls == 2, "the write was not retried: the fault was not exercised"
    assert "Optuna storage unavailable" in capsys.readouterr().err
    told = optuna.load_study(study_name=NAME, storage=storage_of(url)).trials  # what the database holds
    assert [t.state.name for t in told] == [outcome.upper()]
    if outcome == "complete":
        assert told[0].values == [0.5]
    nxt = study.ask()  # and the study goes on as usual
    study.tell(nxt, 0.25)
    assert [t.state for t in study.trials] == [told[0].state, TrialState.COMPLETE]


def test_a_write_lost_with_the_connection_is_applied_by_the_retry(url):
    """The control: the first attempt did not land; the retry writes it."""
    storage, flaky = retrying(url, lands=False)
    study = optuna.create_study(storage=storage, study_name=NAME)
    study.tell(study.ask(), 0.5)
    assert flaky.calls == 2
    assert [(t.state, t.values) for t in optuna.load_study(study_name=NAME, storage=storage_of(url)).trials] == \
        [(TrialState.COMPLETE, [0.5])]


@pytest.mark.parametrize("theirs", ["failed", "told another value"])
def test_a_retry_that_finds_the_trial_finished_by_another_worker_still_fails(url, theirs):
    """While the connection was down another worker finished the trial (it took the cell: our claim is lost), and
    our write never landed: the caller hears of it, and the other worker's result stands."""
    other = optuna.create_study(storage=storage_of(url), study_name=NAME)

    def other_worker_finishes_it():
        if theirs == "failed":
            other.tell(0, state=TrialState.FAIL)
        else:
            other.tell(0, 0.9)

    storage, flaky = retrying(url, lands=False, meanwhile=other_worker_finishes_it)
    study = optuna.load_study(storage=storage, study_name=NAME)
    trial = study.ask()
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        study.tell(trial, 0.5)
    assert flaky.calls == 2
    stored = optuna.load_study(study_name=NAME, storage=storage_of(url)).trials
    assert [(t.state, t.values) for t in stored] == \
        [(TrialState.FAIL, None) if theirs == "failed" else (TrialState.COMPLETE, [0.9])]


def test_a_first_attempt_that_finds_the_trial_finished_is_not_taken_for_a_retry(url):
    """No connection dropped: finishing a finished trial again is the caller's error, even as it was finished."""
    storage, flaky = retrying(url, method="no call drops")
    study = optuna.create_study(storage=storage, study_name=NAME)
    study.tell(study.ask(), 0.5)
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(NAME), 0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.5])


# --- the claim lost while a trial is being asked -------------------------------------------------------------------
class AnotherWorkerFailsEachNewTrial:
    """The worker's storage, seen while the database is restarting: each trial it creates is failed at once by
    another worker, which took the cell while the claim's connection was down (its ``recover_abandoned``)."""

    def __init__(self, real, other: optuna.Study):
        self.real, self.other = real, other

    def __getattr__(self, name):
        return getattr(self.real, name)

    def create_new_trial(self, study_id, template_trial=None):
        trial_id = self.real.create_new_trial(study_id, template_trial)
        for t in self.other.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            self.other.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        return trial_id


def test_a_trial_failed_by_another_worker_while_it_is_asked_is_a_lost_claim_not_a_crash(tmp_path, monkeypatch):
    from study.sweep import cell as cell_mod, config, sweep, tuning

    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = config.load_sweep("smoke", ["name=asked", "datasets=iris", "optimizers=adam", "batch_sizes=full",
                                      "trials=2", "epochs=2", "seeds=1", "random_arm=false"])
    ctx = sweep.new_context(cfg, tmp_path)
    (cell,) = cfg.cells()
    name = tuning.study_name(cfg.name, cell)
    claim = tuning.Claim(ctx.locks, name, ctx.worker, cfg.profile.lease_seconds)
    assert claim.acquire()
    try:
        cell_mod.open_studies(ctx, cell)
        other = optuna.load_study(study_name=name, storage=tuning.open_storage(tuning.storage_url(tmp_path, cfg.name)))
        ours = optuna.load_study(study_name=name, storage=AnotherWorkerFailsEachNewTrial(ctx.storage, other))
        with pytest.raises(tuning.ClaimLost):
            cell_mod._ask_population(ctx, cell, ours, 0, "tpe", 0, claim)  # noqa: SLF001 (the loop's own step)
        assert [t.state for t in other.get_trials(deepcopy=False)] == [TrialState.FAIL]
    finally:
        claim.release()
        ctx.locks.close()
