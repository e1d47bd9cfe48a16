"""``train.pair_sampling: users``: the official NGCF/LightGCN positive-pair sampler (a uniform
user, then one of its pairs), beside the default that iterates every training pair."""

from __future__ import annotations

import pytest
import torch

from recbench.config import run_hash
from recbench.errors import ConfigError
from recbench.experiment import with_overrides
from recbench.train.samplers import UserUniformPairs
from tests.test_kernel_choice import _train


def test_draws_weigh_users_equally_and_pairs_within_a_user_equally():
    # user 0 holds 90 pairs, users 1-9 one each, user 10 none: iterating pairs gives user 0
    # 90 % of the draws; the official sampler gives every user with a pair a tenth
    users = torch.tensor([0] * 90 + list(range(1, 10)))
    items = torch.tensor(list(range(90)) + list(range(100, 109)))
    perm = torch.randperm(len(users), generator=torch.Generator().manual_seed(3))
    draw = UserUniformPairs(users[perm], items[perm])
    u, p = draw.draw(100_000, torch.Generator().manual_seed(0))
    share = torch.bincount(u, minlength=11).double() / len(u)
    tenth = torch.full((10,), 0.1, dtype=torch.float64)
    assert share[10] == 0 and torch.allclose(share[:10], tenth, atol=0.005)
    pairs = set(zip(users.tolist(), items.tolist(), strict=True))
    assert all(pair in pairs for pair in zip(u.tolist(), p.tolist(), strict=True))
    of_user0 = torch.bincount(p[u == 0], minlength=90).double()
    assert of_user0.min() > 0 and of_user0.std() / of_user0.mean() < 0.1  # ~111 draws each
    again = draw.draw(100_000, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], u) and torch.equal(again[1], p)  # the generator decides


@pytest.mark.parametrize("model", ["bpr_mf", "lightgcn"])
def test_a_user_uniform_epoch_trains_on_as_many_training_pairs(tmp_path, tiny_paths, model):
    from recbench.config import expand_seeds
    from recbench.experiment import load_experiment
    from recbench.runner import build
    from tests.conftest import write_experiment

    cfg = expand_seeds(load_experiment(write_experiment(
        tmp_path, f"us-{model}", model={"name": model, "emb_dim": 16},
        train={"epochs": 1, "num_threads": 1, "pair_sampling": "users"})))[0]
    trainer = build(cfg, tiny_paths).trainer
    batches = list(trainer.epoch_pairs())
    u, p = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    assert len(u) == len(trainer.users)
    assert all(len(b[0]) <= cfg.train.batch_size for b in batches)
    train_pairs = set(zip(trainer.users.tolist(), trainer.items.tolist(), strict=True))
    assert set(zip(u.tolist(), p.tolist(), strict=True)) <= train_pairs
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train_epoch(0)
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_the_default_keeps_every_run_hash(tmp_path):
    from recbench.experiment import validate

    cfg = validate({"name": "h", "dataset": {"name": "tiny"}, "model": {"name": "bpr_mf"},
                    "seeds": [0]}, "test")
    explicit = with_overrides(cfg, {"train.pair_sampling": "interactions"})
    users = with_overrides(cfg, {"train.pair_sampling": "users"})
    assert run_hash(explicit) == run_hash(cfg) != run_hash(users)


def test_a_model_that_draws_its_own_samples_refuses_it_in_one_line(tmp_path, tiny_paths):
    with pytest.raises(ConfigError, match="pair_sampling: users applies to the pairwise") as err:
        _train(tmp_path, tiny_paths, "us-biased", model={"name": "biased_mf"},
               train={"epochs": 1, "num_threads": 1, "pair_sampling": "users"})
    assert "\n" not in str(err.value)


def test_cluster_training_refuses_it_in_one_line(tmp_path, tiny_paths):
    with pytest.raises(ConfigError, match="does not apply to Cluster-GCN") as err:
        _train(tmp_path, tiny_paths, "us-cluster",
               model={"name": "lightgcn", "training": "cluster", "num_clusters": 4,
                      "clusters_per_batch": 2},
               train={"epochs": 1, "num_threads": 1, "pair_sampling": "users"})
    assert "\n" not in str(err.value)
