"""The protocol as it ran: each dataset's caps and targets, the hyperparameters chosen per budget, what each tuning
run found, and (in the tuning section) what TPE with pruning buys over random search."""
from __future__ import annotations

import pandas as pd

from study.report import fmt
from study.report.analysis import Analysis
from study.report.document.blocks import Heading, Paragraph, Table
from study.report.document.tables import Tables
from study.report.inputs import hyperparameter_names
from study.report.judge import stats


def _caps_shown(budgets: pd.DataFrame, datasets) -> pd.DataFrame:
    rows = []
    for dataset in datasets:
        mine = budgets[budgets["dataset"] == dataset].set_index("budget")
        if mine.empty:
            continue
        rows.append({"dataset": dataset,
                     "E_d (epochs)": fmt.count(mine.loc["epochs", "cap"]) if "epochs" in mine.index else "",
                     "U_d (updates)": fmt.count(mine.loc["updates", "cap"]) if "updates" in mine.index else "",
                     "T_d (seconds)": fmt.num(mine.loc["seconds", "cap"]) if "seconds" in mine.index else "",
                     "target (validation loss)": fmt.cell(mine["target"].iloc[0]),
                     "best full batch": mine["best_full_batch"].iloc[0],
                     "reaches it within": ", ".join(b for b in mine.index if mine.loc[b, "reaches_target"]) or "none"})
    return pd.DataFrame(rows)


def _choices_differ(hyper: pd.DataFrame) -> tuple[int, int]:
    """Cells and tuning runs whose hyperparameters differ between budgets, of how many."""
    names = [h for h in hyperparameter_names() if h in hyper]
    keys = ["dataset", "optimizer", "batch_size", "tuning_run"]
    if hyper.empty:
        return 0, 0
    distinct = hyper.groupby(keys, sort=False)[names].nunique(dropna=True).max(axis=1)
    return int((distinct > 1).sum()), len(distinct)


def _runs_sentence(a: Analysis) -> str:
    runs = a.tuning.runs
    n = a.results.tuning_runs
    if runs.empty or runs["tuning_run"].nunique() < 2:
        return (f"Each cell was tuned by {n} TPE run; the bootstrap has no tuning runs to resample, so tuning's "
                f"own randomness is not in its confidence.")
    wide = runs.pivot_table(index=["dataset", "optimizer", "batch_size"], columns="tuning_run",
                            values="eval_test_loss")
    spread = (wide.max(axis=1) - wide.min(axis=1)) / wide.index.get_level_values("dataset").map(a.scores.unit)
    picks = a.tuning.picks_per_run
    agree = [b for b, g in picks.groupby("budget", sort=False) if len(set(zip(g["optimizer"], g["batch_size"]))) == 1]
    return (f"Each cell was tuned by {n} independent TPE runs, each with its own sampler seed and its own "
            f"train/validation split; each run's choice was evaluated with every evaluation seed. Between the runs "
            f"of a cell, the mean test loss of their choices differs by a median of "
            f"{fmt.num(stats.finite_median(spread))} loss units (`tables/tuning_runs.csv`). From one run's "
            f"evaluations alone, validation makes the same pick at "
            f"{fmt.names(agree) if agree else 'no budget'}: the bootstrap resamples tuning runs, so how sure the "
            f"verdict is includes this.")


def protocol_section(a: Analysis, tables: Tables) -> list:
    budgets = a.practice.budgets
    csv = tables.add("budgets", budgets)
    hyper = a.tuning.hyper_by_budget
    csv_hyper = tables.add("hyper_by_budget", hyper)
    tables.add("tuning_runs", a.tuning.runs)
    tables.add("picks_per_run", a.tuning.picks_per_run)
    differ, cells = _choices_differ(hyper)
    missed = budgets[~budgets["reaches_target"].astype(bool)]
    check = ("The best full-batch cell reaches its dataset's target within every cap, as it must." if missed.empty
             else f"**Check failed**: the best full-batch cell misses the target within the cap at "
                  f"{fmt.names(f'{d} ({b})' for d, b in zip(missed['dataset'], missed['budget']))}.")
    factor = a.settings.report.target.factor
    return [Heading("Budgets and tuning runs"), Paragraph(
        f"Three budgets, each with one cap per dataset for every optimizer and batch size: E_d epochs (the "
        f"profile's); U_d, the updates a full-batch cell (else the largest batch's) makes in its E_d epochs; T_d = "
        f"E_d times the slowest epoch among the dataset's full-batch cells (seconds_per_epoch measured before "
        f"tuning, one network alone: this machine's), so every full-batch cell has its E_d epochs at every cap. Every cell trains E_d epochs, so each cap fits in its runs. The target of a dataset is "
        f"{fmt.num(factor)} x the validation loss at E_d of its best full-batch cell (tuned, median over its runs, "
        f"chosen on validation), as Shallue et al. (2019) choose targets every batch size can reach. {check} Costs "
        f"are read at checkpoints: every epoch end, and 8 per decade of updates inside epochs."),
        Table(_caps_shown(budgets, a.grid.datasets), "Caps and targets per dataset, and the budgets within which "
                                                      "the best full-batch cell reaches the target.", csv),
        Paragraph(f"Hyperparameters are chosen for each budget, on validation at that budget, from the tuning "
                  f"trials' checkpoint curves: the lowest validation loss at E_d epochs, at U_d updates, at T_d "
                  f"seconds. They differ between budgets for {differ} of {cells} cells and tuning runs "
                  f"(`tables/{csv_hyper}.csv`)."),
        Paragraph(_runs_sentence(a))]


def pruning_blocks(a: Analysis, tables: Tables) -> list:
    p = a.tuning.pruning
    csv = tables.add("tpe_vs_random", p.optimizers)
    tables.add("tpe_vs_random_cells", p.cells)
    if not p.measured:
        return [Paragraph("**What TPE and pruning buy**: not measured (this sweep has no random-search arm).")]
    t = p.optimizers
    shown = pd.DataFrame({
        "optimizer": t["optimizer"],
        "random - TPE, loss units": [f"{fmt.num(m)} [{fmt.num(lo)}, {fmt.num(hi)}]" for m, lo, hi in
                                     zip(t["median_gain"], t["low"], t["high"])],
        "Holm p": [fmt.cell(v) for v in t["holm_p"]], "P(TPE better)": [fmt.prob(v) for v in t["p_tpe_better"]],
        "P(equivalent)": [fmt.prob(v) for v in t["p_equivalent"]],
        "cells TPE better": [fmt.share(v) for v in t["tpe_better_share"]]})
    alpha = a.settings.report.statistics.alpha
    better = [o for o, m, h in zip(t["optimizer"], t["median_gain"], t["holm_p"]) if m > 0 and h < alpha]
    worse = [o for o, m, h in zip(t["optimizer"], t["median_gain"], t["holm_p"]) if m < 0 and h < alpha]
    ranked = t.sort_values("median_gain", ascending=False)
    favour = ("the gain differs between optimizers" if p.omnibus.pvalue < alpha else
              "no evidence that the gain differs between optimizers")
    said = (f"TPE with pruning beats as many random trials for {fmt.names(better)}" if better else
            "TPE with pruning is not shown better than as many random trials for any optimizer")
    said += f", and is shown worse for {fmt.names(worse)}" if worse else ""
    text = (f"**What TPE and pruning buy** (exploratory): per cell, each arm's best trial on validation (per TPE "
            f"run, and the unpruned random arm on run 0's split, as many trials), judged on the test loss every trial "
            f"recorded. {said} (Holm over the optimizers); the median gain ranges from "
            f"{fmt.num(ranked['median_gain'].iloc[0])} loss units ({ranked['optimizer'].iloc[0]}) to "
            f"{fmt.num(ranked['median_gain'].iloc[-1])} ({ranked['optimizer'].iloc[-1]}); {favour} (Iman-Davenport "
            f"{fmt.p(p.omnibus.pvalue)} over {p.datasets} datasets). A pruner that stops slow starters early would "
            f"show as a smaller gain for the optimizers whose curves come down late.")
    return [Paragraph(text), Table(shown, "TPE with the median pruner against random search, per optimizer: the "
                                          "random arm's best test loss minus TPE's, in loss units (> 0: TPE "
                                          "better), median over datasets with its interval.", csv)]
