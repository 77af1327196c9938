"""Every file under conf/ as frozen pydantic models, read through one loader (``study.schema.loader``).

``sweep``: a sweep profile and the search spaces; ``lecture``: the lecture's toy problem; ``report``: how the
report judges, and the lecture's claims' criteria. Only the numeric core's registries are imported here.
"""
