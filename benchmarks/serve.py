"""Serving throughput: pairs/s of ``rank1 serve`` at 1, 8 and 32 concurrent clients vs ``Reranker.score``.

Not a test. The pairs are DL19's BM25 top ``--depth`` of the first ``--queries`` judged queries; each
query's list is cut into requests of ``--docs-per-request`` documents (a RAG client reranking a few chunks
per call). The batch rate is one ``Reranker.score`` call over every pair (the CLI's path), timed before the
first client count and after each one; the machines are shared, so each ratio divides by the mean of the
batch runs on either side of its served run (every rate is recorded). One server (uvicorn on a background
thread of this process, no score store, so every pass judges for real) answers every request once per
client count; clients are asyncio tasks with httpx, each sending its next request when the last one is
answered. Reported per client count: pairs/s, its ratio to the batch rate, request latency p50/p95, the
model batches the micro-batcher formed, and the largest score difference from the batch scores (padding in
other company moves float32 scores by ~1e-6). Writes ``benchmarks/results/serve.json``.

Example::

    OMP_NUM_THREADS=2 python -m benchmarks.serve --model smollm2-135m --queries 8 --depth 12
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import httpx

from benchmarks._common import RESULTS, header, load_trec_dl, top, write_json
from rank1.models import BASE_MODEL
from rank1.reranker import Reranker, RerankerConfig
from rank1.serve import BackgroundServer, ServeConfig


def requests_of(queries: int, depth: int, per_request: int) -> list[tuple[str, list[str]]]:
    """``(query, documents)`` requests: each query's top ``depth`` cut into pieces of ``per_request``."""
    run, corpus, topics, _ = load_trec_dl("dl19", queries)
    out = []
    for qid, docs in run.items():
        texts = [corpus[d].full_text for d in top(docs, depth)]
        out += [(topics[qid].full_text, texts[i : i + per_request]) for i in range(0, len(texts), per_request)]
    return out


async def drive(url: str, requests: list[tuple[str, list[str]]], clients: int) -> tuple[float, list[float], list[Any]]:
    """Send every request once with ``clients`` concurrent clients; wall seconds, latencies, responses."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(requests)):
        queue.put_nowait(i)
    latencies: list[float] = []
    answers: list[Any] = [None] * len(requests)

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            query, docs = requests[i]
            start = time.perf_counter()
            response = await http.post("/v1/rerank", json={"query": query, "documents": docs})
            response.raise_for_status()
            latencies.append(time.perf_counter() - start)
            answers[i] = response.json()

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=3600, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return time.perf_counter() - start, latencies, answers


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values``, interpolated."""
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1] if len(values) > 1 else values[0]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=BASE_MODEL)
    ap.add_argument("--mode", default="direct", choices=["direct", "reasoning"])
    ap.add_argument("--budget", type=int, default=64)
    ap.add_argument("--queries", type=int, default=8, help="first N judged DL19 queries")
    ap.add_argument("--depth", type=int, default=12, help="BM25 top N of each query")
    ap.add_argument("--docs-per-request", type=int, default=3)
    ap.add_argument("--clients", nargs="+", type=int, default=[1, 8, 32])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-batch-pairs", type=int, default=64)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--dtype", default="auto", help="model dtype (auto: by the CPU, see rank1.hardware)")
    ap.add_argument("--out", default=str(RESULTS / "serve.json"))
    args = ap.parse_args(argv)

    requests = requests_of(args.queries, args.depth, args.docs_per_request)
    pairs = [(q, d) for q, docs in requests for d in docs]
    reranker = Reranker(RerankerConfig(model=args.model, mode=args.mode, budget=args.budget,
                                       batch_size=args.batch_size, backend_options={"dtype": args.dtype}))
    reranker.score(pairs[: args.batch_size])  # warm-up
    report: dict[str, Any] = {
        **header(), **reranker.meta, "pairs": len(pairs), "requests": len(requests),
        "docs_per_request": args.docs_per_request, "batch_size": args.batch_size,
        "max_batch_pairs": args.max_batch_pairs, "max_wait_ms": args.max_wait_ms, "batch_runs": [], "served": []}

    def batch() -> list[float]:
        """One timed ``Reranker.score`` over every pair (the rate is recorded); the scores."""
        start = time.perf_counter()
        scores = [j.score for j in reranker.score(pairs)]
        report["batch_runs"].append(round(len(pairs) / (time.perf_counter() - start), 3))
        print(f"batch: {report['batch_runs'][-1]} pairs/s", flush=True)
        return scores

    batch_scores = batch()
    expected = {}
    for i, (_, docs) in enumerate(requests):
        for k in range(len(docs)):
            expected[i, k] = batch_scores[len(expected)]
    config = ServeConfig(port=0, log_level="warning", max_batch_pairs=args.max_batch_pairs,
                         max_wait_ms=args.max_wait_ms, max_documents=max(args.docs_per_request, 1))
    with BackgroundServer(reranker, config) as server:
        service = server.app.state.service
        for clients in args.clients:
            batches = service.batcher.batches
            seconds, latencies, answers = asyncio.run(drive(server.url, requests, clients))
            batch()  # the batch rate right after: the ratio uses the batch runs on either side (shared machine)
            diff = max(abs(r["relevance_score"] - expected[i, r["index"]])
                       for i, a in enumerate(answers) for r in a["results"])
            around = statistics.mean(report["batch_runs"][-2:])
            row = {"clients": clients, "seconds": round(seconds, 2), "pairs_per_s": round(len(pairs) / seconds, 3),
                   "batch_pairs_per_s_around": round(around, 3),
                   "ratio_vs_batch": round(len(pairs) / seconds / around, 3),
                   "p50_ms": round(1000 * percentile(latencies, 0.5), 1),
                   "p95_ms": round(1000 * percentile(latencies, 0.95), 1),
                   "model_batches": service.batcher.batches - batches, "max_abs_score_diff": diff}
            report["served"].append(row)
            print(row, flush=True)
    report["batch"] = {"pairs_per_s": round(statistics.mean(report["batch_runs"]), 3)}
    write_json(args.out, report)


if __name__ == "__main__":
    main()
