"""Rank1's key ablation at CPU scale: a student trained on teacher reasoning vs. one trained on labels alone.

Teacher (reasoning mode) writes traces for training pairs from DL19's judged passages and NevIR's train
pairs (never DL20 or the NevIR test pairs); the traces are filtered; the student is trained (a) on the
filtered traces, reasoning + answer (``student_traces``) and (b) on the labels of the same pairs alone
(``student_labels``); ``base``, (a) and (b) are evaluated in direct mode on a fixed DL20 subset (first
``--eval-queries`` judged queries by id, BM25 top ``--eval-depth``; nDCG@10) and the first ``--nevir`` NevIR
test pairs (paired accuracy); ``base`` and (a) also in reasoning mode (``--eval-budget``, vLLM backend). Every stage is resumable (its outputs are kept in ``--work``), so the script can
be run again after an interruption. Writes ``benchmarks/results/distill.json``.

    OMP_NUM_THREADS=2 VLLM_CPU_KVCACHE_SPACE=2 python -m benchmarks.distill_experiment --pairs 48 \
        --budget 256 --teacher-backend vllm --teacher-template think-chat-answer
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rank1.models import BASE_MODEL

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def training_pairs(n: int, seed: int) -> tuple[list[Any], dict[str, Any], dict[str, str]]:
    """Half DL19 (1 positive, 1 hard negative from ranks 1-5, 1 from 6-10 per query; grades >= 2 relevant,
    labels binarised), half NevIR train (each query with its own and the other document)."""
    from distill.sampling import SamplingConfig, nevir_pairs, sample_pairs, shuffled
    from rank1.metrics import read_nevir_pairs
    from rank1.io import read_qrels, read_rankllm

    dl = read_rankllm(DATA / "trec_dl" / "bm25_top100_dl19.json")
    qrels = read_qrels(DATA / "trec_dl" / "qrels.dl19-passage.txt")
    cfg = SamplingConfig(positives=1, hard_top5=1, hard_6_10=1, min_rel=2, judged_only=True, seed=seed)
    dl_pairs = [p._replace(label=int(p.label >= 2)) for p in sample_pairs(qrels, dl.run, cfg, available=dl.corpus)]
    nv_topics, nv_corpus, nv = read_nevir_pairs(DATA / "nevir" / "nevir_mini_train_q1_50_seed42.jsonl")
    pairs = shuffled(dl_pairs, seed, n // 2) + shuffled(nevir_pairs(nv), seed, n - n // 2)
    topics = {**dl.topics, **nv_topics}
    passages = {k: d.full_text for k, d in {**dl.corpus, **nv_corpus}.items()}
    return shuffled(pairs, seed), topics, passages


def evaluate_model(model: str, args: argparse.Namespace, cache: Path, budget: int = 0) -> dict[str, Any]:
    """nDCG@10 on the DL20 subset and paired accuracy on the NevIR subset (cached in ``cache``): direct mode
    on the transformers backend, or with a ``budget`` reasoning mode on the vLLM backend."""
    if cache.exists():
        return json.loads(cache.read_text())
    from rank1 import Reranker, read_qrels, read_rankllm
    from rank1.metrics import evaluate, paired_accuracy, read_nevir_pairs

    t0 = time.time()
    if budget:
        reranker = Reranker(model=model, mode="reasoning", budget=budget, backend="vllm", batch_size=64,
                            backend_options={"max_model_len": 2048})
    else:
        reranker = Reranker(model=model, mode="direct", batch_size=8)
    dl = read_rankllm(DATA / "trec_dl" / "bm25_top100_dl20.json")
    qrels_path = DATA / "trec_dl" / "qrels.dl20-passage.txt"
    qids = sorted(q for q in read_qrels(qrels_path) if q in dl.run)[: args.eval_queries]
    run = {q: dl.run[q] for q in qids}
    result = reranker.rerank_run(run, dl.corpus, dl.topics, depth=args.eval_depth, progress=False)
    topics, corpus, pairs = read_nevir_pairs(DATA / "nevir" / "derived_test1000_pairs.jsonl")
    pairs = pairs[: args.nevir]
    nv_first = {q: {da: 0.0, db: 0.0} for qa, da, qb, db in pairs for q in (qa, qb)}
    nv_run = reranker.rerank_run(nv_first, corpus, topics, depth=2, progress=False).scores()
    out = {"dl20_ndcg10": evaluate(result.scores(), str(qrels_path), ["nDCG@10"])["nDCG@10"],
           "bm25_dl20_ndcg10": evaluate(run, str(qrels_path), ["nDCG@10"])["nDCG@10"],
           "nevir_paired_accuracy": paired_accuracy(nv_run, pairs), "eval_seconds": round(time.time() - t0, 1),
           "mode": "reasoning" if budget else "direct", "budget": budget,
           "dl20_gen_tokens_per_pair": round(result.stats.generated_tokens / max(result.stats.pairs, 1), 1)}
    reranker.close()
    cache.write_text(json.dumps(out, indent=1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="qwen2.5-coder-1.5b")
    ap.add_argument("--student", default=BASE_MODEL)
    ap.add_argument("--pairs", type=int, default=48)
    ap.add_argument("--budget", type=int, default=128)
    ap.add_argument("--teacher-dtype", default="auto")
    ap.add_argument("--teacher-backend", default="transformers", choices=["transformers", "vllm"])
    ap.add_argument("--teacher-template", default=None,
                    help="Teacher prompt template (default: rank1; think-chat-answer asks an instruct model to reason).")
    ap.add_argument("--teacher-max-model-len", type=int, default=2048, help="vllm teacher context length.")
    ap.add_argument("--teacher-url", default=None,
                    help="OpenAI-compatible endpoint serving --teacher (e.g. `vllm serve`): the teacher answers the "
                         "chat turn freely with Rank1's sampling settings (temperature 0.3, 1000 tokens).")
    ap.add_argument("--teacher-workers", type=int, default=16, help="Requests in flight to --teacher-url.")
    ap.add_argument("--teacher-max-tokens", type=int, default=1000, help="Most tokens per --teacher-url reply.")
    ap.add_argument("--eval-queries", type=int, default=10)
    ap.add_argument("--eval-depth", type=int, default=10)
    ap.add_argument("--nevir", type=int, default=25)
    ap.add_argument("--eval-budget", type=int, default=128,
                    help="Also evaluate base and student_traces in reasoning mode with this budget (0: no).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only-generated", action="store_true",
                    help="Use only the pairs already in the traces file (generation stopped early); no teacher.")
    ap.add_argument("--note", default="", help="A free-text note stored in the JSON (what was not done and why).")
    ap.add_argument("--train-steps", type=int, default=-1, help="Cap on optimiser steps (-1: --epochs).")
    ap.add_argument("--epochs", type=float, default=1.0, help="Training epochs (cpu-demo preset otherwise).")
    ap.add_argument("--work", default=str(Path.home() / ".cache" / "rank1" / "distill-experiment"))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "distill.json"))
    ap.add_argument("--stop-after", choices=["generate", "train", "eval"], default="eval")
    ap.add_argument("--eval-base-only", action="store_true", help="Only evaluate the base student (cached).")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.eval_base_only:
        print(evaluate_model(args.student, args, _eval_cache(work, "base", args)), flush=True)
        return

    from distill.filtering import FilterConfig, filter_traces
    from distill.records import read_traces, write_traces
    from distill.teacher import RerankerTeacher, done_keys, generate
    from distill.train import preset, train
    from distill.export import export

    from benchmarks._common import header

    report: dict[str, Any] = {**header(), "settings": vars(args), "runs": {}, "stages": {}}
    pairs, topics, passages = training_pairs(args.pairs, args.seed)
    report["training_pairs"] = {"total": len(pairs), "by_source": {s: sum(p.source == s for p in pairs)
                                                                 for s in sorted({p.source for p in pairs})}}
    kind = "chat" if args.teacher_url else f"b{args.budget}"
    traces_path = work / f"traces-{args.teacher}-{args.teacher_template or 'rank1'}-{kind}.jsonl"
    t0 = time.time()
    if args.only_generated:
        done = done_keys(traces_path)
        pairs = [p for p in pairs if (p.qid, p.docid) in done]
        report["training_pairs"]["generated_before_stop"] = len(pairs)
    if {(p.qid, p.docid) for p in pairs} - done_keys(traces_path):  # load the teacher only when needed
        teacher, batch = make_teacher(args)
        stats = generate(pairs, topics, passages, teacher, traces_path, batch_size=batch, progress=True)
        if isinstance(teacher, RerankerTeacher):
            teacher.reranker.close()
        del teacher
        gen_stats = {**vars(stats), "wall_seconds_with_loading": round(time.time() - t0, 1)}
        (work / f"{traces_path.stem}.stats.json").write_text(json.dumps(gen_stats))
    if (work / f"{traces_path.stem}.stats.json").exists():  # kept for reruns that find the traces done
        report["stages"]["generate"] = json.loads((work / f"{traces_path.stem}.stats.json").read_text())
    keys = {(p.qid, p.docid) for p in pairs}
    written = read_traces(traces_path) if traces_path.exists() and traces_path.stat().st_size else []
    traces = [t for t in written if t.key in keys]
    report["teacher"] = {"traces": len(traces), "tokens": sum(t.tokens for t in traces),
                         "fallbacks": sum(t.fallback for t in traces),
                         "accuracy_vs_labels": (sum(t.answer == (t.label >= 1) for t in traces) / len(traces)
                                                if traces else None)}
    kept, freport = filter_traces(traces, FilterConfig(min_rel=1))
    write_traces(work / "filtered.jsonl", kept)
    report["filter"] = freport.as_dict()
    print("\n".join(freport.lines()), flush=True)
    _write(report, args.out)
    for name in ("base", "student_traces", "student_labels"):  # evaluations already made (cached)
        if _eval_cache(work, name, args).exists():
            report["runs"][name] = json.loads(_eval_cache(work, name, args).read_text())
    if args.stop_after == "generate":
        report["status"] = "stopped after generation and filtering; students not trained"
        return _write(report, args.out)
    models = {"base": args.student}
    for name, reasoning in (("student_traces", True), ("student_labels", False)):
        adapter, merged = work / f"{name}-adapter", work / f"{name}-model"
        if not (adapter / "train_log.json").exists():
            result = train(kept, args.student, adapter, preset("cpu-demo", with_reasoning=reasoning, seed=args.seed,
                                                                      max_steps=args.train_steps, epochs=args.epochs))
            print(f"{name}: {result.steps} steps, {result.seconds:.0f}s, losses {result.losses[:2]}..{result.losses[-2:]}")
        if not (merged / "config.json").exists():
            t1 = time.time()
            export(adapter, merged, data=f"{len(kept)} filtered traces of {args.teacher} (budget {args.budget})")
            report["stages"][f"export_{name}"] = round(time.time() - t1, 1)
        log = json.loads((adapter / "train_log.json").read_text())
        report["stages"][f"train_{name}"] = {k: log[k] for k in ("rows", "steps", "seconds", "losses")}
        models[name] = str(merged)
        _write(report, args.out)
    if args.stop_after == "train":
        return _write(report, args.out)
    for name, model in models.items():
        report["runs"][name] = {"model": model, **evaluate_model(model, args, _eval_cache(work, name, args))}
        if args.eval_budget and name != "student_labels":  # the models that reason: also in reasoning mode
            report["runs"][name]["reasoning"] = evaluate_model(
                model, args, _eval_cache(work, f"{name}-reasoning-b{args.eval_budget}", args), args.eval_budget)
        print(name, report["runs"][name], flush=True)
        _write(report, args.out)
    _write(report, args.out)


def make_teacher(args: argparse.Namespace) -> tuple[Any, int]:
    """The teacher the arguments name, and how many pairs to hand it at a time."""
    from distill.teacher import ChatTeacher, RerankerTeacher

    if args.teacher_url:
        template = args.teacher_template or "rank1"
        return ChatTeacher(args.teacher_url, args.teacher, template=template, workers=args.teacher_workers,
                           max_tokens=args.teacher_max_tokens), args.teacher_workers
    options: dict[str, Any] = {"dtype": args.teacher_dtype}
    if args.teacher_backend == "vllm":
        options["max_model_len"] = args.teacher_max_model_len
    batch = 32 if args.teacher_backend == "vllm" else 8
    return RerankerTeacher(args.teacher, backend=args.teacher_backend, budget=args.budget,
                           template=args.teacher_template, batch_size=batch, **options), batch


def _eval_cache(work: Path, name: str, args: argparse.Namespace) -> Path:
    return work / f"eval-{name}-{args.eval_queries}-{args.eval_depth}-{args.nevir}.json"


def _write(report: dict[str, Any], out: str) -> None:
    from rank1.io.atomic import atomic_write

    with atomic_write(out) as fh:
        json.dump(report, fh, indent=1)
        fh.write("\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
