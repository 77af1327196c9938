"""The judge: every number the verdict rests on, and the verdict itself.

Scores each evaluation run at every budget (scoring), runs the declared statistics (stats), chooses on validation
and judges on test (answer, families, decide: the statuses and every verdict word), measures how stable the answer
is (stability), what tuning buys (trials: the best after k trials, edges, divergence; tuning_value: expected
best-of-k, tunability, tuning gain) and how fast the runs get there (progress, batchmodes). Its sub-results of the
Analysis: ``scoring.Scores``, ``verdict.Verdict``, ``tuning.Tuning``, ``practice.Practice``.

Imports: ``study.report.inputs`` and ``study.report.fmt``, the conf models (``study.schema``) and the core
registry; never ``study.report.checks`` or ``study.report.document`` (they read the judge, not the other way).
"""
