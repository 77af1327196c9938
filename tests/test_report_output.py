"""The report writes only into a directory it owns: `python -m pipelines.report --out` refuses every existing path
that is not empty and not a report's own (a user's directory, a file, a marked directory holding a user's file), in
one line with exit 2 and nothing touched; a sweep name that is not safe as a folder name is refused before anything
is written. These run the real pipeline on a real (empty) MLflow store: each refusal comes before any analysis.
The builds that replace a marked directory are in tests/test_report_partial.py (they need a real sweep)."""
import hashlib
import os
from pathlib import Path

import pytest

from pipelines import report
from pipelines.cli import run
from study.errors import BadInput
from study.report.document import output
from study.sweep import tracking


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A real MLflow store holding experiments named '..' and '.' (a sweep name no profile should allow, but a
    store can hold) and nothing else."""
    runs_dir = tmp_path_factory.mktemp("runs")
    client = tracking.client(runs_dir)
    for name in ("..", "."):
        tracking.experiment_id(client, name, runs_dir)
    return runs_dir


def exit_code_and_stderr(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        run(report.main, argv)
    return stopped.value.code, capsys.readouterr().err


def snapshot(root: Path) -> dict:
    """Every path under ``root`` (hidden ones too) with its bytes' hash, or 'dir'."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def refused(argv, capsys, where="--out") -> str:
    code, err = exit_code_and_stderr(argv, capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith(f"error: {where}: "), err
    return err


def test_a_users_directory_is_refused_and_untouched(store, tmp_path, capsys):
    home = tmp_path / "home"
    (home / "project" / "src").mkdir(parents=True)
    (home / "notes.txt").write_text("my notes\n")
    (home / "project" / "src" / "main.py").write_bytes(b"print('mine')\n")
    (home / ".hidden").write_bytes(os.urandom(64))
    before = snapshot(home)
    err = refused(["--runs-dir", str(store), "--sweep", "..", "--out", str(home)], capsys)
    assert str(home) in err and "not a report directory" in err and output.MARKER in err
    assert snapshot(home) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # no staging directory beside it either


def test_a_file_is_refused_and_untouched(store, tmp_path, capsys):
    target = tmp_path / "report.html"
    target.write_text("<p>someone's page</p>")
    err = refused(["--runs-dir", str(store), "--sweep", "..", "--out", str(target)], capsys)
    assert "is a file" in err and str(target) in err
    assert target.read_text() == "<p>someone's page</p>"
    inside = refused(["--runs-dir", str(store), "--sweep", "..", "--out", str(target / "sub")], capsys)
    assert "is a file, not a directory" in inside
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def fake_report(directory: Path) -> None:
    """A directory laid out and marked as a report writes it (the files' contents do not matter)."""
    (directory / "figures").mkdir(parents=True)
    (directory / "tables").mkdir()
    listed = ["figures/", "figures/a.png", "report.html", "report.md", "tables/", "tables/b.csv"]
    for name in listed:
        if not name.endswith("/"):
            (directory / name).write_text(name)
    (directory / output.MARKER).write_text("\n".join([output.MARKER_HEADER, *listed]) + "\n")


def test_a_marked_directory_with_a_users_file_is_refused_and_the_file_kept(store, tmp_path, capsys):
    out = tmp_path / "report"
    fake_report(out)
    (out / "tables" / "my_analysis.csv").write_text("mine\n")
    before = snapshot(out)
    err = refused(["--runs-dir", str(store), "--sweep", "..", "--out", str(out)], capsys)
    assert "holds files the report did not write (tables/my_analysis.csv)" in err
    assert snapshot(out) == before
    (out / "tables" / "my_analysis.csv").unlink()
    (out / "mine").mkdir()  # an empty folder of the user's counts too
    err = refused(["--runs-dir", str(store), "--sweep", "..", "--out", str(out)], capsys)
    assert "(mine)" in err


def test_a_marker_that_lists_paths_outside_its_directory_is_refused(tmp_path):
    """A marker is only trusted for what lies inside its directory: a crafted one cannot make a rebuild delete
    anything elsewhere."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    for entry in ("../victim.txt", "/etc/passwd", "figures/../../victim.txt", "./report.md"):
        out = tmp_path / "report"
        fake_report(out)
        (out / output.MARKER).write_text(f"{output.MARKER_HEADER}\n{entry}\n")
        with pytest.raises(BadInput, match="which is not a path a report writes"):
            output.check(out)
        for path in sorted(out.rglob("*"), key=lambda p: -len(p.parts)):
            path.rmdir() if path.is_dir() else path.unlink()
        out.rmdir()
    assert victim.read_text() == "keep me"


def test_links_are_never_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data.csv").write_text("x\n")
    out = tmp_path / "report"
    fake_report(out)
    (out / "figures" / "link").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(BadInput, match=r"holds files the report did not write \(figures/link\)"):
        output.check(out)
    link = tmp_path / "link_to_report"
    link.symlink_to(out, target_is_directory=True)
    with pytest.raises(BadInput, match="is a symbolic link"):
        output.check(link)
    assert (elsewhere / "data.csv").read_text() == "x\n"


def test_a_staging_directory_publishes_marked_and_discards_exactly_what_it_wrote(tmp_path):
    """The mechanism every build uses: a report directory replaces a marked one (stale files go), an empty
    directory may be used, and a discarded build leaves nothing behind."""
    out = tmp_path / "report"
    fake_report(out)
    (out / "figures" / "stale.png").write_text("from an older build")
    marker = (out / output.MARKER).read_text()
    (out / output.MARKER).write_text(marker + "figures/stale.png\n")
    staging = output.Staging(out, folders=("figures", "tables"))
    staging.write("figures/new.png", b"png")
    staging.write("tables/deep/t.csv", b"x\n")
    staging.write("report.md", b"# new\n")
    files = staging.publish()
    assert sorted(str(p.relative_to(out)) for p in files) == ["figures/new.png", "report.md", "tables/deep/t.csv"]
    assert snapshot(out).keys() == {output.MARKER, "figures", "figures/new.png", "report.md", "tables",
                                    "tables/deep", "tables/deep/t.csv"}
    assert output.read_marker(out) == ["figures/", "figures/new.png", "report.md", "tables/", "tables/deep/",
                                       "tables/deep/t.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no staging or previous report left beside
    empty = tmp_path / "empty"
    empty.mkdir()
    staging = output.Staging(empty)
    staging.write("report.md", b"# r\n")
    staging.publish()
    assert (empty / "report.md").read_bytes() == b"# r\n" and (empty / output.MARKER).is_file()
    staging = output.Staging(tmp_path / "never")
    staging.write("figures/half.png", b"half")
    staging.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "report"]


@pytest.mark.parametrize("name", ["..", "."])
def test_a_sweep_name_that_is_not_a_safe_folder_name_is_refused_before_anything_is_written(store, tmp_path,
                                                                                          monkeypatch, capsys,
                                                                                          name):
    """The default output is reports/<sweep>/: `..` would be the checkout itself, `.` the whole reports/."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "other").mkdir()
    (tmp_path / "reports" / "other" / "report.md").write_text("another sweep's report")
    (tmp_path / "README.md").write_text("the checkout")
    before, store_before = snapshot(tmp_path), snapshot(store)
    err = refused(["--runs-dir", str(store), "--sweep", name], capsys, where="--sweep")
    assert f"sweep name {name!r} cannot be the folder reports/<name>/" in err and "--out" in err
    assert snapshot(tmp_path) == before and snapshot(store) == store_before


def test_unsafe_names_and_the_safe_ones():
    for name in ("..", ".", "a/b", "", "x" * 101, "a b", "naïve", "a\\b", ".hidden", "-rf", "v1.", "a\n"):
        with pytest.raises(BadInput, match="^--sweep: sweep name"):
            output.default_dir(name)
    for name in ("smoke", "default", "my-sweep_2.1", "x" * 100, "a", "v1.0"):
        assert output.default_dir(name) == Path("reports") / name


def test_empty_flags_are_one_line(store, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = refused(["--runs-dir", "", "--sweep", ".."], capsys, where="--runs-dir")
    assert "empty" in err
    err = refused(["--runs-dir", str(store), "--sweep", "..", "--out", ""], capsys)
    assert "empty" in err
    assert list(tmp_path.iterdir()) == []


def test_the_working_directory_is_never_the_output(store, tmp_path, monkeypatch, capsys):
    """Even empty: replacing it would leave the shell that ran the report in a deleted directory."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for out in (".", str(work), str(tmp_path)):
        err = refused(["--runs-dir", str(store), "--sweep", "..", "--out", out], capsys)
        assert "working directory" in err or "not a report directory" in err
    assert list(work.iterdir()) == []
