"""Search spaces as Optuna sees them: a hyperparameter is suggested under its lecture name, or as ``one_minus_<name>``
when it is tuned as 1 - x (so that log-uniform x puts the density near 1, where averaging constants live). The
name mapping and the conversion are ``study.core.hyperparams``' (written once, for tuning, the report and the
lecture alike); the ranges are the sweep's ``RangeSpec`` models as read from conf."""
from __future__ import annotations

import optuna

from study.core import hyperparams as hp
from study.schema.sweep import RangeSpec


def param_name(name: str, r: RangeSpec) -> str:
    """The Optuna parameter a hyperparameter is tuned under."""
    return hp.search_name(name, r.one_minus)


def suggest(trial: optuna.Trial, space: dict[str, RangeSpec]) -> dict[str, float]:
    """The trial's hyperparameters under their lecture names (1 - x already applied)."""
    hyper = {}
    for name, r in space.items():
        if r.fixed is not None:
            hyper[name] = r.fixed
            continue
        x = trial.suggest_float(param_name(name, r), r.low, r.high, log=r.log)
        hyper[name] = hp.lecture_value(x, r.one_minus)
    return hyper


def hyper_from_params(params: dict, space: dict[str, RangeSpec]) -> dict[str, float]:
    """Lecture-named hyperparameters from a finished trial's Optuna params."""
    return {name: r.fixed if r.fixed is not None else hp.lecture_value(params[param_name(name, r)], r.one_minus)
            for name, r in space.items()}
