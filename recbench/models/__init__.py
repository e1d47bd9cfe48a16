"""The model registry: an explicit dict, name → :class:`ModelSpec`, plus the installed plug-ins.

Nothing registers itself by import side effect: adding a model means importing its module here
and adding one line to ``MODELS``. The key equals the config's ``name`` literal and the file stem.
A model that lives in another package is a plug-in: that package names a :class:`ModelSpec`
under the entry-point group ``recbench.models`` and :func:`registry` finds it
(docs/contributing.md, "Bring your own model"; tests/plugin_example/).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import BaseModel

from recbench.errors import ConfigError
from recbench.models import (
    ease,
    gconv_genre,
    gconv_genre_baseline,
    gconv_transform,
    gfcf,
    gl_attention,
    gl_attention_trainer,
    glocal_k,
    itemknn,
    mf,
    rp3beta,
    seq_baselines,
    ultragcn,
)
from recbench.models.gnn import gat, gcn, lightgcn, ngcf, pinsage, sage, social
from recbench.plugins import discover

Task = Literal["rating", "ranking", "classification", "next_item"]


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
    "glocal_k": ModelSpec(glocal_k.GLocalKConfig, glocal_k.make_glocal_k_trainer, "rating",
                          "GLocal-K: local-kernel AE + global conv kernel (SparseFC, I-AutoRec by "
                          "switches)"),
    "neumf": ModelSpec(mf.NeuMFConfig, mf.make_neumf_trainer, "ranking",
                       "NeuMF: GMF + MLP fused (He et al. 2017), pointwise log loss"),
    "gl_attention": ModelSpec(gl_attention.GLAttentionConfig,
                              gl_attention_trainer.make_gl_attention_trainer, "ranking",
                              "attention on global-local representation spaces "
                              "(Rattaphun et al. 2021)"),
    "most_popular": ModelSpec(mf.MostPopularConfig, mf.make_most_popular_trainer, "ranking",
                              "non-personalised baseline: items by training popularity"),
    "lightgcn": ModelSpec(lightgcn.LightGCNConfig, lightgcn.make_lightgcn_trainer, "ranking",
                          "LightGCN (He et al. 2020): normalised propagation, layer combination"),
    "ngcf": ModelSpec(ngcf.NGCFConfig, ngcf.make_ngcf_trainer, "ranking",
                      "NGCF (Wang et al. 2019): transformed messages + element-wise interaction"),
    "gcn": ModelSpec(gcn.GCNConfig, gcn.make_gcn_trainer, "ranking",
                     "GCN encoder (Kipf & Welling 2017) of the user-item graph, dot product"),
    "gat": ModelSpec(gat.GATConfig, gat.make_gat_trainer, "ranking",
                     "multi-head GAT encoder (Velickovic et al. 2018), dot product"),
    "sage": ModelSpec(sage.SAGEConfig, sage.make_sage_trainer, "ranking",
                      "GraphSAGE encoder (Hamilton et al. 2017), mean or pooling aggregator"),
    "pinsage": ModelSpec(pinsage.PinSageConfig, pinsage.make_pinsage_trainer, "ranking",
                         "PinSage (Ying et al. 2018): random-walk neighbours, hard negatives"),
    "social": ModelSpec(social.SocialConfig, social.make_social_trainer, "ranking",
                        "LightGCN propagating over follow edges as well (social recommendation)"),
    "ease": ModelSpec(ease.EASEConfig, ease.make_ease_trainer, "ranking",
                      "EASE^R (Steck 2019): closed-form item-item regression, zero diagonal"),
    "itemknn": ModelSpec(itemknn.ItemKNNConfig, itemknn.make_itemknn_trainer, "ranking",
                         "item-based kNN: shrunk cosine, top-k neighbours per item (sparse)"),
    "rp3beta": ModelSpec(rp3beta.RP3betaConfig, rp3beta.make_rp3beta_trainer, "ranking",
                         "RP3beta (Paudel et al. 2017): 3-step random walk, popularity-penalised"),
    "gfcf": ModelSpec(gfcf.GFCFConfig, gfcf.make_gfcf_trainer, "ranking",
                      "GF-CF (Shen et al. 2021): normalised item graph filter + ideal low-pass (SVD)"),
    "ultragcn": ModelSpec(ultragcn.UltraGCNConfig, ultragcn.make_ultragcn_trainer, "ranking",
                          "UltraGCN (Mao et al. 2021): MF with user-item and item-item graph "
                          "constraint losses"),
    "gconv_transform": ModelSpec(
        gconv_transform.GConvTransformConfig, gconv_transform.make_gconv_transform_trainer,
        "next_item", "next-item prediction: ChebConv → N × (attention, item-graph conv) → ChebConv"),
    "seq_baseline": ModelSpec(
        seq_baselines.SeqBaselineConfig, seq_baselines.make_seq_baseline_trainer, "next_item",
        "GConv-Transform's Table 1 baselines and floors on next-item prediction (kind: svm, dnn, "
        "cnn, densenet, densecnn, popularity, markov, itemknn)"),
    "gconv_genre": ModelSpec(
        gconv_genre.GConvGenreConfig, gconv_genre.make_gconv_genre_trainer,
        "classification", "earlier GConv-Transform task: next-genre prediction over genre nodes"),
    "gconv_genre_baseline": ModelSpec(
        gconv_genre_baseline.GConvGenreBaselineConfig,
        gconv_genre_baseline.make_gconv_genre_baseline_trainer, "classification",
        "earlier task's Table 1 baselines (kind: svm, dnn, cnn, densenet, densecnn)"),
}

PLUGIN_GROUP = "recbench.models"


def registry() -> dict[str, ModelSpec]:
    """Every model a config may name: the built-in ``MODELS`` and the installed plug-ins.

    Read at each use (the schema, the runner, the reports) rather than copied once, so a test
    that swaps a built-in entry of ``MODELS`` is seen everywhere."""
    return {**MODELS, **plugin_models()}


@functools.cache
def plugin_models() -> dict[str, ModelSpec]:
    """The models installed packages register under ``recbench.models``, checked.

    Cached: scanning the installed metadata costs ~3 ms, and configs are validated hundreds
    of times when a study's ledger is read (tests that install a plug-in clear the cache).
    A plug-in may not take a built-in's name (the same config would mean two models), must
    be a ModelSpec, and its config's ``name`` literal must be its entry-point name (the
    schema tells models apart by it); each of these is one line naming the plug-in."""
    found = discover(PLUGIN_GROUP)
    for name, spec in found.items():
        where = f"plug-in model {name!r} (entry point group {PLUGIN_GROUP})"
        if name in MODELS:
            raise ConfigError(f"{where} clashes with the built-in model of that name; rename "
                              "it in the plug-in package's entry points or uninstall it")
        if not isinstance(spec, ModelSpec):
            raise ConfigError(f"{where} is a {type(spec).__name__}, not a "
                              "recbench.models.ModelSpec; point the entry point at its spec")
        field = spec.config.model_fields.get("name")
        if field is None or get_args(field.annotation) != (name,):
            raise ConfigError(f"{where}: its config {spec.config.__name__} must declare "
                              f"name: Literal[{name!r}], the entry point's name")
    return found
