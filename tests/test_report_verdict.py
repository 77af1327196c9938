"""The verdict names a planted winner, says "we cannot tell" when nothing was planted, and never overclaims."""
import dataclasses

import pytest

from report_fixtures import make_results
from study.report import families, settings, verdict

SETTINGS = dataclasses.replace(settings.load(), bayes_samples=2000)  # fewer posterior draws: fast, same verdicts


def judged(results):
    fams = families.build_families(families.scored_evals(results.evals), results.config, SETTINGS)
    return fams, {key: verdict.judge(f, SETTINGS.alpha, SETTINGS.sure) for key, f in fams.items()}


@pytest.fixture(scope="module")
def planted():
    return judged(make_results(optimizer_effect={"adam": -0.15}, batch_effect={"32": -0.08}))


def test_planted_optimizer_is_named_the_winner(planted):
    fams, judgements = planted
    overall = judgements[("tuned", "overall", "")]
    assert overall.status == verdict.WINNER and overall.control == "adam"
    assert set(overall.beaten) == {"gd", "momentum", "nag", "adagrad", "rmsprop"}
    assert set(overall.sure_better) == set(overall.beaten)
    text = verdict.sentence(fams[("tuned", "overall", "")], overall)
    assert text.startswith("**adam (32)** is best")


def test_planted_batch_size_is_named_within_every_optimizer(planted):
    _, judgements = planted
    for optimizer in ("gd", "momentum", "nag", "adagrad", "rmsprop", "adam"):
        j = judgements[("tuned", "batch_sizes", optimizer)]
        assert (j.status, j.control) == (verdict.WINNER, "32"), optimizer


def test_no_real_difference_means_we_cannot_tell():
    fams, judgements = judged(make_results(default_gap=False, seed=1))
    for track in ("tuned", "default"):
        j = judgements[(track, "overall", "")]
        assert j.status == verdict.INCONCLUSIVE, (track, j.reason)
        assert verdict.sentence(fams[(track, "overall", "")], j).startswith("**We cannot tell**")


def test_two_equal_leaders_form_a_top_group_not_a_winner():
    _, judgements = judged(make_results(optimizer_effect={"adam": -0.2, "rmsprop": -0.2}, default_gap=False))
    j = judgements[("tuned", "overall", "")]
    assert j.status == verdict.TOP_GROUP
    assert set(j.top) == {"adam", "rmsprop"}
    assert set(j.beaten) == {"gd", "momentum", "nag", "adagrad"}


def test_too_few_datasets_cannot_name_a_winner_and_says_why():
    few = make_results(datasets=("iris", "moons", "wine"), optimizers=("gd", "adam", "rmsprop"),
                       batch_sizes=("full", "32"), seeds=2, epochs=5, trials=4, random_arm=False,
                       optimizer_effect={"adam": -0.3}, diverged_evals=0)
    _, judgements = judged(few)
    j = judgements[("tuned", "overall", "")]
    assert j.status == verdict.INCONCLUSIVE
    assert "cannot reach p < 0.05" in j.reason


def test_sureness_reports_the_runner_up_and_warns_on_few_datasets():
    fams, judgements = judged(make_results(datasets=("iris", "moons", "wine", "digits"), seeds=2, epochs=5,
                                           trials=3, optimizer_effect={"adam": -0.3}, diverged_evals=0))
    family, j = fams[("tuned", "overall", "")], judgements[("tuned", "overall", "")]
    text = verdict.sureness(family, j, SETTINGS.rope)
    runner_up = family.result.versus_control.index[0]
    assert f"runner-up {family.labels[runner_up]}" in text
    assert "do not read them as confidence" in text


def test_in_practice_says_nothing_is_reliably_better_when_nothing_was_planted():
    from study.report import analysis, sections_verdict

    a = analysis.analyse(make_results(default_gap=False, seed=1), SETTINGS)
    text = sections_verdict._in_practice(a)
    assert text.startswith("**In practice.** Tuned, no optimizer is reliably better than the others on these 12")
    assert "untuned (default hyperparameters), no optimizer is reliably better either" in text
