"""Raw files → one interactions frame with contiguous 0-based ids, plus side information.

Every parser returns :class:`RawData`; nothing downstream knows a file format. Fixed splits that
a dataset publishes (ML-100K's u1…ub files, Douban's masks, Yelp's test items) are returned as
per-row test flags so that ``protocols.fixed`` can apply them like any other protocol.
"""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recbench.errors import DatasetError

ML_GENRES = [
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
    "Western",
]


@dataclass
class RawData:
    """A parsed dataset. ``frame`` has columns user, item (int64, 0-based), rating (float32),
    timestamp (int64, 0 when unknown); one row per interaction, no duplicate pairs."""

    frame: pd.DataFrame
    num_users: int
    num_items: int
    # name → bool test flag per row (int8 TRAIN/VALID/TEST codes for a split with validation)
    fixed_splits: dict[str, np.ndarray] = field(default_factory=dict)
    social: np.ndarray | None = None  # (2, E) int64 user → user
    item_genres: np.ndarray | None = None  # (num_items, G) float32 multi-hot
    genre_names: list[str] = field(default_factory=list)
    item_titles: list[str] | None = None
    user_ids: list[str] | None = None  # raw id of each index, for a researcher's own data
    item_ids: list[str] | None = None
    skipped_lines: list[int] = field(default_factory=list)  # bad rows dropped (skip_bad_rows)


SHOWN_LINES = 5  # bad line numbers named in one message


def _lines_text(lines: list[int]) -> str:
    """``line 7`` / ``lines 3, 9, 12 and 4 more``: the first few, so the message stays one line."""
    shown = ", ".join(map(str, lines[:SHOWN_LINES]))
    more = f" and {len(lines) - SHOWN_LINES} more" if len(lines) > SHOWN_LINES else ""
    return f"line{'s' if len(lines) > 1 else ''} {shown}{more}"


def _frame(user, item, rating, timestamp) -> pd.DataFrame:
    return pd.DataFrame({
        "user": np.asarray(user, dtype=np.int64),
        "item": np.asarray(item, dtype=np.int64),
        "rating": np.asarray(rating, dtype=np.float32),
        "timestamp": np.asarray(timestamp, dtype=np.int64),
    })


def _pair_key(users: np.ndarray, items: np.ndarray, num_items: int) -> np.ndarray:
    return users.astype(np.int64) * num_items + items.astype(np.int64)


def _flags_from_pairs(frame: pd.DataFrame, users, items, num_items: int, label: str) -> np.ndarray:
    keys = _pair_key(frame["user"].to_numpy(), frame["item"].to_numpy(), num_items)
    wanted = _pair_key(np.asarray(users), np.asarray(items), num_items)
    flags = np.isin(keys, wanted)
    if flags.sum() != len(np.unique(wanted)):
        raise DatasetError(f"{label}: {len(wanted)} test pairs but {int(flags.sum())} found in the data")
    return flags


def parse_ml100k(folder: Path) -> RawData:
    cols = ["user", "item", "rating", "timestamp"]
    data = pd.read_csv(folder / "u.data", sep="\t", names=cols)
    items = pd.read_csv(folder / "u.item", sep="|", header=None, encoding="latin-1")
    num_users, num_items = int(data.user.max()), int(items[0].max())
    frame = _frame(data.user - 1, data.item - 1, data.rating, data.timestamp)
    # column 5 is "unknown"; the 18 real genres follow (the GConv-Transform spec drops "unknown")
    genres = items.iloc[:, 6:24].to_numpy(dtype=np.float32)
    splits = {}
    for name in ("u1", "u2", "u3", "u4", "u5", "ua", "ub"):
        path = folder / f"{name}.test"
        if path.is_file():
            test = pd.read_csv(path, sep="\t", names=cols)
            splits[name] = _flags_from_pairs(frame, test.user - 1, test.item - 1, num_items, name)
    return RawData(frame, num_users, num_items, splits, item_genres=genres,
                   genre_names=list(ML_GENRES), item_titles=items[1].astype(str).tolist())


def parse_ml1m(folder: Path) -> RawData:
    ratings = pd.read_csv(folder / "ratings.dat", sep="::", engine="python",
                          names=["user", "item", "rating", "timestamp"])
    user_codes, user_ids = pd.factorize(ratings.user, sort=True)
    item_codes, item_ids = pd.factorize(ratings.item, sort=True)
    frame = _frame(user_codes, item_codes, ratings.rating, ratings.timestamp)
    genres = np.zeros((len(item_ids), len(ML_GENRES)), dtype=np.float32)
    titles = [""] * len(item_ids)
    movies_path = folder / "movies.dat"
    if movies_path.is_file():
        movies = pd.read_csv(movies_path, sep="::", engine="python", encoding="latin-1",
                             names=["item", "title", "genres"])
        index = {int(raw): i for i, raw in enumerate(item_ids)}
        for raw, title, tags in movies.itertuples(index=False):
            row = index.get(int(raw))
            if row is None:
                continue
            titles[row] = title
            for tag in str(tags).split("|"):
                if tag in ML_GENRES:
                    genres[row, ML_GENRES.index(tag)] = 1.0
    return RawData(frame, len(user_ids), len(item_ids), item_genres=genres,
                   genre_names=list(ML_GENRES), item_titles=titles,
                   user_ids=[str(u) for u in user_ids], item_ids=[str(i) for i in item_ids])


def _read_mat_dense(h5, key: str) -> np.ndarray:
    node = h5[key]
    if hasattr(node, "shape"):
        # HDF5 holds MATLAB's column-major layout: transpose back (as the official code does)
        return np.asarray(node, dtype=np.float64).T
    from scipy.sparse import csc_matrix

    data, ir, jc = (np.asarray(node[k]) for k in ("data", "ir", "jc"))
    n_cols = len(jc) - 1
    return csc_matrix((data, ir, jc), shape=(int(ir.max()) + 1, n_cols)).toarray()


def parse_douban(folder: Path) -> RawData:
    import h5py

    with h5py.File(folder / "douban_monti_dataset.mat", "r") as h5:
        ratings = _read_mat_dense(h5, "M")
        train_mask = _read_mat_dense(h5, "Otraining") > 0
        test_mask = _read_mat_dense(h5, "Otest") > 0
        social = _read_mat_dense(h5, "W_users") > 0
    observed = (ratings > 0) & (train_mask | test_mask)
    users, items = np.nonzero(observed)
    frame = _frame(users, items, ratings[users, items], np.zeros(len(users)))
    src, dst = np.nonzero(social)
    return RawData(frame, ratings.shape[0], ratings.shape[1],
                   {"default": test_mask[users, items]},
                   social=np.stack([src, dst]).astype(np.int64))


def parse_yelp(folder: Path, prefix: str) -> RawData:
    inter = pd.read_csv(folder / f"{prefix}_interactions.txt", sep="\t", header=None,
                        names=["user", "item", "rating"])
    num_users, num_items = int(inter.user.max()) + 1, int(inter.item.max()) + 1
    frame = _frame(inter.user, inter.item, inter.rating, np.zeros(len(inter)))
    test_users, test_items = [], []
    with open(folder / f"{prefix}_gt.txt") as fh:
        for user, line in enumerate(fh):
            for tok in line.strip().split(","):
                if tok.strip():
                    test_users.append(user)
                    test_items.append(int(tok))
    flags = _flags_from_pairs(frame, test_users, test_items, num_items, f"{prefix}_gt")
    return RawData(frame, num_users, num_items, {"published": flags})


def _count_id_lines(path: Path) -> int:
    """Rows of a LightGCN ``user_list.txt`` / ``item_list.txt`` (``org_id remap_id`` header)."""
    with open(path) as fh:
        lines = [ln for ln in fh if ln.strip()]
    return len(lines) - 1 if lines and not lines[0].split()[-1].isdigit() else len(lines)


def parse_lightgcn_split(folder: Path, label: str) -> RawData:
    """A LightGCN-PyTorch data folder: ``s_adj_mat.npz`` (the symmetric 0/1 adjacency of the
    training pairs, users first) and ``test.txt`` (a user id, then its test item ids).

    The training pairs are the user→item block of the adjacency (the published train.txt holds
    the same pairs); the user and item counts come from the id lists, so a user or item with no
    training pair still has its index. Test pairs that are also training pairs are refused: the
    published split has none, and a duplicate would leak the answer into training.
    """
    import scipy.sparse as sp

    num_users = _count_id_lines(folder / "user_list.txt")
    num_items = _count_id_lines(folder / "item_list.txt")
    adj = sp.load_npz(folder / "s_adj_mat.npz")
    if adj.shape != (num_users + num_items, num_users + num_items):
        raise DatasetError(f"{label}: s_adj_mat.npz is {adj.shape[0]} x {adj.shape[1]}, expected "
                           f"{num_users + num_items} square (users + items of the id lists)")
    block = sp.csr_matrix(adj[:num_users, num_users:])
    block.eliminate_zeros()
    if 2 * block.nnz != adj.count_nonzero():
        raise DatasetError(f"{label}: s_adj_mat.npz has entries outside its user-item blocks "
                           f"({adj.count_nonzero()} non-zeros, {block.nnz} user→item pairs)")
    train = block.tocoo()
    test_users, test_items = [], []
    with open(folder / "test.txt") as fh:
        for line_no, line in enumerate(fh, 1):
            tokens = line.split()
            if not tokens:
                continue
            try:
                ids = [int(t) for t in tokens]
            except ValueError:
                raise DatasetError(f"{label}: test.txt line {line_no} is not integer ids") from None
            test_users.extend([ids[0]] * (len(ids) - 1))
            test_items.extend(ids[1:])
    tu, ti = np.asarray(test_users, dtype=np.int64), np.asarray(test_items, dtype=np.int64)
    if len(tu) and (tu.max() >= num_users or ti.max() >= num_items or min(tu.min(), ti.min()) < 0):
        raise DatasetError(f"{label}: test.txt holds ids outside {num_users} users x {num_items} items")
    test_keys = np.unique(_pair_key(tu, ti, num_items))
    train_keys = _pair_key(train.row, train.col, num_items)
    if np.isin(train_keys, test_keys).any():
        raise DatasetError(f"{label}: {int(np.isin(train_keys, test_keys).sum())} test pairs are "
                           "also training pairs in s_adj_mat.npz")
    users = np.concatenate([train.row.astype(np.int64), test_keys // num_items])
    items = np.concatenate([train.col.astype(np.int64), test_keys % num_items])
    n = len(users)
    frame = _frame(users, items, np.ones(n), np.zeros(n))
    flags = np.zeros(n, dtype=bool)
    flags[len(train_keys):] = True
    return RawData(frame, num_users, num_items, {"published": flags})


def parse_amazon(folder: Path) -> RawData:
    users, items, ratings, stamps = [], [], [], []
    with gzip.open(folder / "reviews_Movies_and_TV_5.json.gz", "rt") as fh:
        for line in fh:
            rec = json.loads(line)
            users.append(rec["reviewerID"])
            items.append(rec["asin"])
            ratings.append(float(rec.get("overall", 0.0)))
            stamps.append(int(rec.get("unixReviewTime", 0)))
    raw = pd.DataFrame({"u": users, "i": items, "r": ratings, "t": stamps})
    raw = raw.sort_values("t", kind="stable").drop_duplicates(["u", "i"], keep="last")
    user_codes, user_ids = pd.factorize(raw.u, sort=True)
    item_codes, item_ids = pd.factorize(raw.i, sort=True)
    frame = _frame(user_codes, item_codes, raw.r, raw.t)
    genres, names = _amazon_categories(folder, list(item_ids))
    return RawData(frame, len(user_ids), len(item_ids), item_genres=genres, genre_names=names,
                   user_ids=list(user_ids), item_ids=list(item_ids))


def _amazon_categories(folder: Path, asins: list[str]) -> tuple[np.ndarray | None, list[str]]:
    """Second-level categories from the optional metadata file (Python-literal lines)."""
    import ast

    path = folder / "meta_Movies_and_TV.json.gz"
    if not path.is_file():
        return None, []
    index = {a: i for i, a in enumerate(asins)}
    tags: dict[int, set[str]] = {}
    with gzip.open(path, "rt") as fh:
        for line in fh:
            rec = ast.literal_eval(line)
            row = index.get(rec.get("asin"))
            if row is not None:
                tags[row] = {path[1] for path in rec.get("categories", []) if len(path) > 1}
    names = sorted(set().union(*tags.values())) if tags else []
    genres = np.zeros((len(asins), len(names)), dtype=np.float32)
    col = {n: j for j, n in enumerate(names)}
    for row, found in tags.items():
        for name in found:
            genres[row, col[name]] = 1.0
    return genres, names


# The largest interactions file read (--from): ML-20M's ratings are about 0.5 GB; past this a
# file is more likely a mistake than data, and it would be read whole into memory.
MAX_INPUT_BYTES = 4 * 1024**3


def read_input(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_INPUT_BYTES. A device (/dev/zero never ends),
    a pipe (it blocks, and registering reads the file twice) or a socket is refused before it
    is opened; a file that grows past the limit while read is refused too."""
    import stat

    limit = MAX_INPUT_BYTES
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise DatasetError(f"{path}: not a regular file (a device, pipe or socket); save the "
                               "interactions to a file and give its path")
        if info.st_size > limit:
            raise DatasetError(f"{path}: too large ({info.st_size:,} bytes; at most {limit:,}) "
                               "for an interactions file")
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror}); give the path of a readable "
                           "interactions file") from None
    if len(data) > limit:
        raise DatasetError(f"{path}: too large (more than {limit:,} bytes) for an interactions file")
    return data


def _read_text(path: Path) -> str:
    """The whole file as text (BOM dropped), read with :func:`read_input`'s bounds."""
    data = read_input(path)
    data = data.removeprefix(b"\xef\xbb\xbf")  # a BOM is not part of the first user id
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(f"{path}: line {line} is not UTF-8 text; save the file as UTF-8 "
                           "(e.g. `iconv -f latin1 -t utf-8`)") from None


def _sniff(path: Path, sep: str | None, header: bool | None,
           text: str | None = None) -> tuple[str, bool]:
    sample = (_read_text(path) if text is None else text)[:8192]
    if sep is None:
        if "::" in sample:
            sep = "::"
        else:
            try:
                sep = csv.Sniffer().sniff(sample, delimiters=",\t; |").delimiter
            except csv.Error:  # e.g. ragged rows: the delimiter found on the most lines
                lines = sample.splitlines()
                sep = max(",\t;|", key=lambda c: (sum(c in ln for ln in lines), c == ","))
    if header is None:
        lines = [ln for ln in sample.splitlines() if ln.strip()]
        first = lines[0].split(sep) if lines else []
        numeric = [_is_number(tok.strip().strip('"')) for tok in first]
        if len(numeric) >= 3:  # the rating column decides; ids may legitimately be non-numeric
            header = not any(numeric[2:])  # (a number after the ids: a data row, bad or not)
        elif any(numeric):
            header = False
        elif all(tok.strip().strip('"').lower() in _HEADER_WORDS for tok in first):
            header = True
        else:
            raise DatasetError(f"{path}: cannot tell whether line 1 ({lines[0][:40]!r}) is a header "
                               "or an interaction; add --header or --no-header")
    return sep, header


_HEADER_WORDS = {"user", "item", "users", "items", "user_id", "item_id", "userid", "itemid",
                 "uid", "iid", "u", "i", "rating", "timestamp", "time", "score"}


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def _check_ragged(path: Path, text: str, sep: str, skip: bool = False) -> list[int]:
    """Every non-blank line has as many fields as the usual row (a short row is not padded).

    Raises naming the first few ragged lines; with ``skip`` returns their numbers instead.
    """
    import io

    if len(sep) == 1:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
        rows = ((reader.line_num, len(row)) for row in reader if row and any(f.strip() for f in row)
                or (row and len(row) > 1))
    else:
        rows = ((n, len(line.split(sep))) for n, line in enumerate(text.splitlines(), 1)
                if line.strip())
    try:
        counts = list(rows)
    except csv.Error as exc:
        raise DatasetError(f"{path}: line {reader.line_num}: {exc}; check the quoting") from None
    if not counts:
        return []
    from collections import Counter

    tally = Counter(c for _, c in counts)  # the usual count; on a tie the longer row (a field
    usual = max(tally, key=lambda c: (tally[c], c))  # is more often lost than added)
    bad = [(line, count) for line, count in counts if count != usual]
    if bad and not skip:
        line, count = bad[0]
        also = f" ({len(bad)} such rows: {_lines_text([b for b, _ in bad])})" if len(bad) > 1 else ""
        raise DatasetError(f"{path}: line {line} has {count} field(s) where the other rows have "
                           f"{usual} (delimiter {sep!r}){also}; make every row complete, give the "
                           "right --sep, or drop such rows with --skip-bad-rows")
    return [line for line, _ in bad]


def _check_source(path: Path) -> None:
    if not path.exists():
        raise DatasetError(f"{path} does not exist; give the path of an interactions file")
    if path.is_dir():
        raise DatasetError(f"{path} is a folder; give the path of an interactions file")


def parse_table(path: Path, sep: str | None = None, header: bool | None = None,
                user_col: str | int = 0, item_col: str | int = 1,
                rating_col: str | int | None = 2, timestamp_col: str | int | None = 3,
                skip_bad_rows: bool = False) -> RawData:
    """A researcher's own interactions file (CSV/TSV/``::``); raw ids mapped to 0-based indices.

    Every row must hold a user, an item and (when the columns exist) a finite rating and an
    integer timestamp; bad rows are reported with their line numbers, never guessed. Only when
    asked (``skip_bad_rows``) are they dropped, and their lines listed in ``skipped_lines``.
    Blank lines are ignored; duplicate (user, item) pairs keep the last row.
    """
    import io

    _check_source(path)
    text = _read_text(path)
    if not text.strip():
        raise DatasetError(f"{path} is empty; an interactions file needs one row per interaction "
                           "(user, item[, rating[, timestamp]])")
    sep, header = _sniff(path, sep, header, text)
    if not sep:
        raise DatasetError(f"{path}: --sep must not be empty; give the delimiter, e.g. --sep ','")
    skipped = _check_ragged(path, text, sep, skip_bad_rows)
    if skipped:  # blanked, not removed: the remaining rows keep their line numbers
        drop = set(skipped)
        text = "".join("\n" if n in drop else ln
                       for n, ln in enumerate(text.splitlines(keepends=True), 1))
    try:
        # skip_blank_lines=False keeps row index == line number; blank rows are dropped below
        table = pd.read_csv(io.StringIO(text), sep=sep, header=0 if header else None,
                            engine="python" if len(sep) > 1 else "c", dtype=str,
                            skip_blank_lines=False, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, csv.Error) as exc:
        detail = " ".join(str(exc).split())
        raise DatasetError(f"{path}: cannot be read as a table with delimiter {sep!r} ({detail}); "
                           "make every row have the same number of fields, or give --sep") from None
    first_line = 2 if header else 1
    lines = np.arange(len(table)) + first_line
    blank = table.isna().all(axis=1).to_numpy()
    table, lines = table[~blank].reset_index(drop=True), lines[~blank]
    if len(table) == 0 and skipped:
        raise DatasetError(f"{path}: every row is bad ({_lines_text(skipped)}); fix the file "
                           "(delimiter, columns) before skipping rows")
    if len(table) == 0:
        raise DatasetError(f"{path} has a header line but no interactions; add one row per "
                           "interaction (user, item[, rating[, timestamp]]), or --no-header if "
                           "line 1 is data")

    def column(ref: str | int | None, what: str) -> pd.Series | None:
        if ref is None:
            return None
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            idx = int(ref)
            return table.iloc[:, idx] if idx < table.shape[1] else None
        if ref not in table.columns:
            raise DatasetError(f"{path}: no column '{ref}' for the {what}; columns are "
                               f"{list(map(str, table.columns))} (set --{what}-col)")
        return table[ref]

    keep = np.ones(len(table), dtype=bool)

    def bad_row(mask: np.ndarray, series: pd.Series | None, what: str, fix: str) -> None:
        mask = mask & keep
        if mask.any() and skip_bad_rows:
            keep[mask] = False
            return
        if mask.any():
            rows = np.flatnonzero(mask)
            row = int(rows[0])
            value = "" if series is None or pd.isna(series.iat[row]) else series.iat[row]
            where = f"; {_lines_text([int(lines[r]) for r in rows])}" if len(rows) > 1 else ""
            raise DatasetError(f"{path}: line {lines[row]}: {what} {value!r:.60}; {fix}, or drop "
                               f"such rows with --skip-bad-rows ({len(rows)} such row(s){where})")

    users, items = column(user_col, "user"), column(item_col, "item")
    if users is None or items is None:
        raise DatasetError(f"{path}: line {lines[0]}: needs at least a user and an item column "
                           f"(found {table.shape[1]} with delimiter {sep!r}); give --sep")
    users, items = users.str.strip(), items.str.strip()
    for series, what in ((users, "user"), (items, "item")):
        missing = (series.isna() | (series == "")).to_numpy()
        bad_row(missing, series, f"missing {what} id", "every row needs a user and an item")
    ratings, stamps = column(rating_col, "rating"), column(timestamp_col, "timestamp")
    if ratings is not None:
        rating = pd.to_numeric(ratings.str.strip(), errors="coerce").to_numpy(dtype=np.float64)
        bad_row(~np.isfinite(rating), ratings, "rating is not a finite number",
                "fix the row or name the rating column with --rating-col (or 'none')")
    else:
        rating = np.ones(len(table))
    if stamps is not None:
        stamp_f = pd.to_numeric(stamps.str.strip(), errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(stamp_f) | (np.abs(stamp_f) >= 2.0**63)
        bad_row(bad, stamps, "timestamp is not a finite integer",
                "fix the row or name the timestamp column with --timestamp-col (or 'none')")
        stamp = np.where(bad, 0, stamp_f).astype(np.int64)  # bad rows: raised or dropped
    else:
        stamp = np.zeros(len(table), dtype=np.int64)
    raw = pd.DataFrame({"u": users, "i": items, "r": rating, "t": stamp})[keep]
    skipped = sorted(skipped + [int(n) for n in lines[~keep]])
    if len(raw) == 0:
        raise DatasetError(f"{path}: every row is bad ({_lines_text(skipped)}); fix the file "
                           "(delimiter, columns) before skipping rows")
    raw = raw.drop_duplicates(["u", "i"], keep="last")
    user_codes, user_ids = pd.factorize(raw.u, sort=True)
    item_codes, item_ids = pd.factorize(raw.i, sort=True)
    return RawData(_frame(user_codes, item_codes, raw.r, raw.t), len(user_ids), len(item_ids),
                   user_ids=list(map(str, user_ids)), item_ids=list(map(str, item_ids)),
                   skipped_lines=skipped)


def check_counts(name: str, raw: RawData, expected: dict[str, int]) -> None:
    """``raw`` has the published counts of its dataset's record (datasets.py), or fails."""
    seen = {"users": raw.num_users, "items": raw.num_items, "interactions": len(raw.frame)}
    if raw.fixed_splits and "test" in expected:
        flags = next(iter(raw.fixed_splits.values()))
        seen["test"], seen["train"] = int(flags.sum()), int((~flags).sum())
    for key, want in expected.items():
        if seen.get(key) != want:
            raise DatasetError(
                f"{name}: expected {want:,} {key}, found {seen.get(key)}; the raw files are not the "
                f"published ones — re-fetch with `recbench fetch {name} --force`"
            )
