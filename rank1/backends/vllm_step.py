"""How many prompt tokens a vLLM step computes for rank1's int8 copies on this CPU (``max_num_batched_tokens``).

The copies (:mod:`rank1.backends.vllm_int8`) run oneDNN's int8 products on the CPU, with each token's activations
quantized on the fly. On a Zen 4 EPYC those kept a 1.7x lead over bfloat16 on 128-512 rows and only 1.16x on 2,048
(``python -m benchmarks.gemm_rate --vllm``, docs/cpu-speed.md), while vLLM's CPU engine computes up to 4,096 prompt
tokens a step: in direct mode a call's prompts fill the steps, and the products ran where they are slowest. Where
the lead holds depends on the CPU and the kernel library, so it is measured once per machine (a few seconds:
the int8 product of the widest projection per row on :data:`SMALL` rows against :data:`LARGE`) and cached in
:data:`STEP_FILE`, not assumed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, NamedTuple

from rank1.hardware import cached_measurement, cpu_name, timed_gflops

SMALL, LARGE = 512, 4096
"""The step tried and vLLM's CPU default (tokens a step)."""
GAIN = 1.1
"""How much faster a row must be on :data:`SMALL` rows to take the smaller step (more steps cost scheduling and
more passes over the weights)."""
ROUNDS = 3
"""Interleaved timing rounds; the best of each counts (about half a second a round and size)."""
WIDEST = (896, 9728)
"""Qwen2.5-0.5B's fused gate and up projection (in, out features): most of a forward pass's products."""
STEP_FILE = Path("~/.cache/rank1/vllm-int8-step.json")


class StepChoice(NamedTuple):
    """The step for the int8 copies (``None``: vLLM's default) and why."""

    step: int | None
    reason: str


def int8_product(k: int, n: int, dtype: Any) -> Callable[[Any], Any]:
    """``x -> x @ W.T`` as vLLM's CPU build computes a layer of rank1's int8 copies with oneDNN: ``W`` random int8
    per output channel (``n`` x ``k``), each row of ``x`` quantized to int8 on the fly, the output in ``dtype``."""
    import torch
    from vllm import _custom_ops as ops

    weight = torch.randint(-127, 128, (n, k), dtype=torch.int8)
    handler = ops.create_onednn_scaled_mm(weight.t(), torch.rand(n, 1) / 64, dtype, True, False, 32)

    def product(x: Any) -> Any:
        x_q, x_s, _ = ops.onednn_scaled_int8_quant(x, None, None, True)
        return ops.onednn_scaled_mm(handler, x_q, torch.empty((x.size(0), n), dtype=x.dtype), x_s, None, None, None)

    return product


def _measure() -> dict[str, Any]:
    """The widest int8 product's rate (GFLOP/s) on :data:`SMALL` and :data:`LARGE` rows, and the step it gives."""
    import torch

    k, n = WIDEST
    product = int8_product(k, n, torch.float32)
    rate = {SMALL: 0.0, LARGE: 0.0}
    with torch.inference_mode():
        for _ in range(ROUNDS):  # the best of a few interleaved rounds: a shape's first round runs slow
            for m in rate:
                rate[m] = max(rate[m], timed_gflops(lambda x=torch.randn(m, k): product(x), 2.0 * m * k * n))
    gain = rate[SMALL] / rate[LARGE]
    return {"step": SMALL if gain > GAIN else None,
            "reason": f"measured int8 products: {rate[SMALL]:.0f} GFLOP/s on {SMALL} rows, {rate[LARGE]:.0f} on "
                      f"{LARGE}"}


def int8_step(cache: Path | None = None) -> StepChoice:
    """The step for rank1's int8 copies on this CPU: :data:`SMALL` where the measurement says int8 products run
    more than :data:`GAIN` times faster a row there than on :data:`LARGE` rows, else ``None`` (vLLM's default).
    On AMX CPUs vLLM runs sgl-kernel's int8 products instead, not measured here: ``None``.

    Args:
        cache: Where the measurement is cached (default :data:`STEP_FILE`).
    """
    import torch
    import vllm

    if torch.cpu._is_amx_tile_supported():
        return StepChoice(None, "AMX: vLLM runs sgl-kernel's int8 products (not measured)")
    key = f"{cpu_name()} | {os.cpu_count()} cores | torch {torch.__version__} | vllm {vllm.__version__}"
    try:
        stored = cached_measurement((cache or STEP_FILE).expanduser(), key, _measure)
    except RuntimeError as err:  # no oneDNN int8 kernels in this build
        return StepChoice(None, f"int8 products could not be measured ({err})")
    return StepChoice(stored["step"], stored["reason"])
