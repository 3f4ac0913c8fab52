"""rank1's W8A8 copy for vLLM's CPU engine (``--backend vllm --quantize int8``, :mod:`rank1.backends.vllm_int8`).

Fast: the rounding, the copy's layout and config, the options and store keys. The copy run by the engine against
the float32 engine is in ``benchmarks/quantized.py`` (variant ``vllm-int8``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rank1.backends import backend_options, check_options
from rank1.backends.vllm_int8 import KEEP_FLOAT, int8_per_channel, quantization_config, quantized_state, write_copy


def test_rounding_is_per_output_channel_and_within_half_a_step() -> None:
    import torch

    w = torch.tensor([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0], [3.0, 2.0, -1.5]])
    q, scale = int8_per_channel(w)
    assert q.dtype == torch.int8 and scale.shape == (3, 1)
    assert q[0].tolist() == [64, -127, 32] and q[2, 0] == 127 and scale[1, 0] == 1.0 and q[1].abs().sum() == 0
    assert torch.all((q.float() * scale - w).abs() <= scale / 2 + 1e-7)


def test_the_state_keeps_down_projections_embeddings_and_norms_float() -> None:
    import torch

    state = {"model.layers.0.self_attn.q_proj.weight": torch.randn(4, 4),
             "model.layers.0.self_attn.q_proj.bias": torch.randn(4),
             "model.layers.0.mlp.down_proj.weight": torch.randn(4, 8),
             "model.layers.0.input_layernorm.weight": torch.ones(4),
             "model.embed_tokens.weight": torch.randn(10, 4).bfloat16()}
    out = quantized_state(state)
    assert out["model.layers.0.self_attn.q_proj.weight"].dtype == torch.int8
    assert out["model.layers.0.self_attn.q_proj.weight_scale"].shape == (4, 1)
    assert {k for k, v in out.items() if v.dtype != torch.int8} == set(state) - {
        "model.layers.0.self_attn.q_proj.weight"} | {"model.layers.0.self_attn.q_proj.weight_scale"}
    assert all(v.dtype == torch.float32 for k, v in out.items() if v.dtype != torch.int8)


def test_the_config_is_w8a8_per_channel_and_per_token_without_the_kept_layers() -> None:
    cfg = quantization_config()
    group = cfg["config_groups"]["group_0"]
    assert cfg["quant_method"] == "compressed-tensors" and cfg["format"] == "int-quantized"
    assert group["weights"]["strategy"] == "channel" and not group["weights"]["dynamic"]
    assert group["input_activations"]["strategy"] == "token" and group["input_activations"]["dynamic"]
    assert cfg["ignore"] == ["lm_head", "re:.*down_proj$"]
    assert quantization_config(KEEP_FLOAT["int8-full"])["ignore"] == ["lm_head"]


def test_the_full_format_rounds_the_down_projections_too() -> None:
    import torch

    state = {"model.layers.0.mlp.down_proj.weight": torch.randn(4, 8), "lm_head.weight": torch.randn(10, 4)}
    out = quantized_state(state, KEEP_FLOAT["int8-full"])
    assert out["model.layers.0.mlp.down_proj.weight"].dtype == torch.int8
    assert out["model.layers.0.mlp.down_proj.weight_scale"].shape == (4, 1)
    assert out["lm_head.weight"].dtype == torch.float32


def test_the_copy_of_a_tiny_model_is_what_vllm_reads(tmp_path: Path) -> None:
    """A tiny random Qwen2 written as the copy: config, tokenizer and the smoothed, rounded weights, whose
    float reconstruction gives the float model's logits to within the rounding."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from rank1.backends.smooth import activation_maxima

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = Qwen2ForCausalLM(config).eval()
    ids = torch.randint(0, 64, (2, 7))
    with torch.no_grad():
        expected = model(ids).logits
        with activation_maxima(model) as maxima:
            model(ids)
    tok = _tiny_tokenizer(tmp_path)
    out = tmp_path / "copy"
    out.mkdir()
    with torch.no_grad():
        write_copy(model, tok, maxima, out)
    written = json.loads((out / "config.json").read_text())
    assert written["quantization_config"] == quantization_config() and written["torch_dtype"] == "float32"
    assert (out / "tokenizer_config.json").is_file() and AutoTokenizer.from_pretrained(str(out)) is not None
    state = load_file(str(out / "model.safetensors"))
    assert "lm_head.weight" not in state and state["model.layers.1.mlp.down_proj.weight"].dtype == torch.float32
    rebuilt = {k: v.float() * state[k + "_scale"] if k + "_scale" in state else v
               for k, v in state.items() if not k.endswith("_scale")}
    model.load_state_dict(rebuilt, strict=False)
    with torch.no_grad():
        got = model(ids).logits
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()
    full = tmp_path / "full"
    full.mkdir()
    with torch.no_grad():
        write_copy(model, tok, maxima, full, keep_float=KEEP_FLOAT["int8-full"])
    assert load_file(str(full / "model.safetensors"))["model.layers.1.mlp.down_proj.weight"].dtype == torch.int8


def _tiny_tokenizer(tmp_path: Path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(63)} | {"<unk>": 63}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<unk>")


def test_quantize_int8_picks_the_copy_and_names_it_in_store_keys() -> None:
    from rank1.reranker import Reranker

    assert backend_options("vllm", quantize="int8") == {"dtype": "auto", "weight_format": "int8"}
    assert backend_options("vllm", quantize="int8-full")["weight_format"] == "int8-full"
    with pytest.raises(ValueError, match="--quantize int4: the vllm backend takes int8 or int8-full"):
        backend_options("vllm", quantize="int4")
    with pytest.raises(ValueError, match="weight_format must be int8 or int8-full"):
        check_options("vllm", {"weight_format": "int4"})
    with pytest.raises(ValueError, match="exclude each other"):
        check_options("vllm", {"weight_format": "int8", "quantization": "awq"})
    plain = Reranker(mode="direct", backend="vllm", backend_options={"dtype": "float32"}, load=False)
    int8 = Reranker(mode="direct", backend="vllm", backend_options={"dtype": "float32", "weight_format": "int8"},
                    load=False)
    assert "weight_format" not in plain.store_settings.engine  # the exact path's keys are unchanged
    assert int8.store_settings.engine == plain.store_settings.engine.replace(
        "trust_remote_code=False", "trust_remote_code=False weight_format=int8")


def test_auto_runs_the_copies_in_float32_on_the_cpu() -> None:
    """The precision the copies were measured in (with bfloat16 between their products they ranked unmeasured
    and reasoned slower, docs/cpu-speed.md); the key names it, so a bfloat16 machine reuses float32 judgements."""
    from rank1.backends.vllm import VLLMOptions

    for fmt in ("int8", "int8-full"):
        auto = VLLMOptions(weight_format=fmt)
        assert auto.resolved_dtype() == "float32" and auto.key_items()["dtype"] == "float32"
        assert "answers" not in auto.key_items() and auto.dtype_summary().startswith(f"float32 (auto: rank1's {fmt}")
        assert VLLMOptions(weight_format=fmt, dtype="bfloat16").resolved_dtype() == "bfloat16"
    assert VLLMOptions(dtype="float32").dtype_summary() == "float32"
