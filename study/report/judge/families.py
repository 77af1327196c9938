"""The secondary comparisons, at equal epochs: the optimizers at each batch size, the batch sizes of each optimizer,
and which optimizer wins after k tuning trials. The verdict rests on study.report.judge.answer; these say when the
answer changes. Each is judged the same way: the treatment with the best validation mean rank is the chosen one,
test scores it against the others (Iman-Davenport, Wilcoxon-Holm over all pairs, the Bayesian ROPE).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from study.report.judge import stats
from study.report.judge import tolerance
from study.report.judge.answer import family_tests, score_table, validation_pick
from study.report.judge.decide import Judgement, judge
from study.schema.report import Report


@dataclass(frozen=True)
class Family:
    kind: str  # "optimizers" (at a batch size), "batch_sizes" (of an optimizer), "budget" (after k trials)
    fixed: str  # the batch size, optimizer or number of trials held fixed
    track: str
    result: stats.FamilyResult
    judgement: Judgement
    labels: dict  # treatment -> how to show it

    @property
    def title(self) -> str:
        if self.kind == "optimizers":
            return f"optimizers at batch size {self.fixed}"
        if self.kind == "batch_sizes":
            return f"batch sizes for {self.fixed}"
        return f"optimizers after {self.fixed} trial(s)"


def loss_differences(unit: pd.Series):
    """Loss differences in the dataset's loss units (``tolerance.differences`` at equal epochs)."""
    return tolerance.differences("epochs", unit, pd.Series(dtype=float))


def compare(val: pd.DataFrame, test: pd.DataFrame, unit: pd.Series, report: Report, kind: str, fixed: str,
            track: str, labels: dict | None = None) -> Family:
    """A family whose treatment is chosen on ``val`` and judged on ``test`` (datasets x treatments, losses):
    exploratory (no multiplicity control across these families)."""
    chosen = validation_pick(val)
    result = family_tests(test, loss_differences(unit), report.tolerance.on_scale("epochs"), report.statistics,
                          focus=chosen)
    return Family(kind, fixed, track, result, judge(result, chosen, report.statistics.alpha,
                                                     report.statistics.sure), labels or {t: t for t in test.columns})


def secondary(cells: pd.DataFrame, unit: pd.Series, datasets, optimizers, batches, tracks,
              report: Report) -> dict[tuple[str, str, str], Family]:
    """Keyed (track, kind, fixed), in a stable order."""
    out = {}
    for track in tracks:
        val = score_table(cells, "val_epochs", track, datasets)
        test = score_table(cells, "test_epochs", track, datasets)
        for b in batches:
            cols = [(o, b) for o in optimizers if (o, b) in test.columns]
            pick = lambda t: pd.DataFrame({o: t[(o, b)] for o, _ in cols})  # noqa: E731
            out[(track, "optimizers", b)] = compare(pick(val), pick(test), unit, report, "optimizers", b, track)
        for o in optimizers:
            cols = [(o, b) for b in batches if (o, b) in test.columns]
            pick = lambda t: pd.DataFrame({b: t[(o, b)] for _, b in cols})  # noqa: E731
            out[(track, "batch_sizes", o)] = compare(pick(val), pick(test), unit, report, "batch_sizes", o,
                                                     track)
    return out
