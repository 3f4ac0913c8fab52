"""The :class:`Reranker`: candidates in, judged and reordered candidates out.

The data path is ``(query, passage)`` pairs -> :class:`~rank1.backends.base.PromptBuilder` (template,
truncation) -> backend (``judge``) -> :class:`~rank1.scoring.Judgement` -> ordering (optionally fused with
the first-stage score) -> :class:`RerankResult` (a run plus the reasoning behind every score).
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, Sequence

from rank1.backends import Backend, JudgeSettings, PromptBuilder, check_options, create_backend
from rank1.backends.base import JUDGE_REVISION
from rank1.config import DEFAULT_EMBEDDED_TEMPLATE, RerankerConfig
from rank1.engines.local import LocalEngine
from rank1.models import resolve_model
from rank1.progress import Stopwatch, pair_progress
from rank1.prompts import get_template
from rank1.records import Document, Query, best_first, first_missing
from rank1.results import RankedDoc, RerankResult, RerankStats, rank_query
from rank1.scoring import Judgement
from rank1.store import ScoreStore, StoreKey, StoreSettings
from rank1.students import explainer_for

if TYPE_CHECKING:
    import pandas as pd

    from rank1.engines.base import JudgeEngine

__all__ = ["RankedDoc", "RerankResult", "RerankStats", "Reranker", "RerankerConfig"]


_MODE_CLASSES: dict[str, str] = {"adaptive": "rank1.adaptive:AdaptiveReranker"}
"""Modes served by a composition of rerankers rather than by one backend mode, as ``"module:Class"``."""

_COUNTER_CLASS = "rank1.counter:CounterReranker"
"""The composition that serves counter-query contrast (``contrast`` > 0) over any mode."""


def _composite(config: RerankerConfig) -> str | None:
    """The composition that serves ``config``, if one does: counter-query contrast (around whatever serves the
    rest), adaptive mode, and reasoning blended with direct mode (``direct_blend``: the adaptive cascade with
    every pair reasoned) or reasoned by another model (a shipped student whose explainer reasons for it,
    :func:`rank1.students.explainer_for`)."""
    if config.contrast:
        return _COUNTER_CLASS
    if config.mode == "reasoning" and (config.direct_blend or explainer_for(config.model) != config.model):
        return _MODE_CLASSES["adaptive"]
    return _MODE_CLASSES.get(config.mode)


def _config(config: RerankerConfig | None, overrides: Mapping[str, Any]) -> RerankerConfig:
    """``config`` with ``overrides`` applied; without a config, the model's recommended mode and fusion weight
    apply to the model asked for."""
    if config is None:
        return RerankerConfig(**overrides)
    return RerankerConfig(**{**asdict(config), **overrides}) if overrides else config


class _LoadedModel:
    """The model (and backend) behind one reranker and those made from it with :meth:`Reranker.replace`;
    the backend is created on first use."""

    def __init__(self, ref: Any, config: RerankerConfig, backend: Backend | None = None) -> None:
        self.ref, self.config, self._backend = ref, config, backend

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = create_backend(self.config.backend, self.ref, **self.config.backend_options)
        return self._backend

    @property
    def loaded(self) -> bool:
        return self._backend is not None

    def close(self) -> None:
        backend, self._backend = self._backend, None
        close = getattr(backend, "close", None)
        if close is not None:
            close()


class Reranker:
    """A reasoning reranker.

    ``Reranker(mode="adaptive")`` makes an :class:`rank1.adaptive.AdaptiveReranker` (a composition of a direct
    and a reasoning reranker over one model); every other mode is one backend mode.

    Example:
        >>> reranker = Reranker(mode="direct")                      # doctest: +SKIP
        >>> reranker.rerank("what is a flea", {"d1": "Fleas are insects.", "d2": "Paris"})  # doctest: +SKIP

    Args:
        config: A :class:`RerankerConfig`; keyword arguments override its fields.
        load: Load the model now (the default), or on first use (a driver that only plans, see
            :mod:`rank1.engines`, never loads it).
        **overrides: Any field of :class:`RerankerConfig`, e.g. ``model=``, ``mode=``, ``budget=``.
    """

    def __new__(cls, config: RerankerConfig | None = None, *args: Any, **overrides: Any) -> "Reranker":
        if cls is Reranker:
            overrides.pop("load", None)
            target = _composite(_config(config, overrides))
            if target is not None:
                module_name, class_name = target.split(":")
                cls = getattr(importlib.import_module(module_name), class_name)
        return super().__new__(cls)

    def __init__(self, config: RerankerConfig | None = None, *, load: bool = True, **overrides: Any) -> None:
        config = _config(config, overrides)
        self._attach(config, _LoadedModel(resolve_model(config.model, cache_dir=config.cache_dir), config))
        if load:
            self.backend  # noqa: B018 (load now, so that a bad model or option fails here)

    @classmethod
    def from_backend(cls, backend: Backend, /, config: RerankerConfig | None = None, **overrides: Any) -> "Reranker":
        """A reranker over a backend you built (another engine, a test double); ``config.backend`` and
        ``backend_options`` then only name it in the score-store keys."""
        config = _config(config, overrides)
        return cls._sharing(config, _LoadedModel(resolve_model(config.model, cache_dir=config.cache_dir),
                                                 config, backend))

    @classmethod
    def _sharing(cls, config: RerankerConfig, model: _LoadedModel) -> "Reranker":
        """A reranker with ``config`` over an existing (maybe not yet loaded) model."""
        self = Reranker.__new__(cls, config)
        self._attach(config, model)
        return self

    def _attach(self, config: RerankerConfig, model: _LoadedModel) -> None:
        self.config, self._model, self.model_ref = config, model, model.ref
        name = config.template or (DEFAULT_EMBEDDED_TEMPLATE if model.ref.source == "embedded" else "rank1")
        self.template = get_template(name)

    @property
    def backend(self) -> Backend:
        """The inference backend, loaded on first use."""
        return self._model.backend

    @property
    def loaded(self) -> bool:
        """Whether the model is loaded (:attr:`backend` loads it; :meth:`close` releases it)."""
        return self._model.loaded

    @functools.cached_property
    def prompts(self) -> PromptBuilder:
        """Renders and truncates (query, passage) pairs with the template and the model's tokenizer."""
        return PromptBuilder(self.template, self.backend.tokenizer, self.config.max_passage_tokens)

    @property
    def label(self) -> str:
        """Mode and model, for progress bars."""
        return f"{self.config.mode} {self.model_ref.name}"

    def replace(self, **overrides: Any) -> "Reranker":
        """A reranker with some settings changed, sharing this one's model (loaded or not) where it can.

        Example:
            >>> deeper = reranker.replace(mode="reasoning", budget=512)  # doctest: +SKIP
        """
        settings = asdict(self.config)
        if overrides.get("model", self.config.model) != self.config.model:  # recommendations follow the model
            settings.update({k: None for k in ("mode", "fusion_weight", "direct_blend", "contrast")
                             if k not in overrides})
        elif "mode" in overrides and "direct_blend" not in overrides:  # the blend follows the mode
            settings["direct_blend"] = None
        config = RerankerConfig(**{**settings, **overrides})
        same_model = all(
            getattr(config, k) == getattr(self.config, k) for k in ("model", "backend", "cache_dir", "backend_options")
        )
        return Reranker._sharing(config, self._model) if same_model else Reranker(config)

    def close(self) -> None:
        """Release the backend (a vLLM engine stops its worker processes); a later call loads it again.

        Rerankers made with :meth:`replace` share the backend: close it once, when all are done.
        """
        self._model.close()

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
                "mode": c.mode, "budget": c.budget if c.mode != "direct" else 0, "backend": c.backend}

    @property
    def store_settings(self) -> StoreSettings:
        """The settings part of this reranker's score-store keys (see :mod:`rank1.store`)."""
        m, c = self.meta, self.config
        # The engine: the backend with its options, defaults filled in and dtype "auto" resolved for this
        # machine, so that equal settings give equal keys and a bfloat16 judgement is never read as float32.
        options = check_options(c.backend, c.backend_options).key_items()
        revision = [f"judge={JUDGE_REVISION}"] if c.mode != "direct" else []  # direct judgements never changed
        engine = " ".join([c.backend, *(f"{k}={v}" for k, v in sorted(options.items()) if v is not None), *revision])
        return StoreSettings(m["model_fingerprint"], m["template"], m["template_hash"], m["mode"], m["budget"],
                             c.max_passage_tokens, engine)

    @property
    def budget_free_prompts(self) -> bool:
        """Reasoning mode on a backend whose prompts do not depend on the budget: the score store may then
        answer a pair from its judgement at another budget (:meth:`rank1.store.ScoreStore.get_many`)."""
        c = self.config
        return c.mode == "reasoning" and not check_options(c.backend, c.backend_options).BUDGET_FITS_CONTEXT

    @property
    def settings(self) -> JudgeSettings:
        """What the backend is asked to do, from the config and the template."""
        c = self.config
        return JudgeSettings.for_template(self.template, mode=c.mode, budget=c.budget, batch_size=c.batch_size)

    def judge(self, pairs: Sequence[tuple[str, str]],
              on_batch: Callable[[int, int], None] | None = None) -> list[Judgement]:
        """Judge (query, passage) pairs, no progress bar; ``on_batch(pairs, tokens)`` after each batch."""
        prompts = [self.prompts.build(q, p) for q, p in pairs]
        return self.backend.judge(prompts, self.settings, on_batch=on_batch)

    def score(self, pairs: Sequence[tuple[str, str]], progress: bool = False) -> list[Judgement]:
        """Judge (query, passage) pairs; the query carries its instruction already.

        Args:
            pairs: (query text, passage text) tuples.
            progress: Draw a progress bar.

        Returns:
            One :class:`~rank1.scoring.Judgement` per pair, in order.
        """
        with pair_progress(len(pairs), self.label, progress) as advance:
            return self.judge(pairs, on_batch=advance)

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
        ranked = best_first(RankedDoc(i, j.score, j) for i, j in zip(ids, judgements))
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
            chunk_size: Pairs per chunk (default :attr:`RerankerConfig.chunk_batches` batches).
            engine: Where the chunks are judged (:mod:`rank1.engines`): ``None`` in this process
                (:class:`~rank1.engines.local.LocalEngine`), or e.g. a :class:`rank1.engines.ray.RayEngine`
                (the same chunks, on a Ray cluster).

        Raises:
            KeyError: A query missing from the topics or a document missing from the corpus.
            ValueError: ``depth`` or ``chunk_size`` is below 1.
            rank1.store.StoreError: The store cannot be read or written.
        """
        jobs = {"progress": progress, "store": store, "chunk_size": chunk_size, "engine": engine}
        return self._rerank_run(run, corpus, topics, depth, jobs)

    def _rerank_run(self, run: Mapping[str, Mapping[str, float]], corpus: Mapping[str, Document],
                    topics: Mapping[str, Query], depth: int, jobs: dict[str, Any]) -> RerankResult:
        """:meth:`rerank_run`'s work (a composition replaces it with its stages); ``jobs``: its keyword
        arguments after ``depth``."""
        progress, store, chunk_size, engine = jobs["progress"], jobs["store"], jobs["chunk_size"], jobs["engine"]
        size = chunk_size if chunk_size is not None else self.config.chunk_batches * self.config.batch_size
        if depth < 1 or size < 1:
            raise ValueError(f"depth and chunk_size must be at least 1, not {depth} and {size}")
        timer, stats = Stopwatch(), RerankStats()
        plans, keys, texts, stats.empty = _plan(run, corpus, topics, depth, self.store_settings)
        found = store.get_many(texts, other_budgets=self.budget_free_prompts) if store is not None else {}
        missing = [k for k in texts if k not in found]
        engine = engine if engine is not None else LocalEngine()
        judgements = {**found, **engine.judge_chunks(self, missing, texts, store, size, progress)}
        out: dict[str, list[RankedDoc]] = {}
        for qid, (head, tail) in plans.items():
            judged = [judgements[k] for k in keys.get(qid, [])]
            stats.add(judged)
            stats.cached += sum(k in found for k in keys.get(qid, []))
            out[qid] = rank_query(head, judged, tail, self.config.fusion_weight)
        stats.judged = len(missing)
        stats.seconds = timer.seconds
        return RerankResult(out, stats, self.meta)


class CompositeReranker(Reranker):
    """A reranker made of stages over one model (adaptive mode, counter-query contrast): :meth:`judge` and
    :meth:`score` both go through the subclass's :meth:`_compose`, with the stage rerankers' own methods, and
    :meth:`rerank_run` through its ``_rerank_run``."""

    def judge(self, pairs: Sequence[tuple[str, str]],
              on_batch: Callable[[int, int], None] | None = None) -> list[Judgement]:
        """:meth:`Reranker.judge` through the stages."""
        return self._compose(pairs, lambda r, p: r.judge(p, on_batch=on_batch))

    def score(self, pairs: Sequence[tuple[str, str]], progress: bool = False) -> list[Judgement]:
        """:meth:`Reranker.score` through the stages; one progress bar a stage."""
        return self._compose(pairs, lambda r, p: r.score(p, progress=progress))

    def _compose(self, pairs: Sequence[tuple[str, str]],
                 judge: Callable[[Reranker, Sequence[tuple[str, str]]], list[Judgement]]) -> list[Judgement]:
        raise NotImplementedError


class _Plan(NamedTuple):
    """What a rerank job will judge: per query the head (judged, with first-stage scores) and the tail, the
    store keys of each query's head, the unique pairs in run order, and how many empty texts were skipped."""

    lists: dict[str, tuple[list[tuple[str, float]], list[str]]]
    keys: dict[str, list[StoreKey]]
    texts: dict[StoreKey, tuple[str, str]]
    empty: int


def _plan(run: Mapping[str, Mapping[str, float]], corpus: Mapping[str, Document], topics: Mapping[str, Query],
          depth: int, settings: StoreSettings) -> _Plan:
    """Plan the job (see :meth:`Reranker.rerank_run`); raises ``KeyError`` for a missing query or document."""
    missing = first_missing(run, corpus, topics, depth)
    if missing is not None:
        qid, docid = missing
        raise KeyError(f"query {qid!r} of the run is not in the topics" if docid is None
                       else f"document {docid!r} (query {qid!r}) is not in the corpus")
    plan = _Plan({}, {}, {}, 0)
    for qid, docs in run.items():
        ordered = best_first(docs.items())
        head, empty = [], []
        for docid, first_score in ordered[:depth]:
            passage = corpus[docid].full_text
            if not passage.strip():
                empty.append(docid)
                continue
            key = settings.key(topics[qid].full_text, passage)
            plan.texts.setdefault(key, (topics[qid].full_text, passage))
            plan.keys.setdefault(qid, []).append(key)
            head.append((docid, first_score))
        plan.lists[qid] = head, empty + [d for d, _ in ordered[depth:]]
        plan = plan._replace(empty=plan.empty + len(empty))
    return plan
