"""``rank1 serve``: a Cohere-style HTTP rerank service over one loaded reranker.

Modules: :mod:`~rank1.serve.config` (settings, errors), :mod:`~rank1.serve.schema` (request and response),
:mod:`~rank1.serve.batcher` (the asyncio micro-batching queue), :mod:`~rank1.serve.engine` (the worker:
model and score store), :mod:`~rank1.serve.app` (routes), :mod:`~rank1.serve.server` (uvicorn).
Needs the ``serve`` extra: ``pip install 'rank1[serve]'``. Importing this package imports nothing heavy;
the names below load their modules on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from rank1.serve.config import API_KEY_ENV, RequestError, ServeConfig

__all__ = ["API_KEY_ENV", "BackgroundServer", "RequestError", "ServeConfig", "create_app", "serve"]
_LAZY = {"BackgroundServer": "rank1.serve.server", "serve": "rank1.serve.server", "create_app": "rank1.serve.app"}


def __getattr__(name: str) -> Any:
    """``create_app``, ``serve`` and ``BackgroundServer`` import FastAPI and uvicorn when first asked for."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rank1.serve' has no attribute {name!r}")
