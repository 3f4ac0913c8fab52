"""int8 weights and activations inside vLLM's CPU engine (``--backend vllm --quantize int8``, issue 34).

vLLM's CPU build runs checkpoints in the compressed-tensors ``int-quantized`` format (W8A8): int8 weights with
one scale per output channel, multiplied by activations quantized on the fly with one scale per token (oneDNN's
int8 GEMM; sgl-kernel's on x86 CPUs with AMX). This module writes such a copy of a model, the recipe of
``--quantize int8-smooth`` moved into vLLM:

* SmoothQuant first (:func:`rank1.backends.smooth.smooth_model`, with the activation maxima measured once per
  model on the sample collection and cached, :func:`rank1.backends.int8.activation_maxima_of`);
* every linear layer of the blocks rounded to int8 per output channel (round to nearest, symmetric), except
  the output layer (float32: the answers are read from it) and, in the ``int8`` format, the MLP down
  projections (:data:`rank1.backends.int8.MIXED_FLOAT`, kept in float32 as ``int8-mixed`` keeps them); the
  ``int8-full`` format rounds them too (smoothed through the up projection's rows; their inputs, the gated MLP
  activations, are quantized per token like every other layer's).

The copy is ``<name>.vq<revision>-<format>`` beside the model in its cache (:func:`exported`), made again when the
model's fingerprint changes and never left half-written (:func:`rank1.models.ensure_cached`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rank1.backends.int8 import MIXED_FLOAT, activation_maxima_of
from rank1.backends.smooth import DEFAULT_ALPHA, smooth_model
from rank1.loading import ModelError, read_pretrained
from rank1.models import ModelRef, copies_root, ensure_cached

KEEP_FLOAT: dict[str, tuple[str, ...]] = {"int8": MIXED_FLOAT, "int8-full": ()}
"""The vLLM backend's ``weight_format`` values and the block layers each keeps in float32."""
WEIGHT_FORMATS = tuple(KEEP_FLOAT)
"""The values of the vLLM backend's ``weight_format`` option."""
EXPORT_REVISION = 1
"""Revision of the recipe (smoothing, rounding, layers kept float), part of the cached copy's name."""
BLOCK_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def quantization_config(keep_float: tuple[str, ...] = MIXED_FLOAT) -> dict[str, Any]:
    """The ``quantization_config`` of the copy's ``config.json``: compressed-tensors W8A8, int8 weights per output
    channel, int8 activations per token (dynamic), the output layer and the ``keep_float`` layers left out."""
    int8 = {"num_bits": 8, "type": "int", "symmetric": True, "group_size": None, "block_structure": None,
            "actorder": None, "observer": "minmax", "observer_kwargs": {}}
    return {
        "quant_method": "compressed-tensors", "format": "int-quantized", "quantization_status": "compressed",
        "config_groups": {"group_0": {
            "targets": ["Linear"], "output_activations": None,
            "weights": {**int8, "strategy": "channel", "dynamic": False},
            "input_activations": {**int8, "strategy": "token", "dynamic": True, "observer": "memoryless"},
        }},
        "ignore": ["lm_head", *(f"re:.*{name}$" for name in keep_float)],
        "kv_cache_scheme": None,
    }


def int8_per_channel(weight: Any) -> tuple[Any, Any]:
    """``(int8 weight, float32 scale of shape [out, 1])`` rounding ``weight`` ([out, in]) to nearest, symmetric,
    one scale per output channel (an all-zero row gets scale 1)."""
    import torch

    w = weight.detach().float()
    scale = w.abs().amax(dim=1, keepdim=True) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (w / scale).round().clamp(-127, 127).to(torch.int8), scale


def quantized_state(state: dict[str, Any], keep_float: tuple[str, ...] = MIXED_FLOAT) -> dict[str, Any]:
    """``state`` (a float model's state dict) with each block linear layer's weight but the ``keep_float`` ones
    replaced by its int8 rounding and a ``weight_scale`` beside it (compressed-tensors names); the rest float32."""
    out: dict[str, Any] = {}
    for key, tensor in state.items():
        layer = key.rsplit(".", 2)
        if (len(layer) == 3 and layer[2] == "weight" and layer[1] in BLOCK_LINEARS and layer[1] not in keep_float
                and ".layers." in key):
            out[key], out[f"{layer[0]}.{layer[1]}.weight_scale"] = int8_per_channel(tensor)
        else:
            out[key] = tensor.detach().float().contiguous()
    return out


def write_copy(model: Any, tokenizer: Any, maxima: dict[str, Any], out: Path, alpha: float = DEFAULT_ALPHA,
               keep_float: tuple[str, ...] = MIXED_FLOAT) -> None:
    """Write the W8A8 copy of ``model`` (float, Qwen2 / Llama blocks) into the folder ``out``: smoothed with
    ``maxima`` (the down projections left alone while they stay float32), rounded but the ``keep_float`` layers
    (:func:`quantized_state`), with its ``config.json`` (plus :func:`quantization_config`) and tokenizer."""
    from safetensors.torch import save_file

    smooth_model(model, maxima, alpha, skip=("down",) if "down_proj" in keep_float else ())
    state = model.state_dict()
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)  # the embedding matrix, stored once
    save_file(quantized_state(state, keep_float), str(out / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.update(torch_dtype="float32", quantization_config=quantization_config(keep_float))
    config.pop("dtype", None)
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    tokenizer.save_pretrained(str(out))
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(str(out))


def exported(model: ModelRef, trust_remote_code: bool = False, weight_format: str = "int8") -> Path:
    """The W8A8 copy of ``model`` for vLLM in ``weight_format`` (a key of :data:`KEEP_FLOAT`), written on first use
    (calibrating first if its activation maxima are not cached) as ``<name>.vq<revision>-<weight_format>`` beside
    the model.

    Raises:
        ModelError: The model cannot be read or has no Qwen2 / Llama blocks.
        ValueError: An unknown ``weight_format``.
    """
    import torch

    if weight_format not in KEEP_FLOAT:
        raise ValueError(f"weight_format must be {' or '.join(WEIGHT_FORMATS)}, not {weight_format!r}")

    def build(tmp: Path) -> None:
        from rank1.quiet import quiet_step

        hf_model, tokenizer = read_pretrained(model.path, model.name, trust_remote_code, dtype=torch.float32)
        hf_model.eval()
        maxima = activation_maxima_of(model, hf_model, tokenizer)
        with quiet_step(f"Writing {model.name} in {weight_format} for vLLM (once)"), torch.no_grad():
            write_copy(hf_model, tokenizer, maxima, tmp, keep_float=KEEP_FLOAT[weight_format])

    name = f"{model.name.replace('/', '--')}.vq{EXPORT_REVISION}-{weight_format}"
    try:
        return ensure_cached(name, copies_root(model), model.fingerprint, f"vllm-{weight_format}:{model.name}",
                             build, dtype="int8")
    except ModelError:
        raise
    except (OSError, ValueError, RuntimeError) as err:
        raise ModelError(f"cannot write {model.name!r} ({model.path}) in int8 for vLLM: {err}") from err
