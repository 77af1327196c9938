"""The one error type for bad input: pipelines print it as one line and exit with status 2."""
from __future__ import annotations


class BadInput(Exception):
    """Bad input from a user: a config file, a CLI argument, a storage URL.

    The message names where (file and key, or flag) and what is wrong, on one line, e.g.
    ``conf/sweep/smoke.yaml: trials: must be a positive integer, got -3``.
    """

    def __init__(self, where: str, problem: str):
        self.where, self.problem = where, problem
        super().__init__(f"{where}: {problem}" if where else problem)
