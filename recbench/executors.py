"""Where a set of independent calls runs: local processes (default) or a Ray cluster.

``ablate``, ``sweep`` and ``tune`` hand their work here as a list of calls of one top-level
function; the executor runs them and reports each result or failure as it arrives. One failed
call never stops the others. Caching and resume are not the executor's job: every call trains
into a run directory found again by its config hash, so a call that is lost mid-run (a killed
worker, a lost node) leaves a ``.partial`` folder that the next attempt resumes. Ray retries a
call whose worker died (``max_retries``); the local executor reports it and the next
invocation resumes it.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Protocol

from recbench.errors import ConfigError
from recbench.threads import affinity_cpus as usable_cpus

OnResult = Callable[[int, Any, "BaseException | None"], None]


class Executor(Protocol):
    """Runs ``fn(*call)`` for every call; ``on_result(index, value, error)`` once per call."""

    name: str

    def threads_per_call(self, requested: int | None) -> int | None:
        """Torch threads each call should use (None: leave torch's default)."""
        ...

    def run(self, fn: Callable[..., Any], calls: Sequence[tuple], on_result: OnResult) -> None: ...


@dataclass
class LocalExecutor:
    """Today's behaviour: in this process (jobs = 1) or a pool of spawned processes."""

    jobs: int = 1
    name: str = "local"

    def threads_per_call(self, requested: int | None) -> int | None:
        if requested or self.jobs <= 1:
            return requested
        return max(1, usable_cpus() // self.jobs)  # jobs share the CPUs instead of fighting

    def run(self, fn: Callable[..., Any], calls: Sequence[tuple], on_result: OnResult) -> None:
        if self.jobs <= 1:
            for i, call in enumerate(calls):
                try:
                    value = fn(*call)
                except Exception as exc:  # noqa: BLE001 - reported, the others go on
                    on_result(i, None, exc)
                else:
                    on_result(i, value, None)
            return
        with ProcessPoolExecutor(max_workers=self.jobs, mp_context=mp.get_context("spawn"),
                                 initializer=_ignore_ctrl_c) as pool:
            futures = {pool.submit(_interruptible, fn, *call): i for i, call in enumerate(calls)}
            try:
                done = as_completed(futures)
                self._collect(done, futures, on_result)
            except KeyboardInterrupt:
                # stop the calls under way too instead of waiting for them (a trial goes back
                # to WAITING, a run keeps its last.pt); _processes is the pool's worker table
                for proc in list((getattr(pool, "_processes", None) or {}).values()):
                    with contextlib.suppress(OSError):
                        os.kill(proc.pid, signal.SIGINT)
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    @staticmethod
    def _collect(done, futures, on_result: OnResult) -> None:
        for fut in done:
            try:
                value = fut.result()
            except Exception as exc:  # noqa: BLE001 - reported, the others go on
                on_result(futures[fut], None, exc)
            else:
                on_result(futures[fut], value, None)


def _ignore_ctrl_c() -> None:
    """A pool worker ignores Ctrl-C while idle: the terminal sends SIGINT to the whole process
    group, and an idle worker interrupted in its queue read prints a traceback of its own.
    :func:`_interruptible` lets it through while a call runs, so the call can stop cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _interruptible(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a pool worker with Ctrl-C raising KeyboardInterrupt (the call's own
    handlers put a tuning trial back or keep a run's last.pt); the worker then sends it back
    to the parent as the call's result, without a traceback on the terminal."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return fn(*args)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


_DRIVER_OPTIONS: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                   "configure_logging": False}

# Ray starts its workers at nice 15 by default, so that its daemons stay responsive. Here the
# workers ARE the work: at nice 15 every other process on the machine (the driver, Ray's own
# daemons, a shell) preempts them, and the 6-run benchmark's runs trained 23 % slower under Ray
# than the same runs as local processes (nice 0). Workers of a local instance therefore run at
# the niceness of local processes. A cluster started with `ray start` sets its own
# (docs/scale-out.md: --system-config='{"worker_niceness": 0}').
WORKER_NICENESS = 0


def local_instance_options(num_cpus: int, object_store_mb: int = 256) -> dict[str, Any]:
    """``ray.init`` arguments of the local instance ``--executor ray`` starts (tests use them
    too, so what they check is what users get)."""
    return {**_DRIVER_OPTIONS, "num_cpus": num_cpus,
            "object_store_memory": object_store_mb * 1024**2,
            "_system_config": {"worker_niceness": WORKER_NICENESS}}


@dataclass
class RayExecutor:
    """Ray tasks: a local instance when ``address`` is None, else the cluster at ``address``.

    Each call asks Ray for ``cpus`` CPUs (and ``gpus`` GPUs) and uses that many torch threads,
    so Ray's scheduler, not the user, decides how many run at once. Run directories are written
    under the paths the driver passes: on a cluster they must be a shared path (docs/scale-out.md).
    """

    address: str | None = None
    cpus: int = 1
    gpus: float = 0.0
    max_retries: int = 2  # a worker that died mid-run is retried and resumes its .partial
    name: str = "ray"

    def threads_per_call(self, requested: int | None) -> int | None:
        return self.cpus

    def _init(self) -> bool:
        """Start or join Ray; True when this call started it (and must shut it down)."""
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: install the extra with "
                              "`pip install -e '.[scale]'` (make setup does)") from None
        if ray.is_initialized():
            return False
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local instance needs no token
        if self.address is None:  # a local instance sized to this process's CPUs
            kwargs = local_instance_options(usable_cpus())
        else:
            kwargs = {**_DRIVER_OPTIONS, "address": self.address}
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:
            raise ConfigError(f"--address {self.address}: no Ray cluster answers there ({exc}); "
                              "start one with `ray start --head` or omit --address") from None
        return True

    def run(self, fn: Callable[..., Any], calls: Sequence[tuple], on_result: OnResult) -> None:
        if not calls:
            return
        started = self._init()  # first: without Ray installed, its one-line ConfigError
        import ray

        try:
            remote = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus,
                                max_retries=self.max_retries)(fn)
            refs = {remote.remote(*call): i for i, call in enumerate(calls)}
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                index = refs[done[0]]
                try:
                    value = ray.get(done[0])
                except ray.exceptions.RayTaskError as exc:  # the call raised: its own error
                    on_result(index, None, exc.cause if exc.cause is not None else exc)
                except ray.exceptions.RayError as exc:  # worker/node lost beyond the retries
                    on_result(index, None, exc)
                else:
                    on_result(index, value, None)
        finally:
            if started:
                ray.shutdown()


def check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """A TCP connection to the cluster's head within ``timeout_s``, before Ray is touched:
    ``ray.init`` of a dead address retries for minutes, printing only its own warnings.
    ``auto``/``local`` (Ray finds the address itself) are left to Ray."""
    import socket

    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address!r}: give the Ray head as HOST:PORT "
                          "(e.g. 10.0.0.1:6379), or omit --address for a local instance")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        why = exc.strerror or f"no answer within {timeout_s:.0f} s"
        raise ConfigError(f"--address {address}: no Ray cluster answers there ({why}); start "
                          "one with `ray start --head` or omit --address") from None


def make_executor(name: str, jobs: int = 1, address: str | None = None,
                  threads: int | None = None, device: str = "cpu") -> Executor:
    """The executor the CLI's ``--executor/--jobs/--address/--threads`` describe."""
    if name == "local":
        if address:
            raise ConfigError("--address is for --executor ray; drop it or add --executor ray")
        return LocalExecutor(jobs=max(1, jobs))
    if name == "ray":
        if address:
            check_reachable(address)
        return RayExecutor(address=address, cpus=threads or 1,
                           gpus=1.0 if device.startswith("cuda") else 0.0)
    raise ConfigError(f"--executor {name!r}: choose local or ray")
