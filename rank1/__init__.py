"""rank1: a reasoning reranker for search.

A query and a candidate passage go to a language model that thinks (``<think> ... </think>``) and then
answers ``true`` or ``false``; the relevance score is P(true) from those two logits.

Public API::

    from rank1 import Reranker, Judgement, evaluate, read_run, read_qrels, read_topics, read_corpus

Names are imported on first use, so ``import rank1`` stays instant.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Reranker": "rank1.reranker",
    "RerankerConfig": "rank1.reranker",
    "RerankResult": "rank1.reranker",
    "RankedDoc": "rank1.reranker",
    "Judgement": "rank1.scoring",
    "Query": "rank1.records",
    "Document": "rank1.records",
    "ScoredDoc": "rank1.records",
    "Qrel": "rank1.records",
    "evaluate": "rank1.metrics",
    "paired_accuracy": "rank1.metrics",
    "p_mrr": "rank1.metrics",
    "read_run": "rank1.io",
    "write_run": "rank1.io",
    "read_qrels": "rank1.io",
    "read_topics": "rank1.io",
    "read_corpus": "rank1.io",
    "read_rankllm": "rank1.io",
    "InputError": "rank1.io",
    "rerank_files": "rank1.pipeline",
    "ScoreStore": "rank1.store",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rank1' has no attribute {name!r}")
