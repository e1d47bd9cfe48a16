"""Property-based tests: `fetch` from generated fake mirrors and archives.

Property: a fetch either installs exactly the published files (each pinned sha256 matching, the
unpinned ones recorded) or raises one DatasetError; a failed fetch leaves data/raw/ exactly as it
was (no partly installed dataset, no stray temporary files).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from recbench.data.datasets import DatasetRecord, Download, RawFile
from recbench.data.fetch import fetch, is_fetched
from recbench.errors import DatasetError
from tests.test_cli import _invoke, _one_error_line

CONTENT = {"a.txt": b"1\t2\t3\n" * 40, "b.txt": b"header\n" + b"x" * 300,
           "sub/c.txt": b"optional\n"}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _source(pinned: bool, downloads=()) -> DatasetRecord:
    files = (RawFile("a.txt", _sha(CONTENT["a.txt"]) if pinned else None),
             RawFile("b.txt", _sha(CONTENT["b.txt"])),
             RawFile("sub/c.txt", None, required=False))
    return DatasetRecord("toy", "toy", "none", 0.0, tuple(downloads), files, "random")


def snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): _sha(p.read_bytes()) if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))} if root.exists() else {}


MUTATIONS = ["none", "truncate", "rename", "extra", "drop_optional", "drop_required",
             "dir_instead", "no_folder", "flip_byte"]


@given(pinned=st.booleans(), target=st.sampled_from(sorted(CONTENT)),
       mutation=st.sampled_from(MUTATIONS), cut=st.floats(0, 0.99), existing=st.booleans())
@example(pinned=True, target="b.txt", mutation="truncate", cut=0.5, existing=False)
@example(pinned=True, target="b.txt", mutation="flip_byte", cut=0.5, existing=True)
def test_mirror_fetch_installs_all_or_nothing(tmp_path_factory, pinned, target, mutation, cut,
                                              existing):
    tmp = tmp_path_factory.mktemp("mirror")
    mirror, raw = tmp / "mirror", tmp / "raw"
    folder = mirror / "toy"
    for name, data in CONTENT.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (raw / "other").mkdir(parents=True)
    (raw / "other" / "keep.txt").write_text("another dataset")
    if existing:  # an older copy of toy that --force would replace
        (raw / "toy").mkdir()
        (raw / "toy" / "a.txt").write_text("old")
    path = folder / target
    if mutation == "truncate":
        path.write_bytes(CONTENT[target][: int(len(CONTENT[target]) * cut)])
    elif mutation == "flip_byte":
        data = bytearray(CONTENT[target])
        data[int(len(data) * cut)] ^= 0x01
        path.write_bytes(bytes(data))
    elif mutation == "rename":
        path.rename(path.with_name("renamed_" + path.name))
    elif mutation == "extra":
        (folder / "unexpected.bin").write_bytes(b"\x00" * 10)
    elif mutation == "drop_optional":
        (folder / "sub" / "c.txt").unlink()
    elif mutation == "drop_required":
        (folder / "a.txt").unlink()
    elif mutation == "dir_instead":
        path.unlink()
        path.mkdir()
    elif mutation == "no_folder":
        import shutil

        shutil.rmtree(folder)
    before = snapshot(raw)
    source = _source(pinned)
    try:
        written = fetch(source, raw, mirror, force=True)
    except DatasetError as exc:
        assert "\n" not in str(exc)
        assert snapshot(raw) == before, "a failed fetch changed data/raw"
        return
    # success: only when nothing a check can see was wrong
    changed_pinned = mutation in ("truncate", "flip_byte") and (target == "b.txt" or
                                                               (target == "a.txt" and pinned))
    assert not changed_pinned, "a file that does not match its pinned sha256 was installed"
    assert mutation not in ("drop_required", "no_folder") and not (
        mutation in ("rename", "dir_instead") and target != "sub/c.txt")
    assert is_fetched(source, raw)
    for p in written:
        rel = p.relative_to(raw / "toy").as_posix()
        assert p.read_bytes() == (folder / rel).read_bytes()
    assert not [p for p in (raw / "toy").rglob("*") if p.name.startswith((".part", ".dl-"))]
    assert not [p for p in raw.iterdir() if p.name.startswith(".")], "staging left behind"
    if not pinned:
        assert _sha((raw / "toy" / "a.txt").read_bytes()) in (raw / "toy" / "SHA256SUMS").read_text()
    assert (raw / "other" / "keep.txt").read_text() == "another dataset"


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@given(cut=st.floats(0.05, 0.99), prefix=st.sampled_from(["toy/", ""]))
@example(cut=0.5, prefix="toy/")
def test_truncated_archive_leaves_nothing(tmp_path_factory, cut, prefix):
    tmp = tmp_path_factory.mktemp("zip")
    blob = _zip({f"toy/{n}": d for n, d in CONTENT.items()})
    archive = tmp / "toy.zip"
    archive.write_bytes(blob[: int(len(blob) * cut)])
    raw = tmp / "raw"
    source = _source(True, (Download(archive.as_uri(), archive="zip", member_prefix=prefix),))
    try:
        fetch(source, raw)
    except DatasetError as exc:
        assert "\n" not in str(exc)
        assert snapshot(raw) == {}, snapshot(raw)
        return
    raise AssertionError("a truncated archive was accepted")


def test_whole_archive_installs(tmp_path):
    archive = tmp_path / "toy.zip"
    archive.write_bytes(_zip({f"toy/{n}": d for n, d in CONTENT.items()}))
    source = _source(True, (Download(archive.as_uri(), archive="zip", member_prefix="toy/"),))
    fetch(source, tmp_path / "raw")
    assert (tmp_path / "raw" / "toy" / "sub" / "c.txt").read_bytes() == CONTENT["sub/c.txt"]


def test_cli_fetch_from_a_corrupt_mirror_is_one_line(tmp_path):
    (tmp_path / "mirror" / "ml-100k").mkdir(parents=True)
    for name in ("README", "u.data", "u.item"):
        (tmp_path / "mirror" / "ml-100k" / name).write_text("not the real file")
    result, out = _invoke("fetch", "ml-100k", "--source", str(tmp_path / "mirror"),
                          "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 2 and "mirror is missing" in _one_error_line(out)
    assert not (tmp_path / "data" / "raw" / "ml-100k").exists()
