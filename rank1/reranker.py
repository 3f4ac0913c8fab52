"""The :class:`Reranker`: candidates in, judged and reordered candidates out.

The data path is ``(query, passage)`` pairs -> :class:`~rank1.backends.base.PromptBuilder` (template,
truncation) -> backend (``judge``) -> :class:`~rank1.scoring.Judgement` -> ordering (optionally fused with
the first-stage score) -> :class:`RerankResult` (a run plus the reasoning behind every score).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from rank1.adaptive import rerank_run_adaptive, score_adaptive
from rank1.backends import BACKENDS, Backend, JudgeSettings, PromptBuilder, backend_class, create_backend
from rank1.backends.base import JUDGE_REVISION
from rank1.models import DEFAULT_MODEL, resolve_model
from rank1.progress import Stopwatch, pair_progress
from rank1.prompts import TEMPLATES, get_template
from rank1.records import Document, Query
from rank1.results import RankedDoc, RerankResult, RerankStats, rank_query
from rank1.scoring import MODES, Judgement

RERANK_MODES: tuple[str, ...] = (*MODES, "adaptive")
"""Reranker modes: the backend modes and ``adaptive`` (direct first, reasoning where it matters)."""
from rank1.store import ScoreStore, StoreKey, StoreSettings
from rank1.students import recommended_settings

if TYPE_CHECKING:
    import pandas as pd

    from rank1.engines import JudgeEngine


DEFAULT_EMBEDDED_TEMPLATE = "rank1"
"""Template for the embedded instruct models. Chosen on DL19 (BM25 top-20, direct mode, 0.5B): Rank1's raw
prompt 0.4221 nDCG@10 vs 0.4197 for the chat template with an answer prefix, at ~1.6x the speed (shorter
prompt). See benchmarks/README.md."""

QUANTIZE = (None, "4bit", "8bit")
"""The values of the ``quantize`` backend option."""

CHUNK_BATCHES = 4
"""By default :meth:`Reranker.rerank_run` judges (and stores) this many batches of pairs at a time."""


@dataclass(frozen=True)
class RerankerConfig:
    """Every setting of a :class:`Reranker`; the defaults are the CLI's defaults.

    Attributes:
        model: Model spec: an embedded model's name, a local directory, a ``.gguf`` file or a hub id.
        backend: Backend name (``transformers`` or ``vllm``).
        mode: ``direct`` (no reasoning, one forward pass), ``reasoning``, or ``adaptive`` (direct for every
            pair, then reasoning for the pairs that can change the ranking; see :mod:`rank1.adaptive`).
            ``None``: the model's measured-best mode (a shipped student's ``mode``), else ``reasoning``.
        budget: Most reasoning tokens per pair (reasoning and adaptive modes).
        template: Prompt template name; ``None`` picks the raw Rank1 template (``rank1``), measured on DL19
            to be as good as the chat templates for the embedded instruct models (``benchmarks/README.md``).
        batch_size: Pairs per forward pass.
        max_passage_tokens: Passages are truncated to this many tokens (each cut is counted).
        fusion_weight: Weight ``w`` of the first-stage score in ``(1-w)*P(true) + w*minmax(first stage)``;
            0 ranks by P(true) alone. ``None``: a shipped student's weight (chosen on the MS MARCO dev
            split), else 0. Both ``None`` fields are resolved when the config is made.
        cache_dir: Where converted models are cached (default ``~/.cache/rank1/models``).
        backend_options: Passed to the backend (``dtype``, ``device``, ``quantize``...).
        adaptive_top: Adaptive mode: reason on this many top pairs of each query (by direct P(true)).
        adaptive_band: Adaptive mode: also reason on pairs whose direct P(true) is within this of 0.5.
    """

    model: str = DEFAULT_MODEL
    backend: str = "transformers"
    mode: str | None = None
    budget: int = 256
    template: str | None = None
    batch_size: int = 8
    max_passage_tokens: int = 512
    fusion_weight: float | None = None
    cache_dir: str | None = None
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    adaptive_top: int = 10
    adaptive_band: float = 0.0

    def __post_init__(self) -> None:
        """Fill ``mode`` and ``fusion_weight`` left at ``None`` from the model's recommendation, then check
        every setting, so that a bad one fails before any input is read or model loaded."""
        mode, weight = recommended_settings(self.model)
        if self.mode is None:
            object.__setattr__(self, "mode", mode)
        if self.fusion_weight is None:
            object.__setattr__(self, "fusion_weight", weight)
        if self.mode not in RERANK_MODES:
            raise ValueError(f"mode must be one of {', '.join(RERANK_MODES)}, not {self.mode!r}")
        if self.adaptive_top < 0 or not 0.0 <= self.adaptive_band <= 0.5:
            raise ValueError("adaptive_top must be at least 0 and adaptive_band lie in [0, 0.5]")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; known: {', '.join(BACKENDS)}")
        if self.template is not None and self.template not in TEMPLATES:
            raise ValueError(f"unknown template {self.template!r}; known: {', '.join(TEMPLATES)}")
        for name in ("budget", "batch_size", "max_passage_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not 0.0 <= self.fusion_weight <= 1.0:
            raise ValueError(f"fusion_weight must lie in [0, 1], not {self.fusion_weight}")
        if self.backend_options.get("quantize") not in QUANTIZE:
            raise ValueError(f"quantize must be 4bit or 8bit, not {self.backend_options['quantize']!r}")


class Reranker:
    """A reasoning reranker.

    Example:
        >>> reranker = Reranker(mode="direct")                      # doctest: +SKIP
        >>> reranker.rerank("what is a flea", {"d1": "Fleas are insects.", "d2": "Paris"})  # doctest: +SKIP

    Args:
        config: A :class:`RerankerConfig`; keyword arguments override its fields.
        load: Load the model now (the default), or on first use (a driver that only plans, see
            :mod:`rank1.engines`, never loads it).
        **overrides: Any field of :class:`RerankerConfig`, e.g. ``model=``, ``mode=``, ``budget=``.
    """

    def __init__(self, config: RerankerConfig | None = None, *, _backend: Backend | None = None,
                 _model_ref: Any = None, load: bool = True, **overrides: Any) -> None:
        if config is None:  # the model's recommended mode and fusion weight apply to the model asked for
            self.config = RerankerConfig(**overrides)
        else:
            self.config = RerankerConfig(**{**asdict(config), **overrides}) if overrides else config
        self.model_ref = _model_ref or resolve_model(self.config.model, cache_dir=self.config.cache_dir)
        name = self.config.template or (DEFAULT_EMBEDDED_TEMPLATE if self.model_ref.source == "embedded" else "rank1")
        self.template = get_template(name)
        self._backend = _backend
        if load:
            self.backend  # noqa: B018 (load now, so that a bad model or option fails here)

    @property
    def backend(self) -> Backend:
        """The inference backend, loaded on first use."""
        if self._backend is None:
            self._backend = create_backend(self.config.backend, self.model_ref, **self.config.backend_options)
        return self._backend

    @functools.cached_property
    def prompts(self) -> PromptBuilder:
        """Renders and truncates (query, passage) pairs with the template and the model's tokenizer."""
        return PromptBuilder(self.template, self.backend.tokenizer, self.config.max_passage_tokens)

    def replace(self, **overrides: Any) -> "Reranker":
        """A reranker with some settings changed, sharing this one's loaded model where it can.

        Example:
            >>> deeper = reranker.replace(mode="reasoning", budget=512)  # doctest: +SKIP
        """
        settings = asdict(self.config)
        if overrides.get("model", self.config.model) != self.config.model:  # recommendations follow the model
            settings.update({k: None for k in ("mode", "fusion_weight") if k not in overrides})
        config = RerankerConfig(**{**settings, **overrides})
        same_model = all(
            getattr(config, k) == getattr(self.config, k) for k in ("model", "backend", "cache_dir", "backend_options")
        )
        if not same_model:
            return Reranker(config)
        return Reranker(config, _backend=self.backend, _model_ref=self.model_ref)

    def close(self) -> None:
        """Release the backend (a vLLM engine stops its worker processes); a later call loads it again.

        Rerankers made with :meth:`replace` share the backend: close it once, when all are done.
        """
        backend, self._backend = self._backend, None
        close = getattr(backend, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "Reranker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def meta(self) -> dict[str, Any]:
        """Provenance recorded with every result."""
        c = self.config
        return {"model": self.model_ref.name, "model_fingerprint": self.model_ref.fingerprint,
                "template": self.template.name, "template_hash": self.template.hash,
                "mode": c.mode, "budget": c.budget if c.mode != "direct" else 0, "backend": c.backend,
                **({"adaptive_top": c.adaptive_top, "adaptive_band": c.adaptive_band} if c.mode == "adaptive" else {})}

    @property
    def store_settings(self) -> StoreSettings:
        """The settings part of this reranker's score-store keys (see :mod:`rank1.store`)."""
        m, c = self.meta, self.config
        # The engine: the backend with its options, defaults filled in, so that equal settings give equal keys.
        cls = type(self._backend) if self._backend is not None else backend_class(c.backend)
        params = inspect.signature(cls.__init__).parameters.values()
        options = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
        options.update(c.backend_options)
        revision = [f"judge={JUDGE_REVISION}"] if c.mode != "direct" else []  # direct judgements never changed
        engine = " ".join([c.backend, *(f"{k}={v}" for k, v in sorted(options.items()) if v is not None), *revision])
        return StoreSettings(m["model_fingerprint"], m["template"], m["template_hash"], m["mode"], m["budget"],
                             c.max_passage_tokens, engine)

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
        if self.config.mode == "adaptive":
            return score_adaptive(self, pairs, progress)
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
        store: ScoreStore | None = None,
        chunk_size: int | None = None,
        engine: JudgeEngine | None = None,
    ) -> RerankResult:
        """Rerank the top ``depth`` documents of every query of a first-stage run.

        Documents below the depth keep their first-stage order beneath the reranked ones, with scores
        -1, -2, ... (every P(true) is at least 0, so the run stays strictly decreasing). A document within
        the depth whose text is empty (or only whitespace) is not judged: it goes first among those below,
        and :attr:`RerankStats.empty` counts it.

        With a ``store``, stored judgements are used as they are and only the missing pairs are judged.
        Pairs are judged ``chunk_size`` at a time, and each finished chunk is committed to the store before
        the next one starts, so a crash loses at most one chunk. Chunks are cut from the missing pairs in
        run order, so a resumed job judges the same chunks as an uninterrupted one and gets the same scores.

        Args:
            run: ``{qid: {docid: first-stage score}}``.
            corpus: ``{docid: Document}``; every reranked docid must be in it.
            topics: ``{qid: Query}``; every query of the run must be in it.
            depth: How many top documents of each query to rerank.
            progress: Draw a progress bar with pairs/s, tokens/s and ETA.
            store: Where judgements are looked up first and stored as soon as they are made.
            chunk_size: Pairs per chunk (default :data:`CHUNK_BATCHES` batches).
            engine: Where the chunks are judged: ``None`` in this process, or e.g. a
                :class:`rank1.engines.ray.RayEngine` (the same chunks, on a Ray cluster).

        Raises:
            KeyError: A query missing from the topics or a document missing from the corpus.
            ValueError: ``depth`` or ``chunk_size`` is below 1.
            rank1.store.StoreError: The store cannot be read or written.
        """
        size = chunk_size if chunk_size is not None else CHUNK_BATCHES * self.config.batch_size
        if depth < 1 or size < 1:
            raise ValueError(f"depth and chunk_size must be at least 1, not {depth} and {size}")
        if self.config.mode == "adaptive":
            return rerank_run_adaptive(self, run, corpus, topics, depth, progress, store, chunk_size)
        timer, stats, settings = Stopwatch(), RerankStats(), self.store_settings
        plans: dict[str, tuple[list[tuple[str, float]], list[str]]] = {}  # qid -> (judged head, tail)
        keys: dict[str, list[StoreKey]] = {}
        texts: dict[StoreKey, tuple[str, str]] = {}  # unique pairs in run order
        for qid, docs in run.items():
            if qid not in topics:
                raise KeyError(f"query {qid!r} of the run is not in the topics")
            ordered = sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))
            head, empty = [], []
            for docid, first_score in ordered[:depth]:
                if docid not in corpus:
                    raise KeyError(f"document {docid!r} (query {qid!r}) is not in the corpus")
                passage = corpus[docid].full_text
                if not passage.strip():
                    empty.append(docid)
                    continue
                key = settings.key(topics[qid].full_text, passage)
                texts.setdefault(key, (topics[qid].full_text, passage))
                keys.setdefault(qid, []).append(key)
                head.append((docid, first_score))
            plans[qid] = head, empty + [d for d, _ in ordered[depth:]]
            stats.empty += len(empty)
        found = store.get_many(texts) if store is not None else {}
        missing = [k for k in texts if k not in found]
        judge = self._judge_chunks if engine is None else functools.partial(engine.judge_chunks, self)
        judgements = {**found, **judge(missing, texts, store, size, progress)}
        out: dict[str, list[RankedDoc]] = {}
        for qid, (head, tail) in plans.items():
            judged = [judgements[k] for k in keys.get(qid, [])]
            stats.add(judged)
            stats.cached += sum(k in found for k in keys.get(qid, []))
            out[qid] = rank_query(head, judged, tail, self.config.fusion_weight)
        stats.judged = len(missing)
        stats.seconds = timer.seconds
        return RerankResult(out, stats, self.meta)

    def _judge_chunks(
        self,
        keys: Sequence[StoreKey],
        texts: Mapping[StoreKey, tuple[str, str]],
        store: ScoreStore | None,
        size: int,
        progress: bool,
    ) -> dict[StoreKey, Judgement]:
        """Judge the pairs of ``keys`` ``size`` at a time, committing each chunk to ``store`` when it is done."""
        out: dict[StoreKey, Judgement] = {}
        with pair_progress(len(keys), f"{self.config.mode} {self.model_ref.name}", progress) as advance:
            for start in range(0, len(keys), size):
                chunk = keys[start : start + size]
                prompts = [self.prompts.build(*texts[k]) for k in chunk]
                judged = self.backend.judge(prompts, self.settings, on_batch=advance)
                if store is not None:
                    store.put_many(zip(chunk, judged))
                out.update(zip(chunk, judged))
        return out
