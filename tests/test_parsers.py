"""Parsers of the datasets not mirrored here, on small files generated in their real formats."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from recbench.data import parsers
from recbench.errors import DatasetError


def test_ml1m_reindexes_ascending_and_reads_genres(tmp_path):
    (tmp_path / "ratings.dat").write_text(
        "10::1193::5::978300760\n10::661::3::978302109\n2::1193::4::978298413\n7::3408::4::978300275\n")
    (tmp_path / "movies.dat").write_bytes(
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "3408::Erin Brockovich (2000)::Drama\n"
        "9999::Unrated Film (1999)::Comedy\n".encode("latin-1"))
    raw = parsers.parse_ml1m(tmp_path)
    assert (raw.num_users, raw.num_items) == (3, 3)
    assert raw.user_ids == ["2", "7", "10"] and raw.item_ids == ["661", "1193", "3408"]
    assert raw.frame.user.tolist() == [2, 2, 0, 1]
    assert raw.frame.item.tolist() == [1, 0, 1, 2]
    drama = parsers.ML_GENRES.index("Drama")
    assert raw.item_genres[1, drama] == 1 and raw.item_genres[0].sum() == 3
    assert raw.item_titles[2] == "Erin Brockovich (2000)"


def test_amazon_five_core_json_lines_with_categories(tmp_path):
    reviews = [
        {"reviewerID": "A1", "asin": "B01", "overall": 5.0, "unixReviewTime": 100},
        {"reviewerID": "A1", "asin": "B02", "overall": 3.0, "unixReviewTime": 200},
        {"reviewerID": "A2", "asin": "B01", "overall": 4.0, "unixReviewTime": 150},
        {"reviewerID": "A2", "asin": "B01", "overall": 2.0, "unixReviewTime": 300},
    ]
    with gzip.open(tmp_path / "reviews_Movies_and_TV_5.json.gz", "wt") as fh:
        fh.write("\n".join(json.dumps(r) for r in reviews) + "\n")
    with gzip.open(tmp_path / "meta_Movies_and_TV.json.gz", "wt") as fh:
        fh.write(str({"asin": "B01", "categories": [["Movies & TV", "Drama"]]}) + "\n")
        fh.write(str({"asin": "B02", "categories": [["Movies & TV", "Comedy"],
                                                    ["Movies & TV", "Drama"]]}) + "\n")
    raw = parsers.parse_amazon(tmp_path)
    assert (raw.num_users, raw.num_items, len(raw.frame)) == (2, 2, 3)
    dup = raw.frame[(raw.frame.user == 1) & (raw.frame.item == 0)]
    assert dup.rating.tolist() == [2.0]  # the later review of a duplicated pair wins
    assert raw.genre_names == ["Comedy", "Drama"]
    np.testing.assert_array_equal(raw.item_genres, [[0, 1], [1, 1]])


@pytest.mark.parametrize("text,sep", [
    ("user,item,rating\nalice,x,4\nbob,y,5\nalice,y,2\n", ","),
    ("alice\tx\t4\t10\nbob\ty\t5\t11\nalice\ty\t2\t12\n", "\t"),
    ("alice::x::4::10\nbob::y::5::11\nalice::y::2::12\n", "::"),
])
def test_own_table_detects_delimiter_and_header(tmp_path, text, sep):
    path = tmp_path / "mine.txt"
    path.write_text(text)
    has_header = text.startswith("user")
    raw = parsers.parse_table(path, rating_col="rating" if has_header else 2,
                              timestamp_col=None if has_header else 3)
    assert raw.user_ids == ["alice", "bob"] and raw.item_ids == ["x", "y"]
    assert sorted(raw.frame.rating.tolist()) == [2.0, 4.0, 5.0]


def test_count_check_fails_loudly():
    raw = parsers.RawData(parsers._frame([0], [0], [1.0], [0]), 1, 1)
    with pytest.raises(DatasetError, match="expected 943 users"):
        parsers.check_counts("ml-100k", raw, {"users": 943})


# -- a researcher's own file: bad rows are named (first few lines) or, when asked, skipped


def _own_file(tmp_path, bad_rows: str):
    """Line 1 good, the bad rows from line 2 on, then 119 more good rows."""
    good = [f"u{u},i{(u * 7 + k) % 13},{k % 5 + 1}\n" for u in range(20) for k in range(6)]
    path = tmp_path / "own.csv"
    path.write_text(good[0] + bad_rows + "".join(good[1:]))
    return path


def test_ragged_rows_are_named_by_line(tmp_path):
    path = _own_file(tmp_path, "u1,i1\nu2,i2,3,4,5\nu3\n")
    with pytest.raises(DatasetError) as err:
        parsers.parse_table(path)
    msg = str(err.value)
    assert "\n" not in msg and "line 2 has 2 field(s) where the other rows have 3" in msg
    assert "3 such rows: lines 2, 3, 4" in msg and "--skip-bad-rows" in msg


def test_non_numeric_ratings_are_named_by_line(tmp_path):
    path = _own_file(tmp_path, "u1,i1,good\nu2,i2,nan\n" + "u3,i3,x\n" * 6)
    with pytest.raises(DatasetError) as err:
        parsers.parse_table(path)
    msg = str(err.value)
    assert "\n" not in msg and "line 2: rating is not a finite number 'good'" in msg
    assert "8 such row(s); lines 2, 3, 4, 5, 6 and 3 more" in msg


def test_skip_bad_rows_drops_and_counts_them(tmp_path):
    path = _own_file(tmp_path, "u1,i1\nu2,i2,abc\nu3,i3,4,9\n")
    raw = parsers.parse_table(path, skip_bad_rows=True)
    assert raw.skipped_lines == [2, 3, 4]
    clean = parsers.parse_table(_own_file(tmp_path, ""))
    assert raw.frame.equals(clean.frame)  # exactly the good rows, as if the bad ones were absent


def test_skip_bad_rows_still_refuses_a_file_of_only_bad_rows(tmp_path):
    path = tmp_path / "all_bad.csv"
    path.write_text("u1,i1,x\nu2,i2,y\n")
    with pytest.raises(DatasetError, match="every row is bad"):
        parsers.parse_table(path, header=False, skip_bad_rows=True)
