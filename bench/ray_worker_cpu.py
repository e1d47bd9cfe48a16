"""CPU and wall seconds of one BPR-MF run (study bpr-emb-size, first run, 1 thread) in a
spawned local process, a Ray worker at nice 0 (what --executor ray starts) or a Ray worker at
Ray's default nice 15. A diagnostic, not a benchmark: run it while the machine is busy to see
the niceness effect (2026-12-02, load 4.4 on 2 cores: local 89.4 CPU-s / 182 s wall, Ray nice 0
89.4 / 186, Ray nice 15 killed after 600 s wall). Prints (CPU s, wall s, niceness, busiest
threads). Usage: python -m bench.ray_worker_cpu local|ray|ray15"""
import multiprocessing as mp
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def job(plain, data_root, runs_root):
    import os

    from recbench.studies import run_planned
    t0, w0 = os.times(), time.perf_counter()
    run_planned(plain, data_root, runs_root, "cpu", 1)
    t1, w1 = os.times(), time.perf_counter()
    # per-thread CPU of this process (Ray's core-worker threads show up here)
    threads = {}
    for tid in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            f = open(f"/proc/{os.getpid()}/task/{tid}/stat").read().split(") ")
            name = f[0].split("(")[1]
            fields = f[1].split()
            ticks = int(fields[11]) + int(fields[12])
            threads[name] = threads.get(name, 0) + ticks / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    busiest = dict(sorted(threads.items(), key=lambda kv: -kv[1])[:6])
    return (t1.user - t0.user) + (t1.system - t0.system), w1 - w0, os.nice(0), busiest

if __name__ == "__main__":
    from recbench import studies
    from recbench.config import to_plain
    from recbench.studies import load_study
    study = load_study(Path("experiments/studies"), "bpr-emb-size")
    planned = studies.plan(study, Path(tempfile.mkdtemp()))
    plain = to_plain(planned[0].cfg)
    data_root = str(Path("data").resolve())
    which = sys.argv[1]
    runs_root = tempfile.mkdtemp(prefix=f"raycpu-{which}-")
    if which == "local":
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            print("local", pool.submit(job, plain, data_root, runs_root).result())
    else:
        import ray

        from recbench.executors import local_instance_options
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        opts = local_instance_options(2)
        if which == "ray15":
            opts.pop("_system_config")
        ray.init(**opts)
        print(which, ray.get(ray.remote(num_cpus=1)(job).remote(plain, data_root, runs_root)))
        ray.shutdown()
