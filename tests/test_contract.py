"""The trainer contract, for every registered model: build → train → evaluate → reload.

Each entry of ``recbench.models.MODELS`` (the registry itself, never a list of names) is shrunk
by the fields its config declares, trained by the one loop for a couple of epochs on one small
synthetic dataset that carries what every task needs (ratings, timestamps, a random
train/valid/test split, item genres, follow edges), and re-checked the way ``recbench eval RUN``
does (``evaluate_run``: rebuild, load best.pt, score test), which must reproduce metrics.json.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from recbench import runner as loop
from recbench.data import protocols
from recbench.data.graph import Dataset, build_graph
from recbench.data.prepare import DataPaths
from recbench.experiment import validate
from recbench.models import MODELS
from recbench.train.api import PairwiseModel, TrainerBase
from recbench.train.trainers import PairwiseTrainer
from tests.conftest import interrupt_at

NUM_USERS, NUM_ITEMS, NUM_GENRES = 16, 24, 4

# Small values for the config fields a model declares (a field a config lacks is skipped).
SMALL = {"emb_dim": 8, "hidden": 8, "hidden_dims": [8], "mlp_dims": [8], "out_dim": 8,
         "mlp_hidden": 8, "num_layers": 1, "num_blocks": 1, "num_heads": 1, "channels": 4,
         "growth": 4, "dense_blocks": 1, "dense_layers": 1, "num_horizontal": 2,
         "num_vertical": 1, "fanouts": [3], "hard_pool": 4, "num_random_walks": 4,
         "num_neighbors": 3, "knn_neighbours": 5, "num_clusters": 2, "mining_clusters": 1,
         "candidate_clusters": 1, "global_epochs": 1, "local_epochs": 1, "attention_epochs": 1,
         "stage_patience": 1, "pretrain_epochs": 1, "finetune_epochs": 1, "pretrain_maxiter": 2,
         "finetune_maxiter": 2}
SMALL_TASK = {  # the sample-level tasks' own sub-configs
    "next_item": {"min_history": 3, "max_len": 5, "num_sampled_negatives": 5,
                  "graph_neighbours": 3, "timing_batches": 1, "timing_warmup": 0},
    "genre_task": {"min_history": 3, "short_window": 2, "long_window": 4, "timing_batches": 1,
                   "timing_warmup": 0},
}


def synthetic() -> Dataset:
    """Users who like one of two item halves; per user the first two ratings are test, the
    next two validation; every item has 1–2 of 4 genres; users follow their neighbours."""
    rng = np.random.default_rng(0)
    rows, codes = [], []
    for u in range(NUM_USERS):
        half = np.arange(NUM_ITEMS // 2) + (u % 2) * (NUM_ITEMS // 2)
        for t, i in enumerate(rng.choice(half, 10, replace=False)):
            rows.append((u, int(i), float(rng.integers(3, 6)), 1000 + 10 * t))
            codes.append(protocols.TEST if t < 2 else protocols.VALID if t < 4
                         else protocols.TRAIN)
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    genres = np.zeros((NUM_ITEMS, NUM_GENRES), dtype=np.float32)
    genres[np.arange(NUM_ITEMS), np.arange(NUM_ITEMS) % NUM_GENRES] = 1
    genres[::3, (np.arange(0, NUM_ITEMS, 3) + 1) % NUM_GENRES] = 1
    users = np.arange(NUM_USERS)
    social = np.stack([users, (users + 2) % NUM_USERS])
    g = build_graph(frame, np.array(codes, dtype=np.int8), NUM_USERS, NUM_ITEMS, social=social,
                    item_genres=genres)
    return Dataset(g, {"protocol": {"name": "random", "split_seed": 0}})


def model_section(name: str) -> dict:
    fields = MODELS[name].config.model_fields
    section = {"name": name, **{k: v for k, v in SMALL.items() if k in fields}}
    for key, small in SMALL_TASK.items():
        if key in fields:
            section[key] = small
    return section


def experiment(name: str):
    optimizer = "lbfgs" if name == "glocal_k" else "adam"
    raw = {"name": f"contract-{name}",
           "dataset": {"name": "tiny", "protocol": "random", "test_ratio": 0.2,
                       "valid_ratio": 0.2},
           "model": model_section(name),
           "train": {"epochs": 2, "lr": 0.01, "batch_size": 32, "patience": None,
                     "optimizer": optimizer, "num_threads": 1},
           "eval": {"k": [3]}, "seed": 0, "seeds": [0]}
    return validate(raw, f"contract test ({name})")


@pytest.fixture(scope="module")
def data() -> Dataset:
    return synthetic()


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_trains_evaluates_and_reloads(name, data, tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "load", lambda dataset, paths: data)
    torch.set_num_threads(1)
    cfg, paths = experiment(name), DataPaths(tmp_path / "data")

    built = loop.build(cfg, paths)  # the declared contract, not duck typing
    trainer = built.trainer
    assert isinstance(trainer, TrainerBase)
    spans = loop.schedule(trainer)
    assert spans and sum(s.stage.epochs for s in spans) == trainer.num_epochs > 0
    if isinstance(trainer, PairwiseTrainer):
        assert isinstance(trainer.model, PairwiseModel)

    run_dir = loop.train_run(cfg, paths, tmp_path / "runs")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # a stage that selects its members reports the epoch each restored member comes from
    selecting = {s.stage.name: set(s.stage.monitors) for s in spans if s.stage.monitors}
    assert {k: set(v) for k, v in metrics.get("stage_best_epochs", {}).items()} == selecting
    from recbench import runs

    state = runs.load_checkpoint(run_dir / "last.pt")  # tensors and plain containers only
    assert set(state) >= {"model", "trainer", "loop", "torch_rng"}
    fresh, test = loop.evaluate_run(run_dir, paths)
    assert test and all(math.isfinite(v) for v in test.values() if isinstance(v, float)), metrics
    assert fresh.keys() == test.keys()
    for key, value in test.items():
        assert fresh[key] == pytest.approx(value, abs=1e-6, nan_ok=True), key


def test_staged_run_resumes_mid_stage_exactly(data, tmp_path, monkeypatch):
    """An interruption inside a stage that selects its members: last.pt carries the members'
    best weights and the stopped stages, so the resumed run ends as the uninterrupted one."""
    from recbench import runs
    from recbench.config import run_hash

    monkeypatch.setattr(loop, "load", lambda dataset, paths: data)
    torch.set_num_threads(1)
    cfg, paths = experiment("gl_attention"), DataPaths(tmp_path / "data")
    model = cfg.model.model_copy(update={"global_epochs": 4, "local_epochs": 2,
                                         "attention_epochs": 2, "stage_patience": 2})
    cfg = cfg.model_copy(update={"model": model})
    full = json.loads((loop.train_run(cfg, paths, tmp_path / "a") / "metrics.json").read_text())
    with pytest.raises(KeyboardInterrupt):
        loop.train_run(cfg, paths, tmp_path / "b", progress=interrupt_at(2))
    partial = runs.find_partial(tmp_path / "b", cfg.name, run_hash(cfg))
    done = loop.train_run(cfg, paths, tmp_path / "b", resume=partial)
    again = json.loads((done / "metrics.json").read_text())
    assert again["test"] == full["test"]
    assert again["stage_best_epochs"] == full["stage_best_epochs"]


def _trainer_classes() -> list[type]:
    """Every TrainerBase subclass the registered models bring (imported by their builders)."""
    import importlib

    for spec in MODELS.values():
        importlib.import_module(spec.make_trainer.__module__)
    found, todo = [], [TrainerBase]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in found:
                found.append(sub)
                todo.append(sub)
    return found


def test_trainers_compose_instead_of_inheriting_twice():
    """No trainer inherits from two trainer classes (a diamond whose behaviour hangs on base
    order) and none sits more than 3 levels below TrainerBase: what differs between models
    and numeric paths is an object the trainer holds (the GNNs' full-graph step)."""
    from recbench.models.gnn.full_step import FullGraphBPR

    classes = _trainer_classes()
    assert FullGraphBPR in classes
    for cls in classes:
        trainer_bases = [b for b in cls.__bases__ if issubclass(b, TrainerBase)]
        assert len(trainer_bases) == 1, (cls, trainer_bases)
        depth = len([c for c in cls.__mro__ if issubclass(c, TrainerBase)]) - 1
        assert depth <= 3, (cls, depth)
