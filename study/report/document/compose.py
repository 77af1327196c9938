"""The report document: sections in the issue's order, then written to report.md, report.html, figures/, tables/.

``write(analysis, out_dir, report_commit, coverage)`` writes one report. It is deterministic: the same analysis and
commit give byte-identical files (no timestamps, stable ordering, seeded draws, PNGs without version stamps, fixed
float formats). Files are written to a temporary directory beside ``out_dir`` and moved into place at the end, so a
failed build leaves the previous report whole; ``out_dir`` must be new, empty or a report's own directory
(study.report.document.output). On partial data the report says near its top what it rests on (the coverage note).
"""
from __future__ import annotations

from pathlib import Path

from study.report.analysis import Analysis
from study.report.coverage import Coverage
from study.report.document import figures, output, render_html, render_md
from study.report.document.answer import answer_section
from study.report.document.blocks import Figure, Heading, Paragraph, walk
from study.report.document.claims import claims_section, footer_section
from study.report.document.coverage import coverage_section
from study.report.document.literature import generalisation_section, literature_section
from study.report.document.results import batch_modes_section, datasets_section, profiles_section
from study.report.document.tables import Tables
from study.report.document.protocol import protocol_section
from study.report.document.statistics import statistics_section
from study.report.document.tuning import tuning_section
from study.report.document.verdict import stability_section, verdict_section


def _intro(a: Analysis) -> list:
    r, g = a.results, a.grid
    seeds = len(r.seeds) or r.evals["seed"].nunique()
    trials = "n/a" if r.trials_per_cell is None else r.trials_per_cell
    runs = r.tuning_runs
    return [Heading(f"Which optimizer, and which batch size, do we use in practice? — sweep `{r.name}`", 1),
            Paragraph(f"{len(g.optimizers)} optimizers ({', '.join(g.optimizers)}) x {len(g.batches)} batch sizes "
                      f"({', '.join(g.batches)}) on {len(g.datasets)} datasets, each cell tuned by {runs} "
                      f"independent TPE run{'s' if runs != 1 else ''} of {trials} trials, the hyperparameters chosen "
                      f"on validation for each of three budgets (equal epochs, updates, wall time), then evaluated "
                      f"with {seeds} seeds with the tuned and with the default hyperparameters on one test split "
                      f"no tuning saw. Lower is better everywhere; every number here is in `tables/`.")]


def build(a: Analysis, report_commit: str = "", coverage: Coverage | None = None) -> tuple[list, Tables]:
    tables = Tables()
    title, *intro = _intro(a)
    blocks = [title, *answer_section(a, tables), *intro]  # the answer at a glance first, before any prose
    if coverage is not None:
        blocks += coverage_section(a, coverage, tables)
    for section in (verdict_section, stability_section, statistics_section, protocol_section, datasets_section,
                    tuning_section,
                    batch_modes_section, profiles_section, generalisation_section, literature_section,
                    claims_section):
        blocks += section(a, tables)
    blocks += footer_section(a, tables, report_commit)
    return blocks, tables


def write(a: Analysis, out_dir: Path, report_commit: str = "", coverage: Coverage | None = None) -> list[Path]:
    """Build the document and write it into ``out_dir`` (replacing the report there); returns the files written,
    the directory's marker aside."""
    with figures.own_style():  # whatever an earlier caller did to matplotlib's global style (Optuna sets ggplot)
        blocks, tables = build(a, report_commit, coverage)
    staging = output.Staging(out_dir, folders=("figures", "tables"))
    try:
        names = set()
        for block in walk(blocks):
            if isinstance(block, Figure):
                if block.name in names:
                    raise ValueError(f"figure {block.name!r} drawn twice")
                names.add(block.name)
                staging.write(f"figures/{block.name}.png", block.png)
        for name in sorted(tables.frames):
            staging.write(f"tables/{name}.csv", tables.to_csv(name))
        staging.write("report.md", render_md.render(blocks).encode("utf-8"))
        title = f"Optimizer study — {a.results.name}"
        staging.write("report.html", render_html.render(blocks, title).encode("utf-8"))
        return sorted(staging.publish())
    except BaseException:
        staging.discard()
        raise
