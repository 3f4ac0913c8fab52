"""This CPU's arithmetic rate for the reranker's matrix products, float32 and int8 (issue 34).

Not a test. Two parts:

* torch (always): one MLP up projection of Qwen2.5-0.5B (896 -> 4864) applied to ``--rows`` tokens (a prompt, or
  a batch of them), in float32 (``torch.nn.Linear``) and in torch's dynamic int8 (FBGEMM, what ``--quantize int8``
  and ``int8-mixed`` run), in GFLOP/s: the ceiling a compute-bound reranker meets on this machine. Compare it with
  a model's rate (pairs/s x GFLOP a pair) to tell whether arithmetic or memory sets the pace.
* vLLM (``--vllm``): the products of a whole Qwen2.5-0.5B forward pass (24 layers of the q/k/v, attention output,
  gate/up and down projections; not attention, norms or the output layer) through the kernels vLLM's CPU build
  runs for them: oneDNN float32 and bfloat16 (``--backend vllm``), and oneDNN int8 with each token's activations
  quantized on the fly (rank1's int8 copies, ``--quantize int8`` / ``int8-full``: in int8 the first three
  projections, or all four; float32 or bfloat16 between the products), in milliseconds for ``--rows`` tokens and
  as a ratio to the fastest exact variant. That ratio bounds what an int8 copy can gain in direct mode, where
  prompts (many tokens a call) set the pace.

Example::

    python -m benchmarks.gemm_rate --rows 128 1024 --out benchmarks/results/gemm_rate_zen1.json
    python -m benchmarks.gemm_rate --vllm --rows 128 512 2048 --out benchmarks/results/gemm_rate_zen4.json
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any, Callable

from benchmarks._common import header, write_json
from rank1.backends.vllm_int8 import KEEP_FLOAT
from rank1.backends.vllm_step import int8_product
from rank1.hardware import timed_gflops

IN_FEATURES, OUT_FEATURES = 896, 4864
"""Qwen2.5-0.5B's hidden size and MLP width."""
LAYERS = 24
PROJECTIONS = {"qkv": (896, 1152), "o": (896, 896), "gate_up": (896, 9728), "down": (4864, 896)}
"""Qwen2.5-0.5B's projections as vLLM fuses them: name -> (in features, out features)."""
INT8_LAYERS = {fmt: tuple(p for p in PROJECTIONS if f"{p}_proj" not in keep) for fmt, keep in KEEP_FLOAT.items()}
"""Which projections each of rank1's int8 copies multiplies in int8: all but its ``KEEP_FLOAT`` layers."""


def torch_rows(rows: list[int], seconds: float) -> list[dict[str, Any]]:
    """float32 and FBGEMM dynamic int8 GFLOP/s of the up projection at each row count."""
    import torch

    torch.manual_seed(0)
    linear = torch.nn.Linear(IN_FEATURES, OUT_FEATURES, bias=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices: the kernel is what --quantize int8 runs
        int8 = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(linear), {torch.nn.Linear},
                                                      dtype=torch.qint8)
    out = []
    with torch.inference_mode():
        for n in rows:
            x = torch.randn(n, IN_FEATURES)
            flops = 2.0 * n * IN_FEATURES * OUT_FEATURES
            row = {"rows": n, "float32_gflops": round(timed_gflops(lambda: linear(x), flops, seconds), 1),
                   "int8_dynamic_gflops": round(timed_gflops(lambda: int8(x), flops, seconds), 1)}
            out.append(row)
            print(row, flush=True)
    return out


def vllm_products(dtype: Any) -> dict[str, dict[str, Callable[[Any], Any]]]:
    """For each projection, vLLM's CPU kernels as they run it: ``exact`` (oneDNN in ``dtype``) and ``int8``
    (per-channel int8 weights, each token's activations quantized on the fly, output in ``dtype``)."""
    import torch
    from vllm import _custom_ops as ops

    products: dict[str, dict[str, Callable[[Any], Any]]] = {}
    for name, (k, n) in PROJECTIONS.items():
        weight = (torch.randn(n, k) / k**0.5).to(dtype)
        exact = ops.create_onednn_mm(weight.t(), 32)
        products[name] = {"exact": lambda x, h=exact: ops.onednn_mm(h, x, None), "int8": int8_product(k, n, dtype)}
    return products


def vllm_rows(rows: list[int], seconds: float) -> list[dict[str, Any]]:
    """Milliseconds of a forward pass's products for each variant and row count (see the module docstring)."""
    import torch

    torch.manual_seed(0)
    out = []
    with torch.inference_mode():
        kernels = {dtype: vllm_products(getattr(torch, dtype)) for dtype in ("float32", "bfloat16")}
        for m in rows:
            ms: dict[str, dict[str, float]] = {}
            for dtype, products in kernels.items():
                for name, (k, n) in PROJECTIONS.items():
                    x = torch.randn(m, k).to(getattr(torch, dtype))
                    flops = 2.0 * m * k * n
                    for kind, call in products[name].items():
                        gflops = timed_gflops(lambda: call(x), flops, seconds)
                        ms.setdefault(f"{kind}-{dtype}", {})[name] = LAYERS * flops / gflops / 1e6
            totals = {"float32": sum(ms["exact-float32"].values()), "bfloat16": sum(ms["exact-bfloat16"].values())}
            for fmt, layers in INT8_LAYERS.items():
                for dtype in ("float32", "bfloat16"):
                    name = fmt if dtype == "float32" else f"{fmt}-bf16"
                    totals[name] = sum(ms[("int8-" if p in layers else "exact-") + dtype][p] for p in PROJECTIONS)
            fastest_exact = min(totals["float32"], totals["bfloat16"])
            row = {"rows": m, "ms": {k: round(v, 2) for k, v in totals.items()},
                   "x_fastest_exact": {k: round(fastest_exact / v, 2) for k, v in totals.items()},
                   "ms_by_projection": {k: {p: round(t, 2) for p, t in v.items()} for k, v in ms.items()}}
            out.append(row)
            print({k: row[k] for k in ("rows", "ms", "x_fastest_exact")}, flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[128, 1024], help="tokens a product (default 128 1024)")
    ap.add_argument("--seconds", type=float, default=2.0, help="time each product at least this long")
    ap.add_argument("--vllm", action="store_true", help="also time vLLM's CPU kernels over a whole forward pass")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    import torch

    report = {**header(), "threads": torch.get_num_threads(), "shape": [IN_FEATURES, OUT_FEATURES],
              "rows": torch_rows(args.rows, args.seconds)}
    if args.vllm:
        report["vllm"] = {"projections": PROJECTIONS, "layers": LAYERS, "int8_layers": INT8_LAYERS,
                          "rows": vllm_rows(args.rows, args.seconds)}
    write_json(args.out, report)


if __name__ == "__main__":
    main()
