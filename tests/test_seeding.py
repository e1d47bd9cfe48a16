"""One seeding style: model builders draw from a generator; only seeding.py seeds globally."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

import recbench
from recbench.seeding import continue_globally, drawing_from, init_generator

SOURCE = Path(recbench.__file__).parent
# receivers whose seeding calls set a global RNG (torch's, CUDA's, NumPy's legacy, Python's, DGL's)
GLOBAL_SEEDERS = {
    "torch": {"manual_seed", "seed"}, "torch.cuda": {"manual_seed", "manual_seed_all", "seed"},
    "torch.random": {"manual_seed", "seed"}, "np.random": {"seed"}, "numpy.random": {"seed"},
    "random": {"seed"}, "dgl": {"seed"}, "dgl.random": {"seed"},
}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def global_seed_calls(source: str) -> list[str]:
    """``receiver.method`` of every call in ``source`` that seeds a global RNG."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            receiver = _dotted(node.func.value)
            if node.func.attr in GLOBAL_SEEDERS.get(receiver, ()):
                found.append(f"{receiver}.{node.func.attr}")
        if isinstance(node, ast.ImportFrom) and node.module in GLOBAL_SEEDERS:
            found += [f"from {node.module} import {a.name}" for a in node.names
                      if a.name in GLOBAL_SEEDERS[node.module]]
    return found


def test_the_scan_catches_every_form_of_global_seeding():
    planted = ("import torch, random\nimport numpy as np\nimport dgl\n"
               "torch.manual_seed(0)\nnp.random.seed(1)\nrandom.seed(2)\ndgl.seed(3)\n"
               "torch.cuda.manual_seed_all(4)\nfrom torch import manual_seed\n"
               "g = torch.Generator()\ng.manual_seed(5)\nrng = np.random.default_rng(6)\n")
    assert sorted(global_seed_calls(planted)) == sorted([
        "torch.manual_seed", "np.random.seed", "random.seed", "dgl.seed",
        "torch.cuda.manual_seed_all", "from torch import manual_seed"])


def test_nothing_outside_seeding_py_seeds_a_global_rng():
    offenders = {}
    for path in sorted(SOURCE.rglob("*.py")):
        if path.name == "seeding.py" and path.parent == SOURCE:
            continue
        calls = global_seed_calls(path.read_text())
        if calls:
            offenders[str(path.relative_to(SOURCE.parent))] = calls
    assert offenders == {}, f"seed only through recbench/seeding.py: {offenders}"


def _builders(gen: torch.Generator) -> dict[str, nn.Module]:
    """Every model family we initialise ourselves, small, built from ``gen``."""
    from recbench.models.glocal_k import GLocalK
    from recbench.models.gnn.gat import GAT
    from recbench.models.gnn.gcn import GCN
    from recbench.models.gnn.lightgcn import LightGCN
    from recbench.models.gnn.ngcf import NGCF
    from recbench.models.gnn.pinsage import PinSage
    from recbench.models.gnn.sage import SAGE
    from recbench.models.mf import BPRMF, BiasedMF, NeuMF

    size = {"num_users": 7, "num_items": 9}
    gnn = {**size, "emb_dim": 8, "num_layers": 2}
    return {
        "bpr_mf": lambda: BPRMF(**size, generator=gen, emb_dim=4),
        "biased_mf": lambda: BiasedMF(**size, generator=gen, emb_dim=4),
        "neumf": lambda: NeuMF(**size, generator=gen, emb_dim=4, mlp_dims=[8, 4]),
        "lightgcn": lambda: LightGCN(**gnn, generator=gen),
        "ngcf": lambda: NGCF(**gnn, generator=gen),
        "gcn": lambda: GCN(**gnn, generator=gen),
        "sage_mean": lambda: SAGE(**gnn, generator=gen, aggregator="mean"),
        "sage_pool": lambda: SAGE(**gnn, generator=gen, aggregator="pool"),
        "gat": lambda: GAT(**gnn, generator=gen, num_heads=2),
        "pinsage": lambda: PinSage(**gnn, generator=gen),
        "glocal_k": lambda: GLocalK(**size, generator=gen, hidden_dims=[5], kernel_dim=2,
                                    gk_size=3),
    }


MODELS = list(_builders(torch.Generator()))


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_same_weights_and_the_global_rng_is_left_alone(name):
    before = torch.get_rng_state()
    first = _builders(init_generator(3))[name]().state_dict()
    assert torch.equal(torch.get_rng_state(), before), "a build drew from the global RNG"
    torch.rand(5)  # whatever the global generator has done since, the build is the same
    second = _builders(init_generator(3))[name]().state_dict()
    other = _builders(init_generator(4))[name]().state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point()
               and first[k].numel() > 1)


def test_generator_builds_match_the_old_global_reseed_bit_for_bit():
    """The committed tables came from ``torch.manual_seed(seed)`` + default construction; the
    generator builds draw the same numbers in the same order."""
    from recbench.models.gnn.ngcf import NGCF
    from recbench.models.mf import NeuMF

    with torch.random.fork_rng():
        torch.manual_seed(11)
        emb = [nn.Embedding(n, 4) for n in (7, 9, 7, 9)]
        for e in emb:
            nn.init.normal_(e.weight, std=0.01)
        mlp = [nn.Linear(8, 8), nn.Linear(8, 4), nn.Linear(8, 1)]
        after_old = torch.rand(3)  # what a dropout mask would have drawn next
    neumf = NeuMF(num_users=7, num_items=9, generator=(gen := init_generator(11)), emb_dim=4,
                  mlp_dims=[8, 4])
    new = [neumf.gmf_user, neumf.gmf_item, neumf.mlp_user, neumf.mlp_item]
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(emb, new, strict=True))
    lin = [neumf.mlp[0], neumf.mlp[2], neumf.out]
    assert all(torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
               for a, b in zip(mlp, lin, strict=True))
    with torch.random.fork_rng():
        continue_globally(gen)
        assert torch.equal(torch.rand(3), after_old)  # training draws continue the same stream

    with torch.random.fork_rng():
        torch.manual_seed(5)
        ego = nn.Embedding(16, 8)
        nn.init.normal_(ego.weight, std=0.1)
        w = [nn.Linear(8, 8) for _ in range(4)]
        for lin in w:
            nn.init.xavier_uniform_(lin.weight)
    ngcf = NGCF(num_users=7, num_items=9, generator=init_generator(5), emb_dim=8, num_layers=2)
    assert torch.equal(ngcf.emb.weight, ego.weight)
    assert all(torch.equal(a.weight, b.weight)
               for a, b in zip(w, [*ngcf.w1, *ngcf.w2], strict=True))


def test_drawing_from_advances_the_generator_and_restores_the_global_state():
    gen = init_generator(0)
    reference = init_generator(0)
    before = torch.get_rng_state()
    with drawing_from(gen):
        inside = torch.rand(4)
    assert torch.equal(inside, torch.rand(4, generator=reference))
    assert torch.equal(torch.rand(2, generator=gen), torch.rand(2, generator=reference))
    assert torch.equal(torch.get_rng_state(), before)
