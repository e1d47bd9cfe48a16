"""BPR-MF's hand-written BPR gradient (DotProductPairwiseTrainer) against autograd's."""

from __future__ import annotations

import pytest
import torch

from recbench.config import DatasetConfig, EvalConfig, TrainConfig
from recbench.models import MODELS
from recbench.train.api import RunContext
from recbench.train.trainers import DotProductPairwiseTrainer, PairwiseTrainer


@pytest.fixture
def tiny_data(tiny_paths):
    from recbench.data.prepare import load

    return load(DatasetConfig(name="tiny", protocol="random", test_ratio=0.2, valid_ratio=0.2),
                tiny_paths)


@pytest.fixture(params=["torch", "native"])
def step(request, monkeypatch) -> str:
    """The torch batch gradient (``RECBENCH_NATIVE=0``) or the native loop's (skipped where the
    kernels do not build)."""
    from recbench.native import library

    if request.param == "torch":
        monkeypatch.setenv("RECBENCH_NATIVE", "0")
    elif library() is None:
        pytest.skip("native kernels do not build here")
    return request.param


def _trainer(data, emb_dim: int = 8, **model_args) -> DotProductPairwiseTrainer:
    torch.set_num_threads(1)
    spec = MODELS["bpr_mf"]
    ctx = RunContext(data, TrainConfig(lr=0.05, batch_size=32, weight_decay=1e-4),
                     EvalConfig(k=[5]), torch.device("cpu"), 0)
    return spec.make_trainer(spec.config(name="bpr_mf", emb_dim=emb_dim, **model_args), ctx)


def _autograd_gradients(trainer, u, p, n):
    """The parent class's loss, differentiated by autograd."""
    users_e, items_e = trainer.model.embed()
    ue, pe, ne = users_e[u], items_e[p], items_e[n]
    loss, reg = trainer.pair_loss(ue, pe, ne, trainer.model.ego(u, p, n, (ue, pe, ne)))
    users_w, items_w = trainer.user_table, trainer.item_table
    gu, gi = torch.autograd.grad(loss + reg, [users_w, items_w])
    return float(loss), float(reg), gu, gi


@pytest.mark.parametrize("reg,emb_dim", [(0.0, 8), (0.3, 8), (0.3, 20)])
def test_hand_written_gradient_equals_autograds(tiny_data, reg, emb_dim, step):
    trainer = _trainer(tiny_data, reg=reg, emb_dim=emb_dim)
    assert trainer.plain and trainer.native == (step == "native")
    gen = torch.Generator().manual_seed(1)
    idx = torch.randperm(len(trainer.users), generator=gen)[:40]
    u, p = trainer.users[idx], trainer.items[idx]
    n = trainer.sample(u)
    n[:3] = p[:3]  # an item both positive and negative in one batch: the two rows add up
    loss, reg_value, gu, gi = _autograd_gradients(trainer, u, p, n)
    got_loss, got_reg = trainer.batch_gradient(u, p, n)
    assert float(got_loss) == pytest.approx(loss, rel=1e-6)
    assert float(got_reg) == pytest.approx(reg_value, rel=1e-6, abs=1e-12)
    assert torch.allclose(trainer.user_table.grad, gu, atol=1e-7, rtol=1e-5)
    assert torch.allclose(trainer.item_table.grad, gi, atol=1e-7, rtol=1e-5)


def test_an_epoch_matches_the_autograd_path(tiny_data, step):
    """The same draws, the same updates up to float rounding."""
    fast, slow = _trainer(tiny_data, reg=0.1), _trainer(tiny_data, reg=0.1)
    assert fast.native == (step == "native")
    assert torch.equal(fast.user_table, slow.user_table)
    for epoch in range(3):
        a = fast.train_epoch(epoch)
        b = PairwiseTrainer.train_epoch(slow, epoch)
        assert a["bpr"] == pytest.approx(b["bpr"], rel=1e-5)
        assert a["reg"] == pytest.approx(b["reg"], rel=1e-5)
    assert torch.allclose(fast.user_table, slow.user_table, atol=1e-5)
    assert torch.allclose(fast.item_table, slow.item_table, atol=1e-5)


def test_other_losses_keep_the_autograd_path(tiny_data):
    assert not _trainer(tiny_data, loss="nce", num_negatives=4).plain
    assert not _trainer(tiny_data, negative_sampler="hard").plain


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "adagrad"])
def test_optimisers_take_the_multi_tensor_path_bit_for_bit(optimizer):
    """make_optimizer asks for torch's foreach path on CPU too: the same weights as the
    per-parameter loop, step for step, with weight decay (tensors of several shapes)."""
    from recbench.train.trainers import make_optimizer

    gen = torch.Generator().manual_seed(0)
    shapes = [(7, 4), (4,), (3, 4, 2), (1,)]
    start = [torch.randn(s, generator=gen) for s in shapes]
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(5)]
    cfg = TrainConfig(lr=0.05, weight_decay=1e-2, optimizer=optimizer)
    ours = [torch.nn.Parameter(t.clone()) for t in start]
    loop = [torch.nn.Parameter(t.clone()) for t in start]
    opt = make_optimizer(ours, cfg)
    assert all(group["foreach"] for group in opt.param_groups)
    reference = type(opt)(loop, lr=0.05, weight_decay=1e-2, foreach=False)
    for step in grads:
        for params, o in ((ours, opt), (loop, reference)):
            for p, g in zip(params, step, strict=True):
                p.grad = g.clone()
            o.step()
    for a, b in zip(ours, loop, strict=True):
        assert torch.equal(a, b)
