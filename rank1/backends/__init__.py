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
    "ctranslate2": "rank1.backends.ctranslate2:CTranslate2Backend",
    "openvino": "rank1.backends.openvino:OpenVINOBackend",
    "llamacpp": "rank1.backends.llamacpp:LlamaCppBackend",
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


CPU_WEIGHT_FORMATS: dict[str, tuple[dict[str, str], str]] = {
    "openvino": ({"int8": "int8", "int4": "int4"}, "compresses its weights to int8 (its default) or int4"),
    "llamacpp": ({"int8": "q8_0", "int4": "q4_0"}, "runs GGUF weights in int8 (q8_0, its default) or int4 (q4_0)"),
}
"""CPU-only engines whose ``--quantize`` value picks their ``weight_format`` option: the values it takes, the
option value each maps to, and what the engine does (for the error message)."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def backend_options(
    backend: str,
    dtype: str = "auto",
    device: str = "cpu",
    quantize: str | None = None,
    **vllm: Any,
) -> dict[str, Any]:
    """The ``backend_options`` of a :class:`rank1.reranker.RerankerConfig` for ``backend``.

    Args:
        backend: ``transformers``, ``vllm``, ``ctranslate2``, ``openvino`` or ``llamacpp``.
        dtype: Every backend (ctranslate2 and llamacpp: ``auto`` or ``float32``; openvino also ``bfloat16``).
        device: transformers and ctranslate2 (vLLM runs on its platform's device, openvino and llamacpp on the CPU);
            ``cpu`` is accepted for all.
        quantize: transformers: ``4bit`` or ``8bit`` (bitsandbytes), ``int8``, ``int8-mixed`` or ``int8-smooth``
            (torch, CPU); ctranslate2: ``int8`` (its default, the only value); openvino: ``int8`` (its default) or
            ``int4``, its ``weight_format``;
            llamacpp: ``int8`` (its default, GGUF ``q8_0``) or ``int4`` (``q4_0``); vllm: ``int8`` or ``int8-full``,
            its ``weight_format`` (rank1's W8A8 copies, :mod:`rank1.backends.vllm_int8`).
        **vllm: The vLLM-only options (the fields of :class:`~rank1.backends.vllm.VLLMOptions` beyond
            :class:`BackendOptions`: ``max_model_len``, ``gpu_memory_utilization``...); ``None`` means not
            given (the backend's default).

    Raises:
        ValueError: An option the backend does not take, named as on the command line.
    """
    from rank1.backends.vllm import VLLMOptions
    from rank1.backends.vllm_int8 import WEIGHT_FORMATS

    vllm_only = set(VLLMOptions.names()) - set(BackendOptions.names())
    unknown = set(vllm) - vllm_only
    if unknown:
        raise ValueError(f"unknown backend options: {', '.join(sorted(unknown))}")
    given = {k: v for k, v in vllm.items() if v is not None}
    if backend == "vllm":
        if quantize not in (None, *WEIGHT_FORMATS):
            raise ValueError(f"--quantize {quantize}: the vllm backend takes {' or '.join(WEIGHT_FORMATS)} (rank1's "
                             "int8 copies of the model); "
                             "for a checkpoint quantized elsewhere use --quantization awq|gptq|fp8|bitsandbytes")
        if device != "cpu":
            raise ValueError("--device is for the transformers backend; vLLM runs on its platform's device "
                             "(select GPUs with CUDA_VISIBLE_DEVICES)")
        return {"dtype": dtype, **given, **({"weight_format": quantize} if quantize else {})}
    if given:
        flags = ", ".join(_flag(k) for k in given)
        raise ValueError(f"{flags}: vLLM options, for --backend vllm only")
    if backend == "ctranslate2":
        if quantize not in (None, "int8"):
            raise ValueError(f"--quantize {quantize}: the ctranslate2 backend runs int8 weights (its default); "
                             "4bit and 8bit are transformers options")
        return {"dtype": dtype, "device": device}
    if backend in CPU_WEIGHT_FORMATS:
        formats, words = CPU_WEIGHT_FORMATS[backend]
        if quantize is not None and quantize not in formats:
            raise ValueError(f"--quantize {quantize}: the {backend} backend {words}; 4bit and 8bit are transformers "
                             "options")
        if device != "cpu":
            raise ValueError(f"--device: the {backend} backend runs on the CPU")
        return {"dtype": dtype, **({"weight_format": formats[quantize]} if quantize else {})}
    return {"dtype": dtype, "device": device, "quantize": quantize}


__all__ = ["BACKENDS", "AnswerTokens", "Backend", "BackendOptions", "BaseBackend", "JudgeSettings", "Prompt",
           "PromptBuilder", "backend_class", "backend_options", "check_options", "create_backend", "option_defaults"]
