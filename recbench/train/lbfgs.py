"""One L-BFGS-B epoch: SciPy's Fortran optimiser driven by torch gradients.

This is what TF1's ``ScipyOptimizerInterface`` does for I-AutoRec, SparseFC and GLocal-K: pack
every trainable tensor into one float64 vector, call ``scipy.optimize.minimize(method='L-BFGS-B',
jac=True)`` with a small ``maxiter``, write the result back. One call is one outer epoch; the
L-BFGS memory is reset on the next call (spec §6). Tensors stay float32 for the forward/backward
(as in TF, whose variables were float32); only SciPy's vector is float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize


@dataclass
class LbfgsResult:
    loss: float
    x: np.ndarray  # the accepted point (float64), which the parameters now hold
    nfev: int
    nit: int
    message: str


def flatten(params: list[torch.Tensor]) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in params]).double().cpu().numpy()


def assign(params: list[torch.Tensor], x: np.ndarray) -> None:
    """Copy the float64 vector ``x`` into the (float32) parameters, in order."""
    flat = torch.from_numpy(x)
    offset = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            p.copy_(flat[offset:offset + n].view_as(p))
            offset += n


def gradient(params: list[torch.Tensor]) -> np.ndarray:
    parts = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=p.device)
             for p in params]
    return torch.cat(parts).double().cpu().numpy()


def lbfgs_epoch(params: list[torch.Tensor], loss_fn: Callable[[], torch.Tensor], maxiter: int,
                maxcor: int = 10, on_eval: Callable[[np.ndarray], None] | None = None
                ) -> LbfgsResult:
    """Minimise ``loss_fn()`` over ``params`` with at most ``maxiter`` L-BFGS-B iterations.

    ``loss_fn`` runs the forward pass on the current parameter values and returns a scalar.
    ``on_eval(x)`` is called after each evaluation (callers cache outputs keyed by ``x``).
    Everything else is a SciPy default, as TF's interface left it (ftol, gtol, maxls, no bounds).
    """

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        assign(params, x)
        for p in params:
            p.grad = None
        loss = loss_fn()
        loss.backward()
        if on_eval is not None:
            on_eval(x)
        return float(loss), gradient(params)

    res = minimize(fun, flatten(params), jac=True, method="L-BFGS-B",
                   options={"maxiter": maxiter, "maxcor": maxcor})
    assign(params, res.x)
    for p in params:
        p.grad = None
    return LbfgsResult(float(res.fun), res.x, int(res.nfev), int(res.nit), str(res.message))
