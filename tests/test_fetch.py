"""Fetching from a mirror: verified copies, nothing half-written on a bad checksum."""

from __future__ import annotations

import hashlib

import pytest

from recbench.data.fetch import fetch, is_fetched
from recbench.data.sources import DatasetSource, Download, RawFile
from recbench.errors import ChecksumError, DatasetError


def _source(digest: str | None) -> DatasetSource:
    return DatasetSource("toy", "toy", "none", 0.0, (), (RawFile("a.txt", digest),), "random")


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
    src = DatasetSource("toy", "toy", "none", 0.0,
                        (Download("http://127.0.0.1:9/none.txt", target="a.txt"),),
                        (RawFile("a.txt", None),), "random")
    with pytest.raises(DatasetError, match="--source"):
        fetch(src, tmp_path / "raw")
    assert not list((tmp_path / "raw" / "toy").glob("*.txt"))
