"""The LightGCN/NGCF split format (Gowalla): a users-first training adjacency and test.txt,
generated here in the real format, and the honest validation carve-out taken from its train."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recbench.config import DatasetConfig
from recbench.data import parsers, protocols
from recbench.data.prepare import split_codes
from recbench.errors import DatasetError

TRAIN = {0: [0, 1, 2], 1: [2, 3], 2: [0, 4, 5, 6], 3: [1]}  # user -> training items
TEST = {0: [3], 1: [0, 5], 2: [1], 3: [2, 4]}
USERS, ITEMS = 4, 7


def write_split(folder: Path, train=TRAIN, test=TEST, users=USERS, items=ITEMS) -> Path:
    """The four files as LightGCN-PyTorch publishes them (scipy npz, space-separated text)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [u for u, its in train.items() for _ in its]
    cols = [users + i for its in train.values() for i in its]
    n = users + items
    half = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    sp.save_npz(folder / "s_adj_mat.npz", (half + half.T).tocsr())
    (folder / "test.txt").write_text("".join(f"{u} {' '.join(map(str, its))}\n"
                                             for u, its in test.items()))
    (folder / "user_list.txt").write_text("org_id remap_id\n" + "".join(
        f"{100 + u} {u}\n" for u in range(users)))
    (folder / "item_list.txt").write_text("org_id remap_id\n" + "".join(
        f"{500 + i} {i}\n" for i in range(items)))
    return folder


def pairs(raw: parsers.RawData, test: bool) -> set[tuple[int, int]]:
    flags = raw.fixed_splits["published"]
    f = raw.frame[flags == test]
    return set(zip(f.user.tolist(), f.item.tolist()))


def test_parser_reads_train_block_and_test_lines(tmp_path: Path) -> None:
    raw = parsers.parse_lightgcn_split(write_split(tmp_path / "g"), "tiny-gowalla")
    assert (raw.num_users, raw.num_items) == (USERS, ITEMS)
    assert pairs(raw, False) == {(u, i) for u, its in TRAIN.items() for i in its}
    assert pairs(raw, True) == {(u, i) for u, its in TEST.items() for i in its}
    assert len(raw.frame) == 10 + 6


def test_parser_counts_items_without_training_pairs(tmp_path: Path) -> None:
    """Ids come from the id lists: an item only in test.txt (or nowhere) keeps its index."""
    raw = parsers.parse_lightgcn_split(write_split(tmp_path / "g", items=9), "g")
    assert raw.num_items == 9


def test_parser_refuses_test_pair_inside_training(tmp_path: Path) -> None:
    folder = write_split(tmp_path / "g", test={0: [1], 1: [0]})  # (0, 1) is a training pair
    with pytest.raises(DatasetError, match="also training pairs"):
        parsers.parse_lightgcn_split(folder, "g")


def test_parser_refuses_adjacency_of_wrong_size(tmp_path: Path) -> None:
    folder = write_split(tmp_path / "g")
    (folder / "item_list.txt").write_text("org_id remap_id\n0 0\n")
    with pytest.raises(DatasetError, match="square"):
        parsers.parse_lightgcn_split(folder, "g")


def test_parser_refuses_item_item_entries(tmp_path: Path) -> None:
    folder = write_split(tmp_path / "g")
    adj = sp.load_npz(folder / "s_adj_mat.npz").tolil()
    adj[USERS, USERS + 1] = adj[USERS + 1, USERS] = 1
    sp.save_npz(folder / "s_adj_mat.npz", adj.tocsr())
    with pytest.raises(DatasetError, match="outside its user-item blocks"):
        parsers.parse_lightgcn_split(folder, "g")


def _big_split(tmp_path: Path) -> parsers.RawData:
    rng = np.random.default_rng(3)
    train = {u: sorted(rng.choice(40, size=int(rng.integers(1, 25)), replace=False).tolist())
             for u in range(30)}
    test = {u: [i for i in range(40, 43)] for u in range(30)}
    return parsers.parse_lightgcn_split(write_split(tmp_path / "g", train, test, 30, 43), "g")


def test_carve_out_is_seeded_per_user_and_disjoint_from_test(tmp_path: Path) -> None:
    raw = _big_split(tmp_path)
    cfg = DatasetConfig(name="g", protocol="fixed", split="published", valid_ratio=0.1)
    codes, _ = split_codes(raw, cfg)
    again, _ = split_codes(raw, cfg)
    other, _ = split_codes(raw, cfg.model_copy(update={"split_seed": 1}))
    np.testing.assert_array_equal(codes, again)  # deterministic for a seed
    assert not np.array_equal(codes, other)  # and the seed matters
    test_flags = raw.fixed_splits["published"]
    assert np.array_equal(codes == protocols.TEST, test_flags)  # test is the published one
    users = raw.frame.user.to_numpy()
    for u in range(raw.num_users):
        train_rows = (users == u) & ~test_flags
        n_valid = int((codes[train_rows] == protocols.VALID).sum())
        assert n_valid == int(0.1 * train_rows.sum())  # 10 % of the user's pairs, rounded down
        assert (codes[train_rows] == protocols.TRAIN).sum() >= 1  # nobody is emptied


@pytest.mark.realdata
def test_real_gowalla_counts(mirror: Path) -> None:
    from recbench.data.datasets import get_dataset

    raw = get_dataset("gowalla-lightgcn").parse(mirror / "gowalla-lightgcn")
    flags = raw.fixed_splits["published"]
    assert (raw.num_users, raw.num_items) == (29_858, 40_981)
    assert (int((~flags).sum()), int(flags.sum())) == (810_128, 217_242)
