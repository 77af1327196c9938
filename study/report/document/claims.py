"""Section 7 and the footer: the lecture's claims checked, and how to reproduce this report."""
from __future__ import annotations

import hashlib
import json
from importlib import metadata

import pandas as pd
import yaml

from study.report.analysis import Analysis
from study.report.checks import claims
from study.report.document import figures
from study.report.document.blocks import Code, Figure, Heading, Paragraph, Table
from study.report.document.tables import Tables

REPORT_PACKAGES = ("numpy", "scipy", "pandas", "matplotlib", "scikit-posthocs", "baycomp")


def claims_section(a: Analysis, tables: Tables) -> list:
    rows = [{"claim": c.claim, "verdict": c.verdict, "measured": c.measured, "criterion": c.criterion,
             "evidence": c.source, "share": c.share, "cases": c.cases} for c in a.checks.claims]
    csv = tables.add("claims", pd.DataFrame(rows))
    tables.add("claims_toy", claims.toy_table(a.checks.toy))
    rules = a.settings.claims.verdict
    shown = pd.DataFrame([{"#": i + 1, "the lecture says": r["claim"], "verdict": f"**{r['verdict']}**",
                           "the number": r["measured"], "criterion": r["criterion"], "evidence": r["evidence"]}
                          for i, r in enumerate(rows)])
    toy = a.settings.toy
    picture = figures.claims_toy(a.checks.toy, float(toy.lecture_eta), toy.criteria.target_fraction)
    return [Heading("The lecture's claims, checked"), Paragraph(
        f"One row per claim. Each criterion and threshold was written into `conf/claims.yaml` before the claims "
        f"were evaluated, and each is checked over a grid of learning rates (or over the sweep's cells), never at "
        f"one hand-picked value: a claim is **supported** when its criterion holds in at least "
        f"{rules.support:.0%} of the comparable cases, **contradicted** at {rules.contradict:.0%} or less, "
        f"and **inconclusive** in between or with fewer than {rules.min_cases} comparable cases. A claim "
        f"that holds by how the code is built (how batches are cut, what a mini-batch gradient is) is checked as "
        f"a sanity check of the code: **by construction**, never \"supported\". "
        f"Trajectory claims are recomputed here with the numeric core on toy problems; practice claims come from "
        f"the sweep. A u-turn is a sign change of the update along one parameter."),
        Table(shown, "The lecture's claims.", csv),
        Figure("claims_toy", figures.png_bytes(picture, a.settings.report.figures.dpi),
               f"Toy evidence: loss on the lecture's problem at its learning rate; epochs to "
               f"{toy.criteria.target_fraction:.0%} of the starting loss "
               "and u-turns against the learning rate; the error of mini-batch gradients against batch size "
               "(softmax regression, a line per learning rate).")]


def config_hash(config: dict) -> str:
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def footer_section(a: Analysis, tables: Tables, report_commit: str) -> list:
    r, meta = a.results, a.results.meta
    config = r.config_as_logged
    versions = dict(sorted((meta.get("versions") or {}).items()))
    report_versions = {p: _version(p) for p in REPORT_PACKAGES}
    rows = [("sweep", r.name), ("sweep config hash (sweep's)", meta.get("config_hash", "")),
            ("sweep config hash (sha256 of the config below)", config_hash(config)),
            ("sweep git commit", meta.get("git_commit", "")), ("report git commit", report_commit),
            ("sweep command", meta.get("command", "")), ("machine", meta.get("machine", "")),
            ("evaluation seeds", " ".join(str(x) for x in r.seeds)),
            ("tuning seed", "" if r.tuning_seed is None else str(r.tuning_seed)),
            ("report seed", str(a.settings.report.statistics.seed)),
            ("MLflow store", meta.get("tracking_uri", "")), ("Optuna store", meta.get("optuna_storage", "")),
            ("sweep packages", ", ".join(f"{k} {v}" for k, v in versions.items())),
            ("report packages", ", ".join(f"{k} {v}" for k, v in report_versions.items()))]
    frame = pd.DataFrame(rows, columns=["what", "value"])
    csv = tables.add("reproducibility", frame)
    return [Heading("Reproducibility"), Paragraph(
        f"Rebuild this report with `python -m pipelines.report --sweep {r.name}` over the same stores: the build "
        f"has no timestamps, orders everything by the sweep config, seeds every random draw and writes figures "
        f"without version stamps, so it is byte-for-byte identical. Report settings: `conf/report.yaml`, "
        f"`conf/claims.yaml`."), Table(frame, "Provenance.", csv),
        Paragraph("The sweep's resolved config:"), Code(yaml.safe_dump(config, sort_keys=True, default_flow_style=None,
                                                                        width=110))]
