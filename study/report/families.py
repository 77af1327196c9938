"""From evaluation runs to the families of comparisons the verdict rests on.

Thirty treatments (6 optimizers x 5 batch sizes) on about a dozen datasets cannot be separated all-pairs, so
they are compared in families, each over the datasets (a block = one dataset's mean test loss over seeds):
  - the optimizers within each batch size;
  - the batch sizes within each optimizer;
  - overall: every optimizer at its own best batch size (the lowest mean rank in its batch-size family).
Each family is run on the tuned and on the default track.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.report import stats
from study.report.settings import Settings

TRACKS = ("tuned", "default")
KEYS = ["dataset", "optimizer", "batch_size", "track"]


def scored_evals(evals: pd.DataFrame) -> pd.DataFrame:
    """Evaluation runs with a ``loss`` column: the test loss, or for a run that diverged (or has no finite test
    loss) the worst finite test loss seen on that dataset, so a blow-up ranks last instead of vanishing."""
    scored = evals.copy()
    failed = (scored["diverged"].fillna(0).astype(float) > 0) | ~np.isfinite(scored["test_loss"].astype(float))
    finite = scored["test_loss"].where(~failed)
    worst = finite.groupby(scored["dataset"]).transform("max")
    scored["failed"] = failed
    scored["loss"] = np.where(failed, worst, scored["test_loss"])
    return scored


def ordered(values, order) -> list:
    """``values`` in the config's order (then any extras, sorted), so tables and figures list them stably."""
    present = list(dict.fromkeys(values))
    return [v for v in order if v in present] + sorted(v for v in present if v not in order)


def score_table(scored: pd.DataFrame, track: str, datasets=(), value: str = "loss") -> pd.DataFrame:
    """Datasets (in the given order) x (optimizer, batch_size): the mean of ``value`` over seeds."""
    rows = scored[scored["track"] == track]
    table = rows.groupby(["dataset", "optimizer", "batch_size"], sort=False)[value].mean().unstack(
        ["optimizer", "batch_size"])
    return table.loc[ordered(table.index, list(datasets))]


@dataclass
class Family:
    kind: str  # "optimizers" (within a batch size), "batch_sizes" (within an optimizer), "overall", "budget"
    fixed: str  # the batch size or optimizer held fixed; "" for overall
    track: str
    result: stats.FamilyResult
    labels: dict  # treatment -> how to show it (overall: "adam (32)")

    @property
    def title(self) -> str:
        if self.kind == "optimizers":
            return f"optimizers at batch size {self.fixed}"
        if self.kind == "batch_sizes":
            return f"batch sizes for {self.fixed}"
        if self.kind == "budget":
            return f"optimizers after {self.fixed} trial(s)"
        return "optimizers, each at its best batch size"


def compare(table: pd.DataFrame, settings: Settings) -> stats.FamilyResult:
    return stats.compare_family(table, rope=settings.rope, alpha=settings.alpha, nsamples=settings.bayes_samples,
                                seed=settings.seed)


def build_families(scored: pd.DataFrame, config: dict, settings: Settings) -> dict[tuple[str, str, str], Family]:
    """Every family, keyed by (track, kind, fixed), in a stable order."""
    families = {}
    for track in TRACKS:
        if not (scored["track"] == track).any():
            continue
        table = score_table(scored, track, config.get("datasets", []))
        optimizers = ordered(table.columns.get_level_values(0), config.get("optimizers", []))
        batches = ordered(table.columns.get_level_values(1), config.get("batch_sizes", []))
        for batch in batches:
            sub = pd.DataFrame({o: table[(o, batch)] for o in optimizers if (o, batch) in table.columns})
            families[(track, "optimizers", batch)] = Family("optimizers", batch, track, compare(sub, settings),
                                                            {o: o for o in sub.columns})
        best_batch = {}
        for optimizer in optimizers:
            sub = pd.DataFrame({b: table[(optimizer, b)] for b in batches if (optimizer, b) in table.columns})
            family = Family("batch_sizes", optimizer, track, compare(sub, settings), {b: b for b in sub.columns})
            families[(track, "batch_sizes", optimizer)] = family
            best_batch[optimizer] = family.result.control
        overall = pd.DataFrame({o: table[(o, best_batch[o])] for o in optimizers if best_batch[o] is not None})
        families[(track, "overall", "")] = Family("overall", "", track, compare(overall, settings),
                                                  {o: f"{o} ({best_batch[o]})" for o in overall.columns})
    return families


def best_batch_sizes(families: dict, track: str) -> dict[str, str]:
    """Each optimizer's best batch size on a track: the control of its batch-size family."""
    return {fixed: f.result.control for (t, kind, fixed), f in families.items()
            if t == track and kind == "batch_sizes" and f.result.control is not None}
