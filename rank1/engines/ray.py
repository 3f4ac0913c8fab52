"""Batch reranking on Ray Data: the chunks of a rerank job judged by a pool of actors, one model each.

The driver plans the job as the local path does (:meth:`rank1.reranker.Reranker.rerank_run`: the pairs
missing from the score store, in run order, cut into chunks of ``chunk_size``) and never loads the model.
Each chunk becomes one row of a Ray Dataset (``ray.data.from_items``, one block per chunk): the stable pair
indices, the query texts and the passage texts. A class-based ``map_batches`` stage (:class:`ChunkJudge`,
``batch_size=1``, ``concurrency`` actors with their CPUs and GPUs) holds one :class:`~rank1.reranker.Reranker`
per actor, with any backend of :data:`rank1.backends.BACKENDS`, and judges one whole chunk per call. A chunk
is judged exactly as the local path judges it (same prompts, same batches, same length buckets), so the
scores, and the run and traces files, match the single-process path: bit for bit where the float kernels do
not depend on the thread count (AVX2 CPUs), within 1e-5 where they do (AMX / AVX512-BF16 CPUs; the actors
run with fewer threads than the local path).

Rows stream back to the driver (``iter_batches``) as blocks finish, and the driver commits each to the
score store at once: a failed job loses at most the chunks in flight, and running it again judges only
what is missing. Ray Data restarts an actor that dies (``max_restarts=-1``) and retries its chunk
(``max_task_retries=-1``); a pair that arrives twice (a retried task whose first try had already returned
some rows) is kept once, and its stored row is written once.

Why not ``ray.data.llm``: its processors run vLLM on GPUs and return generated text and per-token
logprobs. rank1's score is P(true) from two answer logits at a forced position after ``</think>``, with
Rank1's fallback (cut the reasoning, close the block, read the answer again) and length-bucketed batching;
and it must also run the transformers backend on CPU. Running rank1's own backends in ``map_batches``
keeps one scoring code path and the byte-identity with the local path.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from rank1.engines.base import PairJudge, chunked
from rank1.progress import pair_progress
from rank1.scoring import JUDGEMENT_FIELDS, Judgement

if TYPE_CHECKING:
    from rank1.reranker import RerankerConfig
    from rank1.store import ScoreStore, StoreKey



class ChunkJudge:
    """The ``map_batches`` stage: one reranker (one loaded model) per Ray actor.

    Args:
        config: The job's reranker settings (a frozen, picklable dataclass).
        expected: The driver's provenance (model fingerprint, template hash...): an actor whose model
            differs (another version on one node) refuses to judge rather than store wrong scores.
        threads: Torch CPU threads (the actor's CPU reservation; the scores do not depend on it).
    """

    def __init__(self, config: "RerankerConfig", expected: Mapping[str, Any], threads: int = 1) -> None:
        import torch

        from rank1.reranker import Reranker

        torch.set_num_threads(threads)
        self.reranker = Reranker(config)
        if self.reranker.meta != dict(expected):
            raise RuntimeError(f"this node's model differs from the driver's: {self.reranker.meta} != {expected}")

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[Any]]:
        """Judge every chunk of ``batch`` (one with ``batch_size=1``); one output row per pair."""
        out: dict[str, list[Any]] = {"index": [], **{name: [] for name in JUDGEMENT_FIELDS}}
        for indices, queries, passages in zip(batch["index"], batch["query"], batch["passage"]):
            judged = self.reranker.judge(list(zip(map(str, queries), map(str, passages))))
            out["index"].extend(int(i) for i in indices)
            for judgement in judged:
                for name, value in zip(JUDGEMENT_FIELDS, judgement):
                    out[name].append(value)
        return out


@dataclass(frozen=True)
class RayEngine:
    """Judge the chunks of a rerank job on a Ray cluster (see the module docstring).

    Example:
        >>> reranker = Reranker(mode="direct", load=False)      # doctest: +SKIP
        >>> reranker.rerank_run(run, corpus, topics, store=store, engine=RayEngine(actors=2))  # doctest: +SKIP

    Attributes:
        address: Cluster address for ``ray.init`` (``auto``, ``ray://head:10001``...); ``None``: the
            cluster in ``$RAY_ADDRESS``, else a new local one. Ignored when Ray is already initialised.
        actors: Actors in the pool; each loads the model once.
        gpus_per_actor: GPUs reserved per actor (0: CPU only). With the vLLM backend, set the backend's
            tensor parallel size to match.
        cpus_per_actor: CPUs reserved per actor (also its torch thread count on CPU).
    """

    address: str | None = None
    actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    in_process = False  # the driver plans and stores; the actors load the model

    def __post_init__(self) -> None:
        if self.actors < 1:
            raise ValueError(f"--actors must be at least 1, not {self.actors}")
        if self.gpus_per_actor < 0 or self.cpus_per_actor <= 0:
            raise ValueError("--gpus-per-actor must be at least 0 and the CPUs per actor above 0, "
                             f"not {self.gpus_per_actor} and {self.cpus_per_actor}")

    def connect(self) -> Any:
        """Initialise Ray (unless it is already) and return the ``ray`` module."""
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address or os.environ.get("RAY_ADDRESS"), include_dashboard=False,
                     logging_level="WARNING", log_to_driver=False)
        return ray

    def stream(
        self, reranker: PairJudge, chunks: Sequence[Sequence[tuple[str, str]]]
    ) -> Iterator[list[tuple[int, Judgement]]]:
        """Judge ``chunks`` of (query, passage) pairs on the cluster; yields blocks of (pair index, judgement)
        as they finish, in no particular order. Pairs are numbered across chunks, in order, from 0."""
        parallel = reranker.config.backend_options.get("tensor_parallel_size") or 1
        if parallel > 1 and self.gpus_per_actor < parallel:
            raise ValueError(f"--gpus-per-actor {self.gpus_per_actor:g} is below --tensor-parallel-size {parallel}")
        items, start = [], 0
        for chunk in chunks:
            items.append({"index": list(range(start, start + len(chunk))),
                          "query": [q for q, _ in chunk], "passage": [p for _, p in chunk]})
            start += len(chunk)
        if not items:
            return
        ray = self.connect()
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # rank1 draws its own bar
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # no per-dataset execution plans
        if hasattr(context, "issue_detectors_config"):
            context.issue_detectors_config.detectors = []  # its per-actor memory warnings flood the terminal
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            ChunkJudge, batch_size=1, num_cpus=self.cpus_per_actor,
            # one chunk at a time per actor: the next goes to whichever actor is free (balance, little rework)
            compute=ray.data.ActorPoolStrategy(size=self.actors, max_tasks_in_flight_per_actor=1),
            num_gpus=self.gpus_per_actor or None,
            fn_constructor_kwargs={"config": reranker.config, "expected": reranker.meta,
                                   "threads": max(1, int(self.cpus_per_actor))},
        )
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            yield [(int(i), Judgement.from_values(values))
                   for i, *values in zip(batch["index"], *(batch[name] for name in JUDGEMENT_FIELDS))]

    def judge_chunks(
        self,
        reranker: PairJudge,
        keys: Sequence["StoreKey"],
        texts: Mapping["StoreKey", tuple[str, str]],
        store: "ScoreStore | None",
        size: int,
        progress: bool,
    ) -> dict["StoreKey", Judgement]:
        """Judge the pairs of ``keys`` on the cluster in chunks of ``size``, putting every block of results into
        ``store`` as it arrives (see :class:`rank1.engines.base.JudgeEngine`).

        Raises:
            RuntimeError: The cluster returned no judgement for some pair.
        """
        chunks = [[texts[k] for k in chunk] for chunk in chunked(keys, size)]
        out: dict[StoreKey, Judgement] = {}
        label = f"{reranker.label} on ray x{self.actors}"
        with pair_progress(len(keys), label, progress) as advance:
            for block in self.stream(reranker, chunks):
                new = [(keys[i], j) for i, j in block if keys[i] not in out]
                new = list(dict(new).items())  # a pair twice in one block (a retried task) counts once
                if store is not None and new:
                    store.put_many(new)
                out.update(new)
                advance(len(new), sum(j.generated_tokens for _, j in new))
        if len(out) != len(keys):
            raise RuntimeError(f"the ray job returned {len(out)} of {len(keys)} judgements")
        return out
