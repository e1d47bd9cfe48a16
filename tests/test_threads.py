"""The default thread count: what the process may use, minus what is busy, capped per family."""

from __future__ import annotations

from recbench.threads import FAMILY_CAPS, busy_cpus, cgroup_cpus, choose_threads


def test_asked_for_wins():
    assert choose_threads(3, "bpr_mf", cpus=2, busy=2.0).threads == 3


def test_idle_machine_uses_every_usable_cpu():
    c = choose_threads(None, "lightgcn", cpus=8, quota=None, busy=0.1)
    assert c.threads == 8 and "8 usable" in c.reason


def test_busy_cpus_are_left_alone():
    assert choose_threads(None, "lightgcn", cpus=2, quota=None, busy=1.0).threads == 1
    assert choose_threads(None, "lightgcn", cpus=2, quota=None, busy=3.5).threads == 1  # ≥ 1
    assert choose_threads(None, "lightgcn", cpus=8, quota=None, busy=2.6).threads == 5


def test_cgroup_quota_limits_the_cpus():
    c = choose_threads(None, "ngcf", cpus=16, quota=4.0, busy=0.0)
    assert c.threads == 4 and "cgroup quota 4" in c.reason


def test_family_cap_is_applied_with_its_measurement():
    c = choose_threads(None, "bpr_mf", cpus=8, quota=None, busy=0.0)
    assert c.threads == FAMILY_CAPS["bpr_mf"][0] == 1
    assert "0.059 s/epoch" in c.reason


def test_cgroup_files_are_read(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpus(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpus(tmp_path) is None
    assert cgroup_cpus(tmp_path / "missing") is None


def test_busy_sample_is_a_number_of_cpus():
    busy = busy_cpus(0.05)
    assert busy is None or 0.0 <= busy <= 1024


def test_env_json_records_the_choice(tmp_path, tiny_paths):
    import json

    from recbench import process
    from recbench.config import expand_seeds
    from recbench.experiment import load_experiment
    from recbench.runner import train_run
    from tests.conftest import write_experiment

    cfg = expand_seeds(load_experiment(write_experiment(tmp_path, "t")))[0]
    run = train_run(cfg, tiny_paths, tmp_path / "runs",
                    threads=process.start(cfg, tiny_paths).threads)
    env = json.loads((run / "env.json").read_text())
    assert env["threads"] == 1 and "bpr_mf cap 1" in env["threads_reason"]


def _blas_threads() -> set[int]:
    from threadpoolctl import threadpool_info

    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_a_runs_thread_count_bounds_the_blas_pools_too(tmp_path, tiny_paths):
    """scipy's OpenBLAS ignored --threads (one thread a core): EASE^R's Cholesky at Gowalla
    size ran multi-threaded beside other jobs and crashed once with SIGSEGV."""
    import scipy.linalg  # noqa: F401 - loads scipy's OpenBLAS
    import torch
    from threadpoolctl import threadpool_limits

    from recbench import process
    from recbench.experiment import load_experiment
    from tests.conftest import write_experiment

    before = torch.get_num_threads()
    try:
        threadpool_limits(limits=2, user_api="blas")
        assert _blas_threads() == {2}
        exp = write_experiment(tmp_path, "e", train={"num_threads": 1})
        cfg = load_experiment(exp)
        process.start(cfg, tiny_paths)  # where a process applies a run's thread count
        assert _blas_threads() == {1} and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
        threadpool_limits(limits=before, user_api="blas")
