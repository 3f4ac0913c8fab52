"""Inference backends behind one protocol, looked up by name.

The registry maps a name to ``"module:Class"`` so that no engine is imported until it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from rank1.backends.base import Backend, JudgeSettings, Prompt, PromptBuilder

BACKENDS: dict[str, str] = {
    "transformers": "rank1.backends.transformers:TransformersBackend",
    "vllm": "rank1.backends.vllm:VLLMBackend",
}


def create_backend(name: str, model: Any, **options: Any) -> Backend:
    """Build the backend called ``name`` for ``model`` (a :class:`rank1.models.ModelRef`).

    Raises:
        ValueError: Unknown backend name; the message lists the known ones.
    """
    return backend_class(name)(model, **options)


def backend_class(name: str) -> type:
    """The class of the backend called ``name``, imported but not instantiated (no model is loaded).

    Raises:
        ValueError: Unknown backend name; the message lists the known ones.
    """
    try:
        target = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


__all__ = ["BACKENDS", "Backend", "JudgeSettings", "Prompt", "PromptBuilder", "backend_class", "create_backend"]
