"""GLocal-K (Han et al., CIKM 2021): a local-kernel autoencoder fine-tuned on a globally convolved
rating matrix. SparseFC (local kernel only) and I-AutoRec (no kernel) are switches of the same
class, so the three share every line of the training code.

Shapes follow the official code (spec §1): the rating matrix is items × users and one sample is
an item row over all users; the whole matrix is one full batch.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from recbench.config import NonNegFloat, NonNegInt, PosInt, Strict
from recbench.csr import row_pointers
from recbench.data.graph import dense_ratings, rating_range, split_edges
from recbench.errors import ConfigError
from recbench.eval.rating import rating_result
from recbench.eval.result import EvalResult
from recbench.seeding import torch_generator
from recbench.train.api import RunContext, Stage, TrainerBase
from recbench.train.lbfgs import lbfgs_epoch

UNFOLD_LIMIT = 150_000_000  # floats: cache im2col of R_train only below this (600 MB)


class GlobalKernelConfig(Strict):
    enabled: bool = True
    size: PosInt = 3  # t: each item owns a t×t kernel (paper Table 2: 3, 5, 7)
    layers: PosInt = 1  # conv layers, each with its own bank, each followed by ReLU
    aggregation: Literal["weighted", "elementwise"] = "weighted"

    @model_validator(mode="after")
    def _check(self) -> GlobalKernelConfig:
        if self.size < 1 or self.size % 2 == 0:
            raise ValueError(f"global_kernel.size must be odd and positive, got {self.size}")
        if self.layers < 1:
            raise ValueError("global_kernel.layers must be at least 1")
        return self


class GLocalKConfig(Strict):
    """Defaults are the paper's ML-100K setting (§3.3) and the official code's schedule."""

    name: Literal["glocal_k"]
    hidden_dims: list[PosInt] = Field(default_factory=lambda: [500, 500], min_length=1)
    kernel_dim: PosInt = 5
    local_kernel: bool = True  # false: plain weights (I-AutoRec)
    lambda_2: NonNegFloat = 20.0  # L2 on the raw weights W
    lambda_s: NonNegFloat = 0.006  # L2 on the local kernel values K
    pretrain_epochs: NonNegInt = 30
    finetune_epochs: NonNegInt = 60  # with the global kernel disabled these just continue local training
    pretrain_maxiter: PosInt = 5
    finetune_maxiter: PosInt = 5
    maxcor: PosInt = 10
    dot_scale: NonNegFloat = 1.0  # official code's scale on the aggregated kernel (1 / 0.5 / 2)
    global_kernel: GlobalKernelConfig = GlobalKernelConfig()
    sparse_input: bool = True  # exact: first layer on R_train as a sparse matmul
    test_selected: bool = True  # track the official code's best-test-epoch RMSE as a labelled extra

    @model_validator(mode="after")
    def _some_epochs(self) -> GLocalKConfig:
        if self.pretrain_epochs + self.finetune_epochs < 1:
            raise ValueError("pretrain_epochs and finetune_epochs are both 0: nothing would be "
                             "trained; set at least one of them to 1 or more")
        return self


class _SparseInputMatmul(torch.autograd.Function):
    """``a @ w`` for a constant sparse ``a`` (CSR); backward gives ``aᵀ @ grad`` for ``w`` only."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, a: torch.Tensor, a_t: torch.Tensor) -> torch.Tensor:
        ctx.a_t = a_t
        return a @ w

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return ctx.a_t @ grad, None, None


class SparseInput:
    """R_train as CSR (and its transpose) for the exact sparse first-layer product."""

    def __init__(self, entries: Entries):
        self.a = entries.matrix(entries.values)
        self.a_t = entries.matrix(entries.values, transpose=True)

    def matmul(self, w: torch.Tensor) -> torch.Tensor:
        return _SparseInputMatmul.apply(w, self.a, self.a_t)


class _KernelisedWeight(torch.autograd.Function):
    """Fused ``(W ⊙ K, λ_2·½ΣW² + λ_s·½ΣK²)`` with ``K = max(0, 1 − ‖u_i − v_j‖²)``.

    Same values and gradients as the plain autograd expression (tested), in a third of the
    elementwise passes, which dominate the run time on CPU next to the matmuls.
    """

    @staticmethod
    def forward(ctx, w, u, v, lambda_2: float, lambda_s: float):
        k = u @ v.T
        k.mul_(2.0).sub_((u * u).sum(1, keepdim=True)).sub_((v * v).sum(1)[None, :]).add_(1.0)
        k.clamp_(0.0, 1.0)  # d² < 0 only by rounding: K = 1 there, as with clamp(d², min=0)
        reg = 0.5 * (lambda_2 * torch.dot(w.view(-1), w.view(-1))
                     + lambda_s * torch.dot(k.view(-1), k.view(-1)))
        ctx.save_for_backward(w, u, v, k)
        ctx.lambdas = (lambda_2, lambda_s)
        return w * k, reg

    @staticmethod
    def backward(ctx, g_eff, g_reg):
        w, u, v, k = ctx.saved_tensors
        lambda_2, lambda_s = ctx.lambdas
        g_w = g_eff * k
        g_w.add_(w, alpha=float(g_reg) * lambda_2)
        g_k = g_eff * w
        g_k.add_(k, alpha=float(g_reg) * lambda_s)
        g_k.mul_((k > 0) & (k < 1))  # dK/d(d²) = −1 strictly inside the support, 0 outside
        # d² = |u_i|² + |v_j|² − 2 u_i·v_j and dL/d(d²) = −g_k
        g_u = 2.0 * (g_k @ v - g_k.sum(1, keepdim=True) * u)
        g_v = 2.0 * (g_k.T @ u - g_k.sum(0)[:, None] * v)
        return g_w, g_u, g_v, None, None


class Entries:
    """A fixed set of (item, user) cells as a CSR pattern of the items × users matrix.

    Serves the exact sparse products of the autoencoder: ``R @ W`` for the first layer on
    R_train, and the output layer evaluated only where the loss (or a metric) looks, i.e. an
    SDDMM forward and two SpMMs backward instead of three dense (items × hidden × users) products.
    ``values`` (given per edge) are stored in CSR order; ``order`` maps CSR position → edge.
    """

    def __init__(self, items: torch.Tensor, users: torch.Tensor, num_items: int, num_users: int,
                 values: torch.Tensor | None = None):
        self.shape = (num_items, num_users)
        self.order = torch.argsort(items * num_users + users)
        it, us = items[self.order], users[self.order]
        self.col = us
        self.crow = row_pointers(it, num_items)
        self.pattern = _csr(self.crow, us, torch.ones(len(us)), self.shape)
        self.perm = torch.argsort(us * num_items + it)  # CSR order of the transpose
        self.crow_t, self.col_t = row_pointers(us, num_users), it[self.perm]
        self.values = values[self.order] if values is not None else None

    def matrix(self, vals: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        if transpose:
            return _csr(self.crow_t, self.col_t, vals[self.perm], self.shape[::-1])
        return _csr(self.crow, self.col, vals, self.shape)

    def to_edges(self, vals: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(vals)
        out[self.order] = vals
        return out


def _csr(crow: torch.Tensor, col: torch.Tensor, vals: torch.Tensor, shape) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the ops used here are stable
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, vals, shape)



class _SampledOutput(torch.autograd.Function):
    """``(h @ w + b)`` at the cells of ``entries`` only (CSR order); exact, sparse both ways."""

    @staticmethod
    def forward(ctx, h, w, b, entries: Entries):
        ctx.save_for_backward(h, w)
        ctx.entries = entries
        vals = torch.sparse.sampled_addmm(entries.pattern, h, w, beta=0.0).values()
        return vals + b[entries.col]

    @staticmethod
    def backward(ctx, g):
        h, w = ctx.saved_tensors
        e = ctx.entries
        g_h = e.matrix(g) @ w.T
        g_w = (e.matrix(g, transpose=True) @ h).T
        g_b = torch.zeros(w.shape[1], dtype=g.dtype).index_add_(0, e.col, g)
        return g_h, g_w, g_b, None


def sampled_output(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                   entries: Entries) -> torch.Tensor:
    return _SampledOutput.apply(h, w, b, entries)


class KernelLayer(nn.Module):
    """Dense layer whose weight is reparameterised by a finite-support RBF kernel (eq. 2-3).

    ``K[i, j] = max(0, 1 − ‖u_i − v_j‖²)``, effective weight ``W ⊙ K``. Without a local kernel
    ``K ≡ 1`` (a plain layer). Parameters: W (in, out), b (out), u (in, d), v (out, d).
    """

    def __init__(self, in_dim: int, out_dim: int, kernel_dim: int = 5, local_kernel: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(out_dim))
        self.u = nn.Parameter(torch.empty(in_dim, kernel_dim)) if local_kernel else None
        self.v = nn.Parameter(torch.empty(out_dim, kernel_dim)) if local_kernel else None

    def reset_parameters(self, gen: torch.Generator) -> None:
        """TF1 defaults of the official code: Glorot-uniform W and b, truncated-normal u, v."""
        in_dim, out_dim = self.weight.shape
        with torch.no_grad():
            bound = (6.0 / (in_dim + out_dim)) ** 0.5
            nn.init.uniform_(self.weight, -bound, bound, generator=gen)
            bound_b = (3.0 / out_dim) ** 0.5
            nn.init.uniform_(self.bias, -bound_b, bound_b, generator=gen)
            for p in (self.u, self.v):
                if p is not None:
                    nn.init.trunc_normal_(p, 0.0, 1e-3, -2e-3, 2e-3, generator=gen)

    def kernel(self) -> torch.Tensor | None:
        if self.u is None:
            return None
        d2 = ((self.u * self.u).sum(1, keepdim=True) + (self.v * self.v).sum(1)[None, :]
              - 2.0 * self.u @ self.v.T).clamp(min=0.0)
        return (1.0 - d2).clamp(min=0.0)

    def effective(self, lambda_2: float, lambda_s: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W ⊙ K, λ_s·½ΣK² + λ_2·½ΣW²)`` (TF's l2_loss halves; biases unpenalised)."""
        if self.u is None:
            return self.weight, lambda_2 * 0.5 * (self.weight * self.weight).sum()
        return _KernelisedWeight.apply(self.weight, self.u, self.v, lambda_2, lambda_s)


class GLocalK(nn.Module):
    """Item-based kernel autoencoder plus the global convolution kernel (paper §2).

    ``forward(r)`` returns the reconstruction (num_items, num_users) and the regulariser.
    Pre-training: ``AE(R)``. Fine-tuning (``finetuned`` set): ``μ = mean_users AE(R)`` (eq. 4),
    ``GK = dot_scale · μᵀ·Kb`` (eq. 5), ``R̂ = ReLU(conv(R, GK))`` (eq. 6), output ``AE(R̂)``.
    """

    def __init__(self, *, num_users: int, num_items: int, generator: torch.Generator,
                 hidden_dims: list[int], kernel_dim: int = 5, local_kernel: bool = True,
                 lambda_2: float = 20.0, lambda_s: float = 0.006, global_kernel: bool = True,
                 gk_size: int = 3, gk_layers: int = 1, aggregation: str = "weighted",
                 dot_scale: float = 1.0):
        super().__init__()
        dims = [num_users, *hidden_dims, num_users]
        self.layers = nn.ModuleList(KernelLayer(a, b, kernel_dim, local_kernel)
                                    for a, b in zip(dims[:-1], dims[1:], strict=False))
        self.lambda_2, self.lambda_s = lambda_2, lambda_s
        self.gk_size, self.aggregation, self.dot_scale = gk_size, aggregation, dot_scale
        n_banks = gk_layers if global_kernel else 0
        self.banks = nn.ParameterList(nn.Parameter(torch.empty(num_items, gk_size * gk_size))
                                      for _ in range(n_banks))
        self.register_buffer("finetuned", torch.tensor(False))
        self.unfolded: torch.Tensor | None = None  # im2col of R_train, set by the trainer
        self.reset_parameters(generator)

    @property
    def has_global(self) -> bool:
        return len(self.banks) > 0

    def reset_parameters(self, gen: torch.Generator) -> None:
        for layer in self.layers:
            layer.reset_parameters(gen)
        with torch.no_grad():
            for bank in self.banks:
                nn.init.trunc_normal_(bank, 0.0, 0.1, -0.2, 0.2, generator=gen)

    def ae_parameters(self) -> list[nn.Parameter]:
        return list(self.layers.parameters())

    def weights(self) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        """Effective (weight, bias) per layer, computed once per forward, and the regulariser."""
        out, regs = [], []
        for layer in self.layers:
            w, r = layer.effective(self.lambda_2, self.lambda_s)
            out.append((w, layer.bias))
            regs.append(r)
        return out, torch.stack(regs).sum()

    def hidden(self, x: torch.Tensor, weights: list, sparse: SparseInput | None) -> torch.Tensor:
        w0, b0 = weights[0]
        h = torch.sigmoid(sparse.matmul(w0) + b0 if sparse is not None else torch.addmm(b0, x, w0))
        for w, b in weights[1:-1]:
            h = torch.sigmoid(torch.addmm(b, h, w))
        return h

    def item_means(self, x: torch.Tensor, weights: list,
                   sparse: SparseInput | None = None) -> torch.Tensor:
        """μ_i = mean over users of AE(x)[i] (eq. 4), without forming the output matrix."""
        w, b = weights[-1]
        return self.hidden(x, weights, sparse) @ w.mean(1) + b.mean()

    def global_kernels(self, mu: torch.Tensor) -> list[torch.Tensor]:
        t = self.gk_size
        if self.aggregation == "weighted":
            return [self.dot_scale * (mu @ bank).view(t, t) for bank in self.banks]
        return [self.dot_scale * bank.mean(0).view(t, t) for bank in self.banks]

    def convolve(self, r: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        """R̂ = ReLU(conv(R, GK)) per layer; 'same' zero padding, cross-correlation (eq. 6)."""
        x = r
        for depth, gk in enumerate(self.global_kernels(mu)):
            if depth == 0 and self.unfolded is not None:
                y = (gk.reshape(1, -1) @ self.unfolded).view_as(r)
            else:
                y = F.conv2d(x[None, None], gk[None, None], padding=self.gk_size // 2)[0, 0]
            x = torch.relu(y)
        return x

    def encode(self, r: torch.Tensor, sparse: SparseInput | None = None
               ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """Last hidden layer of the stage's pass, the output layer's (W', b), the regulariser."""
        weights, reg = self.weights()
        if not (self.has_global and bool(self.finetuned)):
            return self.hidden(r, weights, sparse), weights[-1], reg
        mu = self.item_means(r, weights, sparse)
        return self.hidden(self.convolve(r, mu), weights, None), weights[-1], reg

    def forward(self, r: torch.Tensor, sparse: SparseInput | None = None) -> torch.Tensor:
        """The full reconstruction (num_items, num_users), unclipped."""
        h, (w, b), _ = self.encode(r, sparse)
        return torch.addmm(b, h, w)


class GLocalKTrainer(TrainerBase):
    """Pre-training then fine-tuning, one warm-started SciPy L-BFGS-B call per epoch (spec §6).

    Loss: ½·Σ_observed (R − pred)² + regulariser (a sum, as the λs were calibrated for); the
    output layer is evaluated on the observed cells only (same value and gradient, sparse cost).
    Epochs ``< pretrain_epochs`` optimise the AE (stage ``pretrain``); later ones the AE plus
    the kernel banks (``finetune``). Both stages join the run's selection: with a validation
    split the best epoch (and the patience count) spans pre-training and fine-tuning.
    """

    def __init__(self, model: GLocalK, ctx: RunContext, cfg: GLocalKConfig):
        self.model = model.to(ctx.device)
        self.ctx, self.cfg = ctx, cfg
        g = ctx.data.g
        self.clip = rating_range(g)  # the data's own scale (ML-100K/Douban 1–5), not assumed
        self.num_items, self.num_users = ctx.data.num_items, ctx.data.num_users
        self.r = dense_ratings(g, "train", items_by_users=True)
        self.train_cells = self.entries("train")
        self.sparse = SparseInput(self.train_cells) if cfg.sparse_input else None
        t = model.gk_size
        if model.has_global and self.r.numel() * t * t <= UNFOLD_LIMIT:
            model.unfolded = F.unfold(self.r[None, None], t, padding=t // 2)[0]
        self.report_from = cfg.pretrain_epochs if cfg.finetune_epochs > 0 else 0
        self.test_cells = self.entries("test")
        self.test_curve: list[float] = []
        self.nfev = 0
        self._cache: tuple | None = None

    def stages(self) -> list[Stage]:
        return [Stage("pretrain", self.cfg.pretrain_epochs),
                Stage("finetune", self.cfg.finetune_epochs)]

    def entries(self, split: str) -> Entries:
        users, items, ratings = split_edges(self.ctx.data.g, split)
        return Entries(items, users, self.num_items, self.num_users, ratings)

    def loss(self) -> torch.Tensor:
        h, (w, b), reg = self.model.encode(self.r, self.sparse)
        diff = sampled_output(h, w, b, self.train_cells) - self.train_cells.values
        sse = 0.5 * torch.dot(diff, diff)
        self._last = (h.detach(), w.detach(), b.detach(), float(sse), float(reg))
        return sse + reg

    def train_epoch(self, epoch: int) -> dict[str, float]:
        finetune = epoch >= self.cfg.pretrain_epochs
        if finetune and self.model.has_global:
            self.model.finetuned.fill_(True)
        params = self.model.ae_parameters()
        if bool(self.model.finetuned):
            params += list(self.model.banks)
        maxiter = self.cfg.finetune_maxiter if finetune else self.cfg.pretrain_maxiter

        def remember(x):
            self._cache = (x.copy(), *self._last)

        res = lbfgs_epoch(params, self.loss, maxiter, self.cfg.maxcor, remember)
        self.nfev += res.nfev
        if self._cache is None or not bool((self._cache[0] == res.x).all()):
            with torch.no_grad():
                self.loss()
            self._cache = (res.x, *self._last)
        _, h, w, b, sse, reg = self._cache
        if self.cfg.test_selected and len(self.test_cells.col) and epoch >= self.report_from:
            self.test_curve.append(self._score(h, w, b, self.test_cells, ["rmse"]).metrics["rmse"])
        n = len(self.train_cells.col)
        return {"loss": sse + reg, "sse": sse, "reg": reg, "train_rmse": (2 * sse / n) ** 0.5,
                "nfev": float(res.nfev), "nit": float(res.nit)}

    def _score(self, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
               cells: Entries, metrics: list[str] | None = None) -> EvalResult:
        with torch.no_grad():
            pred = cells.to_edges(sampled_output(h, w, b, cells)).clamp(*self.clip)
        true = cells.to_edges(cells.values)
        return rating_result(pred, true, self.ctx.eval.metrics if metrics is None else metrics)

    def evaluate(self, split: str) -> EvalResult:
        cells = self.test_cells if split == "test" else self.entries(split)
        with torch.no_grad():
            h, (w, b), _ = self.model.encode(self.r, self.sparse)
        return self._score(h, w, b, cells)

    def extra_metrics(self) -> dict[str, float]:
        extra = {"function_evaluations": float(self.nfev)}
        if self.test_curve:
            best = min(range(len(self.test_curve)), key=self.test_curve.__getitem__)
            extra["test_selected_rmse"] = self.test_curve[best]
            extra["test_selected_epoch"] = float(best + self.report_from)
        return extra

    def state_dict(self) -> dict:
        return {"test_curve": list(self.test_curve), "nfev": self.nfev}

    def load_state_dict(self, state: dict) -> None:
        self.test_curve = list(state["test_curve"])
        self.nfev = int(state["nfev"])


def build_glocal_k(cfg: GLocalKConfig, *, num_users: int, num_items: int,
                   generator: torch.Generator) -> GLocalK:
    gk = cfg.global_kernel
    return GLocalK(num_users=num_users, num_items=num_items, generator=generator,
                   hidden_dims=list(cfg.hidden_dims), kernel_dim=cfg.kernel_dim,
                   local_kernel=cfg.local_kernel, lambda_2=cfg.lambda_2, lambda_s=cfg.lambda_s,
                   global_kernel=gk.enabled, gk_size=gk.size, gk_layers=gk.layers,
                   aggregation=gk.aggregation, dot_scale=cfg.dot_scale)


def make_glocal_k_trainer(cfg: GLocalKConfig, ctx: RunContext) -> GLocalKTrainer:
    if ctx.device.type != "cpu":
        raise ConfigError("glocal_k runs on CPU here (SciPy's L-BFGS-B drives it); "
                          "use --device cpu")
    # GLocal-K has drawn its weights from the derived "init" stream since it was written
    model = build_glocal_k(cfg, num_users=ctx.data.num_users, num_items=ctx.data.num_items,
                           generator=torch_generator(ctx.seed, "init"))
    return GLocalKTrainer(model, ctx, cfg)
