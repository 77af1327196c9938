"""The report of a sweep: which optimizer and which batch size to use in practice, and how sure we are.

Three rooms around one frozen result (``analysis.Analysis``), and a few modules at the door:

    inputs.py     what the report reads: one sweep's results from its MLflow and Optuna stores (``SweepResults``),
                  the grid it compares; the only module that reads the sweep's config
    settings.py   conf/report.yaml, conf/claims.yaml and conf/lecture.yaml as their frozen models
    coverage.py   on partial data, the largest complete grid of finished cells the report can rest on
    analysis.py   the frozen Analysis: the judge's and the checks' sub-results, each made once
    fmt.py        number formatting, one set of rules for every figure of text
    build.py      the way through: read, restrict, analyse, write, log to MLflow

    judge/        scores, statistics, the answer per budget and track, its stability, what tuning buys
    checks/       the lecture's claims and the published findings, judged with the judge's decisions
    document/     sections, blocks, figures, tables, the Markdown and HTML renderers, the output directory

What a room may import (tests/test_report_structure.py parses every import): ``judge`` imports neither ``checks``
nor ``document``; ``checks`` imports ``judge``; ``document`` imports both; every room may read ``inputs``, ``fmt``
and the conf models (``study.schema``), and only ``document`` reads ``analysis``, ``settings`` and ``coverage``.
"""
