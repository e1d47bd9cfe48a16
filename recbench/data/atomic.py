"""RecBole atomic files in and out: ``.inter`` (with ``.item`` beside it) read into
:class:`RawData`, and a processed split written as the ``NAME.{train,valid,test}.inter`` files
RecBole's ``benchmark_filename`` loads.

Why: the atomic format is how most public recommendation datasets circulate (RecBole's dataset
collection), and the benchmark files are how another tool is handed exactly our split, so a
comparison with RecBole is made on the same rows. Format: tab-separated, one header line of
``field:type`` (type ``token``, ``token_seq``, ``float`` or ``float_seq``), one interaction per
line. The user and item fields are RecBole's defaults, ``user_id`` and ``item_id``; ``rating``
and ``timestamp`` are read when present.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from recbench.data import protocols
from recbench.data.parsers import RawData, _check_source, _frame, _lines_text, _read_text
from recbench.errors import DatasetError

TYPES = ("token", "token_seq", "float", "float_seq")
USER, ITEM, RATING, TIME = "user_id", "item_id", "rating", "timestamp"
PARTS = ("train", "valid", "test")  # the benchmark files, in RecBole's order
BENCHMARK_SPLIT = "benchmark"  # the fixed split a set of benchmark files is read as
_PART_CODE = {"train": protocols.TRAIN, "valid": protocols.VALID, "test": protocols.TEST}


def is_atomic(path: Path) -> bool:
    """Whether ``path`` names a RecBole interactions file (``X.inter``, ``X.train.inter``)."""
    return path.suffix == ".inter"


def dataset_stem(path: Path) -> str:
    """The dataset name a file carries: ``ml-100k.inter`` and ``ml-100k.train.inter`` → ml-100k
    (any other file: its stem, ``ratings.csv`` → ratings)."""
    if not is_atomic(path):
        return path.stem
    stem = path.name.removesuffix(".inter")
    for part in PARTS:
        stem = stem.removesuffix(f".{part}")
    return stem


def companion_files(path: Path) -> list[Path]:
    """Every file read for ``path``: the benchmark trio (when ``path`` is one of them) or the one
    ``.inter``, then the ``.item`` beside them when there is one."""
    stem = dataset_stem(path)
    parts = [path.with_name(f"{stem}.{p}.inter") for p in PARTS]
    if path.name != f"{stem}.inter" and path in parts:
        found = [p for p in parts if p.is_file()]
        if path.with_name(f"{stem}.test.inter") not in found:
            raise DatasetError(f"{path}: a benchmark file without {stem}.test.inter beside it; "
                               "give all of train/valid/test, or a single STEM.inter")
    else:
        found = [path]
    item = path.with_name(f"{stem}.item")
    return found + ([item] if item.is_file() else [])


def read_header(path: Path, line: str, needed: tuple[str, ...]) -> dict[str, str]:
    """``{field: type}`` of an atomic header line, with the ``needed`` fields present as tokens."""
    fields: dict[str, str] = {}
    for col in line.rstrip("\r\n").split("\t"):
        name, _, kind = col.strip().partition(":")
        if not name or kind not in TYPES:
            raise DatasetError(f"{path}: header column {col.strip()!r} is not NAME:TYPE with TYPE one "
                               f"of {', '.join(TYPES)}; a RecBole atomic file starts with such a "
                               "header (e.g. user_id:token)")
        if name in fields:
            raise DatasetError(f"{path}: header names {name!r} twice")
        fields[name] = kind
    for name in needed:
        if name not in fields:
            raise DatasetError(f"{path}: no {name} column (header: {', '.join(fields)}); the user "
                               f"and item fields of an atomic file are {USER}:token and {ITEM}:token")
        if fields[name] != "token":
            raise DatasetError(f"{path}: {name} is {fields[name]}, expected {name}:token")
    for name in (RATING, TIME):
        if fields.get(name, "float") != "float":
            raise DatasetError(f"{path}: {name} is {fields[name]}, expected {name}:float")
    return fields


def _read_table(path: Path, needed: tuple[str, ...]
                ) -> tuple[pd.DataFrame, np.ndarray, dict[str, str]]:
    """The rows of an atomic file as strings, their 1-based line numbers and the header's
    ``{field: type}``; every row has as many fields as the header (a ragged row is named, never
    padded). Lines split on newlines only: a token may hold any other character."""
    lines = [ln.removesuffix("\r") for ln in _read_text(path).split("\n")]
    if not lines[0].strip():
        raise DatasetError(f"{path} is empty; an atomic file starts with a header line "
                           f"(e.g. {USER}:token<TAB>{ITEM}:token)")
    fields = read_header(path, lines[0], needed)
    numbers = np.array([n for n, ln in enumerate(lines[1:], 2) if ln.strip()], dtype=np.int64)
    rows = [lines[n - 1].split("\t") for n in numbers]
    bad = [int(n) for n, row in zip(numbers, rows, strict=True) if len(row) != len(fields)]
    if bad:
        raise DatasetError(f"{path}: {_lines_text(bad)}: not the header's {len(fields)} "
                           "tab-separated fields; make every row complete")
    table = pd.DataFrame(rows, columns=list(fields), dtype=str) if rows else \
        pd.DataFrame(columns=list(fields), dtype=str)
    return table, numbers, fields


def _numbers(path: Path, table: pd.DataFrame, lines: np.ndarray, name: str) -> np.ndarray:
    values = pd.to_numeric(table[name].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{path}: line {lines[first]}: {name} {table[name].iat[first]!r:.40} is "
                           f"not a finite number ({int(bad.sum())} such row(s))")
    return values


def parse_atomic(path: Path) -> RawData:
    """An atomic ``.inter`` (or a benchmark trio) as :class:`RawData`, raw ids mapped to 0-based
    indices. A benchmark trio is also kept as the fixed split ``benchmark`` (train, valid and test
    rows as they were), so ``--protocol fixed --split benchmark`` reproduces it exactly.

    Missing ids are refused; duplicate (user, item) pairs keep the last row, as with --from CSV.
    """
    _check_source(path)
    files = companion_files(path)
    inters = [f for f in files if f.suffix == ".inter"]
    frames, codes = [], []
    for file in inters:
        table, lines, _ = _read_table(file, (USER, ITEM))
        for name in (USER, ITEM):
            empty = (table[name].str.strip() == "").to_numpy()
            if empty.any():
                raise DatasetError(f"{file}: line {lines[int(np.flatnonzero(empty)[0])]}: missing "
                                   f"{name} ({int(empty.sum())} such row(s))")
        n = len(table)
        rating = _numbers(file, table, lines, RATING) if RATING in table else np.ones(n)
        stamp = _numbers(file, table, lines, TIME) if TIME in table else np.zeros(n)
        if np.abs(stamp).max(initial=0) >= 2.0**63:
            raise DatasetError(f"{file}: a timestamp is out of range for seconds since 1970")
        frames.append(pd.DataFrame({"u": table[USER].str.strip(), "i": table[ITEM].str.strip(),
                                    "r": rating, "t": stamp.astype(np.int64)}))
        part = file.name.removesuffix(".inter").rsplit(".", 1)[-1]
        codes.append(np.full(n, _PART_CODE.get(part, protocols.TRAIN), dtype=np.int8))
    raw = pd.concat(frames, ignore_index=True)
    raw["code"] = np.concatenate(codes)
    if len(raw) == 0:
        raise DatasetError(f"{path} has a header but no interactions")
    raw = raw.drop_duplicates(["u", "i"], keep="last")
    user_codes, user_ids = pd.factorize(raw.u, sort=True)
    item_codes, item_ids = pd.factorize(raw.i, sort=True)
    items = [str(i) for i in item_ids]
    genres, genre_names, titles = _item_side(files, items)
    splits = {BENCHMARK_SPLIT: raw.code.to_numpy()} if len(inters) > 1 else {}
    return RawData(_frame(user_codes, item_codes, raw.r, raw.t), len(user_ids), len(item_ids),
                   splits, item_genres=genres, genre_names=genre_names, item_titles=titles,
                   user_ids=[str(u) for u in user_ids], item_ids=items)


def _item_side(files: list[Path], items: list[str]) -> tuple[np.ndarray | None, list[str],
                                                              list[str] | None]:
    """Genres (the first ``token_seq`` field, multi-hot) and titles (a field named ``*title*``)
    of the interacted items from a ``.item`` file; items it does not list get none."""
    item_file = next((f for f in files if f.suffix == ".item"), None)
    if item_file is None:
        return None, [], None
    table, _, fields = _read_table(item_file, (ITEM,))
    index = {raw: row for row, raw in enumerate(items)}
    rows = table[ITEM].str.strip().map(index)
    known = rows.notna().to_numpy()
    rows = rows[known].astype(np.int64).to_numpy()
    titles = None
    title = next((f for f in fields if "title" in f), None)
    if title is not None:
        titles = [""] * len(items)
        for row, text in zip(rows, table[title][known], strict=True):
            titles[row] = text
    seq = next((f for f, kind in fields.items() if kind == "token_seq" and f != title), None)
    if seq is None:
        return None, [], titles
    tags = [str(cell).split() for cell in table[seq][known]]
    names = sorted({t for row in tags for t in row})
    col = {n: j for j, n in enumerate(names)}
    genres = np.zeros((len(items), len(names)), dtype=np.float32)
    for row, found in zip(rows, tags, strict=True):
        genres[row, [col[t] for t in found]] = 1.0
    return genres, names, titles


def _token(text: str) -> str:
    """A raw id as an atomic token: no tab or newline may split a field."""
    return re.sub(r"[\t\r\n]", " ", text)


def export_atomic(ds, out: Path, name: str) -> dict[str, Path]:
    """Write ``ds``'s train, valid and test rows as ``out/NAME/NAME.{train,valid,test}.inter``,
    the layout RecBole reads with ``data_path: out``, ``dataset: NAME`` and
    ``benchmark_filename: [train, valid, test]``.

    Users and items keep their raw ids where the dataset has them (a file registered with --from,
    ML-1M), else their 0-based index; ``rating`` and ``timestamp`` are written as stored (an empty
    split, e.g. valid without --valid-ratio, is a header-only file: RecBole needs all three).
    Rows dropped by --train-ratio or --min-rating are in no file. Each file is written whole or
    not at all.
    """
    from recbench.data.graph import RATES
    from recbench.runs import atomic_write_text

    g = ds.g
    u, i = (t.numpy() for t in g.edges(etype=RATES))
    data = g.edges[RATES].data
    # float32 ratings as their shortest exact text (0.1, not 0.10000000149), so a read-back
    # float32 is the same number
    rating, stamp = data["rating"].numpy().astype(str), data["timestamp"].numpy()
    users = [_token(x) for x in ds.meta["user_ids"]] if ds.meta.get("user_ids") else None
    items = [_token(x) for x in ds.meta["item_ids"]] if ds.meta.get("item_ids") else None
    header = f"{USER}:token\t{ITEM}:token\t{RATING}:float\t{TIME}:float\n"
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for part in PARTS:
        rows = np.flatnonzero(data[part].numpy())
        body = "".join(
            f"{users[a] if users else a}\t{items[b] if items else b}\t{r}\t{t}\n"
            for a, b, r, t in zip(u[rows].tolist(), i[rows].tolist(), rating[rows].tolist(),
                                  stamp[rows].tolist(), strict=True))
        path = folder / f"{name}.{part}.inter"
        atomic_write_text(path, header + body)
        written[part] = path
    return written
