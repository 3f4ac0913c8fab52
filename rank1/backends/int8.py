"""torch's dynamic int8 linear layers on CPU (``quantize="int8"``, ``"int8-mixed"``, ``"int8-smooth"``).

FBGEMM's kernels (AVX2 and up) multiply int8 weights by activations quantized on the fly with one scale per
batch. ``int8-smooth`` first applies SmoothQuant (:mod:`rank1.backends.smooth`) with activation maxima measured
once per model on the sample collection and cached beside the model.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from rank1.backends.smooth import DEFAULT_ALPHA, calibrate, calibration_prompts, smooth_model
from rank1.models import ModelRef, copies_root, ensure_cached

MIXED_FLOAT = ("down_proj",)
"""The linear layers ``quantize="int8-mixed"`` keeps in float32 (name suffixes), chosen on the MS MARCO dev split
(``benchmarks/int8_layers.py``). Its output layer is int8 too, but the answers are read from its float32 rows
(:class:`~rank1.backends.head.Float32Answers`)."""


def int8_linear(model: Any, mixed: bool = False, keep_float: tuple[str, ...] = MIXED_FLOAT) -> Any:
    """``model`` with its linear layers replaced by torch's dynamic int8 ones (CPU; fbgemm's kernels, which run
    on AVX2): activations quantized on the fly with one scale per batch, weights int8.

    Args:
        model: A float32 causal LM.
        mixed: ``False``: every linear layer, one weight scale per tensor (``quantize="int8"``). ``True``
            (``quantize="int8-mixed"``): one weight scale per output channel, and the layers named in
            ``keep_float`` left in float32.
        keep_float: Name suffixes of the linear layers ``mixed`` leaves in float32. The default
            (:data:`MIXED_FLOAT`): the MLP down projections, whose inputs (the gated MLP activations) are
            heavy-tailed, so one scale per batch rounds most of them away (the other layers' inputs come out
            of a norm or attention and quantize well).

    With ``mixed``, an int8 output layer keeps its float32 weight (and bias) as ``float_weight`` (``float_bias``):
    the answers are read from those rows (:class:`~rank1.backends.head.Float32Answers`), while greedy decoding,
    which reads every row at every generated token, gets the int8 ones (a quarter of the bytes).
    """
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    spec: Any = {torch.nn.Linear}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    embeddings = model.get_input_embeddings() if head is not None else None
    tied = embeddings is not None and head.weight is embeddings.weight
    if mixed:
        spec = {name: per_channel_dynamic_qconfig for name, module in model.named_modules()
                if isinstance(module, torch.nn.Linear) and not name.endswith(keep_float)}
    with warnings.catch_warnings():  # torch marks its quantized tensors deprecated in favour of torchao
        warnings.simplefilter("ignore")
        quantized = quantize_dynamic(model, spec, dtype=torch.qint8)
    new_head = quantized.get_output_embeddings() if head is not None else None
    if mixed and head is not None and not isinstance(new_head, torch.nn.Linear):
        # tied: the copy's input embeddings are the same float32 rows (no second copy of them is kept)
        new_head.float_weight = (quantized.get_input_embeddings().weight if tied else head.weight).detach()
        new_head.float_bias = head.bias.detach() if head.bias is not None else None
    return quantized


SMOOTH_REVISION = 1
"""Revision of the calibration (prompts, maxima), part of the cached maxima's folder name."""
MAXIMA_FILE = "activation_maxima.safetensors"


def activation_maxima_of(ref: ModelRef, model: Any, tokenizer: Any) -> dict[str, Any]:
    """Each linear layer's input maxima per channel for ``model`` (loaded from ``ref``, float), measured on the
    sample collection's prompts (:func:`rank1.backends.smooth.calibration_prompts`) on first use and cached as
    ``<name>.sq<revision>-maxima`` beside the model (:func:`rank1.models.ensure_cached`: made again when the
    model's fingerprint changes, never half-written)."""
    from safetensors.torch import load_file, save_file

    def build(tmp: Path) -> None:
        from rank1.quiet import quiet_step

        with quiet_step(f"Calibrating {ref.name} for int8-smooth (once)"):
            maxima = calibrate(model, tokenizer, calibration_prompts())
        save_file({k: v.contiguous() for k, v in maxima.items()}, str(tmp / MAXIMA_FILE))
        shutil.copy(Path(ref.path) / "config.json", tmp / "config.json")

    name = f"{ref.name.replace('/', '--')}.sq{SMOOTH_REVISION}-maxima"
    folder = ensure_cached(name, copies_root(ref), ref.fingerprint, f"smoothquant:{ref.name}", build,
                           dtype="float32", weights=MAXIMA_FILE)
    return load_file(str(folder / MAXIMA_FILE))


def int8_smooth(ref: ModelRef, model: Any, tokenizer: Any, alpha: float = DEFAULT_ALPHA) -> Any:
    """``quantize="int8-smooth"``: ``model`` smoothed in place (SmoothQuant, ``alpha``; the down projections,
    which stay float32, left alone), then :func:`int8_linear` with ``mixed=True``."""
    smooth_model(model, activation_maxima_of(ref, model, tokenizer), alpha, skip=("down",))
    return int8_linear(model, mixed=True)
