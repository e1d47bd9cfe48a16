"""Split protocols: disjoint, covering, seeded, and with the sizes they promise."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recbench.data import protocols as P
from tests.conftest import make_interactions


def _frame() -> pd.DataFrame:
    raw = make_interactions()
    return pd.DataFrame({"user": raw.user.str[1:].astype(int), "item": raw.item.str[1:].astype(int),
                         "rating": raw.rating, "timestamp": raw.timestamp})


def test_random_per_user_takes_floor_ratio_of_each_user():
    f = _frame()
    codes = P.random_ratio(f, 0.25, np.random.default_rng(0))
    per_user = pd.Series(codes == P.TEST).groupby(f.user).sum()
    assert (per_user == (f.groupby("user").size() * 0.25).astype(int)).all()


def test_random_is_deterministic_given_seed():
    f = _frame()
    a = P.random_ratio(f, 0.3, np.random.default_rng(5))
    b = P.random_ratio(f, 0.3, np.random.default_rng(5))
    assert (a == b).all()


def test_global_legacy_shuffle_matches_numpy_randomstate():
    f = _frame()
    codes = P.random_ratio(f, 0.1, np.random.default_rng(0), per_user=False, legacy_seed=1234)
    idx = np.arange(len(f))
    np.random.RandomState(1234).shuffle(idx)
    assert set(np.flatnonzero(codes == P.TEST)) == set(idx[: int(0.1 * len(f))])


def test_holdout_k_per_user():
    f = _frame()
    codes = P.holdout(f, 3, np.random.default_rng(0))
    assert (pd.Series(codes == P.TEST).groupby(f.user).sum() == 3).all()


def test_leave_one_out_takes_latest_and_negatives_are_unseen():
    f = _frame()
    codes, neg = P.leave_one_out(f, np.random.default_rng(0), 30, num_negatives=5)
    for user, rows in f.groupby("user").groups.items():
        test_rows = [r for r in rows if codes[r] == P.TEST]
        assert len(test_rows) == 1
        assert f.timestamp[test_rows[0]] == f.timestamp[list(rows)].max()
        seen = set(f.item[list(rows)])
        assert not seen & set(neg[user].tolist())
        assert len(set(neg[user].tolist())) == 5


def test_validation_carve_out_and_train_subsample_leave_test_alone():
    f = _frame()
    codes = P.random_ratio(f, 0.2, np.random.default_rng(0))
    carved = P.carve_validation(codes, f, 0.25, np.random.default_rng(1))
    assert ((codes == P.TEST) == (carved == P.TEST)).all()
    assert (carved == P.VALID).sum() > 0
    assert not ((codes == P.TEST) & (carved == P.VALID)).any()
    sub = P.subsample_train(carved, 0.5, np.random.default_rng(2))
    assert (sub == P.TRAIN).sum() == round(0.5 * (carved == P.TRAIN).sum())
    assert ((sub == P.TEST) == (carved == P.TEST)).all()
