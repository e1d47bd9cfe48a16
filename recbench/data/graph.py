"""The one data container: a DGL heterograph, its schema, storage and read-only views.

This module owns the schema strings; no other module spells them. The stored graph is never
mutated: models receive :func:`split_view` (edges of one split, all nodes kept) so validation
and test edges cannot leak into message passing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recbench.checksums import sha256_of
from recbench.data.protocols import TEST, TRAIN, VALID
from recbench.errors import DatasetError

USER, ITEM = "user", "item"
RATES = (USER, "rates", ITEM)
RATED_BY = (ITEM, "rated-by", USER)
FOLLOWS = (USER, "follows", USER)
SPLITS = ("train", "valid", "test")
_CODE = {"train": TRAIN, "valid": VALID, "test": TEST}


@dataclass
class Dataset:
    """A processed dataset: the graph, provenance, and (leave-one-out) sampled negatives."""

    g: Any  # dgl.DGLHeteroGraph
    meta: dict = field(default_factory=dict)
    negatives: torch.Tensor | None = None  # (num_users, 99) int64, -1 rows without a test item

    @property
    def num_users(self) -> int:
        return self.g.num_nodes(USER)

    @property
    def num_items(self) -> int:
        return self.g.num_nodes(ITEM)


def build_graph(frame, codes: np.ndarray, num_users: int, num_items: int,
                social: np.ndarray | None = None, item_genres: np.ndarray | None = None):
    """Interactions + split codes → heterograph with both edge directions sharing edge ids."""
    import dgl

    u = torch.as_tensor(frame["user"].to_numpy(), dtype=torch.int64)
    i = torch.as_tensor(frame["item"].to_numpy(), dtype=torch.int64)
    edges = {RATES: (u, i), RATED_BY: (i, u)}
    if social is not None:
        edges[FOLLOWS] = (torch.as_tensor(social[0]), torch.as_tensor(social[1]))
    g = dgl.heterograph(edges, num_nodes_dict={USER: num_users, ITEM: num_items})
    codes_t = torch.as_tensor(codes)
    data = {
        "rating": torch.as_tensor(frame["rating"].to_numpy(), dtype=torch.float32),
        "timestamp": torch.as_tensor(frame["timestamp"].to_numpy(), dtype=torch.int64),
        **{split: codes_t == _CODE[split] for split in SPLITS},
    }
    for etype in (RATES, RATED_BY):
        for key, value in data.items():
            g.edges[etype].data[key] = value
    if item_genres is not None:
        g.nodes[ITEM].data["genres"] = torch.as_tensor(item_genres, dtype=torch.float32)
    return g


def split_view(g, split: str = "train", keep_social: bool = True):
    """The graph with only ``split``'s rating edges (both directions), every node kept."""
    import dgl

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    eids = torch.nonzero(g.edges[RATES].data[split], as_tuple=True)[0]
    wanted = {RATES: eids, RATED_BY: eids}
    if FOLLOWS in g.canonical_etypes:
        wanted[FOLLOWS] = (torch.arange(g.num_edges(FOLLOWS)) if keep_social
                           else torch.zeros(0, dtype=torch.int64))
    return dgl.edge_subgraph(g, wanted, relabel_nodes=False, store_ids=False)


def split_edges(g, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(users, items, ratings)`` of one split, in edge-id order."""
    mask = g.edges[RATES].data[split]
    u, i = g.edges(etype=RATES)
    return u[mask], i[mask], g.edges[RATES].data["rating"][mask]


def rating_range(g, split: str = "train") -> tuple[float, float]:
    """(lowest, highest) rating of ``split``: the scale predictions are clipped to, read from the
    data (ML-100K 1–5, a 0–10 file 0–10) rather than assumed."""
    r = g.edges[RATES].data["rating"][g.edges[RATES].data[split]]
    if len(r) == 0:
        r = g.edges[RATES].data["rating"]
    return (float(r.min()), float(r.max())) if len(r) else (0.0, 0.0)


def dense_ratings(g, split: str, items_by_users: bool = False) -> torch.Tensor:
    """Dense rating matrix of one split (0 = unobserved); (num_users, num_items) by default."""
    u, i, r = split_edges(g, split)
    m = torch.zeros(g.num_nodes(USER), g.num_nodes(ITEM), dtype=torch.float32)
    m[u, i] = r
    return m.T.contiguous() if items_by_users else m


def save_dataset(folder: Path, ds: Dataset) -> None:
    """Write graph.bin and meta.json atomically (temp names, then rename). meta.json records
    graph.bin's size and sha256, so a damaged or half-replaced graph.bin is caught before DGL
    parses it (DGL answers a corrupt file with a C++ backtrace, or a crash)."""
    import dgl

    folder.mkdir(parents=True, exist_ok=True)
    labels = {"negatives": ds.negatives} if ds.negatives is not None else {}
    tmp_graph = folder / ".graph.bin.tmp"
    tmp_meta = folder / ".meta.json.tmp"
    try:
        try:
            dgl.save_graphs(str(tmp_graph), [ds.g], labels)
        except Exception as exc:  # noqa: BLE001 - DGL reports a failed write as DGLError
            if isinstance(exc, OSError):
                raise
            raise DatasetError(f"cannot write {tmp_graph} ({type(exc).__name__}): is the disk "
                               "full or the folder read-only? Free space or give another "
                               "--data-dir") from None
        meta = {**ds.meta, "graph_bytes": tmp_graph.stat().st_size,
                "graph_sha256": sha256_of(tmp_graph)}
        tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=True))
        os.replace(tmp_graph, folder / "graph.bin")
        os.replace(tmp_meta, folder / "meta.json")
    finally:
        tmp_graph.unlink(missing_ok=True)
        tmp_meta.unlink(missing_ok=True)


class DamagedCache(DatasetError):
    """A processed folder that exists but cannot be trusted: rebuilt by ``preprocess``."""


def _damaged(folder: Path, why: str) -> DamagedCache:
    name = folder.parent.name
    return DamagedCache(f"processed cache for {name} is damaged ({why}; {folder}): run "
                        f"`recbench preprocess {name} --force` with the experiment's split "
                        "options, or delete that folder")


def read_meta(folder: Path) -> dict:
    """meta.json of a processed folder, checked against graph.bin (size and sha256)."""
    graph, meta_path = folder / "graph.bin", folder / "meta.json"
    if not graph.is_file() and not meta_path.is_file():
        raise DatasetError(f"{folder} holds no processed dataset; run `recbench preprocess` first")
    if not meta_path.is_file():
        raise _damaged(folder, "graph.bin without meta.json")
    if not graph.is_file():
        raise _damaged(folder, "meta.json without graph.bin")
    try:
        meta = json.loads(meta_path.read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError, OSError):
        meta = None
    if not isinstance(meta, dict):
        raise _damaged(folder, "meta.json is not the mapping recbench wrote")
    expected = meta.get("graph_sha256")
    if expected is not None:  # caches written before the checksum: DGL's own checks only
        if graph.stat().st_size != meta.get("graph_bytes") or sha256_of(graph) != expected:
            raise _damaged(folder, "graph.bin does not match the checksum in meta.json")
    return meta


def load_dataset(folder: Path) -> Dataset:
    import dgl

    meta = read_meta(folder)
    try:
        graphs, labels = dgl.load_graphs(str(folder / "graph.bin"))
        g = graphs[0]
        for etype in (RATES, RATED_BY):  # DGL stores bool edge data as uint8
            for split in SPLITS:
                g.edges[etype].data[split] = g.edges[etype].data[split].bool()
            for key in ("rating", "timestamp"):
                g.edges[etype].data[key]  # noqa: B018 - present, or the cache is not ours
    except Exception as exc:  # noqa: BLE001 - DGL raises DGLError with a C++ backtrace
        raise _damaged(folder, f"graph.bin cannot be read: {type(exc).__name__}") from None
    return Dataset(g, meta, labels.get("negatives"))
