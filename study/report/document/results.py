"""Sections 3, 5 and 6: per dataset results, batch modes, performance profiles."""
from __future__ import annotations

import numpy as np
import pandas as pd

from study.report import fmt
from study.report.analysis import Analysis
from study.report.document import figures
from study.report.document.blocks import Details, Figure, Heading, Paragraph, Table
from study.report.document.sentences import capped
from study.report.document.tables import Tables, matrix


def _to_target(row) -> str:
    if not np.isfinite(row["epochs_to_target"]):
        return "never"
    runs = "" if row["reached_share"] >= 1 else f" ({fmt.share(row['reached_share'])} of runs)"
    return f"{fmt.num(row['epochs_to_target'])} / {fmt.count(row['updates_to_target'])}{runs}"


def _at_caps(caps: dict):
    """A cell's validation-curve costs at the updates and seconds budgets, "> cap" where censored."""
    def shown(row) -> str:
        return " / ".join(capped(row.get(f"val_{b}", np.nan), caps.get(b, np.nan)) for b in ("updates", "seconds"))
    return shown


def datasets_section(a: Analysis, tables: Tables) -> list:
    level, factor = a.settings.report.statistics.confidence, a.settings.report.target.factor
    optimizers, batches, targets = a.grid.optimizers, a.grid.batches, a.practice.targets
    cells = a.scores.summary.merge(a.practice.to_target, on=["dataset", "optimizer", "batch_size", "track"],
                                   how="left")
    costs = a.scores.cells[["dataset", "optimizer", "batch_size", "track"]
                           + [c for c in ("val_updates", "val_seconds", "test_updates", "test_seconds")
                              if c in a.scores.cells]]
    cells = cells.merge(costs, on=["dataset", "optimizer", "batch_size", "track"], how="left")
    csv = tables.add("cells", cells)
    csv_targets = tables.add("targets", targets.reindex(list(a.grid.datasets)).reset_index())
    tables.add("curves_median", a.practice.curves_median)
    blocks = [Heading("Per dataset"), Paragraph(
        f"For every dataset (equal-epochs evaluations, each cell's runs pooled over tuning runs and seeds): test loss "
        f"and accuracy as the mean over its runs with a {level:.0%} bootstrap interval, for every optimizer (rows) "
        f"and batch size (columns); epochs and updates to reach the dataset's target within E_d epochs (median "
        f"over runs, at checkpoint resolution, validation curves); updates and seconds to the target at the "
        f"updates and seconds budgets, with their own hyperparameters, censored at the caps (\"> cap\": the median "
        f"run never got there within it); seconds per evaluation run (machine-dependent, for orientation); and the "
        f"validation-loss curves (median over runs, band = 25th to 75th percentile, dashed line = target). Target "
        f"= {factor} x the validation loss at E_d of the dataset's best full-batch cell (tuned). With a handful of "
        f"runs the percentile intervals are rough (they tend to be too narrow at small n); the verdict does not "
        f"rest on them.")]
    n_train = a.results.evals.groupby("dataset")["n_train"].first()
    for dataset in a.grid.datasets:
        c = cells[cells["dataset"] == dataset]
        inner = []
        if dataset in targets.index:
            t = targets.loc[dataset]
            inner.append(Paragraph(
                f"N = {fmt.count(n_train.get(dataset, np.nan))} training samples, "
                f"{a.results.epochs(dataset)} epochs. Target validation "
                f"loss {fmt.num(t['target'])} = {factor} x {fmt.num(t['best_val_loss'])}, the validation loss at "
                f"E_d of the best full-batch cell ({t['optimizer']}, batch {t['batch_size']}, tuned)."))
        for track in a.grid.tracks:
            ct = c[c["track"] == track]
            inner.append(Table(matrix(ct, optimizers, batches, lambda r: fmt.interval(
                r["test_loss_mean"], r["test_loss_low"], r["test_loss_high"])),
                f"{dataset}: test loss, {track} (mean [{level:.0%} CI] over runs)", csv))
            failed = int(ct["failed"].sum())
            if failed:
                inner.append(Paragraph(f"{failed} {track} run(s) diverged here; each scores the untrained "
                                       f"network's test loss."))
        tuned = c[c["track"] == "tuned"]
        if tuned["test_accuracy_mean"].notna().any():
            inner.append(Table(matrix(tuned, optimizers, batches, lambda r: fmt.interval(
                r["test_accuracy_mean"], r["test_accuracy_low"], r["test_accuracy_high"])),
                f"{dataset}: test accuracy, tuned", csv))
        inner.append(Table(matrix(tuned, optimizers, batches, _to_target),
                           f"{dataset}: epochs / updates to the target within E_d epochs, tuned", csv))
        caps = a.scores.caps[a.scores.caps["dataset"] == dataset].set_index("budget")["cap"].to_dict()
        inner.append(Table(matrix(tuned, optimizers, batches, _at_caps(caps)),
                           f"{dataset}: updates / seconds to the target at their own budgets (caps "
                           f"{fmt.num(caps.get('updates', np.nan))} updates, {fmt.num(caps.get('seconds', np.nan))} "
                           f"s), tuned, validation curves, median over runs", csv))
        inner.append(Table(matrix(tuned, optimizers, batches, lambda r: fmt.cell(r["seconds_median"])),
                           f"{dataset}: seconds per evaluation run, tuned (machine-dependent)", csv))
        target = float(targets.loc[dataset, "target"]) if dataset in targets.index else np.nan
        fig = figures.dataset_curves(a.practice.curves_median, dataset, batches, optimizers, target)
        inner.append(Figure(f"curves_{dataset}", figures.png_bytes(fig, a.settings.report.figures.dpi),
                            f"{dataset}: validation loss against epoch, tuned (median over runs, 25-75% band)."))
        blocks.append(Details(dataset, inner))
    blocks.append(Paragraph(f"Targets: `tables/{csv_targets}.csv`; median curves: `tables/curves_median.csv`."))
    return blocks


def batch_modes_section(a: Analysis, tables: Tables) -> list:
    s = a.practice.batch_summary.copy()
    ranks = pd.DataFrame({o: a.verdict.families[("tuned", "batch_sizes", o)].result.mean_ranks
                          for o in a.grid.optimizers if ("tuned", "batch_sizes", o) in a.verdict.families}).T
    s["mean_rank_tuned"] = [float(ranks[b].mean()) if b in ranks.columns else np.nan for b in s["batch_size"]]
    tables.add("updates_per_epoch", a.practice.updates)
    tables.add("noise_per_run", a.practice.noise)
    csv = tables.add("batch_modes", s)

    def span(lo, hi):
        return fmt.count(lo) if lo == hi else f"{fmt.count(lo)}-{fmt.count(hi)}"

    shown = pd.DataFrame({
        "batch size": s["batch_size"], "lecture: updates per epoch": s["formula"],
        "expected here": [span(lo, hi) for lo, hi in zip(s["expected_min"], s["expected_max"])],
        "measured": [span(lo, hi) for lo, hi in zip(s["measured_min"], s["measured_max"])],
        "datasets matching": [f"{m}/{n}" for m, n in zip(s["datasets_matching"], s["datasets"])],
        "grad. RMS norm / full": [fmt.cell(v) for v in s["grad_norm_vs_full"]],
        "epochs val. loss rose": [fmt.share(v) for v in s["val_rise_share"]],
        "mean rank (tuned)": [fmt.cell(v) for v in s["mean_rank_tuned"]]})
    noise = a.practice.noise
    fig = figures.batch_modes(noise[noise["track"] == "tuned"], ranks, a.grid.batches, a.grid.optimizers)
    return [Heading("Batch modes"), Paragraph(
        "The lecture's table: batch gradient descent makes 1 update per epoch, mini-batch N/B (rounded up: the "
        "last, smaller batch is kept), stochastic N. Measured below from the cumulative update counts of every "
        "evaluation run (ranges over datasets). Noise: the RMS norm of the gradients that fed each epoch's updates, "
        "over the second half of training, relative to the full-batch run with the same optimizer, track and seed "
        "(a mini-batch gradient carries sampling noise of variance proportional to 1/B; the runs pass through "
        "different parameters, so this is a symptom, not a clean measurement — the claims section measures "
        "gradient error at equal parameters). Oscillation: the share of epochs in which validation loss went up. "
        "Quality: each batch size's mean rank of test loss within each optimizer (tuned), averaged over optimizers."),
        Table(shown, "Batch modes: updates per epoch, noise and quality (medians over datasets, optimizers and "
                     "seeds).", csv),
        Figure("batch_modes", figures.png_bytes(fig, a.settings.report.figures.dpi),
               "Against batch size, tuned track, a line per optimizer: gradient RMS norm relative to full batch, "
               "share of epochs with rising validation loss, mean rank of test loss (1 = best, at the top).")]


def profiles_section(a: Analysis, tables: Tables) -> list:
    if not a.practice.profiles:  # no budget has a test curve to reach the target on (an old sweep, or none)
        tables.add("performance_profiles", pd.DataFrame(columns=["tau", "solver", "rho", "profile"]))
        return [Heading("Performance profiles"), Paragraph(
            "Not measured: performance profiles need the test-loss curves of the evaluation runs (the cost to "
            "reach the target on test), and the sweep recorded none for the cells this report rests on.")]
    long = pd.concat([p.reset_index().melt(id_vars="tau", var_name="solver", value_name="rho").assign(profile=name)
                      for name, _, p in a.practice.profiles], ignore_index=True)
    tables.add("performance_profiles", long)
    for name, times in a.practice.profile_times.items():
        tables.add(f"profile_times_{name}", times.reset_index().rename(columns={"index": "dataset"}))
    rows, shown, tau_max = [], [], a.settings.report.profile.tau_max
    for name, title, p in a.practice.profiles:
        times = a.practice.profile_times[name]
        for solver in p.columns:
            reached = float(np.isfinite(times[solver].astype(float)).mean()) if len(times) else np.nan
            rows.append({"profile": name, "solver": solver, "fastest_share": float(p[solver].iloc[0]),
                         "within_tau_max_share": float(p[solver].iloc[-1]), "reached_share": reached})
            shown.append({"comparison": title, "solver": solver, "fastest (tau = 1)": fmt.share(p[solver].iloc[0]),
                          f"within {fmt.num(tau_max)}x the fastest": fmt.share(p[solver].iloc[-1]),
                          "reached the target": fmt.share(reached)})
    csv = tables.add("profile_summary", pd.DataFrame(rows))
    fig = figures.performance_profiles(a.practice.profiles)
    return [Heading("Performance profiles"), Paragraph(
        "Dolan-Moré performance profiles of the cost to reach the dataset's target on the test curve (as AlgoPerf "
        "uses for time to target), one per budget a practitioner pays in: epochs, updates, and seconds (this "
        "machine's). For each optimizer, at the batch size validation chose for it at that budget, the share of "
        "datasets on which it reaches the target within tau times the cost of the fastest optimizer there. One "
        "that never reaches the target on a dataset counts as infinitely slow there. Higher and further left is "
        "better; the value at tau = 1 is the share of datasets on which it was the fastest. Tuned track."),
        Figure("performance_profiles", figures.png_bytes(fig, a.settings.report.figures.dpi),
               "Performance profiles of epochs, updates and seconds to the target (test curves), optimizers at the "
               "batch size chosen for each budget."),
        Table(pd.DataFrame(shown), "Performance profile summary.", csv)]
