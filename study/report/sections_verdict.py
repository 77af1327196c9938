"""Sections 1 and 2: the verdict (first and short) and the statistics it rests on."""
from __future__ import annotations

import numpy as np
import pandas as pd

from study.report import figures, fmt
from study.report.analysis import Analysis
from study.report.blocks import Bullets, Details, Figure, Heading, Paragraph, Table
from study.report.tables import Tables
from study.report.verdict import INCONCLUSIVE, TOP_GROUP, WINNER, sentence, sureness


def _family(a: Analysis, track: str, kind: str, fixed: str = ""):
    key = (track, kind, fixed)
    return a.families.get(key), a.judgements.get(key)


def _optimizer_answer(a: Analysis) -> str:
    family, j = _family(a, "tuned", "overall")
    if family is None:
        return "**We cannot tell**: the sweep has no tuned evaluation runs."
    n = family.result.n_blocks
    label = family.labels
    if j.status == WINNER:
        return (f"**Use {j.control}** (at batch size {a.best_batch['tuned'][j.control]}). Tuned, it has the lowest "
                f"test loss of the {len(label)} optimizers: {j.reason}.")
    if j.status == TOP_GROUP:
        behind = f" {fmt.names(j.beaten)} are significantly worse." if j.beaten else ""
        return (f"**Use one of {fmt.names(label[t] for t in j.top)}** — tuned, these lead on the {n} datasets and "
                f"the data cannot separate them ({j.reason}).{behind} {j.control} has the best mean rank.")
    return (f"**We cannot tell** which optimizer is best: {j.reason}. {label[j.control]} has the best mean rank "
            f"({fmt.num(family.result.mean_ranks.iloc[0])}), but that is within what chance produces.")


def _batch_answer(a: Analysis) -> str:
    rec = a.recommended
    family, j = _family(a, "tuned", "batch_sizes", rec or "")
    if family is None:
        return ""
    if j.status == WINNER:
        return f"**Batch size {j.control}** for {rec}: it beats the other batch sizes — {j.reason}."
    if j.status == TOP_GROUP:
        behind = f"; {fmt.names(j.beaten)} significantly worse" if j.beaten else ""
        return (f"**Batch size {fmt.names(j.top)}** for {rec} — we cannot separate these ({j.reason}){behind}. "
                f"{j.control} has the best mean rank.")
    return (f"**Batch size: we cannot tell** for {rec}: {j.reason}; {j.control} has the best mean rank "
            f"({fmt.num(family.result.mean_ranks.iloc[0])}).")


def _in_practice(a: Analysis) -> str:
    """What a practitioner can act on, read off the families and nothing more: the tuned verdict when it names no
    winner, the untuned (default) comparison, and the batch size that leads most optimizers with defaults."""
    tuned, tj = _family(a, "tuned", "overall")
    default, dj = _family(a, "default", "overall")
    if tuned is None or default is None:
        return ""
    parts = []
    if tj.status != WINNER:
        parts.append(f"Tuned, no optimizer is reliably better than the others on these {tuned.result.n_blocks} "
                     f"datasets")
    batch_of = a.best_batch["default"]
    if dj.status == WINNER:
        parts.append(f"untuned (default hyperparameters), {dj.control} at batch size {batch_of[dj.control]} beats "
                     f"every other optimizer")
    elif dj.status == TOP_GROUP:
        parts.append(f"untuned (default hyperparameters), {fmt.names(dj.beaten)} "
                     f"{'falls' if len(dj.beaten) == 1 else 'fall'} significantly behind, while "
                     f"{fmt.names(f'{t} ({batch_of[t]})' for t in dj.top)} cannot be separated")
    else:
        parts.append("untuned (default hyperparameters), no optimizer is reliably better"
                     + (" either" if tj.status != WINNER else ""))
    leads = {}
    for optimizer in a.optimizers:
        family, j = _family(a, "default", "batch_sizes", optimizer)
        if family is not None and j.status in (WINNER, TOP_GROUP):
            for batch in j.top:
                leads[batch] = leads.get(batch, 0) + 1
    if leads:
        batch = max(a.batches, key=lambda b: leads.get(b, 0))  # ties: the first in the sweep's order
        parts.append(f"with default hyperparameters batch size {batch} is the best or joint best for "
                     f"{leads[batch]} of {len(a.optimizers)} optimizers")
    text = "; ".join(parts)
    return f"**In practice.** {text[0].upper()}{text[1:]}."


def _changes(a: Analysis) -> list[str]:
    """When the answer changes: tuned vs default, by batch size, by tuning budget, by dataset."""
    items = []
    family, j = _family(a, "default", "overall")
    if family is not None:
        items.append("With **default hyperparameters** (no tuning): " + sentence(family, j))
    per_batch = []
    for batch in a.batches:
        f, jb = _family(a, "tuned", "optimizers", batch)
        if f is not None:
            what = {WINNER: jb.control, TOP_GROUP: "top " + "/".join(jb.top), INCONCLUSIVE: "cannot tell"}[jb.status]
            per_batch.append(f"{batch}: {what}")
    if per_batch:
        items.append("**By batch size** (tuned, optimizers compared at each batch size): " + "; ".join(per_batch)
                     + ".")
    if a.budget_families:
        parts = []
        for k, f in a.budget_families.items():
            jk = a.budget_judgements[k]
            what = {WINNER: f.labels[jk.control], TOP_GROUP: "top " + "/".join(jk.top),
                    INCONCLUSIVE: f"cannot tell (best rank {jk.control})"}[jk.status]
            parts.append(f"{k} trial{'s' if k > 1 else ''}: {what}")
        items.append("**By tuning budget** (best validation loss after k trials, each optimizer at its best batch "
                     "size): " + "; ".join(parts) + ".")
    cells = a.cells[a.cells["track"] == "tuned"]
    if len(cells):
        best = cells.loc[cells.groupby("dataset", sort=False)["test_loss_mean"].idxmin()]
        counts = best["optimizer"].value_counts()
        listed = [f"{o} {counts[o]}" for o in a.optimizers if o in counts.index]
        others = [f"{d} ({o}/{b})" for d, o, b in zip(best["dataset"], best["optimizer"], best["batch_size"])
                  if o != a.recommended]
        items.append(f"**By dataset** (lowest mean tuned test loss of all {len(a.optimizers) * len(a.batches)} "
                     f"cells): datasets won — {', '.join(listed)}."
                     + (f" Not won by {a.recommended}: {', '.join(others)}." if others else ""))
    return items


def _ranking_tables(a: Analysis, tables: Tables) -> list:
    rows, shown = [], []
    for optimizer in a.optimizers:
        row, show = {"optimizer": optimizer}, {"optimizer": optimizer}
        for track in a.tracks:
            family, _ = _family(a, track, "overall")
            batch = a.best_batch[track].get(optimizer)
            cell = a.cells[(a.cells["track"] == track) & (a.cells["optimizer"] == optimizer)
                           & (a.cells["batch_size"] == batch)]
            rank = family.result.mean_ranks.get(optimizer, np.nan) if family else np.nan
            accuracy = cell["test_accuracy_mean"].mean()
            row.update({f"{track}_best_batch": batch, f"{track}_mean_rank": rank, f"{track}_mean_accuracy": accuracy})
            show.update({f"{track}: best batch": batch or "", f"{track}: mean rank": fmt.cell(rank),
                         f"{track}: mean accuracy": fmt.cell(accuracy)})
        rows.append(row)
        shown.append(show)
    order = np.argsort([r.get("tuned_mean_rank", np.nan) for r in rows], kind="stable")
    blocks = [Table(pd.DataFrame([shown[i] for i in order]),
                    "Optimizers, each at its own best batch size, ranked by mean rank of test loss over the datasets "
                    "(1 = best). Accuracy (mean over classification datasets) is shown beside it, not ranked on: it "
                    "saturates on small sets.", tables.add("ranking_optimizers", pd.DataFrame(rows)))]
    rows, shown = [], []
    for batch in a.batches:
        row, show = {"batch_size": batch}, {"batch size": batch}
        for track in a.tracks:
            ranks = [a.families[(track, "batch_sizes", o)].result.mean_ranks.get(batch, np.nan)
                     for o in a.optimizers if (track, "batch_sizes", o) in a.families]
            rec = a.families.get((track, "batch_sizes", a.recommended or ""))
            rec_rank = rec.result.mean_ranks.get(batch, np.nan) if rec else np.nan
            row.update({f"{track}_rank_{a.recommended}": rec_rank, f"{track}_rank_mean_over_optimizers":
                        float(np.nanmean(ranks)) if ranks else np.nan})
            show.update({f"{track}: rank for {a.recommended}": fmt.cell(rec_rank),
                         f"{track}: mean rank over optimizers": fmt.cell(row[f"{track}_rank_mean_over_optimizers"])})
        rows.append(row)
        shown.append(show)
    blocks.append(Table(pd.DataFrame(shown), f"Batch sizes ranked within each optimizer (1 = best of "
                                             f"{len(a.batches)}): for {a.recommended}, and averaged over the optimizers.",
                        tables.add("ranking_batch_sizes", pd.DataFrame(rows))))
    return blocks


def verdict_section(a: Analysis, tables: Tables) -> list:
    family, j = _family(a, "tuned", "overall")
    blocks = [Heading("The verdict"), Paragraph(_optimizer_answer(a)), Paragraph(_batch_answer(a))]
    practice = _in_practice(a)
    if practice:
        blocks.append(Paragraph(practice))
    if family is not None:
        blocks.append(Paragraph("**How sure.** " + sureness(family, j, a.settings.rope) + " (The best-ranked "
                                "optimizer is picked from the same data, which flatters these probabilities; the "
                                "verdict above rests on the frequentist tests.)"))
    blocks += [Paragraph("**When the answer changes.**"), Bullets(_changes(a))]
    blocks += _ranking_tables(a, tables)
    return blocks


# --- statistics ------------------------------------------------------------------------------------------------
METHOD = (
    "Each block is one dataset, scored by the mean test loss over the evaluation seeds (lower is better); a run "
    "that diverged scores the worst finite test loss seen on its dataset, so it ranks last instead of vanishing. "
    "Thirty treatments on about a dozen datasets cannot be separated all-pairs, so the comparisons run in "
    "families: the optimizers within each batch size, the batch sizes within each optimizer, and overall, each "
    "optimizer at its own best batch size (the lowest mean rank in its batch-size family — chosen from the same "
    "data, which flatters the overall family slightly). Per family: the **Friedman test** (ranks within datasets, "
    "so loss scales do not matter and no normality is assumed; Demšar 2006) says whether the treatments differ at "
    "all; then each treatment is compared with the best-ranked one (the control) by the **Wilcoxon signed-rank "
    "test** on relative differences (other - control) / control, with **Holm's** step-down correction over the "
    "comparisons (more power than all-pairs Nemenyi with this few datasets; García & Herrera 2008). The **critical "
    "difference diagrams** show the classic all-pairs Nemenyi view. For how sure we are, the **Bayesian "
    "signed-rank test** (Benavoli et al. 2014, 2017; baycomp's sampler, vectorised) gives the posterior "
    "probability that the control is better by more than the region of practical equivalence (ROPE), within it, "
    "or worse. Intervals on means over seeds are percentile bootstrap intervals (scipy.stats.bootstrap)."
)


def family_rows(a: Analysis) -> pd.DataFrame:
    rows = []
    for (track, kind, fixed), family in list(a.families.items()) + [
            (("tuned", "budget", str(k)), f) for k, f in a.budget_families.items()]:
        j = a.judgements.get((track, kind, fixed)) or a.budget_judgements[int(fixed)]
        r = family.result
        rows.append({"track": track, "family": family.title, "datasets": r.n_blocks, "test": r.omnibus.test,
                     "statistic": r.omnibus.statistic, "p": r.omnibus.pvalue, "control": r.control,
                     "status": j.status, "top_group": " ".join(j.top), "beaten": " ".join(j.beaten),
                     "critical_difference": r.critical_difference})
    return pd.DataFrame(rows)


def versus_rows(a: Analysis) -> pd.DataFrame:
    parts = []
    budget = [(("tuned", "budget", str(k)), f) for k, f in a.budget_families.items()]
    for (track, kind, fixed), family in list(a.families.items()) + budget:
        v = family.result.versus_control.reset_index()
        v.insert(0, "control", family.result.control)
        v.insert(0, "family", family.title)
        v.insert(0, "track", track)
        parts.append(v)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def versus_table(family, judgement) -> pd.DataFrame:
    r = family.result
    rows = [{"treatment": family.labels[r.control], "mean rank": fmt.cell(r.mean_ranks.iloc[0]),
             "median rel. diff": "control", "Wilcoxon p": "", "Holm p": "", "P(control better)": "",
             "P(equivalent)": "", "P(control worse)": ""}]
    for t, v in r.versus_control.iterrows():
        rows.append({"treatment": family.labels[t] + (" *" if t in judgement.beaten else ""),
                     "mean rank": fmt.cell(v["mean_rank"]), "median rel. diff": fmt.pct(v["median_rel_diff"]),
                     "Wilcoxon p": fmt.cell(v["wilcoxon_p"]), "Holm p": fmt.cell(v["holm_p"]),
                     "P(control better)": fmt.prob(v["p_control_better"]),
                     "P(equivalent)": fmt.prob(v["p_equivalent"]), "P(control worse)": fmt.prob(v["p_control_worse"])})
    return pd.DataFrame(rows)


def statistics_section(a: Analysis, tables: Tables) -> list:
    s = a.settings
    blocks = [Heading("Statistics"), Paragraph(METHOD), Paragraph(
        f"Settings: alpha = {s.alpha} (family-wise, within each family), ROPE = {s.rope:.0%} relative test loss, "
        f"\"sure\" = posterior probability >= {s.sure}, {s.bayes_samples:,} posterior draws, "
        f"{s.bootstrap_resamples:,} bootstrap resamples, seed {s.seed}. The verdict rests on the overall tuned "
        f"family; the other families are secondary and are not corrected across families, so about one in twenty "
        f"of them can show a difference by chance.")]
    summary = family_rows(a)
    shown = pd.DataFrame({"track": summary["track"], "family": summary["family"], "datasets": summary["datasets"],
                          "omnibus": [f"{t} {fmt.p(p)}" for t, p in zip(summary["test"], summary["p"])],
                          "best": summary["control"], "status": summary["status"],
                          "cannot separate from best": [" ".join(t.split()[1:]) for t in summary["top_group"]],
                          "significantly behind": summary["beaten"]})
    blocks.append(Table(shown, "Every family: the omnibus test, the best-ranked treatment and what the tests allow.",
                        tables.add("families", summary)))
    csv = tables.add("versus_control", versus_rows(a))
    for track in a.tracks:
        family, j = _family(a, track, "overall")
        if family is None:
            continue
        blocks.append(Heading(f"Overall, {track} track", 3))
        blocks.append(Paragraph(sentence(family, j)))
        blocks.append(Table(versus_table(family, j), f"Each optimizer (at its best batch size) against the best; "
                                                     f"* = significantly behind after Holm's correction.", csv))
        panels = [("overall", family, set(j.beaten))]
        for batch in a.batches:
            f, jb = _family(a, track, "optimizers", batch)
            panels.append((f"batch {batch}", f, set(jb.beaten)))
        blocks.append(Figure(f"cd_{track}_optimizers", figures.png_bytes(figures.cd_diagrams(panels), s.dpi),
                             f"Critical difference diagrams, {track} track: optimizers overall and at each batch "
                             f"size (mean rank, 1 = best; a bar joins treatments closer than the Nemenyi CD; a hollow "
                             f"marker is significantly behind the best by Holm-corrected Wilcoxon)."))
        panels = [(f"{o}", a.families[(track, "batch_sizes", o)],
                   set(a.judgements[(track, "batch_sizes", o)].beaten)) for o in a.optimizers
                  if (track, "batch_sizes", o) in a.families]
        blocks.append(Figure(f"cd_{track}_batch_sizes", figures.png_bytes(figures.cd_diagrams(panels), s.dpi),
                             f"Critical difference diagrams, {track} track: batch sizes within each optimizer."))
        details = []
        for (t, kind, fixed), f in a.families.items():
            if t == track and kind != "overall":
                jf = a.judgements[(t, kind, fixed)]
                details += [Paragraph(f"**{f.title}** — " + sentence(f, jf)), Table(versus_table(f, jf), "", csv)]
        blocks.append(Details(f"Every {track}-track family against its best treatment", details, level=4))
    return blocks
