"""Every dataset recbench knows, one record each: where it comes from, its files and their
sha256, the parser that reads them, the protocol and split it defaults to, the counts it must have.

Why one record: fetch, parse and preprocess all key on the dataset's name, and when each kept its
own table a new dataset meant three files to keep in step. Now a new dataset is one
:class:`DatasetRecord` in :data:`BUILTIN` (plus a parser in ``parsers.py`` if its format is new),
or, from another package, a record registered under the ``recbench.datasets`` entry-point group
(:func:`registry` merges those in).

Checksums are the published files' sha256 (read from the mirror). Where no checksum has been
pinned (Amazon: not mirrored here), ``sha256`` is ``None``: fetch then records the
digest it saw in ``data/raw/NAME/SHA256SUMS`` and says it could not verify it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import MappingProxyType

from recbench.data import parsers
from recbench.data.parsers import RawData
from recbench.errors import ConfigError, DatasetError

PLUGIN_GROUP = "recbench.datasets"

Parser = Callable[[Path], RawData]
"""Reads a dataset's raw folder (``data/raw/NAME``) into :class:`RawData`."""


@dataclass(frozen=True)
class RawFile:
    """One file of a dataset, as laid out in ``data/raw/NAME/`` and in the mirror."""

    name: str
    sha256: str | None
    required: bool = True


@dataclass(frozen=True)
class Download:
    """One official URL; ``archive='zip'`` extracts members found under ``member_prefix``."""

    url: str
    archive: str = "none"  # "none" | "zip"
    member_prefix: str = ""
    target: str = ""  # file name for archive == "none"


@dataclass(frozen=True)
class DatasetRecord:
    """One dataset. ``default_split`` names the published split ``--protocol fixed`` uses when
    none is given; ``expected`` holds the published counts a parse must reproduce (users, items,
    interactions, and train/test of the published split), so a wrong file fails loudly."""

    name: str
    description: str
    licence: str
    size_mb: float
    downloads: tuple[Download, ...]
    files: tuple[RawFile, ...]
    default_protocol: str
    parser: Parser | None = None
    default_split: str | None = None
    expected: dict[str, int] = field(default_factory=dict)

    def parse(self, folder: Path) -> RawData:
        """The raw folder read by this dataset's parser, its published counts checked."""
        if self.parser is None:
            raise DatasetError(f"dataset '{self.name}' has no parser; give its record one")
        raw = self.parser(folder)
        parsers.check_counts(self.name, raw, self.expected)
        return raw


_ML100K_SHA = {
    "README": "4883b8cf340ed0059971b33f56ad3adc88a40792108ebca3d24aafc4c82e8b52",
    "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
    "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
    "u.info": "5b0a40b2e47a729ee6203063f6dcf8790c2e63f5a18663e6ee318a72c5f3c27b",
    "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
    "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
    "u1.base": "ce253ec86c448b44fb3ba9a30d12dcfc2e9210cbde71efada3730c22e9ac212a",
    "u1.test": "18c6014a4b2c7324f250a63f8904a7b16b2b19f911129e346141507b0cbac950",
    "u2.base": "6c06f0b5df4b256da1a994f3ac66edc8da4d3f09bc9282df6b14d893366d703e",
    "u2.test": "4de658d1e04ed9104629509a2e2528fce833ac8e048280183f1df167632038c3",
    "u3.base": "afdc155c291c6edc41c0407e39d7462eb98d341e064f0b0a12175b80b3c4af5d",
    "u3.test": "0f548b51c78327de4c156461d3e430b7e5579fe2b5681586a59416e48fd35f6d",
    "u4.base": "219f0f4d40dfe9c5141d425f53fa91ee23ed275f14e280bbf1b50117afb064ca",
    "u4.test": "7c02ad0a1e7ab1083c8b9d4b627203a051dd7b5eab46d99fa44de33470de8db9",
    "u5.base": "a9574e59ce961eec2121627760b6e9b0974ce1637b3fe69ac32cb14a4bfab485",
    "u5.test": "351cc52e0d15b6c721466276fc24671d40936899e3d01fadeaf312915b8c5634",
    "ua.base": "67b5bcdb380c29f85d56a012ecd88612ae020f30a6730d117a334ee8203b91f2",
    "ua.test": "d0497e202417720f57a184ec8c66be2d1afa4ff41bb53787c57b28d6bf79bc42",
    "ub.base": "237254d253b6ad7de84f919d041055428646254f34ed8f562703c899430cd881",
    "ub.test": "d54a72d05730d5892062734b2bec73e976f9b713d18c828a18b968d6cce442da",
}

_GLA_REPO = (
    "https://raw.githubusercontent.com/MunlikaRattaphun/"
    "Attention-on-Global-Local-Embedding-Spaces-in-Recommender-Systems/main/input"
)


def _yelp(name: str, prefix: str, city: str, sha: dict[str, str], users: int, items: int,
          lines: int, reference: dict[str, str] | None = None) -> DatasetRecord:
    files = [RawFile(f"{prefix}_{part}.txt", sha[part])
             for part in ("interactions", "gt", "train_uid", "train_pid", "train_nid")]
    downloads = [Download(f"{_GLA_REPO}/dataset/{f.name}", target=f.name) for f in files]
    for rel, digest in (reference or {}).items():
        files.append(RawFile(f"reference/{rel}", digest, required=False))
        folder = "embedding" if rel.startswith("GP_") else "cluster"
        downloads.append(Download(f"{_GLA_REPO}/{folder}/{rel}", target=f"reference/{rel}"))
    return DatasetRecord(
        name=name,
        description=f"Yelp, {city}: business check-ins/reviews as implicit feedback, 3 test items per user",
        licence="Yelp Dataset terms (academic, non-commercial); files from the GLA paper's repository",
        size_mb={"yelp-madison": 1.6, "yelp-pittsburgh": 3.4}[name],
        downloads=tuple(downloads),
        files=tuple(files),
        default_protocol="fixed",
        parser=partial(parsers.parse_yelp, prefix=prefix),
        default_split="published",
        expected={"users": users, "items": items, "interactions": lines},
    )


_BUILTIN: dict[str, DatasetRecord] = {
    "ml-100k": DatasetRecord(
        name="ml-100k",
        description="MovieLens 100K: 943 users, 1,682 movies, 100,000 ratings 1-5, genres, 5 fixed splits",
        licence="GroupLens research licence: cite Harper & Konstan 2015; no redistribution",
        size_mb=4.9,
        downloads=(Download("https://files.grouplens.org/datasets/movielens/ml-100k.zip",
                            archive="zip", member_prefix="ml-100k/"),),
        files=tuple(RawFile(n, s) for n, s in _ML100K_SHA.items()),
        default_protocol="fixed",
        parser=parsers.parse_ml100k,
        default_split="u1",
        expected={"users": 943, "items": 1682, "interactions": 100_000},
    ),
    "ml-1m": DatasetRecord(
        name="ml-1m",
        description="MovieLens 1M: 6,040 users, 3,706 rated movies, 1,000,209 ratings 1-5, genres",
        licence="GroupLens research licence: cite Harper & Konstan 2015; no redistribution",
        size_mb=24.0,
        downloads=(Download("https://files.grouplens.org/datasets/movielens/ml-1m.zip",
                            archive="zip", member_prefix="ml-1m/"),),
        files=(RawFile("ratings.dat",
                       "506d64ca44484487c11dc2d9a28de5c54948213e6b96285e298afe28d6ea4e0f"),
               RawFile("movies.dat",
                       "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9"),
               RawFile("users.dat",
                       "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3",
                       required=False)),
        default_protocol="random",
        parser=parsers.parse_ml1m,
        expected={"users": 6040, "items": 3706, "interactions": 1_000_209},
    ),
    "douban-monti": DatasetRecord(
        name="douban-monti",
        description="Douban subset of Monti et al. 2017: 3,000 x 3,000, ratings 1-5, social graph",
        licence="research use; file published with the code of Monti et al. (mgcnn)",
        size_mb=9.3,
        downloads=(Download("https://github.com/fmonti/mgcnn/raw/master/Data/douban/"
                            "training_test_dataset.mat", target="douban_monti_dataset.mat"),),
        files=(RawFile("douban_monti_dataset.mat",
                       "1f4476321cbfe0f606e7e35d0695ca15447a1b0b2c811df130109b6cb9a067ae"),),
        default_protocol="fixed",
        parser=parsers.parse_douban,
        default_split="default",
        expected={"users": 3000, "items": 3000, "interactions": 136_891, "train": 123_202,
                  "test": 13_689},
    ),
    "yelp-madison": _yelp(
        "yelp-madison", "yelp_mcity", "Madison",
        {"gt": "706fe7de0ba10ad7aed8a549b8f8fbaa74098cd79c6dd1a42cbcf1ba6f33cf6b",
         "interactions": "37ff09ca58ceabc54dff222f5cfc5c1e7bf170753d04a74e1197dc4074f2fe61",
         "train_nid": "586f986f2d8b33ea6b75cb889f13e6a887feacb60b13cebcea94d0b8f349c5d6",
         "train_pid": "ff6faa674678a2e936028155a1e4f772b128555ca7d2ec83673d2972dacd05fd",
         "train_uid": "8cf7c69be3975e79c8083148b373acd31fc36f0332b7dc55ec9350d1f19f66a2"},
        2773, 3186, 50_961,
        reference={
            "GP_yelp_mcity_item_emb.txt":
                "58b7212c39a3c37ae2b62c13301811e819b1c3edcb2aa5b0f978b2d2bd9fa3b2",
            "GP_yelp_mcity_user_emb.txt":
                "d1756997d072c01fe989a8eb71e982fea47e654489e6b9abfafe121a59164888",
            "yelp_mcity_cluster_member_M30.txt":
                "a055868b1591f2723af5f07f95f6cc18d6314aa30e2d98da21ac6366eee0d7f3",
            "yelp_mcity_index_user_cluster_M30.txt":
                "ac217b802d0c98d322d6fc5eb95b96b82796cd5e692743076e402f2443a79412",
        }),
    "yelp-pittsburgh": _yelp(
        "yelp-pittsburgh", "yelp_pcity", "Pittsburgh",
        {"gt": "02eb93ab44964e44a1da9606194d0971cf3fca52465038b1c63449e35fa34bb9",
         "interactions": "d8237eb365e388f7baaff6642e5ed078912cf4fe756b922659375738fb75da21",
         "train_nid": "cf22eda91e7cc44bd5e10b98ea8a6e83f21edee8e62efd2f4e62fc1dac0b9b96",
         "train_pid": "f44fb00b1fdb7bb88302ab5b62664ed42f956f3e528a66e9b4ec30541706d3e4",
         "train_uid": "b45b4d571b749abd89fcaffecdca28bd9a2111a7ca535050321a9ae345e9bb73"},
        5616, 6443, 111_246),
    "amazon-movies-tv": DatasetRecord(
        name="amazon-movies-tv",
        description="Amazon Movies & TV 5-core reviews (McAuley lab, 2014): ratings 1-5 with timestamps",
        licence="research use; cite McAuley et al. 2015 / He & McAuley 2016",
        size_mb=740.0,
        downloads=(Download("https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
                            "reviews_Movies_and_TV_5.json.gz",
                            target="reviews_Movies_and_TV_5.json.gz"),),
        files=(RawFile("reviews_Movies_and_TV_5.json.gz", None),
               RawFile("meta_Movies_and_TV.json.gz", None, required=False)),
        default_protocol="holdout",
        parser=parsers.parse_amazon,
    ),
}

# The LightGCN authors' data folder at a pinned commit (the files NGCF and LightGCN were
# evaluated on); the mirror's sha256 equal the blobs of this commit (checked 2026-12-06).
_LIGHTGCN_COMMIT = "947ca2b3b1d2d3545b114145710cb06c4e57b3d2"
_LIGHTGCN_DATA = (f"https://raw.githubusercontent.com/gusye1234/LightGCN-PyTorch/"
                  f"{_LIGHTGCN_COMMIT}/data/gowalla")
_GOWALLA_SHA = {
    "s_adj_mat.npz": "6ab3ab7aa1278da3717054c60258d88d2d2d78914fa62db2b13da9321e397cab",
    "test.txt": "099a2a73924e4b754dc6efd730d764f492321b53c38eb93298850c83acf57be3",
    "user_list.txt": "5344c4d0deef610e1f148f23ad216a0db03b36f88834cd39a06786a672c5f5a1",
    "item_list.txt": "6b186f92890cc3f0c15a6dae5d6285f125a302bb8c5ea0cd9a16cf9c16347139",
}
_BUILTIN["gowalla-lightgcn"] = DatasetRecord(
    name="gowalla-lightgcn",
    description="Gowalla check-ins, the NGCF/LightGCN benchmark split: 29,858 users, 40,981 "
                "items, 810,128 train / 217,242 test pairs (training adjacency + test.txt)",
    licence="SNAP loc-gowalla (research use); split published with LightGCN-PyTorch (MIT)",
    size_mb=5.9,
    downloads=tuple(Download(f"{_LIGHTGCN_DATA}/{name}", target=name) for name in _GOWALLA_SHA),
    files=tuple(RawFile(name, digest) for name, digest in _GOWALLA_SHA.items()),
    default_protocol="fixed",
    parser=partial(parsers.parse_lightgcn_split, label="gowalla-lightgcn"),
    default_split="published",  # the NGCF/LightGCN test.txt
    expected={"users": 29_858, "items": 40_981, "interactions": 1_027_370, "train": 810_128,
              "test": 217_242},
)


BUILTIN: Mapping[str, DatasetRecord] = MappingProxyType(_BUILTIN)
"""The datasets shipped with recbench, by name (read-only)."""


def registry() -> dict[str, DatasetRecord]:
    """The built-in records and those other packages register under ``recbench.datasets``.

    An entry point names a :class:`DatasetRecord` object (``mydata = "pkg.module:RECORD"``) whose
    ``name`` is the entry point's name. A plug-in may not take a built-in's name: results keyed
    by that name would silently change meaning, so the clash is refused, not resolved.
    """
    from recbench.plugins import discover

    found = dict(_BUILTIN)
    for name, record in discover(PLUGIN_GROUP).items():
        if name in _BUILTIN:
            raise ConfigError(f"an installed package registers dataset {name!r} ({PLUGIN_GROUP}), "
                              "the name of a built-in dataset; rename it in that package")
        if not isinstance(record, DatasetRecord):
            raise ConfigError(f"dataset plug-in {name!r} ({PLUGIN_GROUP}) is a "
                              f"{type(record).__name__}, not a recbench DatasetRecord")
        if record.name != name:
            raise ConfigError(f"dataset plug-in {name!r} ({PLUGIN_GROUP}) holds a record named "
                              f"{record.name!r}; make the two names equal")
        found[name] = record
    return found


def find_dataset(name: str) -> DatasetRecord | None:
    """The record of ``name`` (built-in or plug-in), or None (e.g. a file registered by --from)."""
    return registry().get(name)


def get_dataset(name: str) -> DatasetRecord:
    """The record of ``name``; an unknown name fails with the valid ones."""
    found = registry()
    if name not in found:
        valid = ", ".join(sorted(found))
        raise DatasetError(f"unknown dataset '{name}'; valid names: {valid}")
    return found[name]
