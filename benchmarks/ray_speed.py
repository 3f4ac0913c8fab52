"""Pairs/s of the Ray engine with 1 and 2 actors against the single-process path, on the same pairs.

Not a test. Reranks the BM25 top ``--depth`` of the first ``--queries`` judged DL19 queries three times:
in this process (``local``), and on a local Ray cluster (``ray.init(num_cpus=...)``) with 1 and with 2
actors (1 CPU each). Every run judges every pair (no score store), with the same batch and chunk sizes, and
the three run files are compared byte for byte. Times: the model load (local) or the whole ``rerank_run``
(Ray: actor start and model load in each actor included), and the judging alone. Writes JSON with the
exact command.

Example::

    OMP_NUM_THREADS=2 nice -n 10 python -m benchmarks.ray_speed --queries 6 --depth 8 \\
        --out benchmarks/results/ray_speed.json
    # the local path alone, with one torch thread (as each 1-CPU actor has):
    python -m benchmarks.ray_speed --actors --local-threads 1 --out benchmarks/results/ray_speed_local_1thread.json
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks._common import header, load_trec_dl, write_json
from rank1.engines.ray import RayEngine
from rank1.io import write_run
from rank1.models import BASE_MODEL
from rank1.reranker import Reranker, RerankerConfig, RerankResult


def _run_bytes(result: RerankResult) -> str:
    """The run file the result writes (to compare runs byte for byte)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.trec"
        write_run(path, result.scores())
        return path.read_text()


def _entry(pairs: int, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"seconds": round(seconds, 2), "pairs_per_s": round(pairs / seconds, 3), **extra}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=BASE_MODEL)
    ap.add_argument("--mode", default="direct", choices=["direct", "reasoning"])
    ap.add_argument("--budget", type=int, default=64)
    ap.add_argument("--queries", type=int, default=6)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--chunk-size", type=int, default=8, help="pairs per Ray task (and per local chunk)")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    ap.add_argument("--actors", type=int, nargs="*", default=[1, 2], help="actor counts to run (none: local only)")
    ap.add_argument("--local-threads", type=int, default=0, help="torch threads of the local path (0: torch's)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    import ray

    run, corpus, topics, _ = load_trec_dl("dl19", args.queries)
    config = RerankerConfig(model=args.model, mode=args.mode, budget=args.budget, batch_size=args.batch_size)
    job = dict(depth=args.depth, progress=False, chunk_size=args.chunk_size)
    report: dict[str, Any] = {**header(), "collection": "dl19", "queries": len(run), "depth": args.depth,
                              "batch_size": args.batch_size, "chunk_size": args.chunk_size}

    if args.local_threads:
        import torch

        torch.set_num_threads(args.local_threads)
    start = time.perf_counter()
    local = Reranker(config)
    load = time.perf_counter() - start
    result = local.rerank_run(run, corpus, topics, **job)
    pairs, reference = result.stats.judged, _run_bytes(result)
    report.update(pairs=pairs, **local.meta)
    report["local"] = _entry(pairs, result.stats.seconds, model_load_s=round(load, 2), threads=_threads())
    print("local", report["local"], flush=True)
    del local
    if not args.actors:
        write_json(args.out, report)
        return
    start = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    report["ray_init_s"] = round(time.perf_counter() - start, 2)
    for actors in args.actors:
        planner = Reranker(config, load=False)
        res = planner.rerank_run(run, corpus, topics, engine=RayEngine(actors=actors), **job)
        assert res.stats.judged == pairs
        report[f"ray_{actors}_actors"] = _entry(pairs, res.stats.seconds, identical_run=_run_bytes(res) == reference,
                                                note="seconds include actor start and model load per actor")
        print(f"ray x{actors}", report[f"ray_{actors}_actors"], flush=True)
    ray.shutdown()
    local_s = report["local"]["seconds"] + report["local"]["model_load_s"]
    report["overhead_vs_local_incl_load"] = {
        f"ray_{a}_actors": round(report[f"ray_{a}_actors"]["seconds"] / local_s, 3) for a in args.actors}
    write_json(args.out, report)


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
