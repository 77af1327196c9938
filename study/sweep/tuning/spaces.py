"""Search spaces as Optuna sees them: a hyperparameter is suggested under its lecture name, or as ``one_minus_<name>``
when it is tuned as 1 - x (so that log-uniform x puts the density near 1, where averaging constants live)."""
from __future__ import annotations

from study.sweep.config import Range


def param_name(name: str, r: Range) -> str:
    return f"one_minus_{name}" if r.one_minus else name


def suggest(trial, space: dict[str, Range]) -> dict[str, float]:
    """The trial's hyperparameters under their lecture names (1 - x already applied)."""
    hyper = {}
    for name, r in space.items():
        if r.fixed is not None:
            hyper[name] = r.fixed
            continue
        x = trial.suggest_float(param_name(name, r), r.low, r.high, log=r.log)
        hyper[name] = 1.0 - x if r.one_minus else x
    return hyper


def hyper_from_params(params: dict, space: dict[str, Range]) -> dict[str, float]:
    """Lecture-named hyperparameters from a finished trial's Optuna params."""
    return {name: r.fixed if r.fixed is not None else
            (1.0 - params[param_name(name, r)] if r.one_minus else params[param_name(name, r)])
            for name, r in space.items()}
