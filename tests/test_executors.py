"""Executors: Ray gives the local table, a Ray worker killed mid-run is retried and resumes."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from recbench import runs, studies
from recbench.errors import ConfigError
from recbench.executors import LocalExecutor, RayExecutor, local_instance_options, make_executor
from recbench.studies import report
from tests.conftest import write_experiment


def _study(tmp_path, epochs: int = 4) -> studies.StudyConfig:
    exp = write_experiment(tmp_path, "tiny-bpr", train={"epochs": epochs, "patience": None})
    body = {"study": "dims", "base": [str(exp)], "vary": {"model.emb_dim": [4, 8]},
            "seeds": [0, 1], "metric": "recall@5"}
    (tmp_path / "studies").mkdir(exist_ok=True)
    (tmp_path / "studies" / "dims.yaml").write_text(yaml.safe_dump(body))
    return studies.load_study(tmp_path / "studies", "dims")


def test_make_executor_rejects_bad_choices():
    with pytest.raises(ConfigError, match="choose local or ray"):
        make_executor("slurm")
    with pytest.raises(ConfigError, match="--address is for --executor ray"):
        make_executor("local", address="10.0.0.1:6379")
    assert make_executor("ray", threads=2).threads_per_call(None) == 2
    assert LocalExecutor(jobs=1).threads_per_call(None) is None


def test_local_executor_reports_every_call_and_goes_on():
    seen = []

    def half(x):
        if x == 2:
            raise ValueError("two")
        return x / 2

    LocalExecutor().run(half, [(1,), (2,), (4,)], lambda i, v, e: seen.append((i, v, str(e))))
    assert seen == [(0, 0.5, "None"), (1, None, "two"), (2, 2.0, "None")]


ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_local():
    """One small local Ray instance for this module (starting one costs seconds)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(**local_instance_options(2, object_store_mb=128))
    yield
    ray.shutdown()


def _niceness() -> int:
    return os.nice(0)


def test_ray_workers_run_at_the_niceness_of_local_processes(ray_local):
    """Ray's default (nice 15) let every other process preempt the runs: 23 % slower."""
    assert ray.get(ray.remote(num_cpus=1)(_niceness).remote()) == os.nice(0)


def test_ray_executor_gives_the_same_table_as_local(tmp_path, tiny_paths, ray_local):
    study = _study(tmp_path).model_copy(update={"seeds": [0]})
    local, distributed = tmp_path / "r-local", tmp_path / "r-ray"
    studies.execute(studies.plan(study, local), tiny_paths, local, threads=1)
    failures = studies.execute(studies.plan(study, distributed), tiny_paths, distributed,
                               threads=1, executor=RayExecutor(cpus=1))
    assert failures == []
    a = report.csv_text(studies.aggregate(study, studies.plan(study, local)))
    b = report.csv_text(studies.aggregate(study, studies.plan(study, distributed)))
    assert a == b
    for root in (local, distributed):  # each call's start applied and recorded its settings
        for env in root.rglob("env.json"):
            recorded = json.loads(env.read_text())
            assert recorded["threads"] == 1 and "asked for" in recorded["threads_reason"]
            assert sys.platform != "linux" or recorded["allocator"] != "allocator default"


def test_ray_reports_a_failing_run_and_finishes_the_others(tmp_path, tiny_paths, ray_local):
    study = _study(tmp_path).model_copy(update={
        "vary": {"model.emb_dim": [8]}, "seeds": [0],
        "variants": {"broken": {"dataset.split": "nope", "dataset.protocol": "fixed"}}})
    root = tmp_path / "runs"
    failures = studies.execute(studies.plan(study, root), tiny_paths, root,
                               executor=RayExecutor(cpus=1))
    assert [p.variant for p, _ in failures] == ["broken"]
    assert "nope" in failures[0][1] or "split" in failures[0][1]
    assert sum(p.cached is not None for p in studies.plan(study, root)) == 1


def _kill_worker_when_partial(root: Path, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the Ray worker running the run once its .partial folder has a few epochs."""
    deadline = time.time() + 120
    while not stop.is_set() and time.time() < deadline:
        for part in root.glob("*/*.partial"):
            hist = part / "history.jsonl"
            if hist.is_file() and len(hist.read_text().splitlines()) >= 3:
                for pid in os.listdir("/proc"):
                    if not pid.isdigit():
                        continue
                    try:
                        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                    except OSError:
                        continue
                    if b"ray::run_planned" in cmd:
                        os.kill(int(pid), signal.SIGKILL)
                        killed.append(int(pid))
                        return
        time.sleep(0.02)


def test_a_ray_worker_killed_mid_run_is_retried_and_resumes(tmp_path, tiny_paths, ray_local):
    study = _study(tmp_path, epochs=300).model_copy(update={"vary": {"model.emb_dim": [8]},
                                                            "seeds": [0]})
    local, distributed = tmp_path / "r-local", tmp_path / "r-ray"
    studies.execute(studies.plan(study, local), tiny_paths, local, threads=1)
    killed: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_kill_worker_when_partial,
                               args=(distributed, killed, stop), daemon=True)
    watcher.start()
    failures = studies.execute(studies.plan(study, distributed), tiny_paths, distributed,
                               threads=1, executor=RayExecutor(cpus=1, max_retries=2))
    stop.set()
    watcher.join()
    assert killed, "the run finished before the watcher could kill its worker"
    assert failures == []
    [done] = [p.cached for p in studies.plan(study, distributed)]
    [reference] = [p.cached for p in studies.plan(study, local)]
    assert len([p for p in (distributed / "tiny-bpr").iterdir() if p.is_dir()]) == 1  # resumed
    assert runs.read_metrics(done)["test"] == runs.read_metrics(reference)["test"]


def _dead_address() -> str:
    """host:port where nothing listens (a port bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("command", ["sweep", "tune"])
def test_a_dead_ray_cluster_fails_fast_in_one_line(tmp_path, tiny_paths, command):
    """Issue 31 item 12: `--executor ray --address` of a dead cluster hung with Ray's warnings."""
    from tests.test_cli import _invoke, _one_error_line

    exp = write_experiment(tmp_path, "tiny-bpr")
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"params": {"train.lr": {"type": "float", "low": 0.01,
                                                             "high": 0.1}}}))
    extra = (["--set", "model.emb_dim=4,8"] if command == "sweep" else
             ["--space", str(space), "--trials", "1"])
    address = _dead_address()
    t0 = time.perf_counter()
    result, out = _invoke(command, str(exp), *extra, "--executor", "ray", "--address", address,
                          "--data-dir", str(tiny_paths.root), "--runs-dir", str(tmp_path / "runs"),
                          "--results-dir", str(tmp_path / "results"))
    assert time.perf_counter() - t0 < 15
    assert result.exit_code == 2 and address in _one_error_line(out)
    assert "no Ray cluster answers" in out and len(out.strip().splitlines()) <= 3


def test_unreachable_address_is_refused_before_ray_is_imported(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ConfigError, match="no Ray cluster answers"):
        make_executor("ray", address=_dead_address())
    with pytest.raises(ConfigError, match=r"needs Ray: install"):
        RayExecutor().run(print, [("x",)], lambda i, v, e: None)
    with pytest.raises(ConfigError, match="HOST:PORT"):
        make_executor("ray", address="no-port-here")


def _ctrl_c_in_worker(n: int) -> int:
    """Call 0 waits until the other worker is idle, then sends Ctrl-C (SIGINT) to every
    worker of the pool, as a terminal sends it to the whole process group."""
    import psutil

    if n == 0:
        time.sleep(2)  # the other calls are done: that worker waits on its queue
        for worker in psutil.Process(os.getppid()).children():
            os.kill(worker.pid, signal.SIGINT)
        time.sleep(5)  # the signal interrupts this
    return n


def test_ctrl_c_in_pool_workers_stops_without_their_tracebacks(capfd):
    """Issue 31 items 8/16 with --jobs N: Ctrl-C printed one traceback per worker process."""
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        LocalExecutor(jobs=2).run(_ctrl_c_in_worker, [(0,), (1,), (2,)], lambda i, v, e: None)
    assert time.perf_counter() - t0 < 60
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out
