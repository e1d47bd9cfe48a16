"""Epoch strategies and evaluation for next-item prediction (GConv-Transform and its Table 1).

Three ways an epoch runs, one evaluator:

- ``windows`` (causal sequence models): every training target once per epoch, in windows of
  ``L`` inputs scored at all positions at once (causal masking); a batch is ``batch_size``
  windows. Far cheaper than one sample at a time, which re-encodes a history per target.
- ``samples`` (order-free baselines): a batch is ``batch_size`` (history, target) samples.
- ``none`` (count-based floors): nothing to learn.

Every model exposes ``score_last(histories) -> (B, I + 1)`` scores (column 0 is the pad);
causal ones also ``score_positions(inputs, where) -> (P, I + 1)``. Evaluation masks the pad and
every item the user rated before the target, ranks the target among all items (accuracy@1 =
HR@1, HR@k, NDCG@k) and among 100 sampled unrated items (``sampled_hr@k``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from recbench.data import next_item_task as nt
from recbench.eval.next_item import metrics_from_ranks, sampled_ranks, target_ranks
from recbench.eval.result import EvalResult
from recbench.seeding import numpy_rng, torch_generator
from recbench.train.api import RunContext, Stage, TrainerBase
from recbench.train.classification import median_forward_ms
from recbench.train.trainers import make_optimizer

Mode = Literal["windows", "samples", "none"]


@dataclass
class NextItemData:
    """Everything a next-item run reads, built once from the graph and the task config."""

    seqs: nt.Sequences
    cfg: nt.NextItemConfig
    index: dict[str, np.ndarray]
    histories: dict[str, torch.Tensor]  # split → (n, L) left-padded
    targets: dict[str, torch.Tensor]  # split → (n,)
    negatives: dict[str, torch.Tensor]  # 'valid'/'test' → (n, num_sampled_negatives)
    split_seed: int
    split_sizes: dict[str, int]  # samples per split (index['valid'] may be a monitored subset)

    @property
    def num_items(self) -> int:
        return self.seqs.num_items


class LazyHistories(dict):
    """split → (n, L) histories, built on first use: training histories are read only by
    models trained one sample at a time, and on ML-1M at L = 200 they would take 1.6 GB."""

    def __init__(self, seqs: nt.Sequences, index: dict[str, np.ndarray], max_len: int):
        super().__init__()
        self.seqs, self.index, self.max_len = seqs, index, max_len

    def __missing__(self, split: str) -> torch.Tensor:
        self[split] = torch.as_tensor(self.seqs.histories(self.index[split], self.max_len))
        return self[split]


def build_data(ctx: RunContext, cfg: nt.NextItemConfig) -> NextItemData:
    seed = cfg.split_seed
    if seed is None:
        seed = int(ctx.data.meta.get("protocol", {}).get("split_seed", 0))
    seqs = nt.build_sequences(ctx.data.g, cfg, seed)
    index = {s: seqs.index(s) for s in nt.SPLIT_CODES}
    split_sizes = {s: len(i) for s, i in index.items()}
    if 0 < cfg.valid_monitor < len(index["valid"]):  # monitoring cost, not the split
        pick = numpy_rng(seed, "next-item:valid-monitor").choice(
            len(index["valid"]), cfg.valid_monitor, replace=False)
        index["valid"] = index["valid"][np.sort(pick)]
    if not len(index["train"]) or not len(index["test"]):
        from recbench.errors import DatasetError

        raise DatasetError("the next-item split left no training or no test sample; the data "
                           "has too few ratings per user for min_history / the split ratios")
    all_targets = torch.as_tensor(seqs.targets)
    histories = LazyHistories(seqs, index, cfg.max_len)
    targets = {s: all_targets[i] for s, i in index.items()}
    negatives = {s: torch.as_tensor(nt.sampled_negatives(seqs, index[s],
                                                         cfg.num_sampled_negatives, seed))
                 for s in ("valid", "test")} if cfg.num_sampled_negatives else {}
    return NextItemData(seqs, cfg, index, histories, targets, negatives, seed, split_sizes)


def eval_scores(scores: torch.Tensor) -> torch.Tensor:
    """Scores on the CPU for ranking: float32, except float64 kept as is (the count floors add
    a popularity tie-break of 1e-6 that float32 would round away; ranks count ties against
    the target, so a lost tie-break changes the metrics)."""
    return scores.cpu() if scores.dtype == torch.float64 else scores.float().cpu()


class NextItemTrainer(TrainerBase):
    """Trains one next-item model with the chosen epoch strategy; evaluates on a split."""

    def __init__(self, model: torch.nn.Module, ctx: RunContext, data: NextItemData,
                 mode: Mode, loss: Literal["ce", "hinge"] = "ce", eval_batch: int = 512,
                 timing_batch: int = 96):
        self.model = model.to(ctx.device)
        self.ctx, self.data, self.mode, self.loss = ctx, data, mode, loss
        self.monitor = ctx.train.monitor or "ndcg@10"  # SASRec's recipe: sampled_ndcg@10
        self.eval_batch, self.timing_batch = eval_batch, timing_batch
        self.ks = sorted(set(ctx.eval.k) | {1, 10})
        self.sampled = data.cfg.loss == "bce_sampled"
        if self.sampled and not (mode == "windows" and hasattr(model, "score_items")):
            raise ValueError("next_item.loss bce_sampled needs a causal model trained on "
                             "windows (gconv_transform); use loss softmax")
        if data.cfg.windows == "last_per_user" and mode != "windows":
            raise ValueError("next_item.windows last_per_user needs a causal model trained on "
                             "windows (gconv_transform)")
        self.windows = nt.training_windows(
            data.seqs, data.cfg.max_len, data.cfg.windows == "last_per_user"
        ) if mode == "windows" else None
        self.negatives = nt.UnratedSampler(data.seqs) if self.sampled else None
        params = [p for p in model.parameters() if p.requires_grad]
        self.opt = make_optimizer(params, ctx.train) if params else None
        self.gen = torch_generator(ctx.seed, "batches")
        # its own stream: the batch order is the softmax run's, whatever the loss draws
        self.neg_gen = torch_generator(ctx.seed, "next-item:train-negatives")
        self._masks: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}

    def stages(self) -> list[Stage]:
        # a count-based floor (mode none) has nothing to train: one epoch whatever train.epochs
        return [Stage("count", 1)] if self.mode == "none" else super().stages()

    def has_valid(self) -> bool:  # the task's own sample-level split, not the graph's
        return len(self.data.index["valid"]) > 0

    def _step(self, loss: torch.Tensor) -> torch.Tensor:
        """One update; the loss comes back detached, on its device (no host sync per step)."""
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.detach()

    def _loss(self, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.loss == "hinge":  # Crammer-Singer multi-class hinge (the linear SVM)
            return F.multi_margin_loss(scores, targets)
        return F.cross_entropy(scores, targets)

    def _window_loss(self, inputs: torch.Tensor, targets: torch.Tensor, where: torch.Tensor,
                     owner: torch.Tensor) -> torch.Tensor:
        """The loss of one batch of windows over its target positions (``where``)."""
        if not self.sampled:
            return self._loss(self.model.score_positions(inputs, where), targets[where])
        return sampled_bce(self.model, inputs, targets, where, self.negatives.draw(
            owner[:, None].expand(where.shape)[where.cpu()], self.neg_gen).to(inputs.device))

    def train_epoch(self, epoch: int) -> dict[str, float]:
        if self.mode == "none":
            return {}
        self.model.train()
        dev, bs = self.ctx.device, self.ctx.train.batch_size
        # summed on the device in float64, read once per epoch: no host sync per step
        total = torch.zeros((), dtype=torch.float64, device=dev)
        count = torch.zeros((), dtype=torch.float64, device=dev)
        if self.mode == "windows":
            w = self.windows
            for idx in torch.randperm(len(w.inputs), generator=self.gen).split(bs):
                inputs, targets = w.inputs[idx].to(dev), w.targets[idx].to(dev)
                where = targets > 0
                n = where.sum()
                loss = self._window_loss(inputs, targets, where, w.owner[idx])
                total += self._step(loss).double() * n
                count += n
        else:
            hist, tgt = self.data.histories["train"], self.data.targets["train"]
            for idx in torch.randperm(len(tgt), generator=self.gen).split(bs):
                scores = self.model.score_last(hist[idx].to(dev))
                total += self._step(self._loss(scores, tgt[idx].to(dev))).double() * len(idx)
                count += len(idx)
        return {"loss": float(total / count.clamp_min(1))}

    def _prefix_masks(self, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per evaluation batch: (row, item) of every item rated before the target."""
        if split not in self._masks:
            idx = self.data.index[split]
            self._masks[split] = [self.data.seqs.prefix_mask_rows(idx[b:b + self.eval_batch])
                                  for b in range(0, len(idx), self.eval_batch)]
        return self._masks[split]

    @torch.no_grad()
    def evaluate(self, split: str) -> EvalResult:
        self.model.eval()
        dev = self.ctx.device
        hist, tgt = self.data.histories[split], self.data.targets[split]
        neg = self.data.negatives.get(split)
        full, sampled = [], []
        for b, (rows, cols) in enumerate(self._prefix_masks(split)):
            sl = slice(b * self.eval_batch, (b + 1) * self.eval_batch)
            scores = eval_scores(self.model.score_last(hist[sl].to(dev)))
            scores[:, 0] = -torch.inf
            scores[torch.as_tensor(rows), torch.as_tensor(cols)] = -torch.inf
            full.append(target_ranks(scores, tgt[sl]))
            if neg is not None:
                sampled.append(sampled_ranks(scores, tgt[sl], neg[sl]))
        per = metrics_from_ranks(torch.cat(full), torch.cat(sampled) if sampled else None, self.ks,
                                 self.ctx.eval.metrics)
        return EvalResult({k: float(v.mean()) for k, v in per.items()},
                          {**{k: v.numpy() for k, v in per.items()},
                           "index": self.data.index[split]})

    @torch.no_grad()
    def inference_ms(self, repeats: int | None = None, warmup: int | None = None) -> float:
        """Median wall time (ms) of scoring one test batch of 96 histories, after warm-up."""
        repeats = repeats or self.data.cfg.timing_batches
        warmup = self.data.cfg.timing_warmup if warmup is None else warmup
        self.model.eval()
        hist = self.data.histories["test"]
        batches = [b.to(self.ctx.device) for b in hist[: self.timing_batch * repeats]
                   .split(self.timing_batch)]
        return median_forward_ms(self.model.score_last, batches, warmup, self.ctx.device)

    def extra_metrics(self) -> dict:
        params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        return {"inference_ms_per_batch": self.inference_ms(), "inference_batch": self.timing_batch,
                "inference_threads": torch.get_num_threads(), "params_m": params / 1e6,
                "split": self.data.cfg.split, "max_len": self.data.cfg.max_len,
                "num_windows": 0 if self.windows is None else len(self.windows.inputs),
                "num_valid_monitored": len(self.data.index["valid"]),
                **getattr(self.model, "chosen", {}),
                **{f"num_{k}": v for k, v in self.data.split_sizes.items()}}

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.opt] if self.opt is not None else []

    def state_dict(self) -> dict:
        return {"opt": None if self.opt is None else self.opt.state_dict(),
                "gen": self.gen.get_state(), "neg_gen": self.neg_gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if self.opt is not None and state.get("opt") is not None:
            self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
        if "neg_gen" in state:  # checkpoints from before the sampled loss have none
            self.neg_gen.set_state(state["neg_gen"])


def sampled_bce(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                where: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """SASRec's loss: mean over target positions of −log σ(s_target) plus the mean of
    −log(1 − σ(s_negative)), one negative per position (the reference sums the two means)."""
    logits = model.score_items(inputs, where, torch.stack([targets[where], negatives], 1))
    labels = torch.zeros_like(logits)
    labels[:, 0] = 1.0
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(0).sum()
