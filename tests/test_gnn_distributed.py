"""Data-parallel mini-batch training: 2 processes under torchrun (gloo) match 1 process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("ddp_worker.py")


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (Linux /proc). torchrun starts its workers in their own
    sessions, so killing torchrun's process group would not reach them."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


@pytest.mark.skipif(shutil.which("torchrun") is None
                    and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun not installed")
def test_two_processes_match_one(tiny_paths, tmp_path):
    # gloo kept on loopback (local-only run). A torchrun run still hangs now and then (seen in CI
    # and locally); the retry loop below handles that, not this setting. A hung rank 0 found
    # orphaned after CI sat in std::thread::join holding the GIL while another thread waited for
    # the GIL (a deadlock inside torch, not in our code); an earlier killpg had missed it.
    env = {**os.environ, "PYTHONPATH": str(WORKER.parent.parent), "OMP_NUM_THREADS": "1",
           "DGLBACKEND": "pytorch", "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}
    from recbench.config import DatasetConfig
    from recbench.data.prepare import load

    load(DatasetConfig(name="tiny", protocol="random", test_ratio=0.2, valid_ratio=0.2),
         tiny_paths)  # preprocess once, so the workers only read
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    subprocess.run([sys.executable, str(WORKER), str(tiny_paths.root), str(one)], env=env,
                   check=True, timeout=600)  # hang guard only
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", str(WORKER), str(tiny_paths.root),
           str(two)]
    for attempt in range(3):  # retries: a torchrun hang is not a result mismatch
        proc = subprocess.Popen(cmd, env=env)
        try:
            assert proc.wait(timeout=150) == 0  # ≈ 15 s when it does not hang
            break
        except subprocess.TimeoutExpired:
            # the workers are listed before torchrun dies and they are re-parented
            for pid in [*_descendants(proc.pid), proc.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait()
            if attempt == 2:
                raise
    a, b = torch.load(one, weights_only=True), torch.load(two, weights_only=True)
    assert a["world"] == 1 and b["world"] == 2
    assert torch.allclose(torch.tensor(a["losses"]), torch.tensor(b["losses"]), atol=1e-3)
    assert torch.allclose(a["emb"], b["emb"], atol=1e-4)
    assert not torch.allclose(a["emb"], torch.zeros_like(a["emb"]))
