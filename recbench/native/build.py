"""Compile ``kernels.c`` on first use and load it; say why not where that cannot happen.

Why compile at run time rather than ship a wheel: the kernels are ~200 lines of plain C with no
headers beyond libm, built for the CPU they run on (``-march=native``: AVX-512 here, whatever the
machine has elsewhere) in about a second with the system's C compiler. ``-ffp-contract=off``:
no fused multiply-add where the source says a multiply and an add, so each product is rounded
before it is summed, as in torch's kernels, and the floats do not depend on whether the CPU has
FMA (issue 36). ``-fopenmp``: the kernels run on torch's thread count; the library links
``libgomp.so.1``, and torch's wheel bundles a libgomp of that soname, so once torch is loaded
(it is imported before the library) the loader hands the kernels torch's runtime: one thread
pool in the process (tests/test_native_threads.py). A compiler without OpenMP builds the same
kernels serial (the pragmas are ignored; :func:`status` says so). The shared object is
cached under ``$XDG_CACHE_HOME/recbench/native`` (default ``~/.cache``), named by a hash of the
source, the flags, the compiler's version and the CPU's feature flags, so a change of any of
them builds a new one and a cache shared between machines never hands one the other's
instructions. The build writes a temporary file and renames it into place (two processes
building at once both succeed), then records the file's sha256 beside it; a cached file whose
checksum is missing or differs is rebuilt before ctypes ever maps it (:func:`_intact`).

Nothing depends on the library being there: every caller has the torch path it replaced, and
takes it when :func:`library` returns None (no compiler, a failed build, ``RECBENCH_NATIVE=0``).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from recbench.checksums import sha256_of
from recbench.cpu import cpu_flags

SOURCE = Path(__file__).with_name("kernels.c")
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fopenmp", "-std=gnu11",
         "-shared", "-fPIC")
OPENMP = "-fopenmp"  # left out on a second try where the compiler has no OpenMP
DISABLE_ENV = "RECBENCH_NATIVE"

_I64, _F32, _PTR, _INT = ctypes.c_int64, ctypes.c_float, ctypes.c_void_p, ctypes.c_int
SIGNATURES: dict[str, tuple[list, type | None]] = {  # kernels.c's functions: (argtypes, restype)
    "ngcf_mix": ([_PTR, _PTR, _PTR, _PTR, _I64, _INT], None),
    "ngcf_activate": ([_PTR, _PTR, _F32, _F32, _PTR, _PTR, _PTR, _I64, _I64, _I64, _INT], None),
    "ngcf_activate_back": ([_PTR, _PTR, _I64, _PTR, _PTR, _PTR, _F32, _PTR, _F32, _PTR, _PTR,
                            _I64, _I64, _INT], None),
    "ngcf_mix_back": ([_PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _I64, _INT], None),
    "l2_scatter": ([_PTR, _PTR, _PTR, _PTR, _I64, _I64, _I64, _F32, _PTR], ctypes.c_double),
    "csr_spmm": ([_PTR, _PTR, _PTR, _PTR, _PTR, _I64, _I64, _INT, _INT], None),
    "csr_spmm_fused": ([_PTR, _PTR, _PTR, _PTR, _PTR, _I64, _I64, _INT, _PTR, _F32, _INT], None),
    "bpr_scatter": ([_PTR, _PTR, _PTR, _PTR, _PTR, _I64, _I64, _F32, _PTR, _PTR, _PTR], None),
    "ultragcn_scatter": ([_PTR, _PTR, _PTR, _PTR, _PTR, _I64, _I64, _PTR, _PTR, _I64, _PTR, _PTR,
                          _I64, _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _INT], None),
    "ultragcn_work_size": ([_I64, _I64, _I64, _I64], ctypes.c_int64),
    "adam_update": ([_PTR, _PTR, _PTR, _PTR, _I64, _F32, _F32, _F32, _F32, _F32, _F32, _F32,
                     _INT], None),
}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "recbench" / "native"


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")


def _compile(cc: str, target: Path) -> tuple[str | None, bool]:
    """Build kernels.c into ``target`` (a temp file renamed into place), then its checksum
    beside it (``target.sha256``, the same way). Returns (None when done, else the compiler's
    first line; whether it built without OpenMP, the compiler lacking it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    serial = False
    for flags in (FLAGS, tuple(f for f in FLAGS if f != OPENMP)):
        done = subprocess.run([cc, *flags, "-o", tmp, str(SOURCE), "-lm"],
                              capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            break
        serial = True
    if done.returncode != 0:
        os.unlink(tmp)
        return (done.stderr.strip().splitlines() or ["no message"])[0], False
    digest = sha256_of(Path(tmp))
    os.replace(tmp, target)
    fd, tmp = tempfile.mkstemp(suffix=".sha256", dir=target.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(digest + "\n")
    os.replace(tmp, _sidecar(target))
    return None, serial


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _intact(target: Path) -> str | None:
    """None when ``target`` is the file this machine built (its sha256 is the one recorded
    beside it at build time), else what is wrong with it. Why: ctypes maps the file as it is; a
    truncated library (a full disk, a killed copy) loads and then dies with SIGBUS at the first
    call, and a foreign one (another machine's cache) may hold instructions this CPU lacks."""
    if not target.exists():
        return "not built yet"
    try:
        recorded = _sidecar(target).read_text().strip()
    except OSError:
        return "no checksum recorded beside it"
    if sha256_of(target) != recorded:
        return "its sha256 differs from the one recorded at build time"
    return None


@functools.cache
def _build() -> tuple[ctypes.CDLL | None, str]:
    """(library, what happened): built or found intact in the cache, or None and why not. A
    cached file that fails :func:`_intact` is rebuilt once; if it still fails, the torch path."""
    cc = _compiler()
    if cc is None:
        return None, "off: no C compiler (cc/gcc) on PATH; the torch kernels are used"
    note = ""
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout
        source = SOURCE.read_bytes()
        key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS).encode(), version.encode(),
                                         cpu_flags().encode()])).hexdigest()[:16]
        target = cache_dir() / f"kernels-{key}.so"
        problem = _intact(target)
        if problem is not None:
            if target.exists():
                note = f" (rebuilt: the cached library was damaged or foreign: {problem})"
            failed, serial = _compile(cc, target)
            if serial:
                note += " (serial: the compiler has no OpenMP)"
            if failed is not None:
                return None, f"off: {Path(cc).name} failed on kernels.c ({failed})"
            problem = _intact(target)
            if problem is not None:
                return None, f"off: the freshly built {target.name} does not check ({problem})"
        import torch  # noqa: F401  first: its libgomp.so.1 is then the one the kernels bind to

        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"off: could not build or load kernels.c ({exc})"
    for name, (argtypes, restype) in SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, restype
    return lib, f"on: {target}{note}"


def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None (``RECBENCH_NATIVE=0``, no compiler, a failed build)."""
    if os.environ.get(DISABLE_ENV, "1") == "0":
        return None
    return _build()[0]


def status() -> str:
    """One line for env.json: whether the native kernels are on, and where or why not."""
    if os.environ.get(DISABLE_ENV, "1") == "0":
        return f"off: {DISABLE_ENV}=0"
    return _build()[1]
