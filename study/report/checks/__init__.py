"""The checks: the lecture's claims (on its toy problem and on the sweep) and the published findings about
optimizers, each checked against this sweep with criteria declared in conf/claims.yaml.

The verdict words and the decisions behind them are the judge's (``study.report.judge.decide``: one vocabulary,
one "is X the pick"); this room applies them. It trains nothing: the numbers of the lecture's trajectory claims are
the lecture's (``study.lecture.evidence``), the rest the sweep's. Its sub-result of the Analysis: ``check.Checks``.

Imports: ``study.report.judge``, ``study.report.inputs`` and ``study.report.fmt``, the conf models and the lecture's
numbers (``study.lecture.evidence``); never ``study.report.document``, nor the trainer.
"""
