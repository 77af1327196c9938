"""No choice on test anywhere (issue 19.4): a sweep whose test scores are planted to disagree with validation (every
ordering validation makes at equal epochs reversed on test: its favourite optimizer made twice as bad, its last
twice as good, and likewise each optimizer's batch sizes) gives every choice the unplanted sweep gives: each
optimizer's batch size, the recommended optimizer at every budget and track, the headlines and the share of
resamples picking each pair, the defaults advice, the secondary families' and the k-trial winners' picks, each
tuning run's picks, the targets' cells, the several-defaults picks, and every pick the published findings make.
Test changes only what test scores."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from report_fixtures import DATASETS, fast_settings, make_results
from study.report import analysis
from study.report.judge.answer import score_table

SETTINGS = fast_settings(bayes_samples=1000, bootstrap_resamples=200, stability_resamples=60, band_resamples=20,
                         stability_bayes_samples=200)


def _ladder(order: list, top: float) -> dict:
    """The first of ``order`` x top, the last x 1 / top, log-linear in between."""
    n = len(order)
    return {t: top ** (1 - 2 * i / (n - 1)) if n > 1 else 1.0 for i, t in enumerate(order)}


def reversed_on_test(results, plain) -> object:
    """``results`` with every test score multiplied so that test reverses validation's orderings (``plain``: the
    analysis of ``results``): the recommended optimizer's and each optimizer's batch sizes' validation ranks at
    equal epochs, tuned. Validation is untouched: the evaluations' test loss and accuracy, the test curves and the
    random arm's test losses change."""
    a = plain.verdict.answer("epochs", "tuned")
    per_optimizer = _ladder(list(a.val_ranks.index), 2.0)
    factor = {(o, b): per_optimizer[o] * per_batch
              for o in per_optimizer
              for b, per_batch in _ladder(list(a.batch_val_ranks.loc[o].sort_values(kind="stable").index),
                                          1.5).items()}

    def scaled(frame: pd.DataFrame, loss: str, accuracy: str | None = None) -> pd.DataFrame:
        f = np.array([factor.get((o, str(b)), 1.0) for o, b in zip(frame["optimizer"], frame["batch_size"])])
        out = frame.assign(**{loss: frame[loss].astype(float) * f})
        if accuracy is not None:  # the fixture's accuracy follows its loss: 1 - 0.3 x loss
            acc = frame[accuracy].astype(float)
            out[accuracy] = np.where(acc.isna(), np.nan, np.clip(1 - 0.3 * out[loss], 0.0, 1.0))
        return out

    return dataclasses.replace(results, evals=scaled(results.evals, "test_loss", "test_accuracy"),
                               curves=scaled(results.curves, "test_loss", "test_accuracy"),
                               trials=scaled(results.trials, "test_loss"))


def _several_defaults_picks(a) -> dict:
    """Per dataset, the default cell whose test score the "several defaults" treatment took: which one validation
    picked (read back from the family's scores, since the pick is made inside it)."""
    family = a.tuning.several_defaults
    chosen = a.verdict.answer("epochs", "default").chosen_batch
    datasets = list(family.result.scores.index)
    test = score_table(a.scores.cells, "test_epochs", "default", datasets)
    picks = {}
    for d in datasets:
        value = family.result.scores.loc[d, "several defaults"]
        match = [o for o, b in chosen.items() if np.isclose(test.loc[d, (o, b)], value, rtol=0, atol=1e-15)]
        assert len(match) == 1, (d, match)
        picks[d] = match[0]
    return picks


def choices(a) -> dict:
    """Every choice an analysis makes, as plain values."""
    out = {}
    for key, ans in a.verdict.answers.items():
        out[("answer", key)] = (ans.recommended, ans.chosen_batch, ans.batch_val_ranks.round(12).to_dict(),
                                ans.val_ranks.round(12).to_dict())
    out["headlines"] = a.verdict.headlines
    out["same_headline"] = a.verdict.same_headline
    picked = a.verdict.stability[a.verdict.stability["kind"].isin(["optimizer", "batch_size"])]
    out["p_picked"] = picked[["budget", "track", "kind", "optimizer", "batch_size", "p_best"]].to_dict("records")
    out["advice"] = {budget: {k: d[k] for k in ("optimizer", "batch_size", "enough", "val_p_equivalent",
                                                "val_p_default_better", "val_p_tuned_better")}
                     for budget, d in a.verdict.defaults_enough.items()}
    out["families"] = {key: f.judgement.chosen for key, f in a.verdict.families.items()}
    out["winners"] = {k: f.judgement.chosen for k, f in a.tuning.winners.items()}
    out["picks_per_run"] = a.tuning.picks_per_run.to_dict("records")
    out["targets"] = a.scores.targets[["optimizer", "batch_size", "best_val_loss", "target"]].to_dict("index")
    out["several_defaults"] = _several_defaults_picks(a)
    out["literature"] = a.checks.literature_tables["literature_choices"].fillna({"k": 0}).to_dict("records")
    return out


@pytest.fixture(scope="module")
def plain_and_planted():
    results = make_results(datasets=DATASETS[:8], batch_sizes=("full", "128", "32", "1"), seeds=3, trials=8,
                           epochs=12, optimizer_effect={"adam": -0.1, "nag": -0.05})
    plain = analysis.analyse(results, SETTINGS)
    return plain, analysis.analyse(reversed_on_test(results, plain), SETTINGS)


def test_the_planted_test_table_disagrees_with_validation(plain_and_planted):
    """The plant bites: on test, validation's favourite is now last and its last first, and a choice made on
    test would differ (so the test below could fail)."""
    plain, planted = plain_and_planted
    a, b = plain.verdict.answer("epochs", "tuned"), planted.verdict.answer("epochs", "tuned")
    assert a.family.mean_ranks.index[0] == a.recommended
    assert b.family.mean_ranks.index[-1] == a.recommended and b.family.mean_ranks.index[0] == a.val_ranks.index[-1]
    assert b.batch_family.mean_ranks.index[0] != b.batch
    wilson = lambda x: x.checks.literature.set_index("source").loc["Wilson et al. 2017", "number"]  # noqa: E731
    assert wilson(plain) != wilson(planted)  # the test scores did change what the findings measure


def test_no_choice_follows_the_test_table(plain_and_planted):
    plain, planted = plain_and_planted
    before, after = choices(plain), choices(planted)
    assert before.keys() == after.keys()
    differ = [key for key in before if before[key] != after[key]]
    assert differ == [], {key: (before[key], after[key]) for key in differ}
    literature = plain.checks.literature_tables["literature_choices"]
    assert {"the dataset's best", "best adaptive", "best non-adaptive", "best other optimizer than Adam",
            "the tuned comparator of several defaults"} <= set(literature["choice"])
