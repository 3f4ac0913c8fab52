"""Backend options from command-line values: which options each backend takes, checked before any loading."""

from __future__ import annotations

from typing import Any

VLLM_OPTIONS = ("max_model_len", "gpu_memory_utilization", "tensor_parallel_size", "quantization",
                "enforce_eager", "enable_prefix_caching", "block_size")
"""The vLLM-only options (``--max-model-len``, ``--gpu-memory-utilization``, ...)."""


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
        backend: ``transformers`` or ``vllm``.
        dtype: Both backends.
        device: transformers only (vLLM runs on its platform's device); ``cpu`` is accepted for both.
        quantize: transformers only: ``4bit`` or ``8bit`` (bitsandbytes).
        **vllm: The options of :data:`VLLM_OPTIONS`; ``None`` means not given (the backend's default).

    Raises:
        ValueError: An option the backend does not take, named as on the command line.
    """
    unknown = set(vllm) - set(VLLM_OPTIONS)
    if unknown:
        raise ValueError(f"unknown backend options: {', '.join(sorted(unknown))}")
    given = {k: v for k, v in vllm.items() if v is not None}
    if backend == "vllm":
        if quantize is not None:
            raise ValueError("--quantize is for the transformers backend; with --backend vllm use "
                             "--quantization awq|gptq|fp8|bitsandbytes")
        if device != "cpu":
            raise ValueError("--device is for the transformers backend; vLLM runs on its platform's device "
                             "(select GPUs with CUDA_VISIBLE_DEVICES)")
        return {"dtype": dtype, **given}
    if given:
        flags = ", ".join(_flag(k) for k in given)
        raise ValueError(f"{flags}: vLLM options, for --backend vllm only")
    return {"dtype": dtype, "device": device, "quantize": quantize}
