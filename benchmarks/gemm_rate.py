"""This CPU's arithmetic rate for the reranker's largest matrix product, float32 and int8 (issue 34).

Not a test. One MLP up projection of Qwen2.5-0.5B (896 -> 4864) applied to ``--rows`` tokens (a prompt, or a
batch of them), in float32 (``torch.nn.Linear``) and in torch's dynamic int8 (FBGEMM, what ``--quantize int8`` and
``int8-mixed`` run), in GFLOP/s: the ceiling a compute-bound reranker meets on this machine. Compare it with a
model's rate (pairs/s x GFLOP a pair) to tell whether arithmetic or memory sets the pace.

Example::

    python -m benchmarks.gemm_rate --rows 128 1024 --out benchmarks/results/gemm_rate_zen1.json
"""

from __future__ import annotations

import argparse
import warnings

from benchmarks._common import header, write_json
from rank1.hardware import timed_gflops

IN_FEATURES, OUT_FEATURES = 896, 4864
"""Qwen2.5-0.5B's hidden size and MLP width."""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[128, 1024], help="tokens a product (default 128 1024)")
    ap.add_argument("--seconds", type=float, default=2.0, help="time each product at least this long")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    import torch

    torch.manual_seed(0)
    linear = torch.nn.Linear(IN_FEATURES, OUT_FEATURES, bias=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices: the kernel is what --quantize int8 runs
        int8 = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(linear), {torch.nn.Linear},
                                                      dtype=torch.qint8)
    rows = []
    with torch.inference_mode():
        for n in args.rows:
            x = torch.randn(n, IN_FEATURES)
            flops = 2.0 * n * IN_FEATURES * OUT_FEATURES
            row = {"rows": n, "float32_gflops": round(timed_gflops(lambda: linear(x), flops, args.seconds), 1),
                   "int8_dynamic_gflops": round(timed_gflops(lambda: int8(x), flops, args.seconds), 1)}
            rows.append(row)
            print(row, flush=True)
    write_json(args.out, {**header(), "threads": torch.get_num_threads(), "shape": [IN_FEATURES, OUT_FEATURES],
                          "rows": rows})


if __name__ == "__main__":
    main()
