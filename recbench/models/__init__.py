"""The model registry: an explicit dict, name → :class:`ModelSpec`.

Nothing registers itself by import side effect: adding a model means importing its module here
and adding one line to ``MODELS``. The key equals the config's ``name`` literal and the file stem.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from recbench.models import baselines, gconv_transform, mf

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
    "most_popular": ModelSpec(mf.MostPopularConfig, mf.make_most_popular_trainer, "ranking",
                              "non-personalised baseline: items by training popularity"),
    "gconv_transform": ModelSpec(
        gconv_transform.GConvTransformConfig, gconv_transform.make_gconv_transform_trainer,
        "classification", "ChebConv → N × (attention, learnable-adjacency GCN) → ChebConv"),
    "gconv_baseline": ModelSpec(
        baselines.GConvBaselineConfig, baselines.make_gconv_baseline_trainer, "classification",
        "GConv-Transform's Table 1 baselines (kind: svm, dnn, cnn, densenet, densecnn)"),
}
