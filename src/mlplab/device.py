"""Choosing the device ("auto" picks CUDA, then Apple's MPS, then the CPU) and how it does its arithmetic:
precision (fp32, tf32, bf16 autocast) and PyTorch's deterministic mode."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time

import torch

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The torch.device for `name`; a clear ValueError when the asked-for accelerator is not there."""
    if isinstance(name, torch.device):
        return name
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise ValueError(f"unknown device {name!r}; choose one of: {', '.join(DEVICES)}")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda asked for, but this torch build sees no CUDA GPU (use --device cpu)")
    if kind == "mps" and not _mps_available():
        raise ValueError("device mps asked for, but MPS is not available here (use --device cpu)")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA, MPS); a no-op on the CPU. For timing only."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


PRECISIONS = ("fp32", "tf32", "bf16")


@contextlib.contextmanager
def matmul_precision(device: torch.device, precision: str = "fp32"):
    """float32 matmuls on CUDA use TF32 inside the block when `precision` is "tf32" and full float32 otherwise,
    whatever the global setting; restored after. Wrap the whole step (forward AND backward) in it. Elsewhere a
    no-op. Uses `fp32_precision` where torch has it (2.9+), `allow_tf32` before."""
    _check(precision)
    if device.type != "cuda":
        yield
        return
    matmul = torch.backends.cuda.matmul
    name = "fp32_precision" if hasattr(matmul, "fp32_precision") else "allow_tf32"
    value = ("tf32" if precision == "tf32" else "ieee") if name == "fp32_precision" else precision == "tf32"
    saved = getattr(matmul, name)
    setattr(matmul, name, value)
    try:
        yield
    finally:
        setattr(matmul, name, saved)


def autocast(device: torch.device, precision: str = "fp32"):
    """bf16 autocast for "bf16" (matmuls in bfloat16; parameters and optimizer state stay float32); else nothing.
    Wrap the forward pass only: the backward follows the dtypes the forward chose."""
    _check(precision)
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def arithmetic(device: torch.device, precision: str = "fp32"):
    """Both of the above, for code without a backward pass (evaluation, benchmarks)."""
    with matmul_precision(device, precision), autocast(device, precision):
        yield


def _check(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")


@contextlib.contextmanager
def deterministic_mode(enabled: bool = True):
    """PyTorch's deterministic algorithms inside the block (and restored after), so a GPU run repeats bit for bit.

    On CUDA, cuBLAS also needs CUBLAS_WORKSPACE_CONFIG=:4096:8 for repeatable matmuls, read when cuBLAS starts:
    this sets it (unless set) for a process that has not used CUDA yet; `mlplab --deterministic` sets it before
    anything touches the GPU. The cost: deterministic kernels (and a fixed cuBLAS workspace) can be slower; on the
    CPU, where mlplab's kernels are deterministic already, it changes nothing. enabled=False runs the block as is.
    """
    if not enabled:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)
        if cublas is None:  # cuBLAS has read it by now, if it started in the block: leave the environment as found
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


_MALLOC_TUNED = False
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's upper limit on 64-bit systems


def keep_freed_memory() -> bool:
    """Have glibc's malloc reuse freed blocks of up to 32 MiB instead of returning them to the OS (Linux only).

    A training step allocates and frees the same tensors of a few MB each. By default glibc hands blocks of that
    size back to the OS on free (munmap) and maps them again on the next step, so every step page-faults its
    buffers afresh; measured on a 2-core CPU, that made the first run in a process 2x slower per step than a run
    after it (784-768-10, bf16, batch 256). Called once per process by the trainer; returns whether it applied.

    This is the one process-wide setting mlplab changes and does not restore (glibc offers no way to read it
    back): for the rest of the process, malloc keeps up to 1 GiB of freed memory (M_TRIM_THRESHOLD) and serves
    blocks of up to 32 MiB from the heap (M_MMAP_THRESHOLD). Set MLPLAB_KEEP_FREED_MEMORY=0 in the environment
    to leave the allocator alone.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("MLPLAB_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1
    except (OSError, AttributeError):  # not glibc (musl, ...): leave the allocator alone
        return False
    _MALLOC_TUNED = ok
    return ok


MAX_THREADS = 256


def parse_threads(value: str | int) -> int:
    """--threads: a count N >= 1, or "auto" for the cores free now (`free_cores`)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return free_cores()
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"--threads must be a count such as 1 or 2, or auto; got {value!r}") from None
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"--threads must be between 1 and {MAX_THREADS} (or auto), got {n}")
    return n


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def free_cores(window: float = 0.3) -> int:
    """The cores nobody else is using right now: the idle share of all CPUs over `window` seconds (/proc/stat),
    else the CPUs minus the 1-minute load average; at least 1, at most the CPUs this process may use."""
    n = usable_cores()
    idle = _idle_cores(window)
    if idle is None:
        try:
            idle = (os.cpu_count() or n) - os.getloadavg()[0]
        except (AttributeError, OSError):
            return n
    return max(1, min(n, int(idle + 0.5)))


def _idle_cores(window: float) -> float | None:
    """Idle CPUs (a fraction of a CPU counts) over `window` seconds, from two readings of /proc/stat."""
    def read():
        with open("/proc/stat") as f:
            first = f.readline().split()  # cpu user nice system idle iowait irq softirq steal ...
        ticks = [int(x) for x in first[1:9]]
        return sum(ticks), ticks[3] + ticks[4]

    try:
        total0, idle0 = read()
        time.sleep(window)
        total1, idle1 = read()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (idle1 - idle0) / (total1 - total0) * (os.cpu_count() or 1)
