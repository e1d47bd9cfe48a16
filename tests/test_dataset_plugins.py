"""Datasets from other packages: a record registered under the ``recbench.datasets`` entry-point
group is fetched, parsed and preprocessed like a built-in, without editing recbench.

The "installed package" is a fake distribution: a folder on sys.path holding
``NAME-0.1.dist-info/{METADATA,entry_points.txt}`` and the module the entry point names, which
is exactly what importlib.metadata reads for a pip-installed package.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from recbench.config import DatasetConfig
from recbench.data.datasets import BUILTIN, find_dataset, get_dataset, registry
from recbench.data.fetch import fetch
from recbench.data.prepare import DataPaths, load
from recbench.errors import ConfigError, DatasetError
from tests.test_cli import _invoke, _one_error_line

ROWS = "".join(f"u{u}\ti{(u * 3 + k) % 7}\t{1 + (u + k) % 5}\t{100 * u + k}\n"
               for u in range(6) for k in range(4))

MODULE = '''
from functools import partial
from pathlib import Path

from recbench.data import parsers
from recbench.data.datasets import DatasetRecord, RawFile

RECORD = DatasetRecord(
    name="toy-plugin",
    description="a dataset from another package",
    licence="CC0",
    size_mb=0.0,
    downloads=(),
    files=(RawFile("toy.tsv", "{digest}"),),
    default_protocol="holdout",
    parser=lambda folder: parsers.parse_table(Path(folder) / "toy.tsv", sep="\\t", header=False),
    expected={{"users": 6, "items": 7, "interactions": 24}},
)
NOT_A_RECORD = {{"name": "toy-plugin"}}
'''


def _install(root: Path, module: str, entries: dict[str, str]) -> None:
    """A fake installed distribution ``module`` registering ``entries`` (name → object)."""
    digest = hashlib.sha256(ROWS.encode()).hexdigest()
    (root / f"{module}.py").write_text(MODULE.format(digest=digest))
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[recbench.datasets]\n" + "".join(f"{n} = {module}:{obj}\n" for n, obj in entries.items()))


@pytest.fixture
def plugin_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


def test_no_plugin_means_the_builtins(plugin_root):
    assert set(registry()) == set(BUILTIN)
    assert find_dataset("toy-plugin") is None


def test_plugin_dataset_fetches_parses_and_preprocesses_like_a_builtin(plugin_root, tmp_path):
    _install(plugin_root, "toydata_ok", {"toy-plugin": "RECORD"})
    record = get_dataset("toy-plugin")
    assert record.default_protocol == "holdout" and "ml-100k" in registry()
    mirror = tmp_path / "mirror" / "toy-plugin"
    mirror.mkdir(parents=True)
    (mirror / "toy.tsv").write_text(ROWS)
    paths = DataPaths(tmp_path / "data")
    assert fetch(record, paths.raw, mirror.parent)
    ds = load(DatasetConfig(name="toy-plugin"), paths)  # its record's protocol: holdout, k=3
    assert (ds.num_users, ds.num_items) == (6, 7)
    assert ds.meta["protocol"]["protocol"] == "holdout" and ds.meta["counts"]["test"] == 6 * 3
    result, out = _invoke("fetch", "--list", "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 0 and "toy-plugin" in out


def test_plugin_counts_are_checked(plugin_root, tmp_path):
    _install(plugin_root, "toydata_counts", {"toy-plugin": "RECORD"})
    folder = tmp_path / "toy-plugin"
    folder.mkdir()
    (folder / "toy.tsv").write_text(ROWS + "u9\ti1\t3\t1\n")  # one user too many
    with pytest.raises(DatasetError, match="expected 6 users"):
        get_dataset("toy-plugin").parse(folder)


def test_plugin_with_a_builtin_name_is_one_config_error(plugin_root):
    _install(plugin_root, "toydata_clash", {"ml-100k": "RECORD"})
    with pytest.raises(ConfigError, match="'ml-100k'.*built-in dataset") as err:
        registry()
    assert "\n" not in str(err.value)
    result, out = _invoke("fetch", "--list")
    assert result.exit_code != 0 and "built-in dataset" in _one_error_line(out)


@pytest.mark.parametrize("module,entries,why", [
    ("toydata_dict", {"toy-plugin": "NOT_A_RECORD"}, "is a dict, not a recbench DatasetRecord"),
    ("toydata_misnamed", {"other-name": "RECORD"}, "holds a record named 'toy-plugin'"),
])
def test_plugin_that_is_not_a_record_or_misnamed_is_refused(plugin_root, module, entries, why):
    _install(plugin_root, module, entries)
    with pytest.raises(ConfigError, match=why):
        registry()
