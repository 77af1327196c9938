"""MLflow, through one door: stores, runs, batched metrics, artifacts, and reading them back.

Everything goes through ``MlflowClient`` (no fluent global run state), so worker processes and threads do not step
on each other. Metrics are sent with ``log_batch`` in chunks of at most 1,000 (one call per value costs 6-15 s per
2,000 values on SQLite; a batch 0.1-0.2 s).
"""
from __future__ import annotations

import re
import time
import warnings
from pathlib import Path
from typing import Iterable, Mapping

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from study import provenance
from study.sweep import names
from study.sweep.tracking.store import (CHUNK, UNAVAILABLE, Client, Outage, Unavailable,  # noqa: F401
                                        check_server, checked_client, client, mask_url, serialized, tracking_uri,
                                        writer_turn)


@serialized
def experiment_id(mlflow_client: MlflowClient, name: str, runs_dir: str | Path = "runs",
                  description: str | None = None) -> str:
    """The experiment's id, created on first use with its artifacts under ``<runs_dir>/artifacts/``, and with
    ``description`` as the text the UI shows above its runs."""
    found = mlflow_client.get_experiment_by_name(name)
    if found is None:
        location = None
        if not mlflow_client.tracking_uri.startswith(("http://", "https://")):
            location = (Path(runs_dir).resolve() / "artifacts" / name).as_uri()
        try:
            mlflow_client.create_experiment(name, artifact_location=location)
        except mlflow.exceptions.MlflowException:  # another worker created it between our look and our create
            pass
        found = mlflow_client.get_experiment_by_name(name)
    if description is not None and found.tags.get(names.NOTE) != description:
        try:
            mlflow_client.set_experiment_tag(found.experiment_id, names.NOTE, description)
        except mlflow.exceptions.MlflowException:
            # Two workers starting together both insert the tag (MLflow's store selects, then inserts): the loser
            # sees a unique-key violation. The row exists now, so setting it again updates it.
            mlflow_client.set_experiment_tag(found.experiment_id, names.NOTE, description)
    return found.experiment_id


def runs_table_url(ui: str, experiment: str, filter_string: str) -> str:
    """A link to the UI's run table of an experiment with a search filter in place (MLflow keeps it in the URL)."""
    from urllib.parse import quote

    return f"{ui.rstrip('/')}/#/experiments/{experiment}/runs?searchFilter={quote(filter_string, safe='')}"


def provenance_tags() -> dict[str, str]:
    """Git commit, package versions and the command line (``study.provenance``), as the tags of cell, report and
    lecture runs: any number can be traced back. The command is masked: a URL in it may hold a password."""
    found = provenance.provenance()
    tags = {names.COMMAND: mask_url(found.command)}
    if found.commit and re.fullmatch(r"[0-9a-f]{40}", found.commit):
        tags[names.MLFLOW_GIT_COMMIT] = tags[names.GIT_COMMIT] = found.commit
    tags.update({names.VERSION + package: version for package, version in found.versions.items()})
    tags[names.VERSION + "python"] = found.python
    return tags


def _chunks(items: list, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _run_tags(tags: Mapping[str, object], parent_run_id: str | None, provenance: bool) -> dict[str, str]:
    """A run's tags: its own, and the provenance tags only where asked (cell, report and lecture runs: a child
    is traced back through its cell)."""
    all_tags = {**(provenance_tags() if provenance else {}), **{k: str(v) for k, v in tags.items()}}
    if parent_run_id:
        all_tags[names.PARENT_RUN] = parent_run_id
    return all_tags


@serialized
def log_run(mlflow_client: MlflowClient, experiment: str, run_name: str, tags: Mapping[str, str],
            params: Mapping[str, object] = (), curves: Mapping[str, Iterable[float]] = (),
            final: Mapping[str, float] = (), artifacts: Iterable[str | Path] = (), artifact_path: str | None = None,
            parent_run_id: str | None = None, status: str = "FINISHED", provenance: bool = False) -> str:
    """Create a run, log everything in batches, end it; returns the run id. Three calls to the store for a run
    of up to 1,000 values: create (with its tags), one ``log_batch``, terminate.

    ``curves[name]`` is a per-epoch sequence logged with step = epoch (1-based); NaN entries (epochs after a run
    stopped) are skipped. ``final`` metrics are logged once at the last step.
    """
    run = mlflow_client.create_run(experiment, tags=_run_tags(tags, parent_run_id, provenance), run_name=run_name)
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    metrics, last_step = [], 0
    for name, values in dict(curves).items():
        for epoch, value in enumerate(values, start=1):
            if value == value:  # skip NaN: the run had stopped
                metrics.append(Metric(name, float(value), now, epoch))
                last_step = max(last_step, epoch)
    metrics += [Metric(name, float(value), now, last_step) for name, value in dict(final).items()]
    batch_params = [Param(k, str(v)) for k, v in dict(params).items()]
    for i, chunk in enumerate(_chunks(metrics) if metrics else [[]]):
        mlflow_client.log_batch(run_id, metrics=chunk, params=batch_params if i == 0 else ())
    for path in artifacts:
        mlflow_client.log_artifact(run_id, str(path), artifact_path)
    mlflow_client.set_terminated(run_id, status=status)
    return run_id


def runs(mlflow_client: MlflowClient, experiment: str, filter_string: str = "",
         max_results: int | None = None, deleted: bool = False) -> list:
    """Every run of an experiment matching the filter (all pages, or the first ``max_results``); the deleted ones
    instead, with ``deleted``."""
    from mlflow.entities import ViewType

    view = ViewType.DELETED_ONLY if deleted else ViewType.ACTIVE_ONLY
    found, token = [], None
    while True:
        page = mlflow_client.search_runs([experiment], filter_string=filter_string, run_view_type=view,
                                         max_results=min(1000, max_results or 1000), page_token=token)
        found += list(page)
        token = page.token
        if not token or (max_results and len(found) >= max_results):
            return found


def run_family(mlflow_client: MlflowClient, experiment: str, run_id: str) -> tuple:
    """(the run, or None if the store has no such active run; its active children): two searches."""
    found = runs(mlflow_client, experiment, f"attributes.run_id = '{run_id}'", max_results=1)
    children = runs(mlflow_client, experiment, names.tag_filter(**{names.PARENT_RUN: run_id}))
    return (found[0] if found else None), children


def newest_sweep(runs_dir: str | Path = "runs") -> str | None:
    """The sweep whose experiment was created last among those that hold cell runs (the lecture is not a sweep)."""
    mlflow_client = client(runs_dir)
    for experiment in experiments_newest_first(mlflow_client):
        if runs(mlflow_client, experiment.experiment_id, names.tag_filter(role=names.CELL), max_results=1):
            return experiment.name
    return None


def experiments_newest_first(mlflow_client: MlflowClient) -> list:
    return sorted(mlflow_client.search_experiments(), key=lambda e: (e.creation_time or 0, e.experiment_id),
                  reverse=True)


@serialized
def start_run(mlflow_client: MlflowClient, experiment: str, run_name: str, tags: Mapping[str, str],
              parent_run_id: str | None = None, provenance: bool = True, start_time: int | None = None) -> str:
    """A run left RUNNING (a cell's parent run while its trials go on); ``end_run`` closes it. ``start_time`` (ms):
    when its work began, if not now."""
    return mlflow_client.create_run(experiment, tags=_run_tags(tags, parent_run_id, provenance),
                                    run_name=run_name, start_time=start_time).info.run_id


@serialized
def reopen_run(mlflow_client: MlflowClient, run_id: str) -> None:
    mlflow_client.update_run(run_id, status="RUNNING")


@serialized
def end_run(mlflow_client: MlflowClient, run_id: str, status: str = "FINISHED") -> None:
    mlflow_client.set_terminated(run_id, status=status)


@serialized
def fail_orphans(mlflow_client: MlflowClient, experiment: str, parent_run_id: str, keep: set) -> int:
    """Mark FAILED the children of a run that the Optuna storage does not record (written by a worker that died
    before recording them); FAILED runs are excluded from every count. Returns how many."""
    orphans = [r for r in runs(mlflow_client, experiment, names.tag_filter(**{names.PARENT_RUN: parent_run_id}))
               if r.info.run_id not in keep and r.info.status != "FAILED"]
    for run in orphans:
        mlflow_client.set_terminated(run.info.run_id, status="FAILED")
        mlflow_client.set_tag(run.info.run_id, names.ORPHANED, names.TRUE)
    return len(orphans)


@serialized
def finish_cell_run(mlflow_client: MlflowClient, run_id: str, artifact_dir: str | Path | None,
                    final: Mapping[str, float], dataset_input: Mapping | None = None,
                    params: Mapping[str, object] = (), end_time: int | None = None) -> None:
    """The files of ``artifact_dir`` (one upload), final metrics, params and the dataset (as an MLflow input) on a
    cell's run, then FINISHED at ``end_time`` (ms: when its work ended, if not now)."""
    now = int(time.time() * 1000)
    mlflow_client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in final.items()],
                            params=[Param(k, str(v)) for k, v in dict(params).items()])
    if artifact_dir is not None:
        mlflow_client.log_artifacts(run_id, str(artifact_dir))
    if dataset_input is not None:
        _log_dataset(mlflow_client, run_id, dataset_input)
    mlflow_client.set_terminated(run_id, status="FINISHED", end_time=end_time)


def _log_dataset(mlflow_client: MlflowClient, run_id: str, dataset_input: Mapping) -> None:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    with warnings.catch_warnings():  # a plain-text source is "ambiguous" to MLflow's resolver; it is fine
        warnings.simplefilter("ignore")
        # a digest given (a CSV file's, of its bytes) is kept; else MLflow computes one from the arrays
        dataset = mlflow.data.from_numpy(dataset_input["X"], targets=dataset_input["y"],
                                         source=dataset_input.get("source"), name=dataset_input["name"],
                                         digest=dataset_input.get("digest"))
    inputs = [DatasetInput(Dataset(**dataset.to_dict()), [InputTag("mlflow.data.context", "train")])]
    try:
        mlflow_client.log_inputs(run_id, inputs)
    except mlflow.exceptions.MlflowException:
        # MLflow looks the dataset up and inserts it when missing: two workers finishing cells of the same
        # dataset at once both insert, and one hits the unique key. Its row is there now: link to it.
        time.sleep(0.2)
        mlflow_client.log_inputs(run_id, inputs)


def metric_histories(mlflow_client: MlflowClient, run_ids: Iterable[str], key: str) -> dict:
    """run id -> (steps, values) of one metric, run by run (a resumed cell's earlier runs, read back once)."""
    out = {}
    for run_id in run_ids:
        history = sorted(mlflow_client.get_metric_history(run_id, key), key=lambda m: m.step)
        out[run_id] = ([m.step for m in history], [m.value for m in history])
    return out


def download(run, path: str, dst: str | Path) -> Path | None:
    """One artifact of a run (as ``runs`` returns it), as a local file; None if the run has no such file. An
    artifact store on this machine's disk is read where it lies (MLflow's own download resolves the store again for
    every file: 10 ms a file); anything else is downloaded into ``dst``."""
    from urllib.parse import unquote, urlparse

    location = urlparse(f"{run.info.artifact_uri}/{path}")
    if location.scheme == "file":
        local = Path(unquote(location.path))
        return local if local.is_file() else None
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{run.info.artifact_uri}/{path}",
                                                        dst_path=str(dst)))
    except (mlflow.exceptions.MlflowException, OSError):
        return None


@serialized
def log_report_run(mlflow_client: MlflowClient, experiment: str, out: Path, files: Iterable[str],
                   folders: Iterable[str]) -> str:
    """A report's files as artifacts of one role=report run; older report runs are deleted once the new one is
    complete, so a failed upload never leaves the experiment without a report."""
    previous = [r.info.run_id for r in runs(mlflow_client, experiment, names.tag_filter(role=names.REPORT))]
    run_id = start_run(mlflow_client, experiment, "report", {names.ROLE: names.REPORT})
    try:
        for name in files:
            mlflow_client.log_artifact(run_id, str(Path(out) / name))
        for folder in folders:
            mlflow_client.log_artifacts(run_id, str(Path(out) / folder), folder)
    except BaseException:
        end_run(mlflow_client, run_id, "FAILED")
        raise
    end_run(mlflow_client, run_id)
    for old in previous:
        mlflow_client.delete_run(old)
    return run_id


@serialized
def delete_runs(mlflow_client: MlflowClient, experiment: str, filter_string: str) -> int:
    """Delete the matching runs (e.g. a previous report run that a rebuild replaces); returns how many."""
    found = runs(mlflow_client, experiment, filter_string)
    for run in found:
        mlflow_client.delete_run(run.info.run_id)
    return len(found)


@serialized
def replace_runs(mlflow_client: MlflowClient, previous: Iterable) -> int:
    """Delete runs that newer ones replace, and free their files on this machine's disk too (MLflow keeps a deleted
    run's artifacts until `mlflow gc`); returns how many.

    Only what MLflow lists as the run's artifacts is deleted, file by file, then the folders that leaves empty (the
    run's own folder last): anything else found there stays, and so does the folder that holds it."""
    import contextlib

    previous = list(previous)
    listed = {run.info.run_id: _local_artifacts(mlflow_client, run) for run in previous}  # while the runs exist
    for run in previous:
        mlflow_client.delete_run(run.info.run_id)
    for run in previous:
        root, files, folders = listed[run.info.run_id]
        if root is None:
            continue
        for path in files:
            path.unlink(missing_ok=True)
        deepest_first = sorted(folders, key=lambda p: len(p.parts), reverse=True) + [root]
        if root.name == "artifacts":  # MLflow's <experiment>/<run id>/artifacts: the run's folder too
            deepest_first.append(root.parent)
        for folder in deepest_first:
            with contextlib.suppress(OSError):  # not empty (or gone): it stays
                folder.rmdir()
    return len(previous)


def _local_artifacts(mlflow_client: MlflowClient, run) -> tuple[Path | None, list[Path], list[Path]]:
    """The run's artifact folder on this machine's disk, and the files and folders MLflow lists in it; (None, [],
    []) when its artifacts live elsewhere (on a tracking server)."""
    from urllib.parse import unquote, urlparse

    location = urlparse(run.info.artifact_uri or "")
    if location.scheme != "file":
        return None, [], []
    root, files, folders, unlisted = Path(unquote(location.path)), [], [], [None]
    if not root.is_dir():
        return None, [], []
    while unlisted:
        for info in mlflow_client.list_artifacts(run.info.run_id, unlisted.pop()):
            if info.is_dir:
                unlisted.append(info.path)
                folders.append(root / info.path)
            else:
                files.append(root / info.path)
    return root, files, folders
