"""The ``rank1`` command line: a thin shell over the Python API.

Every command parses its options, calls the API, and prints with rich. Bad input ends the command with a
one-line error naming the file and line, and exit code 2. Heavy libraries are imported inside the
commands, so ``rank1 --help`` is instant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from rank1 import __version__
from rank1.cli_errors import fail_cleanly
from rank1.duo import DUO_TEMPLATE  # light
from rank1.models import DEFAULT_MODEL  # light: no torch
from rank1.prompts import TEMPLATES  # light
from rank1.scoring import DEFAULT_BUDGET  # light

_BACKEND_HELP = ("transformers, vllm, ctranslate2 (int8 weights on the CPU; pip install 'rank1\\[ctranslate2]'), "
                 "openvino (int8/int4 weights on the CPU; pip install 'rank1\\[openvino]') or llamacpp (GGUF "
                 "q8_0/q4_0 weights on the CPU; pip install 'rank1\\[llamacpp]', compiles llama.cpp).")
"""(Rich markup: ``\\[`` keeps the extras' brackets, which it would take for a style.)"""
_TEMPLATE_HELP = f"Prompt template: {', '.join(t for t in TEMPLATES if t != DUO_TEMPLATE)} (default: rank1)."


def _pointwise(template: Optional[str]) -> Optional[str]:
    """``template`` unless it is the duo stage's pairwise one, which judges two passages at once (rank1.duo)."""
    if template == DUO_TEMPLATE:
        raise ValueError(f"--template {DUO_TEMPLATE} is the pairwise judge of rank1.duo's duo stage (two passages "
                         "in one prompt), not a template for judging one passage")
    return template

app = typer.Typer(
    help="rank1: a reasoning reranker. The model thinks, then answers true/false; the score is P(true).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)



def _version(value: bool) -> None:
    if value:
        out.print(f"rank1 {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """rank1: a reasoning reranker for search."""


def _table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    measures = list(next(iter(rows.values())))
    table = Table(title=title)
    table.add_column("run")
    for m in measures:
        table.add_column(m, justify="right")
    for name, values in rows.items():
        table.add_row(name, *(f"{values[m]:.4f}" for m in measures))
    return table


@app.command()
@fail_cleanly
def retrieve(
    corpus: Path = typer.Option(..., "--corpus", help="Corpus: BEIR jsonl, TSV, TREC SGML, Cranfield or rank_llm JSON."),
    topics: Path = typer.Option(..., "--topics", help="Topics: TSV, BEIR jsonl, TREC topics or Cranfield."),
    out_path: Path = typer.Option(..., "--out", help="Run file to write (TREC format, atomic)."),
    k: int = typer.Option(100, "-k", "--k", help="Documents per query."),
    index: Optional[Path] = typer.Option(None, "--index", help="Index folder: reused when it matches the corpus, else built there."),
    corpus_format: str = typer.Option("auto", "--corpus-format", help="auto, jsonl, tsv, trec, cranfield, rankllm."),
    topics_format: str = typer.Option("auto", "--topics-format", help="auto, tsv, jsonl, trec, cranfield, rankllm."),
    tag: str = typer.Option("bm25", "--tag", help="Run tag (last column)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """BM25 first stage (rank_bm25): retrieve the top k documents of every topic."""
    from rank1.retrieve import retrieve as run_bm25

    info = run_bm25(corpus, topics, out_path, k=k, index_dir=index, corpus_format=corpus_format,
                    topics_format=topics_format, progress=progress, tag=tag)
    out.print(f"wrote {out_path}: {info}")


@app.command()
@fail_cleanly
def rerank(
    out_path: Path = typer.Option(..., "--out", help="Reranked run to write (TREC format, atomic)."),
    run: Optional[Path] = typer.Option(None, "--run", help="First-stage run (TREC format)."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="Corpus with the run's documents."),
    topics: Optional[Path] = typer.Option(None, "--topics", help="Topics with the run's queries."),
    candidates: Optional[Path] = typer.Option(None, "--candidates", help="rank_llm JSON instead of run+corpus+topics."),
    traces: Optional[Path] = typer.Option(None, "--traces", help="Write every judgement (score, reasoning, flags) as JSONL."),
    depth: int = typer.Option(100, "--depth", help="Rerank the top DEPTH of each query; the rest stay below in order."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Embedded model name, local folder, .gguf file or hub id."),
    backend: str = typer.Option("transformers", "--backend", help=_BACKEND_HELP),
    mode: Optional[str] = typer.Option(None, "--mode", help="reasoning, direct, or adaptive (direct for all, reasoning "
                                       "for the top of each list). Default: the model's best (a shipped student's "
                                       "measured mode), else reasoning. A shipped student with an explainer (the "
                                       "rank1-0.5b-wise: rank1-0.5b-neg3) has it do the reasoning."),
    budget: int = typer.Option(DEFAULT_BUDGET, "--budget", help="Most reasoning tokens per pair."),
    adaptive_top: int = typer.Option(10, "--adaptive-top", help="Adaptive mode: reason on the top N of each query."),
    adaptive_band: float = typer.Option(0.0, "--adaptive-band", help="Adaptive mode: also reason where "
                                        "|P(true) - 0.5| <= BAND."),
    direct_blend: Optional[float] = typer.Option(None, "--direct-blend", help="Reasoning/adaptive: a reasoned pair "
                                                 "scores (1-B)*P(true) after reasoning + B*direct P(true) (one "
                                                 "extra forward). Default: the model's, chosen on dev (else 0)."),
    contrast: Optional[float] = typer.Option(None, "--contrast", help="Counter-query contrast W, for queries with "
                                             "a negation or exclusion ('not', 'except', ...): a pair scores "
                                             "(P(true) - W*P(true | counter-query) + W)/(1+W), the counter-query "
                                             "being the query without its negation, or what an exclusion excludes "
                                             "(one extra forward a pair). Default: the model's, chosen on dev (the "
                                             "default model: 1.5; else 0). 0: off."),
    template: Optional[str] = typer.Option(None, "--template", help=_TEMPLATE_HELP),
    batch_size: int = typer.Option(8, "--batch-size", help="Pairs per forward pass."),
    max_passage_tokens: int = typer.Option(512, "--max-passage-tokens", help="Longer passages are truncated (and counted)."),
    fusion_weight: Optional[float] = typer.Option(None, "--fusion-weight", help="Weight of the min-max normalised "
                                                  "first-stage score. Default: a shipped student's weight (chosen on "
                                                  "the MS MARCO dev split), else 0."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (CPU: bfloat16 where it has AMX/AVX512-BF16, else "
                              "float32; GPU: bfloat16), float32, bfloat16, float16."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, ..."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="transformers backend: 4bit or 8bit "
                                           "(bitsandbytes), int8, int8-mixed or int8-smooth (torch dynamic int8, CPU); "
                                           "the ctranslate2 backend is int8 already; openvino and llamacpp: int8 "
                                           "(default) or int4; vllm: int8 or int8-full (rank1's W8A8 copies "
                                           "of the model; int8-full also rounds the MLP down projections)."),
    max_model_len: Optional[int] = typer.Option(None, "--max-model-len", help="vLLM: context length of the engine "
                                                "(default: the model's); longer prompts are cut and counted."),
    gpu_memory_utilization: Optional[float] = typer.Option(None, "--gpu-memory-utilization",
                                                           help="vLLM: share of GPU memory to use (default 0.9)."),
    tensor_parallel_size: Optional[int] = typer.Option(None, "--tensor-parallel-size", help="vLLM: GPUs per model."),
    quantization: Optional[str] = typer.Option(None, "--quantization", help="vLLM: awq, gptq, fp8 or bitsandbytes."),
    enforce_eager: Optional[bool] = typer.Option(None, "--enforce-eager/--no-enforce-eager",
                                                 help="vLLM: no CUDA graphs or compilation (default: on for CPU)."),
    prefix_caching: Optional[bool] = typer.Option(None, "--prefix-caching/--no-prefix-caching",
                                                  help="vLLM: reuse the KV cache of shared prompt heads (default on)."),
    block_size: Optional[int] = typer.Option(None, "--block-size", help="vLLM: KV-cache block size, the unit of "
                                             "prefix reuse (default: 32 on CPU, vLLM's on GPU)."),
    max_num_batched_tokens: Optional[int] = typer.Option(
        None, "--max-num-batched-tokens", help="vLLM: tokens computed a step, only speed (default: "
        "--quantize int8/int8-full on CPU: 512 where measured faster, else vLLM's: 4,096 on CPU)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Converted-model cache (default ~/.cache/rank1/models)."),
    corpus_format: str = typer.Option("auto", "--corpus-format", help="auto, jsonl, tsv, trec, cranfield, rankllm."),
    topics_format: str = typer.Option("auto", "--topics-format", help="auto, tsv, jsonl, trec, cranfield, rankllm."),
    tag: str = typer.Option("rank1", "--tag", help="Run tag (last column)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Score cache: stored judgements are reused, new ones "
                                         "stored as they are made (default $RANK1_SCORE_CACHE or "
                                         "~/.cache/rank1/scores.sqlite)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the score cache."),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", help="Pairs judged and stored at a time "
                                             "(default 16 batches in direct mode, else 4); a crash loses at most one chunk."),
    engine: str = typer.Option("local", "--engine", help="local (this process) or ray (a Ray Data actor pool)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster (auto, host:6379, "
                                              "ray://host:10001; default $RAY_ADDRESS, else a local one)."),
    actors: Optional[int] = typer.Option(None, "--actors", help="Ray actors, one model each (default 1)."),
    gpus_per_actor: Optional[float] = typer.Option(None, "--gpus-per-actor", help="GPUs per Ray actor (default 0)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Rerank a first-stage run with the reasoning model (reusing the judgements in the score cache)."""
    from rank1.backends import check_options
    from rank1.backends import backend_options
    from rank1.pipeline import rerank_files
    from rank1.reranker import RerankerConfig
    from rank1.store import default_store_path

    if cache is not None and no_cache:
        raise ValueError("give --cache PATH or --no-cache, not both")
    from rank1.engines import make_engine

    judge_engine = make_engine(engine, address=ray_address, actors=actors, gpus_per_actor=gpus_per_actor)
    options = backend_options(backend, dtype, device, quantize, max_model_len=max_model_len,
                              gpu_memory_utilization=gpu_memory_utilization,
                              tensor_parallel_size=tensor_parallel_size, quantization=quantization,
                              enforce_eager=enforce_eager, enable_prefix_caching=prefix_caching,
                              block_size=block_size, max_num_batched_tokens=max_num_batched_tokens)
    config = RerankerConfig(model=model, backend=backend, mode=mode, budget=budget, template=_pointwise(template),
                            batch_size=batch_size, max_passage_tokens=max_passage_tokens,
                            fusion_weight=fusion_weight, cache_dir=str(cache_dir) if cache_dir else None,
                            backend_options=options, adaptive_top=adaptive_top, adaptive_band=adaptive_band,
                            direct_blend=direct_blend, contrast=contrast)
    result = rerank_files(out_path, config, run=run, corpus=corpus, topics=topics, candidates=candidates,
                          traces=traces, depth=depth, tag=tag, corpus_format=corpus_format,
                          topics_format=topics_format, progress=progress,
                          cache=None if no_cache else cache or default_store_path(), chunk_size=chunk_size,
                          engine=judge_engine)
    s = result.stats
    if s.empty:
        err.print(f"warning: {s.empty} documents of the run have an empty text: not judged, ranked below the "
                  "judged documents of their query", soft_wrap=True, highlight=False, markup=False)
    out.print(f"wrote {out_path}: {s.pairs} pairs ({s.cached} from the cache, {s.judged} judged in {s.seconds:.1f} s, "
              f"{s.judged / max(s.seconds, 1e-9):.2f} pairs/s), {s.generated_tokens} reasoning tokens, "
              + (f"{s.restaged} pairs judged again in reasoning mode after direct mode (both stages counted), "
                 if s.restaged else "")
              + (f"{s.counter} pairs judged again against their query's negation, " if s.counter else "")
              + f"{s.truncated} passages truncated, {s.fallbacks} fallbacks, {s.empty} empty passages skipped; "
              f"{backend} in {check_options(backend, options).dtype_summary()}"
              + (f"; reasoning by {result.meta['explainer']}" if "explainer" in result.meta else "")
              + (f"; {s.disagreements} traces reach the other verdict than their score (p_true_reasoned in the "
                 "traces)" if s.disagreements else ""),
              soft_wrap=True, highlight=False)


@app.command()
@fail_cleanly
def evaluate(
    run: Path = typer.Argument(..., help="Run file (TREC format)."),
    qrels: Path = typer.Argument(..., help="Qrels (TREC, BEIR TSV or Cranfield)."),
    measure: list[str] = typer.Option(["nDCG@10"], "-m", "--measure", help="ir_measures name; repeat for more."),
    qrels_format: str = typer.Option("auto", "--qrels-format", help="auto, trec, beir, cranfield."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    per_query: bool = typer.Option(False, "--per-query", help="Also give every query's values."),
) -> None:
    """Evaluate a run with ir_measures."""
    from rank1.metrics import evaluate as run_eval
    from rank1.io import read_qrels, read_run

    values, per = run_eval(read_run(run), read_qrels(qrels, fmt=qrels_format), measure, per_query=True)
    rows: dict[str, dict[str, float]] | None = None
    if per_query:
        rows = {}
        for row in per:
            rows.setdefault(row.query_id, {})[row.measure] = row.value
    if as_json:
        print(json.dumps({"run": str(run), "qrels": str(qrels), "measures": values,
                          **({"per_query": rows} if rows is not None else {})}, indent=2))
        return
    if rows:
        out.print(_table(f"{run.name}: per query", rows))
    out.print(_table(f"{run.name} vs {qrels.name}", {"all": values}))


@app.command("paired-accuracy")
@fail_cleanly
def paired_accuracy(
    run: Path = typer.Argument(..., help="Run over the NevIR queries ({id}_q1, {id}_q2)."),
    pairs: Path = typer.Argument(..., help="NevIR pairs JSONL (id, q1, q2, doc1, doc2)."),
) -> None:
    """NevIR paired accuracy: both queries of a pair rank their own document first."""
    from rank1.metrics import paired_accuracy as acc
    from rank1.metrics import read_nevir_pairs
    from rank1.io import read_run

    _, _, the_pairs = read_nevir_pairs(pairs)
    out.print(f"paired accuracy: {acc(read_run(run), the_pairs):.4f} over {len(the_pairs)} pairs")


@app.command("p-mrr")
@fail_cleanly
def p_mrr(
    original: Path = typer.Argument(..., help="Run with the original instructions."),
    changed: Path = typer.Argument(..., help="Run with the changed instructions."),
    changed_qrels: Path = typer.Argument(..., help="Qrels listing the documents whose relevance flipped."),
) -> None:
    """FollowIR p-MRR from an original and a changed-instruction run."""
    from rank1.metrics import p_mrr as score
    from rank1.io import read_qrels, read_run

    flipped = {q: list(d) for q, d in read_qrels(changed_qrels).items()}
    out.print(f"p-MRR: {score(read_run(original), read_run(changed), flipped):+.4f}")


@app.command()
@fail_cleanly
def demo(
    out_dir: Path = typer.Option(Path("rank1-demo"), "--out-dir", help="Where the demo writes its runs and traces."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Model spec."),
    mode: Optional[str] = typer.Option(None, "--mode", help="reasoning or direct (default: the model's best)."),
    budget: int = typer.Option(DEFAULT_BUDGET, "--budget", help="Most reasoning tokens per pair."),
    explain: bool = typer.Option(True, "--explain/--no-explain",
                                 help="Direct mode: also let the model reason about its top pick."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """BM25 -> rerank -> evaluate on the bundled sample collection, offline."""
    from rank1.pipeline import demo as run_demo
    from rank1.reranker import RerankerConfig

    config = RerankerConfig(model=model, mode=mode, budget=budget)
    res = run_demo(out_dir, config, progress=progress, explain=explain)
    out.print(_table(f"sample collection, {model}", {
        "BM25": res["bm25"], f"BM25 >> rank1 ({config.mode}, P(true) alone)": res["rank1"],
        f"BM25 >> rank1, blended with BM25 (w={res['fusion_weight']})": res["fused"]}))
    example, why = res["example"], res["explanation"]
    out.print(f"\n[bold]Example[/bold] {example['qid']} / {example['docid']}: P(true) = {example['score']:.3f}")
    if why is not None:
        out.print(f"Asked {res['explainer']} to reason about it (reasoning mode, {why.generated_tokens} tokens): "
                  f"P(true) = {why.score:.3f}", highlight=False)
    reasoning = why.reasoning if why is not None else example["reasoning"]
    out.print(reasoning or "(direct mode: no reasoning)", highlight=False, markup=False)
    out.print(f"\nruns and traces in {out_dir}/")


@app.command()
@fail_cleanly
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="RANK1_API_KEY", show_envvar=True,
                                          help="Require 'Authorization: Bearer KEY' (all but GET /health)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Embedded model name, local folder, .gguf file or hub id."),
    served_model_name: list[str] = typer.Option([], "--served-model-name", help="Name a request's 'model' "
                                                "may give (repeat for more; default: the model's name)."),
    backend: str = typer.Option("transformers", "--backend", help=_BACKEND_HELP),
    mode: Optional[str] = typer.Option(None, "--mode", help="direct, reasoning or adaptive (default: the model's "
                                       "best); a request may ask for another."),
    budget: int = typer.Option(DEFAULT_BUDGET, "--budget", help="Most reasoning tokens per pair (a request may ask for fewer)."),
    template: Optional[str] = typer.Option(None, "--template", help=_TEMPLATE_HELP),
    batch_size: int = typer.Option(8, "--batch-size", help="Pairs per forward pass."),
    max_passage_tokens: int = typer.Option(512, "--max-passage-tokens", help="Per-document token cap; longer "
                                           "documents are truncated and flagged 'truncated'."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (CPU: bfloat16 where it has AMX/AVX512-BF16, else "
                              "float32; GPU: bfloat16), float32, bfloat16, float16."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, ... (transformers; "
                                "ctranslate2: cpu or cuda)."),
    max_model_len: Optional[int] = typer.Option(None, "--max-model-len", help="vLLM: context length of the engine."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Score cache (default $RANK1_SCORE_CACHE or "
                                         "~/.cache/rank1/scores.sqlite): repeated pairs are not judged again."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the score cache."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Converted-model cache (default ~/.cache/rank1/models)."),
    max_documents: int = typer.Option(1000, "--max-documents", help="Most documents per request."),
    max_body_bytes: int = typer.Option(4 << 20, "--max-body-bytes", help="Largest request body (413 beyond)."),
    max_batch_pairs: int = typer.Option(64, "--max-batch-pairs", help="Most pairs of concurrent requests "
                                        "judged together."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", help="How long a request waits for company."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
) -> None:
    """Serve a Cohere-style rerank API (POST /v1/rerank, GET /v1/models, GET /health) over HTTP."""
    from rank1.backends import backend_options
    from rank1.reranker import RerankerConfig
    from rank1.serve import ServeConfig
    from rank1.store import default_store_path

    if cache is not None and no_cache:
        raise ValueError("give --cache PATH or --no-cache, not both")
    config = RerankerConfig(model=model, backend=backend, mode=mode, budget=budget, template=_pointwise(template),
                            batch_size=batch_size, max_passage_tokens=max_passage_tokens,
                            cache_dir=str(cache_dir) if cache_dir else None,
                            backend_options=backend_options(backend, dtype, device, max_model_len=max_model_len))
    settings = ServeConfig(host=host, port=port, api_key=api_key, served_model_names=tuple(served_model_name),
                           max_documents=max_documents, max_body_bytes=max_body_bytes,
                           max_batch_pairs=max_batch_pairs, max_wait_ms=max_wait_ms, log_level=log_level,
                           store=None if no_cache else cache or default_store_path())
    try:
        from rank1.serve.server import serve as run_server
    except ImportError as e:
        raise ValueError(f"rank1 serve needs the serve extra: pip install 'rank1[serve]' ({e})") from None
    run_server(config, settings)


@app.command()
def models() -> None:
    """List the embedded models and whether their packages are installed."""
    from rank1.models import list_models

    table = Table(title="embedded models (a student is an embedded base + a LoRA adapter shipped with rank1)")
    for col in ("name", "installed", "converted", "size", "description"):
        table.add_column(col)
    for info in list_models():
        m = info.model
        name = f"{m.name} (default)" if info.default else m.name
        size = f"{m.size / 1e6:.0f} MB" + (f" adapter on {m.base}" if hasattr(m, "base") else "")
        table.add_row(name, "yes" if info.installed else f"no: {m.pip_command()}",
                      "yes" if info.cached else "no", size, m.description)
    out.print(table)


from distill.cli import app as _distill_app  # noqa: E402 (a sub-app; imports nothing heavy)
from rank1.cli_cache import app as _cache_app  # noqa: E402

app.add_typer(_distill_app, name="distill")
app.add_typer(_cache_app, name="cache")

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
