"""Fetching from a mirror: verified copies, nothing half-written on a bad checksum."""

from __future__ import annotations

import hashlib

import pytest

from recbench.data.datasets import DatasetRecord, Download, RawFile
from recbench.data.fetch import fetch, is_fetched
from recbench.errors import ChecksumError, DatasetError


def _source(digest: str | None) -> DatasetRecord:
    return DatasetRecord("toy", "toy", "none", 0.0, (), (RawFile("a.txt", digest),), "random")


def test_mirror_copy_verifies_and_installs(tmp_path):
    (tmp_path / "mirror" / "toy").mkdir(parents=True)
    (tmp_path / "mirror" / "toy" / "a.txt").write_text("hello")
    digest = hashlib.sha256(b"hello").hexdigest()
    written = fetch(_source(digest), tmp_path / "raw", tmp_path / "mirror")
    assert [p.name for p in written] == ["a.txt"]
    assert is_fetched(_source(digest), tmp_path / "raw")
    assert fetch(_source(digest), tmp_path / "raw", tmp_path / "mirror") == []  # already there


def test_checksum_mismatch_leaves_nothing(tmp_path):
    (tmp_path / "mirror" / "toy").mkdir(parents=True)
    (tmp_path / "mirror" / "toy" / "a.txt").write_text("tampered")
    with pytest.raises(ChecksumError, match="sha256"):
        fetch(_source("0" * 64), tmp_path / "raw", tmp_path / "mirror")
    assert not (tmp_path / "raw" / "toy").exists() or not any((tmp_path / "raw" / "toy").iterdir())


def test_unpinned_checksum_is_recorded(tmp_path):
    (tmp_path / "mirror" / "toy").mkdir(parents=True)
    (tmp_path / "mirror" / "toy" / "a.txt").write_text("x")
    fetch(_source(None), tmp_path / "raw", tmp_path / "mirror")
    sums = (tmp_path / "raw" / "toy" / "SHA256SUMS").read_text()
    assert hashlib.sha256(b"x").hexdigest() in sums


def test_missing_mirror_folder_says_what_to_do(tmp_path):
    with pytest.raises(DatasetError, match="RECBENCH_MIRROR"):
        fetch(_source(None), tmp_path / "raw", tmp_path / "nowhere")


def test_no_network_error_names_the_mirror_option(tmp_path):
    src = DatasetRecord("toy", "toy", "none", 0.0,
                        (Download("http://127.0.0.1:9/none.txt", target="a.txt"),),
                        (RawFile("a.txt", None),), "random")
    with pytest.raises(DatasetError, match="--source"):
        fetch(src, tmp_path / "raw")
    assert not list((tmp_path / "raw" / "toy").glob("*.txt"))


def test_ml1m_is_pinned_and_verifies_from_the_mirror(mirror, tmp_path):
    """ML-1M verifies like ML-100K: every file pinned, no 'unverified' record written."""
    from recbench.data.datasets import get_dataset

    src = get_dataset("ml-1m")
    assert all(f.sha256 and len(f.sha256) == 64 for f in src.files)
    written = fetch(src, tmp_path / "raw", mirror)
    assert sorted(p.name for p in written) == ["movies.dat", "ratings.dat", "users.dat"]
    assert not (tmp_path / "raw" / "ml-1m" / "SHA256SUMS").exists()


def test_ml1m_wrong_file_fails_with_one_line(mirror, tmp_path):
    """A tampered ratings.dat is refused (one error line from the CLI) and nothing installed."""
    from typer.testing import CliRunner

    from recbench.cli import app

    fake = tmp_path / "mirror" / "ml-1m"
    fake.mkdir(parents=True)
    (fake / "ratings.dat").write_text("1::1193::5::978300760\n")
    for name in ("movies.dat", "users.dat"):
        (fake / name).symlink_to(mirror / "ml-1m" / name)
    result = CliRunner().invoke(app, ["fetch", "ml-1m", "--source", str(tmp_path / "mirror"),
                                      "--data-dir", str(tmp_path / "data")], env={})
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert lines[0].startswith("error:") and "ratings.dat" in lines[0] and "sha256" in lines[0]
    assert not (tmp_path / "data" / "raw" / "ml-1m" / "ratings.dat").exists()
