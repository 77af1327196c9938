"""The document: the frozen Analysis in words, tables and figures, written to a directory the report made.

Sections in the issue's order (verdict, results, tuning, claims, literature, coverage: one module each; the
verdict's sentences in sentences), blocks and their two renderers (render_md, render_html), figures, tables, and
output (the marked report directory, staged and published whole). ``compose.write`` is its door.

Imports: ``study.report.judge`` and ``study.report.checks`` (their words and results), ``study.report.analysis``,
``study.report.coverage``, ``study.report.inputs``, ``study.report.settings`` and ``study.report.fmt``.
"""
