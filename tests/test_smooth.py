"""SmoothQuant before torch's dynamic int8 layers (``quantize="int8-smooth"``, :mod:`rank1.backends.smooth`)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="module")
def tiny_qwen2() -> Any:
    """A randomly initialised two-block Qwen2 with grouped-query attention (4 query heads, 2 value heads)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return Qwen2ForCausalLM(config).eval()


def test_smoothing_leaves_the_outputs_unchanged_and_moves_the_range(tiny_qwen2: Any) -> None:
    import copy

    import torch

    from rank1.backends.smooth import activation_maxima, smooth_model

    ids = torch.randint(0, 64, (3, 11))
    with torch.inference_mode(), activation_maxima(tiny_qwen2) as maxima:
        before = tiny_qwen2(input_ids=ids).logits
    assert set(maxima) == {name for name, m in tiny_qwen2.named_modules() if isinstance(m, torch.nn.Linear)}
    assert not tiny_qwen2.model.layers[0].self_attn.q_proj._forward_pre_hooks  # the hooks are gone
    smoothed = smooth_model(copy.deepcopy(tiny_qwen2), maxima, alpha=0.5)
    with torch.inference_mode(), activation_maxima(smoothed) as after_maxima:
        after = smoothed(input_ids=ids).logits
    assert torch.allclose(before, after, atol=1e-4)
    for name in ("model.layers.0.mlp.gate_proj", "model.layers.1.self_attn.o_proj", "model.layers.0.mlp.down_proj"):
        # alpha 0.5: every channel's input maximum becomes sqrt(max|X_j| * max|W_j|), so the spread shrinks
        spread = lambda m: float(m[name].max() / m[name].min())  # noqa: E731
        assert spread(after_maxima) < spread(maxima), name
    block, original = smoothed.model.layers[0], tiny_qwen2.model.layers[0]
    assert not torch.equal(block.input_layernorm.weight, original.input_layernorm.weight)
    untouched = smooth_model(copy.deepcopy(tiny_qwen2), maxima, skip=("qkv", "o", "gate_up", "down"))
    assert torch.equal(untouched.model.layers[1].mlp.up_proj.weight, tiny_qwen2.model.layers[1].mlp.up_proj.weight)


def test_smoothing_needs_transformer_blocks() -> None:
    import torch

    from rank1.backends.smooth import smooth_model

    with pytest.raises(ValueError, match="Qwen2 / Llama blocks"):
        smooth_model(torch.nn.Linear(4, 4), {})


def test_calibration_prompts_are_the_sample_pairs_in_direct_form() -> None:
    from rank1.backends.smooth import calibration_prompts

    prompts = calibration_prompts()
    assert len(prompts) == 30 and len(set(prompts)) == 30
    assert all(p.startswith("Determine if the following passage") and p.endswith("<think>\n</think>")
               for p in prompts)


def test_int8_smooth_is_a_cpu_float32_option() -> None:
    from rank1.backends import check_options

    options = check_options("transformers", {"quantize": "int8-smooth"})
    assert options.resolved_dtype() == "float32" and options.float32_answers()
    with pytest.raises(ValueError, match="quantize=int8-smooth is for device cpu"):
        check_options("transformers", {"quantize": "int8-smooth", "device": "cuda"})
