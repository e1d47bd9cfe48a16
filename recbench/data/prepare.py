"""Preprocessing: raw folder + dataset config → processed graph (cached by config key).

Paths come from one :class:`DataPaths` object passed in (no module-level locations): the CLI
builds it from ``--data-dir`` / ``RECBENCH_DATA``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recbench.config import DatasetConfig
from recbench.data import atomic, parsers, protocols
from recbench.data.datasets import find_dataset, get_dataset
from recbench.data.fetch import is_fetched, sha256_of
from recbench.data.graph import Dataset, build_graph, load_dataset, save_dataset
from recbench.errors import ConfigError, DatasetError
from recbench.seeding import numpy_rng

CUSTOM_MARKER = "custom.json"


@dataclass(frozen=True)
class DataPaths:
    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def processed(self) -> Path:
        return self.root / "processed"

    def processed_dir(self, cfg: DatasetConfig) -> Path:
        return self.processed / cfg.name / resolve(cfg).key()


def resolve(cfg: DatasetConfig) -> DatasetConfig:
    """Fill the protocol and fixed split a dataset defaults to, so equal setups share a key."""
    update = {}
    record = find_dataset(cfg.name)
    if cfg.protocol is None:
        update["protocol"] = record.default_protocol if record else "random"
    protocol = update.get("protocol", cfg.protocol)
    if protocol == "fixed" and cfg.split is None:
        update["split"] = record.default_split if record else None
    return cfg.model_copy(update=update) if update else cfg


def load_raw(name: str, paths: DataPaths) -> parsers.RawData:
    folder = paths.raw / name
    marker = folder / CUSTOM_MARKER
    if marker.is_file():
        spec = json.loads(marker.read_text())
        if spec.get("format") == "atomic":
            return atomic.parse_atomic(folder / spec["file"])
        return parsers.parse_table(folder / spec["file"], sep=spec["sep"], header=spec["header"],
                                   rating_col=spec["rating_col"], timestamp_col=spec["timestamp_col"],
                                   skip_bad_rows=bool(spec.get("skip_bad_rows")))
    record = get_dataset(name)  # an unknown name raises with the valid names
    if not is_fetched(record, paths.raw):
        raise DatasetError(f"dataset '{name}' is not fetched; run `recbench fetch {name}` "
                           "(add --source DIR to copy from a local mirror)")
    return record.parse(folder)


def split_codes(raw: parsers.RawData, cfg: DatasetConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply the protocol, validation carve-out, train subsampling and rating filter."""
    try:
        return _split_codes(raw, cfg)
    except ConfigError as exc:
        raise ConfigError(f"dataset '{cfg.name}' ({cfg.protocol}): {exc}") from None


def _split_codes(raw: parsers.RawData, cfg: DatasetConfig) -> tuple[np.ndarray, np.ndarray | None]:
    rng = numpy_rng(cfg.split_seed, f"split:{cfg.name}")
    negatives = None
    frame = raw.frame
    if cfg.protocol == "fixed":
        if cfg.split not in raw.fixed_splits:
            have = ", ".join(raw.fixed_splits) or "none"
            raise ConfigError(f"dataset '{cfg.name}' has no fixed split '{cfg.split}' "
                              f"(published splits: {have})")
        codes = protocols.fixed(raw.fixed_splits[cfg.split])
    elif cfg.protocol == "random":
        codes = protocols.random_ratio(frame, cfg.test_ratio, rng, cfg.per_user,
                                       cfg.split_seed if cfg.legacy_shuffle else None)
    elif cfg.protocol == "holdout":
        codes = protocols.holdout(frame, cfg.holdout_k, rng)
    else:
        codes, negatives = protocols.leave_one_out(frame, rng, raw.num_items, cfg.num_negatives,
                                                   cfg.loo_by_time)
    codes = protocols.carve_validation(codes, frame, cfg.valid_ratio,
                                       numpy_rng(cfg.split_seed, "valid"), cfg.valid_per_user)
    codes = protocols.subsample_train(codes, cfg.train_ratio, numpy_rng(cfg.split_seed, "subsample"))
    if cfg.min_rating is not None:
        codes = np.where(frame.rating.to_numpy() >= cfg.min_rating, codes,
                         protocols.UNUSED).astype(np.int8)
    return codes, negatives


def check_split(codes: np.ndarray, raw: parsers.RawData, cfg: DatasetConfig) -> None:
    """A split a model can be trained and scored on: training and test rows exist, and with a
    per-user protocol every user who has a test row keeps a training row."""
    where = f"dataset '{cfg.name}' ({cfg.protocol}, {len(codes)} interactions)"
    n_train, n_test = int((codes == protocols.TRAIN).sum()), int((codes == protocols.TEST).sum())
    if n_train == 0:
        raise DatasetError(f"{where}: the split leaves no training interactions; lower "
                           "--valid-ratio / --min-rating or raise --train-ratio")
    if n_test == 0:
        hint = ("users need more than --holdout-k rows" if cfg.protocol == "holdout" else
                "users need at least 2 rows" if cfg.protocol == "loo" else
                "with --protocol random each user needs at least 1/test_ratio rows; raise "
                "--test-ratio or add --global")
        raise DatasetError(f"{where}: the split leaves no test interactions ({hint})")
    per_user = cfg.protocol in ("holdout", "loo") or (cfg.protocol == "random" and cfg.per_user)
    if per_user and cfg.train_ratio == 1.0 and cfg.min_rating is None:
        users = raw.frame["user"].to_numpy()
        has_train = np.zeros(raw.num_users, dtype=bool)
        has_train[users[codes == protocols.TRAIN]] = True
        orphan = np.unique(users[(codes == protocols.TEST) & ~has_train[users]])
        if len(orphan):
            raise DatasetError(f"{where}: {len(orphan)} user(s) have test rows but no training "
                               "row; lower --valid-ratio")


def preprocess(cfg: DatasetConfig, paths: DataPaths, force: bool = False) -> Path:
    """Build and store the processed graph for ``cfg`` unless already there. Returns its folder."""
    import torch

    cfg = resolve(cfg)
    out = paths.processed_dir(cfg)
    if not force and _cached(out):
        return out
    raw = load_raw(cfg.name, paths)
    codes, negatives = split_codes(raw, cfg)
    check_split(codes, raw, cfg)
    g = build_graph(raw.frame, codes, raw.num_users, raw.num_items, raw.social, raw.item_genres)
    counts = {name: int((codes == code).sum()) for name, code in
              (("train", protocols.TRAIN), ("valid", protocols.VALID), ("test", protocols.TEST),
               ("unused", protocols.UNUSED))}
    meta = {
        "dataset": cfg.name,
        "protocol": cfg.model_dump(),
        "key": cfg.key(),
        "num_users": raw.num_users,
        "num_items": raw.num_items,
        "num_interactions": len(raw.frame),
        "counts": counts,
        "social_edges": 0 if raw.social is None else int(raw.social.shape[1]),
        "genre_names": raw.genre_names,
        "item_titles": raw.item_titles,
        "user_ids": raw.user_ids,
        "item_ids": raw.item_ids,
        "inputs": _input_digests(paths.raw / cfg.name),
    }
    neg = torch.as_tensor(negatives) if negatives is not None else None
    meta["data_hash"] = content_hash(Dataset(g, meta, neg))
    save_dataset(out, Dataset(g, meta, neg))
    return out


def _cached(out: Path) -> bool:
    """A complete processed folder whose graph.bin matches meta.json; a damaged one (the
    other file missing, a checksum mismatch) is rebuilt rather than handed back."""
    from recbench.data.graph import DamagedCache, read_meta

    if not (out / "graph.bin").is_file() and not (out / "meta.json").is_file():
        return False
    try:
        read_meta(out)
    except DamagedCache:
        return False
    return True


def content_hash(ds: Dataset) -> str:
    """sha256 (10 hex) of what a model trains and is scored on: every edge, edge and node
    feature (ratings, timestamps, split masks, genres, follows) and the sampled negatives.
    Why the content and not graph.bin's bytes: the same split stays the same hash whatever
    DGL version serialised it."""
    import hashlib as _hashlib

    digest = _hashlib.sha256()

    def add(label: str, tensor) -> None:
        array = np.ascontiguousarray(tensor.cpu().numpy())
        if array.dtype == np.bool_:
            array = array.astype(np.uint8)
        digest.update(f"{label}:{array.dtype}:{array.shape};".encode())
        digest.update(array.tobytes())

    g = ds.g
    for ntype in sorted(g.ntypes):
        digest.update(f"{ntype}={g.num_nodes(ntype)};".encode())
        for key in sorted(g.nodes[ntype].data):
            add(f"{ntype}.{key}", g.nodes[ntype].data[key])
    for etype in sorted(g.canonical_etypes):
        src, dst = g.edges(etype=etype)
        add(f"{etype}.src", src)
        add(f"{etype}.dst", dst)
        for key in sorted(g.edges[etype].data):
            add(f"{etype}.{key}", g.edges[etype].data[key])
    if ds.negatives is not None:
        add("negatives", ds.negatives)
    return digest.hexdigest()[:10]


def ensure_data_hash(folder: Path, ds: Dataset) -> str:
    """The processed split's content hash from its meta.json; caches made before it was
    recorded get it computed once and written back (atomically)."""
    if not ds.meta.get("data_hash"):
        from recbench.runs import write_json

        ds.meta["data_hash"] = content_hash(ds)
        meta_path = folder / "meta.json"
        try:
            meta = json.loads(meta_path.read_text())
            meta["data_hash"] = ds.meta["data_hash"]
            write_json(meta_path, meta)
        except (OSError, ValueError):  # a read-only cache: computed again next time
            pass
    return ds.meta["data_hash"]


def data_hash(cfg: DatasetConfig, paths: DataPaths) -> str | None:
    """The content hash of the processed split ``cfg`` names, or None when it has not been
    preprocessed here (then nothing can be compared: a fresh clone reporting from ledgers)."""
    out = paths.processed_dir(cfg)
    meta_path = out / "meta.json"
    if not (out / "graph.bin").is_file() or not meta_path.is_file():
        return None
    try:
        known = json.loads(meta_path.read_text()).get("data_hash")
    except (ValueError, OSError):
        return None
    return known or ensure_data_hash(out, load_dataset(out))


def _input_digests(folder: Path) -> dict[str, str]:
    # every input file, whatever its size (a large file left out could change unnoticed)
    return {p.relative_to(folder).as_posix(): sha256_of(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def load(cfg: DatasetConfig, paths: DataPaths, auto: bool = True) -> Dataset:
    """The processed dataset for ``cfg``; preprocesses it first when ``auto`` and raw data exist."""
    cfg = resolve(cfg)
    out = paths.processed_dir(cfg)
    with _split_lock(out):
        if not (out / "graph.bin").is_file() and not (out / "meta.json").is_file():
            if not auto:
                raise DatasetError(f"dataset '{cfg.name}' ({cfg.key()}) is not preprocessed; run "
                                   f"`recbench preprocess {cfg.name} --protocol {cfg.protocol}`")
            preprocess(cfg, paths)
        ds = load_dataset(out)
        ensure_data_hash(out, ds)
    return ds


@contextlib.contextmanager
def _split_lock(out: Path) -> Iterator[None]:
    """Hold the split's lock while it is checked, made and read: two workers (parallel tuning
    trials, study jobs) that find it missing at once would otherwise both write graph.bin and
    meta.json, and one reads the other's half (a checksum mismatch, seen in CI). A folder where
    no lock can be made (read-only) is read without one: nothing can be written there anyway."""
    from recbench.runs import claim

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(claim(out.parent.parent, out.parent.name, out.name))
        except OSError:
            pass
        yield


def _check_name(name: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name or ""):
        raise ConfigError(f"dataset name {name!r} is not usable as a folder name; use letters, "
                          "digits, '.', '_' and '-' (e.g. my-data)")


def register_custom(path: Path, name: str, paths: DataPaths, sep: str | None, header: bool | None,
                    rating_col: str | int | None, timestamp_col: str | int | None,
                    force: bool = False, skip_bad_rows: bool = False) -> Path:
    """Copy a researcher's interactions file into data/raw/NAME so it behaves like a built-in.

    The file is parsed (and every row checked) before anything is written; the folder is built
    under a temporary name and renamed, so a failure leaves ``data/`` as it was. Registering a
    name again from different content needs ``force`` (which also drops NAME's processed splits,
    built from the old content). With ``skip_bad_rows`` ragged or non-numeric rows are dropped
    (now and whenever the copy is parsed again) and their number recorded in custom.json.
    A RecBole atomic file (``X.inter``, or ``X.train.inter`` of a benchmark trio) is read by
    :mod:`recbench.data.atomic` and copied with the files read beside it.
    """
    _check_name(name)
    if find_dataset(name) is not None:
        raise ConfigError(f"'{name}' is a built-in dataset; choose another --name")
    if atomic.is_atomic(path):
        if sep is not None or header is not None or skip_bad_rows:
            raise ConfigError(f"{path.name} is a RecBole atomic file (typed header, tabs): "
                              "--sep, --header and --skip-bad-rows apply to CSV files only")
        raw = atomic.parse_atomic(path)
        copies = {f.name: parsers.read_input(f) for f in atomic.companion_files(path)}
        spec = {"format": "atomic", "file": path.name,
                "sha256": {n: hashlib.sha256(b).hexdigest() for n, b in copies.items()},
                "users": raw.num_users, "items": raw.num_items}
        return _install_custom(name, paths, spec, copies, raw, force)
    raw = parsers.parse_table(path, sep, header, rating_col=rating_col, timestamp_col=timestamp_col,
                              skip_bad_rows=skip_bad_rows)
    data = parsers.read_input(path)  # a regular file within the size limit (parsed above)
    digest = hashlib.sha256(data).hexdigest()
    sep_used, header_used = parsers._sniff(path, sep, header)
    spec = {"file": path.name, "sep": sep_used, "header": header_used, "rating_col": rating_col,
            "timestamp_col": timestamp_col, "sha256": digest,
            "users": raw.num_users, "items": raw.num_items}
    if skip_bad_rows:  # absent otherwise, so earlier registrations still compare equal
        spec.update(skip_bad_rows=True, skipped_rows=len(raw.skipped_lines),
                    skipped_lines=raw.skipped_lines[:parsers.SHOWN_LINES])
    return _install_custom(name, paths, spec, {path.name: data}, raw, force)


def _install_custom(name: str, paths: DataPaths, spec: dict, copies: dict[str, bytes],
                    raw: parsers.RawData, force: bool) -> Path:
    """data/raw/NAME holding ``copies`` and the marker ``spec``, built aside and renamed in."""
    import os
    import shutil
    import tempfile

    folder = paths.raw / name
    if folder.exists():
        marker = folder / CUSTOM_MARKER
        old = json.loads(marker.read_text()) if marker.is_file() else None
        if old == spec:
            return folder  # the same file with the same options: nothing to do
        if not force:
            what = f"from {old['file']}" if old else "(not by --from)"
            raise ConfigError(f"dataset '{name}' is already registered {what} in {folder}; "
                              "choose another name, or add --force to replace it")
    paths.raw.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=paths.raw))
    try:
        for file_name, data in copies.items():
            (tmp / file_name).write_bytes(data)
        (tmp / CUSTOM_MARKER).write_text(json.dumps(spec, indent=2))
        (tmp / "id_map.json").write_text(json.dumps({"users": raw.user_ids, "items": raw.item_ids}))
        if folder.exists():
            shutil.rmtree(paths.processed / name, ignore_errors=True)
            old_dir = paths.raw / f".{name}.old"
            shutil.rmtree(old_dir, ignore_errors=True)
            os.replace(folder, old_dir)
            os.replace(tmp, folder)
            shutil.rmtree(old_dir, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
