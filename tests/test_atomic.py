"""RecBole atomic files: ``preprocess --from X.inter`` reads typed headers into the same processed
graph every model reads, and ``--export-atomic`` writes a split RecBole's benchmark_filename
loads; exported and read back, a split holds the same interactions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recbench.config import DatasetConfig
from recbench.data import atomic, protocols
from recbench.data.graph import RATES
from recbench.data.prepare import DataPaths, load
from recbench.errors import DatasetError
from tests.conftest import make_interactions
from tests.test_cli import _invoke, _one_error_line

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\treview:token_seq\n"


def _inter(path: Path, body: str, header: str = HEADER) -> Path:
    path.write_text(header + body)
    return path


def _rows(ds) -> dict[str, set[tuple[str, str, float, int]]]:
    """Each split's (raw user, raw item, rating, timestamp): what a split holds, whatever the
    indices the ids were given."""
    g, meta = ds.g, ds.meta
    u, i = (t.numpy() for t in g.edges(etype=RATES))
    data = g.edges[RATES].data
    users = meta["user_ids"] or [str(x) for x in range(ds.num_users)]
    items = meta["item_ids"] or [str(x) for x in range(ds.num_items)]
    out = {}
    for part in ("train", "valid", "test"):
        rows = np.flatnonzero(data[part].numpy())
        out[part] = {(users[u[r]], items[i[r]], float(data["rating"][r]), int(data["timestamp"][r]))
                     for r in rows}
    return out


def test_typed_header_reads_ids_ratings_and_timestamps(tmp_path):
    path = _inter(tmp_path / "shop.inter",
                  "ann\tbook 1\t4.5\t1700000000.0\tgreat read\nbob\tbook 1\t2\t1700000100\t\n"
                  "ann\tpen\t3\t1700000200\tok\n\n")
    raw = atomic.parse_atomic(path)
    assert (raw.num_users, raw.num_items, len(raw.frame)) == (2, 2, 3)
    assert raw.user_ids == ["ann", "bob"] and raw.item_ids == ["book 1", "pen"]  # tokens keep spaces
    first = raw.frame.iloc[0]
    assert (first["user"], first["item"], first["rating"], first["timestamp"]) == \
        (0, 0, 4.5, 1_700_000_000)
    assert raw.fixed_splits == {}  # one file: no published split


def test_only_user_and_item_are_needed(tmp_path):
    path = _inter(tmp_path / "clicks.inter", "1\t7\n2\t7\n", header="item_id:token\tuser_id:token\n")
    raw = atomic.parse_atomic(path)
    assert raw.user_ids == ["7"] and raw.item_ids == ["1", "2"]  # columns found by name
    assert raw.frame.rating.tolist() == [1.0, 1.0] and raw.frame.timestamp.tolist() == [0, 0]


@pytest.mark.parametrize("header,body,expected", [
    ("user_id\titem_id:token\n", "a\tb\n", "header column 'user_id' is not NAME:TYPE"),
    ("user_id:token\titem_id:string\n", "a\tb\n", "'item_id:string' is not NAME:TYPE"),
    ("user:token\titem_id:token\n", "a\tb\n", "no user_id column (header: user, item_id)"),
    ("user_id:token\titem_id:float\n", "a\t1\n", "item_id is float, expected item_id:token"),
    ("user_id:token\titem_id:token\trating:token\n", "a\tb\tgood\n", "rating is token"),
    (HEADER, "a\tb\t4\t1\n", "line 2: not the header's 5 tab-separated fields"),
    (HEADER, "a\tb\t4\t1\tx\na\tc\tfive\t1\tx\n", "line 3: rating 'five' is not a finite number"),
    (HEADER, "", "has a header but no interactions"),
    ("", "", "is empty; an atomic file starts with a header line"),
])
def test_bad_atomic_files_are_one_line_errors(tmp_path, header, body, expected):
    path = _inter(tmp_path / "bad.inter", body, header=header)
    with pytest.raises(DatasetError) as err:
        atomic.parse_atomic(path)
    assert expected in str(err.value) and "\n" not in str(err.value)
    result, out = _invoke("preprocess", "--from", str(path), "--data-dir", str(tmp_path / "d"))
    assert result.exit_code != 0 and expected in _one_error_line(out)
    assert not (tmp_path / "d" / "raw" / "bad").exists()  # a failed --from leaves data/ as it was


def test_item_file_beside_gives_genres_and_titles(tmp_path):
    _inter(tmp_path / "ml.inter", "1\t10\t5\t1\tx\n2\t20\t3\t2\ty\n2\t10\t4\t3\tz\n")
    (tmp_path / "ml.item").write_text(
        "item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
        "10\tToy Story\tAnimation Comedy\n20\tHeat\tCrime\n99\tNever rated\tDrama\n")
    raw = atomic.parse_atomic(tmp_path / "ml.inter")
    assert raw.item_titles == ["Toy Story", "Heat"]
    assert raw.genre_names == ["Animation", "Comedy", "Crime"]  # only the rated items' classes
    assert raw.item_genres.tolist() == [[1, 1, 0], [0, 0, 1]]


def test_cli_from_inter_names_the_dataset_after_the_file_and_builds_the_graph(tmp_path):
    frame = make_interactions()
    body = "".join(f"{u}\t{i}\t{r}\t{t}\tx\n" for u, i, r, t in frame.itertuples(index=False))
    path = _inter(tmp_path / "shop.inter", body)
    data = tmp_path / "data"
    result, out = _invoke("preprocess", "--from", str(path), "--protocol", "holdout",
                          "--data-dir", str(data))
    assert result.exit_code == 0, out
    ds = load(DatasetConfig(name="shop", protocol="holdout"), DataPaths(data), auto=False)
    assert (ds.num_users, ds.num_items) == (frame.user.nunique(), frame.item.nunique())
    assert ds.meta["counts"]["test"] == 3 * frame.user.nunique()
    result, out = _invoke("preprocess", "--from", str(path), "--sep", ",", "--data-dir", str(data))
    assert result.exit_code != 0 and "apply to CSV files only" in _one_error_line(out)


def test_export_then_read_back_holds_the_same_interactions(tmp_path, tiny_paths):
    """The round trip: a split (with validation) exported to benchmark files and read back with
    --from NAME.train.inter as the fixed split 'benchmark' has the same rows in each part."""
    cfg = DatasetConfig(name="tiny", protocol="random", test_ratio=0.2, valid_ratio=0.2)
    data = tiny_paths.root
    result, out = _invoke("preprocess", "tiny", "--protocol", "random", "--valid-ratio", "0.2",
                          "--export-atomic", str(tmp_path / "rb"), "--data-dir", str(data))
    assert result.exit_code == 0, out
    files = sorted(p.name for p in (tmp_path / "rb" / "tiny").iterdir())
    assert files == ["tiny.test.inter", "tiny.train.inter", "tiny.valid.inter"]
    first = (tmp_path / "rb" / "tiny" / "tiny.train.inter").read_text().splitlines()[:2]
    assert first[0] == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    assert first[1].split("\t")[0].startswith("u")  # the raw ids, not indices
    result, out = _invoke("preprocess", "--from", str(tmp_path / "rb" / "tiny" / "tiny.train.inter"),
                          "back", "--protocol", "fixed", "--split", "benchmark",
                          "--data-dir", str(data))
    assert result.exit_code == 0, out
    before = _rows(load(cfg, tiny_paths))
    after = _rows(load(DatasetConfig(name="back", protocol="fixed", split="benchmark"), tiny_paths))
    assert all(before[p] for p in before) and before == after


def test_fixed_split_with_validation_codes_is_kept_as_given():
    codes = np.array([protocols.TRAIN, protocols.VALID, protocols.TEST], dtype=np.int8)
    assert protocols.fixed(codes).tolist() == codes.tolist()
    assert protocols.fixed(np.array([False, True])).tolist() == [protocols.TRAIN, protocols.TEST]


def test_benchmark_file_without_its_test_file_is_refused(tmp_path):
    path = _inter(tmp_path / "x.train.inter", "a\tb\t1\t1\tx\n")
    with pytest.raises(DatasetError, match="without x.test.inter beside it"):
        atomic.parse_atomic(path)


@pytest.mark.realdata
def test_real_ml100k_split_round_trips(tmp_path, real_paths):
    cfg = DatasetConfig(name="ml-100k", protocol="fixed", split="u1", valid_ratio=0.1)
    ds = load(cfg, real_paths)
    written = atomic.export_atomic(ds, tmp_path, "ml-100k")
    raw = atomic.parse_atomic(written["valid"])
    codes = raw.fixed_splits[atomic.BENCHMARK_SPLIT]
    c = ds.meta["counts"]
    assert [int((codes == k).sum()) for k in (0, 1, 2)] == [c["train"], c["valid"], c["test"]]
    assert (raw.num_users, raw.num_items) == (943, 1682)  # every id came back
