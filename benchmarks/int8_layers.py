"""Which linear layers ``--quantize int8-mixed`` keeps in float32, chosen on the MS MARCO dev split (issue 34).

Not a test. torch's dynamic int8 layers quantize each layer's input with one scale per batch; layers whose
inputs are heavy-tailed lose most of their values to rounding. Each candidate below quantizes the model's
linear layers with one weight scale per output channel except the layers it names, which stay float32:

  per-tensor          every linear layer, one weight scale per tensor (``--quantize int8``; nothing kept).
  per-channel         every linear layer, one scale per output channel (nothing kept).
  lm_head             the output layer kept (the answers are read from it).
  down_proj+lm_head   the MLP down projections kept too (``--quantize int8-mixed`` until 2026-12-04; since then
                      its output layer is int8 for generation, the answers read from its float32 rows).
  o_proj+down_proj+lm_head
                      the attention output projections kept as well.
  attention+down_proj+lm_head
                      every attention projection kept as well: only the MLP gate and up projections are int8
                      (58% of the linear weights of a Qwen2.5-0.5B block).
  smooth+down_proj+lm_head
                      down_proj+lm_head after SmoothQuant (alpha 0.5) on the int8 layers' inputs: the body of
                      ``--quantize int8-smooth`` (:mod:`rank1.backends.smooth`, maxima from the sample collection).
  smooth+lm_head      SmoothQuant on every linear input, the down projections' included, all int8 but the output.

The pairs are the held-out MS MARCO dev split's first ``--queries`` queries (with a labelled positive) x their
BM25 top-20 (``benchmarks.student.msmarco_dev``), never a test collection. Per candidate: mean and largest
|P(true) - float32's P(true)| over the pairs, the rank correlation with float32, and nDCG@10 of the dev
queries with the paired difference to float32 (95% bootstrap interval, queries resampled). The model is loaded
once in float32; each candidate quantizes a copy of it in place of the backend's model, so nothing else
changes between rows. No score store: every candidate is judged afresh. Pairs/s are recorded with the
instruction-set limits in force (``benchmarks.quantized.ISA_ENV``): run it held to AVX2 to time the laptop case.

Example::

    CT2_FORCE_CPU_ISA=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
    FBGEMM_ENABLE_INSTRUCTIONS=AVX2 python -m benchmarks.int8_layers --out benchmarks/results/int8_layers.json
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from benchmarks._common import header, write_json
from benchmarks.quantized import ISA_ENV
from benchmarks.student import bootstrap_ci, msmarco_dev, per_query
from rank1.backends.int8 import activation_maxima_of, int8_linear
from rank1.backends.smooth import DEFAULT_ALPHA, smooth_model
from rank1.reranker import Reranker, RerankerConfig

DOWN_AND_HEAD = ("down_proj", "lm_head")
"""``--quantize int8-mixed``'s float32 layers until 2026-12-04 (the candidates below are named after them)."""

CANDIDATES: dict[str, tuple[bool, tuple[str, ...]]] = {
    "per-tensor": (False, ()),
    "per-channel": (True, ()),
    "lm_head": (True, ("lm_head",)),
    "down_proj+lm_head": (True, DOWN_AND_HEAD),
    "o_proj+down_proj+lm_head": (True, ("o_proj", *DOWN_AND_HEAD)),
    "attention+down_proj+lm_head": (True, ("q_proj", "k_proj", "v_proj", "o_proj", *DOWN_AND_HEAD)),
    "smooth+down_proj+lm_head": (True, DOWN_AND_HEAD),
    "smooth+lm_head": (True, ("lm_head",)),
}
"""Candidate -> (``mixed``, ``keep_float``) of :func:`rank1.backends.int8.int8_linear`; a ``smooth+`` candidate
first applies SmoothQuant to a copy (the inputs of the layers it keeps in float32 left alone). The answers are
read from the model's own logits (the backend's float32 answer path belongs to the float32 model it loaded), so
a candidate that quantizes the output layer reads them from its int8 rows."""


def quantized_copy(name: str, exact: Any, maxima: dict[str, Any]) -> Any:
    """Candidate ``name`` made from the float32 model ``exact`` (left as it is)."""
    import copy

    mixed, keep = CANDIDATES[name]
    if name.startswith("smooth+"):
        skip = ("down",) if "down_proj" in keep else ()
        exact = smooth_model(copy.deepcopy(exact), maxima, DEFAULT_ALPHA, skip=skip)
    return int8_linear(exact, mixed=mixed, keep_float=keep)


def _rank_correlation(a: list[float], b: list[float]) -> float:
    """Spearman's rho of two score lists (ties broken by position)."""
    import numpy as np

    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def judge(r: Reranker, c: dict[str, Any]) -> tuple[dict[tuple[str, str], float], float]:
    """P(true) of every (query, passage) pair of ``c`` with the reranker's current model, and pairs/s."""
    keys = [(q, d) for q, docs in c["run"].items() for d in sorted(docs)]
    pairs = [(c["topics"][q].full_text, c["corpus"][d].full_text) for q, d in keys]
    start = time.perf_counter()
    judged = r.score(pairs)
    seconds = time.perf_counter() - start
    return {k: j.score for k, j in zip(keys, judged)}, len(pairs) / seconds


def ndcg_units(scores: dict[tuple[str, str], float], c: dict[str, Any]) -> dict[str, float]:
    """Per-query nDCG@10 of the run of ``c`` reranked by ``scores``."""
    return per_query({q: {d: scores[q, d] for d in docs} for q, docs in c["run"].items()}, c["qrels"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="default: rank1's default model")
    ap.add_argument("--queries", type=int, default=16, help="dev queries (x their BM25 top-20)")
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    c = msmarco_dev(args.queries)
    settings = {"model": args.model} if args.model else {}
    report: dict[str, Any] = {**header(), "queries": len(c["run"]), "pairs": sum(map(len, c["run"].values())),
                              "isa_env": {k: v for k, v in os.environ.items() if k in ISA_ENV}, "candidates": {}}
    with Reranker(RerankerConfig(contrast=0.0, fusion_weight=0.0, backend_options={"dtype": "float32"}, mode="direct",
                                 batch_size=8, **settings)) as r:
        report["model"] = r.meta["model"]
        exact = r.backend.model  # float32; int8_linear quantizes a copy of it
        names = args.candidates.split(",")
        smoothed = any(name.startswith("smooth+") for name in names)  # calibrate (once per model) only for them
        maxima = activation_maxima_of(r.model_ref, exact, r.backend.tokenizer) if smoothed else {}
        reference, rate = judge(r, c)
        exact_units = ndcg_units(reference, c)
        report["float32"] = {"ndcg10": round(sum(exact_units.values()) / len(exact_units), 4),
                             "pairs_per_second": round(rate, 3)}
        print("float32", report["float32"], flush=True)
        for name in names:
            mixed, keep = CANDIDATES[name]
            r.backend.model = quantized_copy(name, exact, maxima)
            scores, rate = judge(r, c)
            r.backend.model = exact
            keys = sorted(reference)
            diffs = [abs(scores[k] - reference[k]) for k in keys]
            units = ndcg_units(scores, c)
            row = {"keep_float32": list(keep), "per_channel": mixed,
                   "mean_abs_dp": round(sum(diffs) / len(diffs), 4), "max_abs_dp": round(max(diffs), 4),
                   "rank_correlation": round(_rank_correlation([scores[k] for k in keys],
                                                               [reference[k] for k in keys]), 4),
                   "ndcg10": round(sum(units.values()) / len(units), 4),
                   "diff_vs_float32": round(sum(units[q] - exact_units[q] for q in units) / len(units), 4),
                   "diff_ci95_vs_float32": bootstrap_ci(units, exact_units), "pairs_per_second": round(rate, 3)}
            report["candidates"][name] = row
            print(name, row, flush=True)
            write_json(args.out, report)


if __name__ == "__main__":
    main()
