"""Quantized CPU paths against the exact ones, side by side on one machine (issue 34).

Not a test. Each variant is a backend with its options:

  float32      transformers, float32: the exact path.
  bfloat16     transformers, bfloat16 with float32 answers (what ``dtype=auto`` gives on CPUs with bf16 units; on
               an AVX2-only CPU torch emulates it, slowly).
  torch-int8   transformers, ``quantize=int8``: torch's dynamic int8 linear layers (per-tensor weights).
  torch-int8-mixed
               transformers, ``quantize=int8-mixed``: the same with per-channel weights, the MLP down projections
               and the output layer in float32 (``--quantize int8-mixed``).
  torch-int8-smooth
               transformers, ``quantize=int8-smooth``: ``int8-mixed`` after SmoothQuant (the int8 layers' inputs
               flattened channel by channel, calibrated on the sample collection; ``--quantize int8-smooth``).
  ct2-int8     ctranslate2, ``compute_type=int8``: int8 weights per output channel (``--backend ctranslate2``).
  ov-int8      openvino, ``weight_format=int8``: NNCF int8 weights per output channel, activations quantized on the
               fly in groups of 32 (OpenVINO's CPU default; ``--backend openvino``).
  ov-int8-wo, ov-int4-wo
               the same weights with exact (float) activations, weight-only (``activation_group=0``).
  ov-int4      openvino, ``weight_format=int4``: NNCF int4 weights in groups of 128 (embeddings and output layer int8).
  ov-int8-bf16, ov-int4-bf16
               the same with ``dtype=bfloat16``: OpenVINO computes the activations and holds the key/value cache in
               bfloat16 (its ``INFERENCE_PRECISION_HINT``), for CPUs with bf16 units.
  lcpp-q8_0    llamacpp, ``weight_format=q8_0``: the merged weights written into the base's GGUF in q8_0 (int8 in
               blocks of 32), run by llama.cpp (``--backend llamacpp``; ``pip install 'rank1[llamacpp]'``).
  lcpp-q4_0    llamacpp, ``weight_format=q4_0``: 4-bit blocks of 32 (the embedding / output matrix q8_0).
  bnb-nf4      transformers, ``quantize=4bit``: bitsandbytes' NF4 weights in blocks of 64, bfloat16 compute, on its
               CPU kernels (``--quantize 4bit``).
  bnb-int8     transformers, ``quantize=8bit``: bitsandbytes' LLM.int8() (``--quantize 8bit``).
  vllm-float32 vllm, float32: the exact path on vLLM's CPU engine (``--backend vllm``), which decodes a batch's
               sequences together, so it is the fastest exact reasoning path on a CPU; for the speed part (its
               scores equal float32's to ~1e-6). Set ``VLLM_CPU_KVCACHE_SPACE`` (GiB, e.g. 2).
  vllm-bfloat16
               vllm, bfloat16 with a float32 output layer: the exact path on vLLM where the CPU has bf16 units.
  vllm-int8    vllm, ``weight_format=int8``: rank1's W8A8 copy (SmoothQuant, int8 weights per output channel, int8
               activations per token, the MLP down projections and the output layer float32) in vLLM's CPU engine
               (``--backend vllm --quantize int8``; :mod:`rank1.backends.vllm_int8`).
  vllm-int8-bf16
               the same copy with ``dtype=bfloat16``: the layers left unquantized, the activations between the
               int8 products and the key/value cache in bfloat16, for CPUs with bf16 units.
  vllm-int8-full, vllm-int8-full-bf16
               vllm, ``weight_format=int8-full``: the same copies with the MLP down projections smoothed and in
               int8 too (``--quantize int8-full``); only the output layer stays float.
  vllm-bfloat16-t512, vllm-int8-t512, vllm-int8-bf16-t512, vllm-int8-full-t512, vllm-int8-full-bf16-t512
               the same with ``max_num_batched_tokens=512`` (vLLM's CPU default: 4,096 tokens a step): oneDNN's
               int8 products lose most of their lead over bfloat16 on thousands of rows
               (``python -m benchmarks.gemm_rate --vllm``); only speed, the scores are the same.

Parts (``--parts``; each writes its rows into the same JSON, so the slow quality part and the speed part can run
at different times and speed can be measured with the CPU to itself):

* ``quality``: the default model in direct mode on DL19/DL20 BM25 top ``--depth`` of every judged query
  (nDCG@10) and the first ``--nevir-pairs`` NevIR test pairs (paired accuracy), with counter-query contrast
  ``--contrast`` (default 0: the plain direct score); against ``--reference`` (float32 unless given) the paired
  difference with a 95% bootstrap interval (queries, resp. pairs, resampled). Judgements go through the score
  store, so the part resumes. With the dev collections (``--collections msmarco-dev,contrast-dev,exclude-dev,
  exclude-hard``) each variant also gets the verdict of the gate a quantized default must pass
  (:mod:`benchmarks.quantized_dev`), under ``gate[reference]``.
* ``speed``: direct mode on the first ``--speed-pairs`` DL19 pairs and reasoning mode (``--reasoning-model`` at
  budget ``--budget``) on the first ``--reasoning-pairs``; no store; pairs/s and generated tokens/s, under
  ``--speed-label`` (run it again with the libraries limited to AVX2 to time an AVX2-only CPU on this one).

Example::

    python -m benchmarks.quantized --parts quality --out benchmarks/results/quantized.json
    python -m benchmarks.quantized --parts speed --out benchmarks/results/quantized.json
    CT2_FORCE_CPU_ISA=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
    FBGEMM_ENABLE_INSTRUCTIONS=AVX2 python -m benchmarks.quantized --parts speed \
        --variants float32,torch-int8,torch-int8-mixed,ct2-int8 --speed-label avx2 --out benchmarks/results/quantized.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from benchmarks._common import header, write_json
from benchmarks.budget import collections
from benchmarks.quantized_dev import DEV_COLLECTIONS, dev_collection, gate
from benchmarks.student import bootstrap_ci, per_query
from rank1.hardware import cpu_dtype_choice, describe_cpu
from rank1.reranker import Reranker, RerankerConfig
from rank1.results import reweight
from rank1.store import ScoreStore, default_store_path

ISA_ENV = ("CT2_FORCE_CPU_ISA", "ONEDNN_MAX_CPU_ISA", "OV_CPU_MAX_ISA", "ATEN_CPU_CAPABILITY",
           "MKL_ENABLE_INSTRUCTIONS", "FBGEMM_ENABLE_INSTRUCTIONS", "RANK1_CPU_DTYPE")
"""Environment variables that limit the instruction sets the libraries use (to time an AVX2-only CPU here).
torch's dynamic int8 layers run on FBGEMM, which ``ATEN_CPU_CAPABILITY`` does not hold: it needs
``FBGEMM_ENABLE_INSTRUCTIONS=AVX2`` (rows timed before 2026-12-04 lack it, so their torch-int8 ran AVX-512 kernels).
OpenVINO's own kernels honour ``OV_CPU_MAX_ISA`` only in builds with debug capabilities (release wheels up to
2026.4 ignore it; its oneDNN part follows ``ONEDNN_MAX_CPU_ISA``), so an OpenVINO row held to AVX2 is partly
held."""

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "float32": ("transformers", {"dtype": "float32"}),
    "bfloat16": ("transformers", {"dtype": "bfloat16"}),
    "torch-int8": ("transformers", {"quantize": "int8"}),
    "torch-int8-mixed": ("transformers", {"quantize": "int8-mixed"}),
    "torch-int8-smooth": ("transformers", {"quantize": "int8-smooth"}),
    "ct2-int8": ("ctranslate2", {"compute_type": "int8"}),
    "ov-int8": ("openvino", {"weight_format": "int8"}),
    "ov-int4": ("openvino", {"weight_format": "int4"}),
    "ov-int8-wo": ("openvino", {"weight_format": "int8", "activation_group": 0}),
    "ov-int4-wo": ("openvino", {"weight_format": "int4", "activation_group": 0}),
    "ov-int8-bf16": ("openvino", {"weight_format": "int8", "dtype": "bfloat16"}),
    "ov-int4-bf16": ("openvino", {"weight_format": "int4", "dtype": "bfloat16"}),
    "lcpp-q8_0": ("llamacpp", {"weight_format": "q8_0"}),
    "lcpp-q4_0": ("llamacpp", {"weight_format": "q4_0"}),
    "bnb-nf4": ("transformers", {"quantize": "4bit"}),
    "bnb-int8": ("transformers", {"quantize": "8bit"}),
    "vllm-float32": ("vllm", {"dtype": "float32"}),
    "vllm-bfloat16": ("vllm", {"dtype": "bfloat16"}),
    "vllm-int8": ("vllm", {"dtype": "float32", "weight_format": "int8"}),
    "vllm-int8-bf16": ("vllm", {"dtype": "bfloat16", "weight_format": "int8"}),
    "vllm-int8-full": ("vllm", {"dtype": "float32", "weight_format": "int8-full"}),
    "vllm-int8-full-bf16": ("vllm", {"dtype": "bfloat16", "weight_format": "int8-full"}),
}
VARIANTS.update({f"{name}-t512": (VARIANTS[name][0], {**VARIANTS[name][1], "max_num_batched_tokens": 512})
                 for name in ("vllm-bfloat16", "vllm-int8", "vllm-int8-bf16", "vllm-int8-full", "vllm-int8-full-bf16")})


def reranker(variant: str, **settings: Any) -> Reranker:
    """A reranker of ``variant`` (``model=None``: rank1's default model; no counter-query contrast unless
    ``contrast`` is given)."""
    backend, options = VARIANTS[variant]
    settings = {"contrast": 0.0, **{k: v for k, v in settings.items() if not (k == "model" and v is None)}}
    return Reranker(RerankerConfig(fusion_weight=0.0, backend=backend, backend_options=options, **settings))


def pair_hits(run: dict[str, dict[str, float]], pairs: list[tuple[str, str, str, str]]) -> dict[str, float]:
    """1.0 per NevIR pair that both its queries get right, else 0.0 (keyed by the pair's first query)."""
    from rank1.metrics import paired_accuracy

    return {qa: paired_accuracy(run, [(qa, da, qb, db)]) for qa, da, qb, db in pairs}


def quality(variant: str, model: str | None, data: dict[str, dict[str, Any]], store: ScoreStore,
            report: dict[str, Any], contrast: float = 0.0, reference: str = "float32") -> None:
    """Judge every collection with ``variant`` in direct mode (with counter-query ``contrast``); record quality and
    the paired difference to ``reference`` (which must come first, with the same model and contrast), and on the
    dev collections the verdict of :func:`benchmarks.quantized_dev.gate`."""
    entry = report["variants"].setdefault(variant, {})
    with reranker(variant, model=model, mode="direct", batch_size=8, contrast=contrast) as r:
        entry.update(backend=VARIANTS[variant][0], options=VARIANTS[variant][1], engine=r.store_settings.engine,
                     model=r.meta["model"], contrast=contrast, quality_cpu=describe_cpu())
        exact = report["variants"].get(reference, {})
        same = variant != reference and exact.get("model") == entry["model"] and exact.get("contrast", 0.0) == contrast
        if variant != reference and not same:
            print(f"{variant}: no {reference} rows with {entry['model']} and contrast {contrast} in the report, so no "
                  f"differences (run --variants {reference},{variant})", flush=True)
        for name, c in data.items():
            result = r.rerank_run(c["run"], c["corpus"], c["topics"], depth=c["depth"], store=store)
            ranked = reweight(result, c["run"], 0.0)
            units = (c["values"](ranked) if "values" in c else pair_hits(ranked, c["pairs"]) if "pairs" in c
                     else per_query(ranked, c["qrels"]))
            value = c["measure"](ranked) if "measure" in c else round(sum(units.values()) / len(units), 4)
            row: dict[str, Any] = {c["metric"]: value, "judgements": sum(map(len, ranked.values())),
                                   "command": report.get("command")}
            ref_units = exact.get("units", {}).get(name) if same else None
            if ref_units:
                row[f"diff_vs_{reference}"] = sum(units[u] - ref_units[u] for u in units) / len(units)
                row[f"diff_ci95_vs_{reference}"] = bootstrap_ci(units, ref_units)
            entry.setdefault("quality", {})[name] = row
            entry.setdefault("units", {})[name] = units
            print(variant, name, row, flush=True)
        if same and (verdict := gate(entry["units"], exact["units"])) is not None:
            entry.setdefault("gate", {})[reference] = verdict
            print(variant, "gate against", reference, verdict, flush=True)


def speed(variant: str, args: argparse.Namespace, data: dict[str, dict[str, Any]], report: dict[str, Any]) -> None:
    """Direct pairs/s on DL19 pairs, and reasoning pairs/s and generated tokens/s, without the store; recorded
    under ``speed[args.speed_label]`` with the ISA limits in force (the environment variables that set them)."""
    c = data["dl19"]
    pairs = [(c["topics"][q].full_text, c["corpus"][d].full_text) for q, docs in c["run"].items() for d in docs]
    row: dict[str, Any] = {"cpu": describe_cpu(), "date": header()["date"],
                           "isa_env": {k: v for k, v in os.environ.items() if k in ISA_ENV}}
    with reranker(variant, model=args.model, mode="direct", batch_size=8) as r:
        r.score(pairs[:8])  # warm up (first-call allocations, one-time conversions)
        start = time.perf_counter()
        r.score(pairs[: args.speed_pairs])
        row["direct_pairs_per_second"] = round(args.speed_pairs / (time.perf_counter() - start), 3)
        row["direct_pairs"] = args.speed_pairs
    if args.reasoning_pairs:
        with reranker(variant, model=args.reasoning_model, mode="reasoning", budget=args.budget, batch_size=8) as r:
            r.score(pairs[:2])
            start = time.perf_counter()
            judged = r.score(pairs[: args.reasoning_pairs])
            seconds = time.perf_counter() - start
            tokens = sum(j.generated_tokens for j in judged)
            row["reasoning"] = {"model": args.reasoning_model, "budget": args.budget, "pairs": len(judged),
                                "pairs_per_second": round(len(judged) / seconds, 3),
                                "generated_tokens_per_second": round(tokens / seconds, 2),
                                "generated_tokens_per_pair": round(tokens / len(judged), 1),
                                "fallbacks": sum(j.fallback for j in judged)}
    entry = report["variants"].setdefault(variant, {})
    entry.update(backend=VARIANTS[variant][0], options=VARIANTS[variant][1])
    entry.setdefault("speed", {})[args.speed_label] = row
    print(variant, args.speed_label, row, flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--parts", default="quality,speed")
    ap.add_argument("--model", default="rank1-0.5b-labels-v3",
                    help="the direct-mode model (default: the one whose float32 reference is in quantized.json; the "
                         "default model until 2026-12-02)")
    ap.add_argument("--contrast", type=float, default=0.0, help="quality: counter-query contrast W (rank1 rerank "
                    "--contrast; 0: the plain direct score)")
    ap.add_argument("--collections", default="dl19,dl20,nevir", help="quality: which of dl19, dl20, nevir "
                    "(test pairs), and the dev sets: nevir-train (the 50 train pairs), msmarco-dev, contrast-dev, "
                    "exclude-dev, exclude-hard (benchmarks.quantized_dev: the gate a default must pass)")
    ap.add_argument("--reference", default="float32", help="quality: the variant the others are compared with "
                    "(run first); the gate's: the exact path a candidate would replace (bfloat16 on bf16 CPUs)")
    ap.add_argument("--dev-queries", type=int, default=40, help="msmarco-dev: how many dev-split queries")
    ap.add_argument("--contrast-dev", default=None, help="contrast-dev: the paired dev groups (rank1 distill "
                    "contrast --dev-out)")
    ap.add_argument("--exclude-dev", default=None, help="exclude-dev, exclude-hard: the dev groups with the "
                    "exclusion rules")
    ap.add_argument("--queries", type=int, default=0, help="only the first N judged DL queries (0: all)")
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--nevir-pairs", type=int, default=300)
    ap.add_argument("--speed-pairs", type=int, default=200)
    ap.add_argument("--reasoning-model", default="rank1-0.5b-reasoning")
    ap.add_argument("--reasoning-pairs", type=int, default=16)
    ap.add_argument("--budget", type=int, default=128)
    ap.add_argument("--speed-label", default="native", help="where the speed rows go, e.g. avx2 for a run under "
                    "CT2_FORCE_CPU_ISA=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 ...")
    ap.add_argument("--store", default=str(default_store_path()))
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    unknown = set(args.collections.split(",")) - {"dl19", "dl20", "nevir", "nevir-train", *DEV_COLLECTIONS}
    if unknown:
        ap.error(f"unknown collections: {', '.join(sorted(unknown))}")
    data = collections(args.queries, args.depth, args.nevir_pairs, names=("dl19", *args.collections.split(",")))
    quality_data = {name: c for name, c in data.items() if name in args.collections.split(",")}
    quality_data.update({name: dev_collection(name, args.dev_queries, args.contrast_dev, args.exclude_dev)
                         for name in args.collections.split(",") if name in DEV_COLLECTIONS})
    report: dict[str, Any] = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {"variants": {}}
    choice = cpu_dtype_choice()
    report.update(header(), depth=args.depth, nevir_pairs=args.nevir_pairs, auto_dtype=choice.dtype,
                  auto_reason=choice.reason)
    variants = args.variants.split(",")
    with ScoreStore(args.store) as store:
        for variant in variants if "quality" in args.parts else []:
            quality(variant, args.model, quality_data, store, report, args.contrast, args.reference)
            write_json(args.out, report)
    for variant in variants if "speed" in args.parts else []:
        speed(variant, args, data, report)
        report["speed_settings"] = {"speed_pairs": args.speed_pairs, "reasoning_pairs": args.reasoning_pairs,
                                    "budget": args.budget}
        write_json(args.out, report)


if __name__ == "__main__":
    main()
