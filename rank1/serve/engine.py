"""The worker side of the service: one loaded :class:`~rank1.reranker.Reranker` and the score store.

Everything here runs on the service's single worker thread (the model is not thread-safe, and a SQLite
connection belongs to the thread that opened it). A batch holds the jobs of several requests; its pairs
are grouped by judging settings, deduplicated, looked up in the store, and the missing ones judged in one
:meth:`Reranker.score` call per group and stored (one transaction per group, so a shutdown never leaves
half a batch written). Jobs whose reranker is a cascade (:class:`rank1.adaptive.AdaptiveReranker`: adaptive mode,
and reasoning mode where the model's score blends reasoning with direct mode, as the default's does, or where
its explainer reasons) run it across the whole batch: direct for every pair, then reasoning (by the explainer,
if any) for the pairs it selects in each request, blended as the cascade blends; each stage is stored under
its own settings, never the blend. Jobs whose reranker adds counter-query contrast
(:class:`rank1.counter.CounterReranker`, the default model's setting) run their inner reranker as above, then
their flipped queries in direct mode, stored under their own text, and combine the two as the reranker does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from rank1.adaptive import AdaptiveReranker
from rank1.counter import CounterReranker, counter_query
from rank1.scoring import Judgement
from rank1.store import ScoreStore, StoreKey, StoreSettings

if TYPE_CHECKING:
    from rank1.reranker import Reranker

MAX_RERANKERS = 32
"""Most per-settings rerankers kept (they share the loaded model; each is a few objects)."""


@dataclass(frozen=True)
class JudgeSpec:
    """The settings a request may choose: mode (``direct``, ``reasoning``, ``adaptive``), reasoning
    budget, and passage token cap."""

    mode: str
    budget: int
    max_tokens: int


@dataclass(frozen=True)
class Job:
    """One request's work: its query, its documents' texts, and how to judge them."""

    query: str
    passages: tuple[str, ...]
    spec: JudgeSpec

    @property
    def size(self) -> int:
        """Pairs in the job (its weight in a batch)."""
        return len(self.passages)


@dataclass(frozen=True)
class JobResult:
    """What the worker returns for a job.

    Attributes:
        judgements: One per passage, in order.
        cached: Passages whose judgement was not made for this request: read from the store, or made for
            an earlier occurrence of the same pair (in this request or another of the batch).
        prompt_tokens: Tokens of the query and of each passage as judged (after truncation).
    """

    judgements: list[Judgement]
    cached: int
    prompt_tokens: int


class ScoringEngine:
    """Judges batches of jobs with one reranker and an optional score store.

    Args:
        reranker: The loaded reranker; its config gives the defaults and the adaptive knobs.
        store_path: The score store file, or ``None``.
    """

    def __init__(self, reranker: "Reranker", store_path: Path | None = None) -> None:
        self.reranker = reranker
        self.store_path = store_path
        self._store: ScoreStore | None = None
        self._rerankers: dict[JudgeSpec, "Reranker"] = {}
        self.judged = 0
        """Pairs the model judged."""
        self.cached = 0
        """Pairs answered from the store or shared within a batch."""

    def open(self) -> None:
        """Open the score store (on the worker thread)."""
        if self.store_path is not None:
            self._store = ScoreStore(self.store_path)

    def close(self) -> None:
        """Close the score store (on the worker thread); every batch is committed already."""
        store, self._store = self._store, None
        if store is not None:
            store.close()

    def run(self, jobs: Sequence[Job]) -> list[JobResult]:
        """Judge a batch of jobs; one result per job, in order."""
        rerankers = [self._reranker(job.spec) for job in jobs]
        contrasted = {i: r for i, r in enumerate(rerankers) if isinstance(r, CounterReranker)}
        rerankers = [r.inner if i in contrasted else r for i, r in enumerate(rerankers)]
        cascades = {i: r for i, r in enumerate(rerankers) if isinstance(r, AdaptiveReranker)}
        judged, reused = self._judge([(cascades[i].direct if i in cascades else r, job.query, list(job.passages))
                                      for i, (job, r) in enumerate(zip(jobs, rerankers))])
        if cascades:
            picks = {i: r.select([j.score for j in judged[i]]) for i, r in cascades.items()}
            deep, deep_reused = self._judge([(r.deep, jobs[i].query, [jobs[i].passages[k] for k in picks[i]])
                                             for i, r in cascades.items()])
            for (i, r), again, flags in zip(cascades.items(), deep, deep_reused):
                for k, judgement, flag in zip(picks[i], again, flags):
                    judged[i][k], reused[i][k] = r.blend(judgement, judged[i][k]), flag
        flipped = {i: q for i in contrasted if (q := counter_query(jobs[i].query)) is not None}
        if flipped:
            against, against_reused = self._judge([(contrasted[i].counter, q, list(jobs[i].passages))
                                                   for i, q in flipped.items()])
            for i, counter, flags in zip(flipped, against, against_reused):
                judged[i] = [contrasted[i].contrasted(j, c) for j, c in zip(judged[i], counter)]
                reused[i] = [own and other for own, other in zip(reused[i], flags)]  # cached: both stored
        return [JobResult(j, sum(r), self._tokens(job)) for job, j, r in zip(jobs, judged, reused)]

    def _judge(self, work: Sequence[tuple["Reranker", str, list[str]]]
               ) -> tuple[list[list[Judgement]], list[list[bool]]]:
        """Judgements for ``(reranker, query, passages)`` items (each reranker one stage: direct or reasoning,
        never a cascade, so that the store keeps each stage's own judgement), and for each whether it was not
        judged now.

        Pairs are grouped by store settings and deduplicated by store key; each group's missing pairs are
        judged in one :meth:`Reranker.score` call and stored in one transaction. A pair judged now counts
        as judged for its first occurrence and as reused for the others.
        """
        keys: list[list[StoreKey]] = []
        groups: dict[StoreSettings, tuple["Reranker", dict[StoreKey, tuple[str, str]]]] = {}
        for reranker, query, passages in work:
            settings = reranker.store_settings  # equal for specs that judge alike (a direct one's budget)
            keys.append([settings.key(query, p) for p in passages])
            _, group = groups.setdefault(settings, (reranker, {}))
            for key, passage in zip(keys[-1], passages):
                group.setdefault(key, (query, passage))
        found: dict[StoreKey, Judgement] = {}
        fresh: set[StoreKey] = set()
        for reranker, pairs in groups.values():
            stored = (self._store.get_many(pairs, other_budgets=reranker.budget_free_prompts)
                      if self._store is not None else {})
            missing = [k for k in pairs if k not in stored]
            judgements = reranker.score([pairs[k] for k in missing]) if missing else []
            if self._store is not None and missing:
                self._store.put_many(zip(missing, judgements))
            found.update(stored)
            found.update(zip(missing, judgements))
            fresh.update(missing)
            self.judged += len(missing)
        out, reused = [], []
        for item_keys in keys:
            out.append([found[k] for k in item_keys])
            flags = []
            for key in item_keys:
                flags.append(key not in fresh)
                fresh.discard(key)
            reused.append(flags)
            self.cached += sum(flags)
        return out, reused

    def _reranker(self, spec: JudgeSpec) -> "Reranker":
        """The reranker for ``spec``, sharing the loaded model (made once per spec)."""
        reranker = self._rerankers.get(spec)
        if reranker is None:
            if len(self._rerankers) >= MAX_RERANKERS:
                self._rerankers.pop(next(iter(self._rerankers)))
            reranker = self.reranker.replace(mode=spec.mode, budget=spec.budget, max_passage_tokens=spec.max_tokens)
            self._rerankers[spec] = reranker
        return reranker

    def _tokens(self, job: Job) -> int:
        """Tokens of the job's query (once per passage) and passages, each cut to the token cap."""
        tokenizer = self.reranker.backend.tokenizer
        ids = tokenizer([job.query, *job.passages], add_special_tokens=False)["input_ids"]
        return len(ids[0]) * job.size + sum(min(len(x), job.spec.max_tokens) for x in ids[1:])
