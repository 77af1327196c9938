"""The report document: sections in the issue's order, then written to report.md, report.html, figures/, tables/.

``write(results, out_dir, settings, report_commit)`` is the one entry point. It is deterministic: the same results,
settings and commit give byte-identical files (no timestamps, stable ordering, seeded draws, PNGs without version
stamps, fixed float formats). Files are written to a temporary directory beside ``out_dir`` and moved into place
at the end, so a failed build leaves the previous report whole; ``out_dir`` must be new, empty or a report's own
directory (study.report.output). On partial data (an interrupted sweep, a store missing cells) the report rests on
the largest complete grid of finished cells and says near its top what is missing (study.report.coverage).
"""
from __future__ import annotations

from pathlib import Path

from study.report import coverage as coverage_
from study.report.document import figures, output, render_html, render_md
from study.report.analysis import Analysis, analyse
from study.report.document.blocks import Figure, Heading, Paragraph, walk
from study.report.inputs import SweepResults
from study.report.document.claims import claims_section, footer_section
from study.report.document.coverage import coverage_section
from study.report.document.literature import generalisation_section, literature_section
from study.report.document.results import batch_modes_section, datasets_section, profiles_section
from study.report.document.tuning import tuning_section
from study.report.document.verdict import stability_section, statistics_section, verdict_section
from study.report.settings import Settings
from study.report.document.tables import Tables


def _intro(a: Analysis) -> list:
    r = a.results
    seeds = len(r.config.get("seeds", [])) or r.evals["seed"].nunique()
    return [Heading(f"Which optimizer, and which batch size, do we use in practice? — sweep `{r.name}`", 1),
            Paragraph(f"{len(a.optimizers)} optimizers ({', '.join(a.optimizers)}) x {len(a.batches)} batch sizes "
                      f"({', '.join(a.batches)}) on {len(a.datasets)} datasets, each cell tuned with "
                      f"{r.config.get('trials', 'n/a')} trials, then evaluated with {seeds} seeds with the tuned and "
                      f"with the default hyperparameters. Lower is better everywhere; every number here is in "
                      f"`tables/`.")]


def build(a: Analysis, report_commit: str = "", coverage: coverage_.Coverage | None = None) -> tuple[list, Tables]:
    tables = Tables()
    blocks = _intro(a)
    if coverage is not None:
        blocks += coverage_section(a, coverage, tables)
    for section in (verdict_section, stability_section, statistics_section, datasets_section, tuning_section,
                    batch_modes_section, profiles_section, generalisation_section, literature_section,
                    claims_section):
        blocks += section(a, tables)
    blocks += footer_section(a, tables, report_commit)
    return blocks, tables


def write(results: SweepResults, out_dir: str | Path, settings: Settings, report_commit: str = "") -> list[Path]:
    """Build the report and write it into ``out_dir`` (replacing the report there); returns the files written,
    the directory's marker aside."""
    out_dir = output.check(out_dir)  # before the work: a path the report may not replace is refused at once
    used, coverage = coverage_.restrict(results)
    analysis = analyse(used, settings)
    with figures.own_style():  # whatever an earlier caller did to matplotlib's global style (Optuna sets ggplot)
        blocks, tables = build(analysis, report_commit, coverage)
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
        title = f"Optimizer study — {results.name}"
        staging.write("report.html", render_html.render(blocks, title).encode("utf-8"))
        return sorted(staging.publish())
    except BaseException:
        staging.discard()
        raise
