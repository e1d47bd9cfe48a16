"""The model registry: an explicit dict, name → :class:`ModelSpec`.

Nothing registers itself by import side effect: adding a model means importing its module here
and adding one line to ``MODELS``. The key equals the config's ``name`` literal and the file stem.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from recbench.models import gl_attention, mf

Task = Literal["rating", "ranking", "classification"]


@dataclass(frozen=True)
class ModelSpec:
    """``make_trainer(model_config, ctx) -> Trainer`` builds the model and its epoch strategy."""

    config: type[BaseModel]
    make_trainer: Callable
    task: Task
    description: str


MODELS: dict[str, ModelSpec] = {
    "biased_mf": ModelSpec(mf.BiasedMFConfig, mf.make_biased_mf_trainer, "rating",
                           "biased matrix factorisation on observed ratings (MSE)"),
    "bpr_mf": ModelSpec(mf.BPRMFConfig, mf.make_bpr_mf_trainer, "ranking",
                        "BPR matrix factorisation (Rendle et al. 2009)"),
    "neumf": ModelSpec(mf.NeuMFConfig, mf.make_neumf_trainer, "ranking",
                       "NeuMF: GMF + MLP fused (He et al. 2017), pointwise log loss"),
    "gl_attention": ModelSpec(gl_attention.GLAttentionConfig,
                              gl_attention.make_gl_attention_trainer, "ranking",
                              "attention on global-local representation spaces "
                              "(Rattaphun et al. 2021)"),
    "most_popular": ModelSpec(mf.MostPopularConfig, mf.make_most_popular_trainer, "ranking",
                              "non-personalised baseline: items by training popularity"),
}
