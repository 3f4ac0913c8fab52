"""Weight-space interpolation of LoRA adapters (``distill.interpolate``, ``rank1 distill interpolate``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distill.interpolate import interpolate, scaling
from rank1.cli import app
from rank1.students import STUDENTS

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

runner = CliRunner()
MODULE = "base_model.model.model.layers.{}.mlp.down_proj"


def _update(folder: Path, module: str) -> "torch.Tensor":
    """The module's weight update ``s B A`` in float32."""
    config = json.loads((folder / "adapter_config.json").read_text())
    weights = safetensors_torch.load_file(str(folder / "adapter_model.safetensors"))
    a, b = weights[f"{module}.lora_A.weight"].float(), weights[f"{module}.lora_B.weight"].float()
    return scaling(config) * b @ a


def _shipped(name: str) -> Path:
    folder = STUDENTS[name].folder
    if not (folder / "adapter_model.safetensors").is_file():
        pytest.skip(f"{name} is not shipped in this checkout")
    return folder


@pytest.mark.parametrize("weight", [0.0, 0.35, 1.0, 1.5])
def test_update_is_the_interpolation_of_the_shipped_students(tmp_path: Path, weight: float) -> None:
    v3, neg2 = _shipped("rank1-0.5b-labels-v3"), _shipped("rank1-0.5b-neg2")
    info = interpolate(v3, neg2, weight, tmp_path / "mix")
    assert info["rank"] == 32 and info["modules"] == 24 * 7
    for layer in (0, 11, 23):
        module = MODULE.format(layer)
        want = (1 - weight) * _update(v3, module) + weight * _update(neg2, module)
        got = _update(tmp_path / "mix", module)
        assert torch.allclose(got, want, atol=2e-2 * float(want.abs().max()) + 1e-6), (layer, weight)
    assert json.loads((tmp_path / "mix" / "train_log.json").read_text())["interpolation"]["weight"] == weight


def _tiny_base() -> "torch.nn.Module":
    """A random two-block Qwen2, the same weights at every call."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1))


def _tiny_adapter(folder: Path, seed: int, alpha: int) -> None:
    from peft import LoraConfig, get_peft_model

    base = _tiny_base()
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=alpha, target_modules=["q_proj", "down_proj"]))
    torch.manual_seed(seed)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    model.save_pretrained(str(folder))


def _logits(adapter: Path | None) -> "torch.Tensor":
    from peft import PeftModel

    base = _tiny_base()
    model = PeftModel.from_pretrained(base, str(adapter)) if adapter else base
    with torch.no_grad():
        return model(torch.arange(10)[None]).logits


def test_peft_loads_the_mix_and_it_merges_like_the_interpolated_weights(tmp_path: Path) -> None:
    _tiny_adapter(tmp_path / "a", seed=1, alpha=8)
    _tiny_adapter(tmp_path / "b", seed=2, alpha=4)  # different scalings are folded in exactly
    interpolate(tmp_path / "a", tmp_path / "b", 0.0, tmp_path / "w0")
    interpolate(tmp_path / "a", tmp_path / "b", 1.0, tmp_path / "w1")
    assert torch.allclose(_logits(tmp_path / "w0"), _logits(tmp_path / "a"), atol=1e-5)
    assert torch.allclose(_logits(tmp_path / "w1"), _logits(tmp_path / "b"), atol=1e-5)
    assert not torch.allclose(_logits(tmp_path / "a"), _logits(tmp_path / "b"), atol=1e-3)


def test_cli_writes_the_mix_and_rejects_adapters_of_different_modules(tmp_path: Path) -> None:
    _tiny_adapter(tmp_path / "a", seed=1, alpha=8)
    _tiny_adapter(tmp_path / "b", seed=2, alpha=8)
    ok = runner.invoke(app, ["distill", "interpolate", str(tmp_path / "a"), str(tmp_path / "b"), "--weight", "0.5",
                             "--out", str(tmp_path / "mix")])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout.strip().splitlines()[-1])["rank"] == 8
    shutil.copytree(tmp_path / "b", tmp_path / "c")
    for folder, base in (("a", "tiny-qwen"), ("c", "/root/.cache/rank1/models/tiny-qwen")):  # shipped, trained
        path = tmp_path / folder / "adapter_config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "base_model_name_or_path": base}))
    assert interpolate(tmp_path / "a", tmp_path / "c", 0.5, tmp_path / "mix2")["rank"] == 8
    config = json.loads((tmp_path / "c" / "adapter_config.json").read_text())
    (tmp_path / "c" / "adapter_config.json").write_text(json.dumps({**config, "target_modules": ["q_proj"]}))
    bad = runner.invoke(app, ["distill", "interpolate", str(tmp_path / "a"), str(tmp_path / "c"), "--weight", "0.5",
                              "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "differ in target_modules" in bad.output
    assert not (tmp_path / "bad").exists()
    missing = runner.invoke(app, ["distill", "interpolate", str(tmp_path / "a"), str(tmp_path / "nope"),
                                  "--weight", "0.5", "--out", str(tmp_path / "bad")])
    assert missing.exit_code == 2 and "not a LoRA adapter folder" in missing.output
