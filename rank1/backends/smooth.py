"""SmoothQuant for torch's dynamic int8 layers (issue 34): move the activations' outlier channels into the weights.

torch's dynamic int8 linear layers (FBGEMM, what ``quantize="int8"`` and ``"int8-mixed"`` run) quantize a
layer's input with one scale per batch, so a few channels whose values are far larger than the rest set the
scale and round the others away. SmoothQuant (Xiao et al. 2023, arXiv 2211.10438) divides each input channel
``j`` by ``s_j = max|X_j| ** alpha / max|W_:,j| ** (1 - alpha)`` and multiplies the weight's column ``j`` by it:
the product is unchanged in exact arithmetic, the input is flatter and the weight (quantized with one scale per
output channel) absorbs the difference. The division is folded into whatever writes the input, so nothing is
added at run time:

* attention q / k / v and MLP gate / up inputs: the RMSNorm weight before them;
* attention output projection input: the value projection's rows (each value channel feeds one output-projection
  column per query head of its group, so the group shares one factor);
* MLP down projection input (``act(gate(x)) * up(x)``): the up projection's rows.

The maxima ``max|X_j|`` are recorded over calibration prompts (:func:`activation_maxima`): the sample collection
the project ships (:func:`calibration_prompts`), never a test collection.
Written for the Qwen2 / Llama block layout (``self_attn.{q,k,v,o}_proj``, ``mlp.{gate,up,down}_proj``,
``input_layernorm``, ``post_attention_layernorm``); other layouts raise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

DEFAULT_ALPHA = 0.5
"""SmoothQuant's migration strength (the paper's default; see :func:`smooth_model`)."""


@contextmanager
def activation_maxima(model: Any) -> Iterator[dict[str, Any]]:
    """Record, while the ``with`` block runs the model, each linear layer's largest absolute input per channel.

    Yields:
        A dict, filled as the model runs: linear layer name -> float32 tensor of ``in_features`` maxima.
    """
    import torch

    maxima: dict[str, Any] = {}

    def recorder(name: str) -> Callable[..., None]:
        def hook(_module: Any, args: tuple[Any, ...]) -> None:
            seen = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0).float()
            maxima[name] = torch.maximum(maxima[name], seen) if name in maxima else seen
        return hook

    handles = [module.register_forward_pre_hook(recorder(name)) for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear)]
    try:
        yield maxima
    finally:
        for handle in handles:
            handle.remove()


def _factors(x_max: Any, weights: list[Any], alpha: float) -> Any:
    """SmoothQuant's per-channel factors for an input with maxima ``x_max`` feeding ``weights``."""
    import torch

    return _balance(x_max, torch.cat([w.detach().abs().float() for w in weights], dim=0).amax(0), alpha)


def _balance(x_max: Any, w_max: Any, alpha: float) -> Any:
    """``x_max ** alpha / w_max ** (1 - alpha)`` per channel, kept away from zero."""
    return (x_max.clamp(min=1e-5).pow(alpha) / w_max.clamp(min=1e-5).pow(1 - alpha)).clamp(min=1e-5)


def _scale_columns(linears: list[Any], s: Any) -> None:
    for linear in linears:
        linear.weight.data.mul_(s.to(linear.weight.dtype))


def _scale_rows(linear: Any, s: Any) -> None:
    linear.weight.data.div_(s.to(linear.weight.dtype)[:, None])
    if linear.bias is not None:
        linear.bias.data.div_(s.to(linear.bias.dtype))


def smooth_model(model: Any, maxima: dict[str, Any], alpha: float = DEFAULT_ALPHA,
                 skip: tuple[str, ...] = ()) -> Any:
    """Apply SmoothQuant's factors to ``model`` in place (float; its outputs are unchanged up to rounding).

    Args:
        model: A float causal LM with Qwen2 / Llama blocks (``model.model.layers``).
        maxima: :func:`activation_maxima`'s record for this model.
        alpha: Migration strength: 0 leaves the inputs as they are, 1 moves all of their range into the weights.
        skip: Input kinds left alone, among ``"qkv"``, ``"o"``, ``"gate_up"``, ``"down"``.

    Returns:
        ``model``.

    Raises:
        ValueError: A block without the expected layers, or a layer missing from ``maxima``.
    """
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise ValueError("smoothing needs a model with Qwen2 / Llama blocks (model.model.layers)")
    for i, block in enumerate(layers):
        prefix = f"model.layers.{i}"
        try:
            attn, mlp = block.self_attn, block.mlp
            norms = block.input_layernorm, block.post_attention_layernorm
            if "qkv" not in skip:
                _fold_into_norm(norms[0], [attn.q_proj, attn.k_proj, attn.v_proj],
                                maxima[f"{prefix}.self_attn.q_proj"], alpha)
            if "gate_up" not in skip:
                _fold_into_norm(norms[1], [mlp.gate_proj, mlp.up_proj], maxima[f"{prefix}.mlp.gate_proj"], alpha)
            if "down" not in skip:
                s = _factors(maxima[f"{prefix}.mlp.down_proj"], [mlp.down_proj.weight], alpha)
                _scale_rows(mlp.up_proj, s)
                _scale_columns([mlp.down_proj], s)
            if "o" not in skip:
                _fold_into_values(attn, maxima[f"{prefix}.self_attn.o_proj"], alpha)
        except (AttributeError, KeyError) as err:
            raise ValueError(f"cannot smooth block {i}: {err}") from err
    return model


def _fold_into_norm(norm: Any, linears: list[Any], x_max: Any, alpha: float) -> None:
    s = _factors(x_max, [linear.weight for linear in linears], alpha)
    norm.weight.data.div_(s.to(norm.weight.dtype))
    _scale_columns(linears, s)


def _fold_into_values(attn: Any, x_max: Any, alpha: float) -> None:
    """Smooth the output projection's input through the value projection: query head ``h`` reads value head
    ``h // group``, so output-projection column ``h * head_dim + d`` shares value channel ``(h // group) *
    head_dim + d``'s factor (maxima over the group)."""
    v, o = attn.v_proj, attn.o_proj
    head_dim = attn.head_dim
    kv_heads = v.out_features // head_dim
    heads = o.in_features // head_dim
    group = heads // kv_heads
    # (kv_heads, group, head_dim) views of the o_proj input channels
    x_grouped = x_max.reshape(kv_heads, group, head_dim).amax(1)
    w_grouped = o.weight.detach().abs().float().reshape(-1, kv_heads, group, head_dim).amax(dim=(0, 2))
    s = _balance(x_grouped, w_grouped, alpha)
    _scale_rows(v, s.reshape(-1))
    _scale_columns([o], s[:, None, :].expand(kv_heads, group, head_dim).reshape(-1).contiguous())


def calibration_prompts() -> list[str]:
    """Direct-mode prompts (the ``rank1`` template) of every (query, passage) pair of the sample collection the
    project ships (6 queries x 5 passages, relevant ones and lexical traps; written for the project, CC0)."""
    from rank1.backends.base import JudgeSettings
    from rank1.io import read_corpus, read_qrels, read_topics
    from rank1.sample import SAMPLE_DIR
    from rank1.prompts import get_template

    template = get_template("rank1")
    close = JudgeSettings.for_template(template, mode="direct").close_empty
    corpus = read_corpus(SAMPLE_DIR / "corpus.jsonl")
    topics = read_topics(SAMPLE_DIR / "topics.tsv")
    qrels = read_qrels(SAMPLE_DIR / "qrels.txt")
    return [template.render(topics[q].full_text, corpus[d].full_text) + close
            for q in sorted(qrels) for d in sorted(qrels[q])]


def calibrate(model: Any, tokenizer: Any, prompts: list[str], batch_size: int = 6) -> dict[str, Any]:
    """Each linear layer's largest absolute input per channel over ``prompts`` (:func:`activation_maxima`)."""
    import torch

    with activation_maxima(model) as maxima, torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True)
            model(**{k: v.to(model.device) for k, v in batch.items()})
    return dict(maxima)
