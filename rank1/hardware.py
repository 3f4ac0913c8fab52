"""What this machine's CPU can do fast, decided by detection or measurement, never by a constant.

rank1 runs on CPUs with bfloat16 matrix units (Intel AMX, AVX512-BF16), where bfloat16 is several times
faster than float32, and on AVX2-only CPUs, where bfloat16 is emulated and several times slower. The CPU
dtype of ``dtype="auto"`` is therefore chosen per machine:

1. From the CPU flags (``/proc/cpuinfo`` on Linux): ``amx_bf16`` or ``avx512_bf16`` means bfloat16.
2. Where the flags cannot be read, from a short measured probe (a float32 and a bfloat16 GEMM), cached per
   machine in ``~/.cache/rank1/hardware.json``.

``$RANK1_CPU_DTYPE`` overrides both. The agreement of bfloat16 and float32 scores is measured in
``benchmarks/speed.py`` and tested in ``tests/test_speed.py``.

Example:
    >>> from rank1.hardware import has_bf16_units
    >>> has_bf16_units({"avx2", "amx_bf16"}), has_bf16_units({"avx2", "fma"})
    (True, False)
"""

from __future__ import annotations

import functools

import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""CPU flags that mean bfloat16 matrix arithmetic in hardware."""

INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
"""CPU flags that mean int8 dot-product instructions (VNNI) or int8 matrix units (AMX)."""

DTYPE_ENV = "RANK1_CPU_DTYPE"
PROBE_FILE = Path("~/.cache/rank1/hardware.json")


class CpuChoice(NamedTuple):
    """The CPU dtype of ``dtype="auto"`` and why it was chosen (printed in run summaries)."""

    dtype: str
    reason: str


@functools.lru_cache(maxsize=8)
def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The CPU's feature flags, or ``None`` where they cannot be read (not Linux); read once per path."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return None


def usable_cores() -> list[int]:
    """The CPU cores this process may run on (its affinity where the OS reports one, else every core)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (``platform.processor()`` where ``/proc/cpuinfo`` is missing)."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def has_bf16_units(flags: Iterable[str]) -> bool:
    """Whether ``flags`` include bfloat16 matrix units (:data:`BF16_FLAGS`)."""
    return any(f in set(flags) for f in BF16_FLAGS)


def has_int8_dot_products(flags: Iterable[str]) -> bool:
    """Whether ``flags`` include int8 dot products or int8 matrix units (:data:`INT8_DOT_FLAGS`)."""
    return any(f in set(flags) for f in INT8_DOT_FLAGS)


def timed_gflops(call: Callable[[], Any], flops: float, seconds: float = 0.5) -> float:
    """GFLOP/s of ``call`` (``flops`` a call) after one warm-up call, over at least 3 calls and ``seconds``."""
    call()  # warm-up: kernels chosen, memory touched
    runs, start = 0, time.perf_counter()
    while runs < 3 or time.perf_counter() - start < seconds:
        call()
        runs += 1
    return flops * runs / (time.perf_counter() - start) / 1e9


def gemm_gflops(dtype: str = "float32", size: int = 1024, seconds: float = 0.5) -> float:
    """GFLOP/s of a ``size`` x ``size`` matrix product in ``dtype`` on this CPU, measured for about ``seconds``."""
    import torch

    a = torch.randn(size, size).to(getattr(torch, dtype))
    b = torch.randn(size, size).to(getattr(torch, dtype))
    return timed_gflops(lambda: a @ b, 2 * size**3, seconds)


def cached_measurement(cache: Path, key: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``measure()``, stored in ``cache`` under ``key`` (this CPU and the library versions that decide it) and read
    back while the key matches, so a machine pays for a measurement once. A read-only home measures every time."""
    try:
        stored = json.loads(cache.read_text(encoding="utf-8"))
        if isinstance(stored, dict) and stored.get("key") == key and set(stored) > {"key"}:
            return stored
    except (OSError, ValueError):
        pass
    result = {"key": key, **measure()}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(result), encoding="utf-8")
        tmp.replace(cache)
    except OSError:
        pass
    return result


def _probe(cache: Path) -> CpuChoice:
    """The faster of float32 and bfloat16 by :func:`gemm_gflops`, cached in ``cache`` per CPU and torch."""
    import torch

    def measure() -> dict[str, Any]:
        f32, bf16 = gemm_gflops("float32"), gemm_gflops("bfloat16")
        return {"dtype": "bfloat16" if bf16 > 1.2 * f32 else "float32",
                "reason": f"measured GEMM: bfloat16 {bf16:.0f} vs float32 {f32:.0f} GFLOP/s"}

    stored = cached_measurement(cache, f"{cpu_name()} | {os.cpu_count()} cores | torch {torch.__version__}", measure)
    return CpuChoice(stored["dtype"], stored["reason"])


def cpu_dtype_choice(flags: Iterable[str] | None = None, probe_cache: Path | None = None) -> CpuChoice:
    """What ``dtype="auto"`` means on this CPU, and why.

    Args:
        flags: CPU flags to decide from (default: :func:`cpu_flags`); ``None`` where unreadable: measured.
        probe_cache: Where a measured choice is cached (default: ``~/.cache/rank1/hardware.json``).
    """
    forced = os.environ.get(DTYPE_ENV)
    if forced:
        return CpuChoice(forced, f"${DTYPE_ENV}")
    flags = cpu_flags() if flags is None else frozenset(flags)
    if flags is None:
        return _probe((probe_cache or PROBE_FILE).expanduser())
    if has_bf16_units(flags):
        return CpuChoice("bfloat16", "CPU has " + ", ".join(f for f in BF16_FLAGS if f in flags))
    return CpuChoice("float32", "CPU has no bfloat16 matrix units (no amx_bf16/avx512_bf16)")


def describe_cpu() -> str:
    """One line about this CPU for benchmark results: model, cores, the flags that decide speed."""
    flags = cpu_flags() or frozenset()
    shown = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", *BF16_FLAGS, "amx_int8") if f in flags]
    return f"{cpu_name()}, {os.cpu_count()} cores, flags: {' '.join(shown) or 'unknown'}"
