"""The :class:`Reranker`: candidates in, judged and reordered candidates out.

The data path is ``(query, passage)`` pairs -> :class:`~rank1.backends.base.PromptBuilder` (template,
truncation) -> backend (``judge``) -> :class:`~rank1.scoring.Judgement` -> ordering (optionally fused with
the first-stage score) -> :class:`RerankResult` (a run plus the reasoning behind every score).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

from rank1.backends import Backend, JudgeSettings, PromptBuilder, create_backend
from rank1.models import DEFAULT_MODEL, resolve_model
from rank1.progress import Stopwatch, pair_progress
from rank1.prompts import get_template
from rank1.records import Document, Query
from rank1.scoring import MODES, Judgement


DEFAULT_EMBEDDED_TEMPLATE = "rank1-chat-answer"
"""Template for the embedded instruct models (chosen on DL19, see benchmarks/README.md)."""


@dataclass(frozen=True)
class RerankerConfig:
    """Every setting of a :class:`Reranker`; the defaults are the CLI's defaults.

    Attributes:
        model: Model spec: an embedded model's name, a local directory, a ``.gguf`` file or a hub id.
        backend: Backend name (``transformers`` or ``vllm``).
        mode: ``direct`` (no reasoning, one forward pass) or ``reasoning``.
        budget: Most reasoning tokens per pair (reasoning mode).
        template: Prompt template name; ``None`` picks the model's default (the chat template for the
            embedded instruct models, the raw Rank1 template otherwise).
        batch_size: Pairs per forward pass.
        max_passage_tokens: Passages are truncated to this many tokens (each cut is counted).
        fusion_weight: Weight ``w`` of the first-stage score in ``(1-w)*P(true) + w*minmax(first stage)``;
            0 ranks by P(true) alone.
        cache_dir: Where converted models are cached (default ``~/.cache/rank1/models``).
        backend_options: Passed to the backend (``dtype``, ``device``, ``quantize``...).
    """

    model: str = DEFAULT_MODEL
    backend: str = "transformers"
    mode: str = "reasoning"
    budget: int = 256
    template: str | None = None
    batch_size: int = 8
    max_passage_tokens: int = 512
    fusion_weight: float = 0.0
    cache_dir: str | None = None
    backend_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not 0.0 <= self.fusion_weight <= 1.0:
            raise ValueError("fusion_weight must lie in [0, 1]")


class RankedDoc(NamedTuple):
    """A document in a reranked list; ``judgement`` is ``None`` for documents below the depth."""

    doc_id: str
    score: float
    judgement: Judgement | None = None


@dataclass
class RerankStats:
    """What a rerank job did."""

    pairs: int = 0
    truncated: int = 0
    fallbacks: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0

    def add(self, judgements: Sequence[Judgement]) -> None:
        """Count a batch of judgements."""
        self.pairs += len(judgements)
        self.truncated += sum(j.truncated for j in judgements)
        self.fallbacks += sum(j.fallback for j in judgements)
        self.generated_tokens += sum(j.generated_tokens for j in judgements)


@dataclass
class RerankResult:
    """A reranked run with the reasoning behind every score and what produced it.

    Attributes:
        run: Query id -> documents, best first.
        stats: Pair, truncation and fallback counts and time.
        meta: Model fingerprint, template name and hash, mode, budget, backend.
    """

    run: dict[str, list[RankedDoc]]
    stats: RerankStats
    meta: dict[str, Any]

    def scores(self) -> dict[str, dict[str, float]]:
        """The run as ``{qid: {docid: score}}`` (for :func:`rank1.io.write_run` and evaluation)."""
        return {q: {d.doc_id: d.score for d in docs} for q, docs in self.run.items()}

    def traces(self) -> Iterator[dict[str, Any]]:
        """One record per judged pair: ids, rank, score, reasoning, flags and provenance."""
        for qid, docs in self.run.items():
            for rank, doc in enumerate(docs, 1):
                if doc.judgement is not None:
                    yield {"qid": qid, "docid": doc.doc_id, "rank": rank, "score": doc.score,
                           **doc.judgement._asdict(), **self.meta}


def _minmax(values: Sequence[float]) -> list[float]:
    lo, hi = min(values), max(values)
    return [0.5] * len(values) if hi == lo else [(v - lo) / (hi - lo) for v in values]


def rank_query(
    head: Sequence[tuple[str, float]],
    judgements: Sequence[Judgement],
    tail: Sequence[str] = (),
    fusion_weight: float = 0.0,
) -> list[RankedDoc]:
    """Order one query's documents after judging.

    Args:
        head: The judged documents as (doc id, first-stage score).
        judgements: One judgement per ``head`` document.
        tail: Documents below the depth, in first-stage order.
        fusion_weight: ``w`` in ``(1-w)*P(true) + w*minmax(first-stage score over the head)``.

    Returns:
        The head by fused score (ties: smaller doc id first), then the tail with scores -1, -2, ...
    """
    w = fusion_weight
    first = _minmax([s for _, s in head]) if head else []
    ranked = sorted(
        (RankedDoc(d, (1 - w) * j.score + w * f, j) for (d, _), j, f in zip(head, judgements, first)),
        key=lambda r: (-r.score, r.doc_id),
    )
    return ranked + [RankedDoc(d, -float(i), None) for i, d in enumerate(tail, 1)]


class Reranker:
    """A reasoning reranker.

    Example:
        >>> reranker = Reranker(mode="direct")                      # doctest: +SKIP
        >>> reranker.rerank("what is a flea", {"d1": "Fleas are insects.", "d2": "Paris"})  # doctest: +SKIP

    Args:
        config: A :class:`RerankerConfig`; keyword arguments override its fields.
        **overrides: Any field of :class:`RerankerConfig`, e.g. ``model=``, ``mode=``, ``budget=``.
    """

    def __init__(self, config: RerankerConfig | None = None, *, _backend: Backend | None = None,
                 **overrides: Any) -> None:
        cfg = config or RerankerConfig()
        self.config = RerankerConfig(**{**asdict(cfg), **overrides}) if overrides else cfg
        self.model_ref = resolve_model(self.config.model, cache_dir=self.config.cache_dir)
        name = self.config.template or (DEFAULT_EMBEDDED_TEMPLATE if self.model_ref.source == "embedded" else "rank1")
        self.template = get_template(name)
        self.backend = _backend or create_backend(
            self.config.backend, self.model_ref, **self.config.backend_options
        )
        self.prompts = PromptBuilder(self.template, self.backend.tokenizer, self.config.max_passage_tokens)

    def replace(self, **overrides: Any) -> "Reranker":
        """A reranker with some settings changed, sharing this one's loaded model where it can.

        Example:
            >>> deeper = reranker.replace(mode="reasoning", budget=512)  # doctest: +SKIP
        """
        config = RerankerConfig(**{**asdict(self.config), **overrides})
        same_model = all(
            getattr(config, k) == getattr(self.config, k) for k in ("model", "backend", "cache_dir", "backend_options")
        )
        return Reranker(config, _backend=self.backend if same_model else None)

    @property
    def meta(self) -> dict[str, Any]:
        """Provenance recorded with every result."""
        c = self.config
        return {"model": self.model_ref.name, "model_fingerprint": self.model_ref.fingerprint,
                "template": self.template.name, "template_hash": self.template.hash,
                "mode": c.mode, "budget": c.budget if c.mode == "reasoning" else 0, "backend": c.backend}

    @property
    def settings(self) -> JudgeSettings:
        """What the backend is asked to do, from the config and the template."""
        c = self.config
        return JudgeSettings.for_template(self.template, mode=c.mode, budget=c.budget, batch_size=c.batch_size)

    def score(self, pairs: Sequence[tuple[str, str]], progress: bool = False) -> list[Judgement]:
        """Judge (query, passage) pairs; the query carries its instruction already.

        Args:
            pairs: (query text, passage text) tuples.
            progress: Draw a progress bar.

        Returns:
            One :class:`~rank1.scoring.Judgement` per pair, in order.
        """
        prompts = [self.prompts.build(q, p) for q, p in pairs]
        with pair_progress(len(prompts), f"{self.config.mode} {self.model_ref.name}", progress) as advance:
            return self.backend.judge(prompts, self.settings, on_batch=advance)

    def rerank(
        self, query: str | Query, docs: Mapping[str, str | Document] | Sequence[str], top_k: int | None = None
    ) -> list[RankedDoc]:
        """Rerank passages for one query.

        Args:
            query: Query text (or a :class:`~rank1.records.Query`, whose instruction is appended).
            docs: ``{doc_id: text or Document}``, or a list of texts (ids become "0", "1", ...).
            top_k: Return only the best ``top_k``.

        Returns:
            Documents best first; ties go to the smaller doc id.
        """
        text = query.full_text if isinstance(query, Query) else query
        items = docs.items() if isinstance(docs, Mapping) else ((str(i), d) for i, d in enumerate(docs))
        pairs = [(i, d.full_text if isinstance(d, Document) else d) for i, d in items]
        ids = [i for i, _ in pairs]
        judgements = self.score([(text, p) for _, p in pairs])
        ranked = sorted(
            (RankedDoc(i, j.score, j) for i, j in zip(ids, judgements)), key=lambda r: (-r.score, r.doc_id)
        )
        return ranked[:top_k] if top_k else ranked

    def rerank_run(
        self,
        run: Mapping[str, Mapping[str, float]],
        corpus: Mapping[str, Document],
        topics: Mapping[str, Query],
        depth: int = 100,
        progress: bool = True,
    ) -> RerankResult:
        """Rerank the top ``depth`` documents of every query of a first-stage run.

        Documents below the depth keep their first-stage order beneath the reranked ones, with scores
        -1, -2, ... (every P(true) is at least 0, so the run stays strictly decreasing).

        Args:
            run: ``{qid: {docid: first-stage score}}``.
            corpus: ``{docid: Document}``; every reranked docid must be in it.
            topics: ``{qid: Query}``; every query of the run must be in it.
            depth: How many top documents of each query to rerank.
            progress: Draw a progress bar with pairs/s, tokens/s and ETA.

        Raises:
            KeyError: A query missing from the topics or a document missing from the corpus.
        """
        timer = Stopwatch()
        heads: dict[str, list[tuple[str, float]]] = {}
        pairs: list[tuple[str, str]] = []
        for qid, docs in run.items():
            if qid not in topics:
                raise KeyError(f"query {qid!r} of the run is not in the topics")
            ordered = sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))
            heads[qid] = ordered
            for docid, _ in ordered[:depth]:
                if docid not in corpus:
                    raise KeyError(f"document {docid!r} (query {qid!r}) is not in the corpus")
                pairs.append((topics[qid].full_text, corpus[docid].full_text))
        judgements = iter(self.score(pairs, progress=progress))
        stats = RerankStats()
        out: dict[str, list[RankedDoc]] = {}
        for qid, ordered in heads.items():
            head, tail = ordered[:depth], [d for d, _ in ordered[depth:]]
            judged = [next(judgements) for _ in head]
            stats.add(judged)
            out[qid] = rank_query(head, judged, tail, self.config.fusion_weight)
        stats.seconds = timer.seconds
        return RerankResult(out, stats, self.meta)
