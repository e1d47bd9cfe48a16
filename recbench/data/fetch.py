"""Bring a dataset's raw files into ``data/raw/NAME/``: download or copy, verify, rename.

Nothing half-written ever sits under a final name: every file goes to a temporary name in the
same folder, is checked against its sha256, and only then is ``os.replace``d into place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from recbench.checksums import CHUNK, sha256_of
from recbench.data.datasets import DatasetRecord, RawFile
from recbench.errors import ChecksumError, DatasetError

Progress = Callable[[str, int, int | None], None]
"""Callback ``(label, bytes_done, bytes_total)`` so the CLI can draw a progress bar."""


def is_fetched(source: DatasetRecord, raw_root: Path) -> bool:
    folder = raw_root / source.name
    return all((folder / f.name).is_file() for f in source.files if f.required)


def _verify(tmp: Path, spec: RawFile, origin: str) -> str:
    digest = sha256_of(tmp)
    if spec.sha256 is not None and digest != spec.sha256:
        tmp.unlink(missing_ok=True)
        raise ChecksumError(
            f"{spec.name} from {origin} has sha256 {digest[:12]}…, expected {spec.sha256[:12]}…; "
            "the file is corrupt or a different version — delete it at the source or re-download "
            "with --force"
        )
    return digest


def _install(tmp: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)


def _record_unpinned(folder: Path, seen: dict[str, str]) -> None:
    if not seen:
        return
    lines = "".join(f"{digest}  {name}\n" for name, digest in sorted(seen.items()))
    tmp = folder / ".SHA256SUMS.tmp"
    tmp.write_text(lines)
    os.replace(tmp, folder / "SHA256SUMS")


def fetch_from_mirror(source: DatasetRecord, mirror: Path, raw_root: Path,
                      progress: Progress | None = None) -> list[Path]:
    """Copy the dataset's files from a local folder laid out like the shared mirror."""
    src_folder = mirror / source.name
    if not src_folder.is_dir():
        raise DatasetError(
            f"mirror {mirror} has no folder '{source.name}'; point --source (or RECBENCH_MIRROR) "
            "at a folder holding one sub-folder per dataset"
        )
    folder = raw_root / source.name
    raw_root.mkdir(parents=True, exist_ok=True)
    missing = [spec.name for spec in source.files
               if spec.required and not (src_folder / spec.name).is_file()]
    if missing:
        raise DatasetError(f"mirror is missing {src_folder / missing[0]}"
                           + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                           + "; copy the dataset's files there")
    # every file is copied and verified in a staging folder first: a bad file leaves data/ as it was
    written, unpinned = [], {}
    with tempfile.TemporaryDirectory(prefix=f".{source.name}-", dir=raw_root) as staging_name:
        staging = Path(staging_name)
        staged: list[tuple[Path, Path]] = []
        for spec in source.files:
            origin = src_folder / spec.name
            if not origin.is_file():
                continue  # optional and absent
            size = origin.stat().st_size
            if progress:
                progress(spec.name, 0, size)
            tmp = staging / f"f{len(staged)}"
            try:
                shutil.copyfile(origin, tmp)
            except OSError as exc:
                raise DatasetError(f"cannot read {origin} ({exc.strerror}); check the mirror") from None
            digest = _verify(tmp, spec, str(origin))
            if spec.sha256 is None:
                unpinned[spec.name] = digest
            staged.append((tmp, folder / spec.name))
            if progress:
                progress(spec.name, size, size)
        for tmp, final in staged:
            _install(tmp, final)
            written.append(final)
    _record_unpinned(folder, unpinned)
    return written


def _download(url: str, dest: Path, label: str, progress: Progress | None) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:
            total = resp.headers.get("Content-Length")
            total_bytes = int(total) if total else None
            done = 0
            for block in iter(lambda: resp.read(CHUNK), b""):
                out.write(block)
                done += len(block)
                if progress:
                    progress(label, done, total_bytes)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        dest.unlink(missing_ok=True)
        raise DatasetError(
            f"could not download {url} ({exc}); without network, copy the files from a mirror "
            "with `recbench fetch NAME --source DIR` or set RECBENCH_MIRROR=DIR"
        ) from None


def fetch_from_web(source: DatasetRecord, raw_root: Path,
                   progress: Progress | None = None) -> list[Path]:
    """Download from the official URLs, extract archives, verify, then rename into place."""
    folder = raw_root / source.name
    raw_root.mkdir(parents=True, exist_ok=True)
    wanted = {f.name: f for f in source.files}
    written, unpinned = [], {}
    with tempfile.TemporaryDirectory(prefix=f".dl-{source.name}-", dir=raw_root) as staging_name:
        staging = Path(staging_name)
        staged: dict[str, Path] = {}
        for dl in source.downloads:
            blob = staging / (Path(dl.url).name + ".part")
            _download(dl.url, blob, Path(dl.url).name, progress)
            if dl.archive == "zip":
                try:
                    with zipfile.ZipFile(blob) as zf:
                        for member in zf.namelist():
                            rel = member[len(dl.member_prefix):]
                            if member.startswith(dl.member_prefix) and rel in wanted:
                                out = staging / f"x-{len(staged)}"
                                with zf.open(member) as fh, open(out, "wb") as dst:
                                    shutil.copyfileobj(fh, dst)
                                staged[rel] = out
                except (zipfile.BadZipFile, EOFError, OSError, zlib.error):
                    raise DatasetError(
                        f"{dl.url} is not a valid zip archive (truncated download?); "
                        f"run `recbench fetch {source.name} --force` again"
                    ) from None
            else:
                staged[dl.target] = blob
        missing = [n for n, f in wanted.items() if f.required and n not in staged]
        if missing:
            raise DatasetError(f"download of {source.name} lacks {', '.join(missing)}")
        for rel, tmp in staged.items():  # verify all before installing any
            digest = _verify(tmp, wanted[rel], source.name)
            if wanted[rel].sha256 is None:
                unpinned[rel] = digest
        for rel, tmp in staged.items():
            final_tmp = folder / f".part-{Path(rel).name}"
            final_tmp.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(tmp, final_tmp)
            _install(final_tmp, folder / rel)
            written.append(folder / rel)
    _record_unpinned(folder, unpinned)
    return written


def fetch(source: DatasetRecord, raw_root: Path, mirror: Path | None = None,
          force: bool = False, progress: Progress | None = None) -> list[Path]:
    """Fetch ``source`` unless already present (``force`` re-fetches). Returns the files written."""
    if is_fetched(source, raw_root) and not force:
        return []
    if mirror is not None:
        return fetch_from_mirror(source, Path(mirror), raw_root, progress)
    return fetch_from_web(source, raw_root, progress)
