"""Throughput side by side: Rank1's reference approach, our transformers backend, our vLLM backend, raw vLLM.

Same model, same DL19 pairs (the BM25 top ``--depth`` of whole queries, so nDCG@10 can be compared), same
mode and budget, one process, one run (these machines are shared and noisy: read the ratios).

Variants:
  reference     Rank1's approach on transformers: one ``model.generate`` call per pair, greedy, with Rank1's
                stop strings ``["</think> true", "</think> false"]``; the score from the answer-step logits
                (direct mode: one ``generate`` step per pair on the closed prompt). The stop-string criterion
                is built once and reused: transformers 5.19 rebuilds its vocabulary table on every
                ``generate(stop_strings=...)`` call (its cache misses), a cost per pair that is an artefact
                of the library, not of the approach (README.md, "Speed").
  transformers  ``Reranker(backend="transformers")``: length-bucketed batches, KV-cached reasoning.
  vllm          ``Reranker(backend="vllm")``: every pair in one ``LLM.generate`` call; in reasoning mode the
                answer is read in that call where the output allows it, else in a second call.
  vllm_two_call reasoning mode: the same backend with ``answer_in_round`` off (every answer in a second call).
  raw_vllm      ``LLM.generate`` alone on the identical token prompts: direct mode, the vLLM backend's
                sampling parameters; reasoning mode, its plain first round (greedy until the tag, an end token
                or the budget). In reasoning mode it judges nothing (no answer step): a lower bound.
  raw_rank1     reasoning mode: Rank1's own two-call vLLM recipe with raw ``LLM.generate`` on the same token
                prompts (stop strings and top-20 logprobs, then one answer step for the pairs without an
                answer): the same judgements' work without our layer.
                The prefix cache is reset before each vLLM variant.

Model FLOP utilisation = tokens x 2 x parameters (embedding table excluded) / time, over the throughput of a
1024x1024 matrix multiply (bfloat16 and float32) measured in the same run with torch; the model runs in
float32 on CPU, so ``mfu.float32`` is the number to read there.

Example:
    OMP_NUM_THREADS=2 VLLM_CPU_KVCACHE_SPACE=1 nice -n 10 python -m benchmarks.speed --pairs 200 --mode direct
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from benchmarks._common import RESULTS, header, load_trec_dl, top, write_json
from rank1.backends.base import JudgeSettings, Prompt
from rank1.hardware import gemm_gflops
from rank1.metrics import evaluate
from rank1.models import BASE_MODEL
from rank1.reranker import Reranker
from rank1.results import rank_query
from rank1.scoring import Judgement, p_true, split_reasoning

RANK1_STOPS = ["</think> true", "</think> false"]


class PeakRSS:
    """Peak resident memory of this process and all its descendants (the vLLM engine runs in children)."""

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self.proc, self.interval, self.peak, self._stop = psutil.Process(), interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except Exception:  # noqa: BLE001 (a child may exit between listing and reading)
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def matmul_flops(dtype_name: str, n: int = 1024, seconds: float = 3.0) -> float:
    """Measured FLOP/s of an n x n matrix multiply in ``dtype_name`` with torch (this process's threads)."""
    return gemm_gflops(dtype_name, n, seconds) * 1e9


def model_params(path: str, exclude: tuple[str, ...] = ("embed_tokens",)) -> int:
    """Parameters of the safetensors checkpoint at ``path``, without the tensors whose names contain one of
    ``exclude`` (default: the input embedding table)."""
    from safetensors import safe_open

    total = 0
    for file in Path(path).glob("*.safetensors"):
        with safe_open(str(file), "pt") as f:
            for name in f.keys():
                if not any(x in name for x in exclude):
                    total += math.prod(f.get_slice(name).get_shape())
    return total


def reference_judge(backend: Any, prompts: list[Prompt], settings: JudgeSettings) -> list[Judgement]:
    """Rank1's approach on the transformers backend's model: one greedy ``generate`` call per pair with its
    stop strings; the answer read from the logits of the step after ``</think>`` (the budget's last step when
    it never closes)."""
    import torch
    from transformers import StoppingCriteriaList, StopStringCriteria

    model, tokenizer = backend.model, backend.tokenizer
    true_id, false_id = backend.answer_tokens(settings)
    stops = StoppingCriteriaList([StopStringCriteria(tokenizer, RANK1_STOPS)])  # once, see the module docstring
    out = []
    for prompt in prompts:
        text = prompt.text + (settings.close_empty if settings.mode == "direct" else "")
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=settings.add_special_tokens)
        n_new = 1 if settings.mode == "direct" else settings.budget
        with torch.inference_mode():
            gen = model.generate(**enc, max_new_tokens=n_new, do_sample=False, output_logits=True,
                                 return_dict_in_generate=True, stopping_criteria=stops,
                                 pad_token_id=tokenizer.pad_token_id)
        new = gen.sequences[0, enc["input_ids"].shape[1]:].tolist()
        logits = gen.logits[-1][0].float()  # Rank1 reads the last step: the answer after "</think>"
        reasoning = tokenizer.decode(new, skip_special_tokens=True)
        out.append(Judgement(p_true(float(logits[true_id]), float(logits[false_id])), reasoning,
                             0 if settings.mode == "direct" else len(new), prompt.truncated))
    return out


def counted(tokens: list[int], eos: Sequence[int]) -> int:
    """Generated tokens as the vLLM backend counts them: a final end token is not counted."""
    return len(tokens) - (bool(tokens) and tokens[-1] in eos)


def raw_vllm_judge(backend: Any, prompts: list[Prompt], settings: JudgeSettings) -> tuple[list[float] | None, int]:
    """``LLM.generate`` alone on the vLLM backend's token prompts and sampling parameters (its first step):
    scores (direct) and generated tokens."""
    true_id, false_id = backend.answer_tokens(settings)
    if settings.mode == "direct":
        ids, _ = backend.encode([p.text + settings.close_empty for p in prompts], settings, room=1)
        params = backend.answer_params(settings)
    else:
        ids, _ = backend.encode([p.text for p in prompts], settings, room=backend.reasoning_room(settings))
        params = backend.reasoning_params(settings, in_round=False)
    outs = backend.generate(ids, params)
    if settings.mode != "direct":
        tokens = [list(o.outputs[0].token_ids) for o in outs]
        return None, sum(counted(t, backend.end_tokens) for t in tokens)
    scores = [p_true(o.outputs[0].logprobs[0][true_id].logprob, o.outputs[0].logprobs[0][false_id].logprob)
              for o in outs]
    return scores, 0


def raw_rank1_judge(backend: Any, prompts: list[Prompt], settings: JudgeSettings) -> tuple[list[float], int, int]:
    """Rank1's own vLLM recipe with raw ``LLM.generate`` on the vLLM backend's token prompts: greedy
    reasoning with ``stop=RANK1_STOPS`` and ``logprobs=20``, the score from the last step when both answers
    are in its top 20; for the other pairs a second call on the reasoning cut to its last sentence end plus
    ``"\\n</think>"`` and the answer prefix, one step with the two answers' log-probabilities. (The backend's
    engine reports logits in their place, ``logprobs_mode="processed_logits"``: the same top 20 and P(true).)

    Returns:
        Scores, generated tokens (end tokens not counted, as the vLLM backend counts them) and how many
        pairs needed the second call.
    """
    from vllm import SamplingParams

    true_id, false_id = backend.answer_tokens(settings)
    ids, _ = backend.encode([p.text for p in prompts], settings, room=backend.reasoning_room(settings))
    first = SamplingParams(temperature=0.0, max_tokens=settings.budget, logprobs=20, stop=RANK1_STOPS,
                           skip_special_tokens=False)
    scores: list[float | None] = [None] * len(ids)
    redo: list[int] = []
    tails: list[list[int]] = []
    generated = 0
    for i, out in enumerate(backend.generate(ids, first)):
        tokens = list(out.outputs[0].token_ids)
        generated += counted(tokens, backend.end_tokens)
        last = out.outputs[0].logprobs[-1] if tokens else {}
        if true_id in last and false_id in last:
            scores[i] = p_true(last[true_id].logprob, last[false_id].logprob)
        else:
            text, _ = split_reasoning(out.outputs[0].text, settings.think_close)
            redo.append(i)
            tails.append(ids[i] + backend.tokenizer.encode(settings.reclose(text), add_special_tokens=False))
    for i, score in zip(redo, backend.answer_scores(tails, settings)):
        scores[i] = score
    return [s if s is not None else 0.0 for s in scores], generated, len(redo)


def timed(name: str, fn: Callable[[], Any]) -> tuple[Any, float, int]:
    """Run ``fn`` once; (result, seconds, peak RSS of the process tree in bytes)."""
    gc.collect()
    print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
    with PeakRSS() as mem:
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {seconds:.1f} s", flush=True)
    return result, seconds, mem.peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=200, help="At least this many pairs (whole queries' top --depth).")
    ap.add_argument("--depth", type=int, default=10, help="Top documents per query.")
    ap.add_argument("--mode", choices=("direct", "reasoning"), default="direct")
    ap.add_argument("--budget", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8, help="transformers backend batch size.")
    ap.add_argument("--reference-pairs", type=int, default=0, help="Run the reference on the first N pairs only "
                    "(rounded up to whole queries; 0: all); its pairs/s is then measured on the subsample, and "
                    "every variant's nDCG@10 is also given on those queries.")
    ap.add_argument("--max-model-len", type=int, default=2048)
    ap.add_argument("--block-size", type=int, default=None, help="vLLM KV-cache block size (default: the "
                    "backend's, 32 on CPU).")
    ap.add_argument("--model", default=BASE_MODEL)
    ap.add_argument("--template", default=None, help="Prompt template (default: rank1).")
    ap.add_argument("--variants", default="reference,transformers,vllm,raw_vllm,raw_rank1",
                    help="Comma-separated; also vllm_two_call (reasoning mode).")
    ap.add_argument("--out", type=Path, default=RESULTS / "speed.json")
    args = ap.parse_args()
    variants = args.variants.split(",")

    data = load_trec_dl("dl19")
    n_queries = -(-args.pairs // args.depth)
    qids = list(data.run)[:n_queries]
    heads = {q: top(data.run[q], args.depth) for q in qids}
    pairs = [(data.topics[q].full_text, data.corpus[d].full_text) for q in qids for d in heads[q]]
    report: dict[str, Any] = {**header(), "model": args.model, "mode": args.mode,
                              "budget": args.budget if args.mode == "reasoning" else 0, "depth": args.depth,
                              "queries": len(qids), "pairs": len(pairs), "env": {k: os.environ.get(k) for k in
                              ("OMP_NUM_THREADS", "VLLM_CPU_KVCACHE_SPACE")}, "variants": {}}
    peak = {d: matmul_flops(d) for d in ("bfloat16", "float32")}
    report["matmul_flops"] = peak

    scored: dict[str, list[Judgement]] = {}

    def ndcg(judgements: list[Judgement], k: int) -> float:
        """nDCG@10 of the first ``k`` queries reranked with ``judgements`` (in pair order)."""
        run, it = {}, iter(judgements)
        for q in qids[:k]:
            head = [(d, data.run[q][d]) for d in heads[q]]
            tail = [d for d in top(data.run[q], 100) if d not in heads[q]]
            run[q] = {r.doc_id: r.score for r in rank_query(head, [next(it) for _ in head], tail)}
        return evaluate(run, {q: data.qrels[q] for q in qids[:k]}, ["nDCG@10"])["nDCG@10"]

    def record(name: str, judgements: list[Judgement] | None, seconds: float, mem: int, n_pairs: int,
               prompt_tokens: int, generated: int, **extra: Any) -> None:
        row: dict[str, Any] = {"seconds": round(seconds, 2), "pairs": n_pairs, "pairs_per_s": n_pairs / seconds,
                               "prompt_tokens": prompt_tokens, "prompt_tokens_per_s": prompt_tokens / seconds,
                               "generated_tokens": generated, "generated_tokens_per_s": generated / seconds,
                               "peak_rss_mb": round(mem / 2**20)}
        flops = (prompt_tokens + generated) * 2 * report["params"] / seconds
        row["mfu"] = {d: flops / v for d, v in peak.items()}
        if judgements is not None:
            scored[name] = judgements
            if n_pairs == len(pairs):
                row["ndcg@10"] = ndcg(judgements, len(qids))
            if not name.startswith("raw"):  # the raw variants' judgements carry scores only
                row["fallbacks"] = sum(j.fallback for j in judgements)
        row.update(extra)
        report["variants"][name] = row
        print(f"  {name}: {row['pairs_per_s']:.3f} pairs/s, {row['generated_tokens_per_s']:.2f} gen tok/s, "
              f"nDCG@10 {row.get('ndcg@10', float('nan')):.4f}", flush=True)

    hf = Reranker(model=args.model, mode=args.mode, budget=args.budget, batch_size=args.batch_size,
                  template=args.template)
    report["params"] = model_params(hf.model_ref.path)
    prompts = [hf.prompts.build(q, p) for q, p in pairs]
    settings = hf.settings
    enc = hf.backend.tokenizer([p.text for p in prompts], add_special_tokens=settings.add_special_tokens)
    lengths = [len(x) for x in enc["input_ids"]]
    if "transformers" in variants:
        judged, sec, mem = timed("transformers", lambda: hf.backend.judge(prompts, settings))
        record("transformers", judged, sec, mem, len(pairs), sum(lengths), sum(j.generated_tokens for j in judged))
    if "reference" in variants:
        n_ref = min(-(-args.reference_pairs // args.depth) * args.depth, len(pairs)) or len(pairs)  # whole queries
        judged, sec, mem = timed("reference", lambda: reference_judge(hf.backend, prompts[:n_ref], settings))
        record("reference", judged, sec, mem, n_ref, sum(lengths[:n_ref]), sum(j.generated_tokens for j in judged),
               subsampled=n_ref < len(pairs))
    del hf
    gc.collect()

    if {"vllm", "vllm_two_call", "raw_vllm", "raw_rank1"} & set(variants):
        start = time.perf_counter()
        vl = Reranker(model=args.model, backend="vllm", mode=args.mode, budget=args.budget, template=args.template,
                      backend_options={"max_model_len": args.max_model_len, "block_size": args.block_size})
        report["vllm_startup_s"] = round(time.perf_counter() - start, 1)
        report["vllm_block_size"] = vl.backend.llm.llm_engine.vllm_config.cache_config.block_size
        llm = vl.backend.llm
        if "raw_vllm" in variants:
            llm.reset_prefix_cache()
            (scores, generated), sec, mem = timed("raw_vllm", lambda: raw_vllm_judge(vl.backend, prompts, settings))
            record("raw_vllm", [Judgement(s) for s in scores] if scores else None, sec, mem, len(pairs),
                   sum(lengths), generated)
        if "raw_rank1" in variants and args.mode == "reasoning":
            llm.reset_prefix_cache()
            (scores, generated, redo), sec, mem = timed("raw_rank1", lambda: raw_rank1_judge(vl.backend, prompts,
                                                                                              settings))
            record("raw_rank1", [Judgement(s) for s in scores], sec, mem, len(pairs), sum(lengths), generated,
                   second_call=redo)
        for name, in_round in (("vllm_two_call", False), ("vllm", True)):
            if name not in variants or (not in_round and args.mode != "reasoning"):
                continue
            llm.reset_prefix_cache()
            vl.backend.answer_in_round, before = in_round, vl.backend.second_calls
            judged, sec, mem = timed(name, lambda: vl.backend.judge(prompts, settings))
            record(name, judged, sec, mem, len(pairs), sum(lengths), sum(j.generated_tokens for j in judged),
                   second_calls=vl.backend.second_calls - before)
        vl.close()

    v = report["variants"]
    if "reference" in scored and len(scored["reference"]) < len(pairs):  # compare all on the reference's queries
        ref = scored["reference"]
        for name, judged in scored.items():
            v[name]["ndcg@10_reference_queries"] = ndcg(judged, len(ref) // args.depth)
            v[name]["max_abs_score_diff_vs_reference"] = max(abs(a.score - b.score) for a, b in zip(judged, ref))

    def ratio(a: str, b: str) -> float | None:
        return v[a]["pairs_per_s"] / v[b]["pairs_per_s"] if a in v and b in v else None

    best = max((n for n in ("vllm", "transformers") if n in v), key=lambda n: v[n]["pairs_per_s"], default=None)
    report["ratios"] = {"vllm_vs_reference": ratio("vllm", "reference"),
                        "transformers_vs_reference": ratio("transformers", "reference"),
                        "vllm_vs_transformers": ratio("vllm", "transformers"),
                        "vllm_vs_raw_vllm": ratio("vllm", "raw_vllm"),
                        "vllm_vs_vllm_two_call": ratio("vllm", "vllm_two_call"),
                        "vllm_vs_raw_rank1": ratio("vllm", "raw_rank1")}
    report["speedup_vs_reference"] = ratio(best, "reference") if best else None
    report["speedup_vs_reference_backend"] = best
    raw = ratio("raw_vllm", "vllm")
    report["overhead_vs_raw_vllm"] = raw - 1 if raw is not None else None
    rank1 = ratio("raw_rank1", "vllm")
    report["overhead_vs_raw_rank1"] = rank1 - 1 if rank1 is not None else None
    write_json(args.out, report)


if __name__ == "__main__":
    main()
