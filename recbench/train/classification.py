"""Epoch strategy for sample classification (the GConv-Transform family and its baselines).

Samples are dense tensors ``x`` (S, C, F) with multi-hot targets ``y`` (S, C); the model maps a
batch ``x[idx]`` to one logit per class. Loss: cross-entropy against the target distribution
(uniform over the target's classes), or a one-vs-rest hinge loss for the linear SVM.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from recbench.eval.metrics import CLASSIFICATION, compute
from recbench.eval.result import EvalResult
from recbench.seeding import torch_generator
from recbench.train.api import RunContext, TrainerBase
from recbench.train.trainers import make_optimizer


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over samples of -Σ_c p_c log softmax(logits)_c with p uniform over the targets."""
    p = targets / targets.sum(1, keepdim=True).clamp_min(1)
    return -(p * F.log_softmax(logits, dim=1)).sum(1).mean()


def ovr_hinge(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """One-vs-rest hinge loss: mean over samples and classes of max(0, 1 - y s), y ∈ {-1, 1}."""
    return F.relu(1 - (2 * targets - 1) * scores).mean()


def median_forward_ms(forward, batches: list, warmup: int, device: torch.device) -> float:
    """Median wall time (ms) of ``forward(batch)`` over ``batches`` after ``warmup`` untimed
    calls; CUDA is synchronised around each call so the figure is the kernel time too."""
    for b in batches[:warmup]:
        forward(b)
    times = []
    for b in batches:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        forward(b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


LOSSES = {"soft_ce": soft_cross_entropy, "hinge": ovr_hinge}


class ClassificationTrainer(TrainerBase):
    """Mini-batch training over sample indices; evaluates accuracy@k on a split.

    ``splits`` maps 'train'/'valid'/'test' to sample indices. ``floor`` holds data-only
    reference figures (the majority-class guess) reported beside the model's.
    """

    monitor = "accuracy@1"

    def __init__(self, model: torch.nn.Module, ctx: RunContext, x: torch.Tensor,
                 y: torch.Tensor, splits: dict[str, torch.Tensor], loss: str = "soft_ce",
                 ks: tuple[int, ...] = (1, 3), eval_batch: int = 1024, timing_batch: int = 96,
                 timing_batches: int = 20, timing_warmup: int = 3,
                 floor: dict[str, float] | None = None):
        self.model = model.to(ctx.device)
        self.ctx = ctx
        self.x, self.y, self.splits = x, y, splits
        self.loss_fn = LOSSES[loss]
        self.ks, self.eval_batch = ks, eval_batch
        self.timing = (timing_batch, timing_batches, timing_warmup)
        self.floor = floor or {}
        self.opt = make_optimizer(model.parameters(), ctx.train)
        self.gen = torch_generator(ctx.seed, "batches")

    def has_valid(self) -> bool:  # the task's own sample-level split, not the graph's
        return len(self.splits.get("valid", ())) > 0

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        dev, train = self.ctx.device, self.splits["train"]
        total = 0.0
        perm = train[torch.randperm(len(train), generator=self.gen)]
        for idx in perm.split(self.ctx.train.batch_size):
            loss = self.loss_fn(self.model(self.x[idx].to(dev)), self.y[idx].to(dev))
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            total += float(loss) * len(idx)
        return {"loss": total / max(len(train), 1)}

    @torch.no_grad()
    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        dev = self.ctx.device
        return torch.cat([self.model(self.x[b].to(dev)).float().cpu()
                          for b in idx.split(self.eval_batch)]) if len(idx) else torch.zeros(0)

    def evaluate(self, split: str) -> EvalResult:
        idx = self.splits[split]
        logits, y = self.logits(idx), self.y[idx]
        per = compute({CLASSIFICATION: lambda fn, k: fn(logits, y, k)}, self.ctx.eval.metrics,
                      self.ks)
        return EvalResult({k: float(v.mean()) for k, v in per.items()},
                          {**{k: v.numpy() for k, v in per.items()}, "index": idx.numpy()})

    @torch.no_grad()
    def inference_ms(self) -> float:
        """Median wall time (ms) of one forward pass on a test batch, after warm-up passes."""
        size, repeats, warmup = self.timing
        self.model.eval()
        idx = self.splits["test"]
        batches = [self.x[b].to(self.ctx.device) for b in idx[: size * repeats].split(size)]
        batches = [b for b in batches if len(b) == size] or batches
        return median_forward_ms(self.model, batches, warmup, self.ctx.device)

    def extra_metrics(self) -> dict:
        params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        return {"inference_ms_per_batch": self.inference_ms(), "inference_batch": self.timing[0],
                "inference_threads": torch.get_num_threads(), "params_m": params / 1e6,
                **self.floor, **{f"num_{k}": len(v) for k, v in self.splits.items()}}

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.opt]

    def state_dict(self) -> dict:
        return {"opt": self.opt.state_dict(), "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
