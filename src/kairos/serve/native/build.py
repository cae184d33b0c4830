"""Compile the native CPU kernels with the system C++ compiler on first use and load them with ctypes.

The shared library is built with -march=native, so it is cached per machine:
under $KAIROS_NATIVE_CACHE (default ~/.cache/kairos/native), named by a hash of
the source, the flags, the compiler and the CPU's feature flags. KAIROS_NATIVE=0
disables the kernels; no compiler (CXX, else g++ or c++ on PATH) makes them
unavailable. Either way `load_kernels` says why, and the engine runs SDPA.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("attention.cpp")
# The parts of -ffast-math the kernels need (reassociated, vectorised sums), not -ffast-math itself:
# with it, gcc links crtfastmath.o into the library, whose loading flushes subnormal floats to zero
# in the whole process (the simulator's arithmetic and numpy's included).
FLAGS = ("-O3", "-march=native", "-mprefer-vector-width=512", "-fno-math-errno", "-fno-trapping-math",
         "-fassociative-math", "-fno-signed-zeros", "-freciprocal-math", "-ffinite-math-only", "-std=c++17",
         "-shared", "-fPIC")
ABI = 2
COMPILE_TIMEOUT_S = 300


class NativeUnavailable(RuntimeError):
    """The native kernels cannot be built or loaded here (the message says why)."""


@dataclass(frozen=True)
class NativeKernels:
    """The loaded library's entry points (see attention.cpp for their arguments)."""

    path: Path
    write_kv: ctypes._CFuncPtr
    paged_attention: ctypes._CFuncPtr


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler() -> str:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise NativeUnavailable("no C++ compiler (set CXX or install g++)")
    return cxx


def _cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kairos" / "native"
    return Path(os.environ.get("KAIROS_NATIVE_CACHE") or default)


def _build(cxx: str) -> Path:
    """The cached library for this source, compiler and CPU; compiled (atomically) if missing."""
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise NativeUnavailable(f"C++ compiler {cxx} does not run: {exc}") from None
    key = hashlib.sha256("\0".join([SOURCE.read_text(), *FLAGS, version, _cpu_flags()]).encode()).hexdigest()
    directory = _cache_dir()
    target = directory / f"attention-{key[:20]}.so"
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    # Another process may build the same library at once: each writes its own file and renames it.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=directory)
    os.close(fd)
    try:
        result = subprocess.run([cxx, *FLAGS, "-o", tmp, str(SOURCE)], capture_output=True, text=True,
                                timeout=COMPILE_TIMEOUT_S)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise NativeUnavailable(f"{cxx} failed to compile {SOURCE.name}: {last}")
        os.replace(tmp, target)
    except subprocess.TimeoutExpired:
        raise NativeUnavailable(f"{cxx} took over {COMPILE_TIMEOUT_S} s to compile {SOURCE.name}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


@functools.cache
def load_kernels() -> NativeKernels | NativeUnavailable:
    """The kernels, or why they are unavailable (the outcome is kept for the process)."""
    if os.environ.get("KAIROS_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return NativeUnavailable("disabled by KAIROS_NATIVE=0")
    if platform.system() != "Linux" and platform.system() != "Darwin":
        return NativeUnavailable(f"not built on {platform.system()}")
    try:
        path = _build(_compiler())
        lib = ctypes.CDLL(str(path))
    except NativeUnavailable as exc:
        return exc
    except OSError as exc:
        return NativeUnavailable(f"cannot load the native kernels: {exc}")
    if lib.kairos_native_abi() != ABI:
        return NativeUnavailable(f"{path} has another interface version; delete it to rebuild")
    p, i32, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
    write_kv = lib.kairos_write_kv
    write_kv.argtypes = [p, p, i64, i64, p, p, p, i32, p, i32, p, p, i32, i32, i32]
    write_kv.restype = None
    attention = lib.kairos_paged_attention
    attention.argtypes = [p, i64, p, p, p, p, p, p, i32, p, i32, i32, i32, i32, i32, ctypes.c_float]
    attention.restype = i32
    return NativeKernels(path, write_kv, attention)
