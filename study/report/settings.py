"""The report's settings: conf/report.yaml (how to judge) and conf/claims.yaml (the lecture's claims' criteria).

Loaded once, validated, frozen; a missing or malformed key is BadInput naming the file and the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from study.errors import BadInput

CONF = Path(__file__).resolve().parents[2] / "conf"


@dataclass(frozen=True)
class Settings:
    alpha: float = 0.05
    sure: float = 0.95
    rope_loss: tuple[float, ...] = (0.5, 0.25, 1.0)  # in seed-to-seed spreads; the first is the verdict's
    rope_accuracy: tuple[float, ...] = (1.0, 0.5, 2.0)  # percentage points
    rope_cost: tuple[float, ...] = (1.25, 1.1, 1.5)  # cost ratios
    stability_resamples: int = 1000
    band_resamples: int = 200  # bootstrap resamples of a random arm's trials for the best-of-k band
    bayes_samples: int = 50000
    bootstrap_resamples: int = 2000
    confidence: float = 0.95
    seed: int = 0
    target_factor: float = 1.1
    budgets: tuple[int, ...] = (1, 5, 20)
    edge_margin: float = 0.05
    tau_max: float = 16.0
    dpi: int = 90
    claims: dict = field(default_factory=dict, compare=False, hash=False)


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise BadInput(str(path), f"cannot read: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise BadInput(str(path), f"not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise BadInput(str(path), "must be a mapping of keys to values")
    return data


class floats(tuple):
    """A list of floats in the config (a marker for ``_get``)."""


def _get(data: dict, path: Path, dotted: str, kind, check=lambda v: True, rule: str = ""):
    value = data
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise BadInput(str(path), f"{dotted}: missing")
        value = value[part]
    try:
        value = kind(value) if kind not in (tuple, floats) else tuple((int if kind is tuple else float)(v)
                                                                         for v in value)
    except (TypeError, ValueError):
        raise BadInput(str(path), f"{dotted}: expected {kind.__name__}, got {value!r}") from None
    if not check(value):
        raise BadInput(str(path), f"{dotted}: {rule}, got {value!r}")
    return value


def load(conf_dir: str | Path = CONF) -> Settings:
    conf_dir = Path(conf_dir)
    report_path, claims_path = conf_dir / "report.yaml", conf_dir / "claims.yaml"
    data = _read(report_path)
    unit = (lambda v: 0 < v < 1, "must be between 0 and 1")
    positive = (lambda v: v > 0, "must be positive")

    def get(key, kind, rule=(lambda v: True, "")):
        return _get(data, report_path, key, kind, rule[0], rule[1])

    widths = (lambda v: len(v) == 3 and min(v) > 0, "must be three positive widths (the verdict's first)")
    ratios = (lambda v: len(v) == 3 and min(v) > 1, "must be three ratios above 1 (the verdict's first)")
    for key, value in (("statistics.omnibus", "iman-davenport"), ("statistics.posthoc", "wilcoxon-holm")):
        _get(data, report_path, key, str, lambda v, value=value: v == value, f"only {value!r} is implemented")
    settings = Settings(
        alpha=get("statistics.alpha", float, unit), sure=get("statistics.sure", float, unit),
        rope_loss=get("rope.loss_spread", floats, widths), rope_accuracy=get("rope.accuracy_points", floats, widths),
        rope_cost=get("rope.cost_ratio", floats, ratios),
        stability_resamples=get("stability.resamples", int, positive),
        band_resamples=get("stability.band_resamples", int, positive),
        bayes_samples=get("statistics.bayes_samples", int, positive),
        bootstrap_resamples=get("statistics.bootstrap_resamples", int, positive),
        confidence=get("statistics.confidence", float, unit), seed=get("statistics.seed", int),
        target_factor=get("target.factor", float, (lambda v: v >= 1, "must be at least 1")),
        budgets=get("budgets", tuple, (lambda v: len(v) > 0 and min(v) > 0, "must be positive trial counts")),
        edge_margin=get("edge.margin", float, unit), tau_max=get("profile.tau_max", float, positive),
        dpi=get("figures.dpi", int, positive), claims=_read(claims_path))
    for key in ("verdict.support", "verdict.contradict"):
        _get(settings.claims, claims_path, key, float, unit[0], unit[1])
    return settings
