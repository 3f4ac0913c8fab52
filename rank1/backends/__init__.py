"""Inference backends behind one protocol, looked up by name.

The registry maps a name to ``"module:Class"`` so that no engine is imported until it is used. A backend is
one module: a :class:`~rank1.backends.base.BaseBackend` subclass and its options dataclass (a
:class:`~rank1.backends.options.BackendOptions` subclass, the class's ``options_class``).
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from rank1.backends.base import AnswerTokens, Backend, BaseBackend, JudgeSettings, Prompt, PromptBuilder
from rank1.backends.options import BackendOptions

BACKENDS: dict[str, str] = {
    "transformers": "rank1.backends.transformers:TransformersBackend",
    "vllm": "rank1.backends.vllm:VLLMBackend",
}


def create_backend(name: str, model: Any, **options: Any) -> Backend:
    """Build the backend called ``name`` for ``model`` (a :class:`rank1.models.ModelRef`).

    Raises:
        ValueError: Unknown backend name (the message lists the known ones), or a bad option.
    """
    return backend_class(name)(model, **options)


def backend_class(name: str) -> type[BaseBackend]:
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


def option_defaults(name: str) -> dict[str, Any]:
    """Every option of the backend called ``name`` with its default, without loading anything.

    The score store's key names the backend with these defaults updated by the options given, so that equal
    settings give equal keys (see :attr:`rank1.reranker.Reranker.store_settings`).

    Raises:
        ValueError: Unknown backend name.
    """
    return backend_class(name).option_defaults()


def check_options(name: str, options: Mapping[str, Any]) -> BackendOptions:
    """The options of the backend called ``name``, checked before any model is loaded.

    Raises:
        ValueError: Unknown backend name, an option the backend does not take, or a bad value.
    """
    return backend_class(name).options_class.parse(options)


__all__ = ["BACKENDS", "AnswerTokens", "Backend", "BackendOptions", "BaseBackend", "JudgeSettings", "Prompt",
           "PromptBuilder", "backend_class", "check_options", "create_backend", "option_defaults"]
