"""Direct-mode CPU speed (issue 18): dtype, shared query prefixes, int8, padding, batch size; one machine, one run.

Every variant judges the same prompts: the BM25 top ``--depth`` of whole DL19 queries, at least ``--pairs``
of them (``--subset`` for the slow variants, the first whole queries of the same list), with the default
model in direct mode. Variants:

  reference      Rank1's approach: one ``generate`` step per pair (float32, see ``benchmarks/speed.py``).
  before         The transformers backend as it was: float32, every prompt computed whole (left-padded,
                 length-bucketed batches).
  float32        The transformers backend, float32, the query's shared head computed once per chunk
                 (:mod:`rank1.backends.prefix`).
  bfloat16       The same in bfloat16 (``dtype="auto"`` picks it on CPUs with AMX/AVX512-BF16); on a CPU without
                 bfloat16 units it is emulated, about 8x slower than float32, so only ``--bf16-pairs`` there.
  int8           The same with torch's dynamic int8 linear layers.
  vllm_noprefix  The vLLM backend with prefix caching off.
  vllm           The vLLM backend with prefix caching on (its hits counted from ``num_cached_tokens``).

Per variant: pairs/s, prompt tokens/s (every pair's whole prompt), tokens computed (reused heads left out,
padding counted), model FLOP utilisation (computed tokens x 2 x parameters of the blocks, without the embedding
table and the output layer, which direct mode runs at one position per pair / time) against a
1024x1024 GEMM measured in this run in the variant's dtype (int8 against float32), nDCG@10 of the reranked
top ``--depth`` (P(true) alone) and the largest P(true) difference from ``before`` on the same pairs.

The padding study needs no model: it replays the transformers backend's chunks, shared-head groups and
length buckets over every DL19 top-100 pair at each batch size, with the real tokenizer.

Example:
    OMP_NUM_THREADS=2 python -m benchmarks.speed_cpu --pairs 1000 --subset 200
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any

from benchmarks._common import RESULTS, header, load_trec_dl, top, write_json
from benchmarks.speed import model_params, reference_judge, timed
from rank1.backends.base import JudgeSettings, Prompt, TokenCounts
from rank1.backends.prefix import plan_shared
from rank1.backends.transformers import MIN_SHARED, TransformersBackend
from rank1.hardware import cpu_dtype_choice, gemm_gflops
from rank1.metrics import evaluate
from rank1.models import DEFAULT_MODEL
from rank1.reranker import Reranker
from rank1.results import rank_query
from rank1.scoring import Judgement

TRANSFORMERS = {
    "before": {"dtype": "float32", "share_prefix": False},
    "float32": {"dtype": "float32"},
    "bfloat16": {"dtype": "bfloat16"},
    "int8": {"quantize": "int8"},
}
VLLM = {"vllm_noprefix": {"enable_prefix_caching": False}, "vllm": {}}
SLOW = ("reference", "vllm_noprefix", "vllm")


def padding_study(tokenizer: Any, texts: list[str], settings: JudgeSettings, batch_sizes: list[int],
                  chunk_batches: int = TransformersBackend.direct_batches) -> dict[str, Any]:
    """Padded / real tokens of the transformers backend's batches over ``texts`` (direct-mode prompts, in
    judging order, in chunks of ``chunk_batches`` batches), per batch size: without shared heads (left-padded
    length buckets of whole prompts) and with them (one batch of a chunk's heads, then length buckets of the
    tails; :func:`~rank1.backends.prefix.plan_shared`), and the tokens computed per prompt token."""
    ids = tokenizer([t + settings.close_empty for t in texts], add_special_tokens=settings.add_special_tokens)
    ids = ids["input_ids"]
    out: dict[str, Any] = {"prompts": len(ids), "mean_prompt_tokens": sum(map(len, ids)) / len(ids),
                           "chunk_batches": chunk_batches}
    for size in batch_sizes:
        plain, shared = TokenCounts(), TokenCounts()
        step = size * chunk_batches
        for start in range(0, len(ids), step):
            chunk = ids[start : start + step]
            for batch in TransformersBackend._buckets([len(x) for x in chunk], size):
                plain.count([chunk[i] for i in batch], max(len(chunk[i]) for i in batch))
            plan = plan_shared(chunk, MIN_SHARED)
            shared.count(plan.heads, max(map(len, plan.heads)))
            shared.real += plan.saved
            shared.reused += plan.saved
            for batch in TransformersBackend._buckets([len(t) for t in plan.tails], size):
                shared.count([plan.tails[i] for i in batch], max(len(plan.tails[i]) for i in batch))
        out[f"batch_{size}"] = {
            "whole_prompts": {"padding_per_real_token": plain.padded / plain.real,
                              "computed_per_prompt_token": plain.computed / plain.real},
            "shared_heads": {"padding_per_real_token": shared.padded / shared.real,
                             "reused_per_prompt_token": shared.reused / shared.real,
                             "computed_per_prompt_token": shared.computed / shared.real},
        }
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=1000, help="At least this many pairs (whole queries).")
    ap.add_argument("--subset", type=int, default=200, help="Pairs for the slow variants (%s)." % ", ".join(SLOW))
    ap.add_argument("--bf16-pairs", type=int, default=0, help="Pairs for bfloat16 (default: --pairs where the CPU "
                    "has bfloat16 units, else 16: emulated, it runs about 8x slower than float32 there).")
    ap.add_argument("--depth", type=int, default=100, help="Top documents per query.")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--sweep", default="4,16", help="Other batch sizes for float32 and int8, on --subset pairs.")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--variants", default="reference,before,float32,bfloat16,int8,vllm_noprefix,vllm")
    ap.add_argument("--out", default=str(RESULTS / "speed_cpu.json"))
    args = ap.parse_args(argv)
    variants = args.variants.split(",")

    data = load_trec_dl("dl19")
    qids = list(data.run)[: -(-args.pairs // args.depth)]
    heads = {q: top(data.run[q], args.depth) for q in qids}
    pairs = [(data.topics[q].full_text, data.corpus[d].full_text) for q in qids for d in heads[q]]
    base = Reranker(model=args.model, mode="direct", batch_size=args.batch_size, fusion_weight=0.0, contrast=0.0,
                    backend_options=TRANSFORMERS["before"], load=False)
    report: dict[str, Any] = {**header(), "model": args.model, "depth": args.depth, "queries": len(qids), "pairs": len(pairs), "variants": {}}
    report["gemm_gflops"] = {d: gemm_gflops(d, seconds=3.0) for d in ("float32", "bfloat16")}
    # direct mode runs the output layer at one position per pair: the blocks are the compute
    report["params_without_embeddings_and_output_layer"] = params = model_params(
        base.model_ref.path, exclude=("embed_tokens", "lm_head"))
    prompts: list[Prompt] = [base.prompts.build(q, p) for q, p in pairs]
    settings = base.settings
    report["padding"] = padding_study(base.backend.tokenizer, [p.text for p in
                                      [base.prompts.build(data.topics[q].full_text, data.corpus[d].full_text)
                                       for q in data.run for d in top(data.run[q], 100)]],
                                      settings, [4, 8, 16])
    scores: dict[str, list[float]] = {}

    def record(name: str, got: list[float], seconds: float, mem: int, tokens: TokenCounts | None,
               dtype: str, **extra: Any) -> None:
        n = len(got)
        real = tokens.real if tokens and tokens.real else None
        computed = tokens.computed if tokens and tokens.real else None
        run = {q: {r.doc_id: r.score for r in rank_query(
            [(d, data.run[q][d]) for d in heads[q]], [Judgement(s) for s in got[i * args.depth:][:args.depth]], [])}
            for i, q in enumerate(qids[: n // args.depth])}
        ndcg = evaluate(run, {q: data.qrels[q] for q in run}, ["nDCG@10"])["nDCG@10"] if run else None
        row = {"pairs": n, "seconds": round(seconds, 1), "pairs_per_s": n / seconds, "dtype": dtype,
               "peak_rss_mb": round(mem / 2**20), "ndcg@10": ndcg, **extra}
        if real:
            row.update(prompt_tokens=real, prompt_tokens_per_s=real / seconds, computed_tokens=computed,
                       reused_tokens=tokens.reused, padded_tokens=tokens.padded,
                       mfu=computed * 2 * params / seconds / (report["gemm_gflops"][dtype] * 1e9))
        if "before" in scores and name != "before":  # on the pairs both judged
            row["max_abs_diff_vs_before"] = max(abs(a - b) for a, b in zip(got, scores["before"]))
            row["mean_abs_diff_vs_before"] = sum(abs(a - b) for a, b in zip(got, scores["before"])) / n
        scores[name] = got
        report["variants"][name] = row
        print(f"  {name}: {row['pairs_per_s']:.3f} pairs/s, nDCG@10 {row['ndcg@10']}", flush=True)
        write_json(args.out, report)

    subset = min(len(pairs), -(-args.subset // args.depth) * args.depth)

    def measure(name: str, r: Reranker, n: int, **extra: Any) -> None:
        """Judge the first ``n`` prompts with ``r``'s backend and record it as ``name``."""
        r.backend.tokens = TokenCounts()
        judged, sec, mem = timed(name, lambda: r.backend.judge(prompts[:n], r.settings))
        record(name, [j.score for j in judged], sec, mem, r.backend.tokens, r.backend.options.resolved_dtype(),
               batch_size=r.config.batch_size, **extra)

    bf16_pairs = args.bf16_pairs or (len(pairs) if cpu_dtype_choice().dtype == "bfloat16" else 16)
    for name in [v for v in ("before", "float32", "int8", "bfloat16") if v in variants]:
        r = base.replace(backend_options=TRANSFORMERS[name])
        measure(name, r, bf16_pairs if name == "bfloat16" else len(pairs))
        if name == "before" and "reference" in variants:
            judged, sec, mem = timed("reference", lambda: reference_judge(r.backend, prompts[:subset], settings))
            record("reference", [j.score for j in judged], sec, mem, None, "float32")
        if name in ("float32", "int8"):
            for size in [int(b) for b in args.sweep.split(",") if b]:
                measure(f"{name}_batch{size}", r.replace(batch_size=size), subset)  # shares the loaded weights
        r.close()
        gc.collect()
    for name in [v for v in VLLM if v in variants]:
        start = time.perf_counter()
        r = base.replace(backend="vllm", backend_options={"dtype": "float32", **VLLM[name]})
        r.backend  # start the engine outside the timing
        measure(name, r, subset, startup_s=round(time.perf_counter() - start, 1))
        r.close()
    v = report["variants"]
    report["speedups_vs_reference"] = {n: v[n]["pairs_per_s"] / v["reference"]["pairs_per_s"]
                                       for n in v if "reference" in v}
    write_json(args.out, report)


if __name__ == "__main__":
    main()
