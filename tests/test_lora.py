"""LoRA plumbing both trainers share (:mod:`distill.lora`), on a tiny randomly initialised Qwen2 (no download)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from distill.lora import latest_checkpoint, lora_model, loss_history, silenced, step_echo  # noqa: E402


def _tiny_qwen() -> Any:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    return Qwen2ForCausalLM(config)


def _lora(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}


def test_seeded_lora_is_reproducible_and_only_on_the_top_blocks() -> None:
    a = _lora(lora_model(_tiny_qwen(), 4, 8, 0.0, "all-linear", layers=1, seed=3))
    b = _lora(lora_model(_tiny_qwen(), 4, 8, 0.0, "all-linear", layers=1, seed=3))
    c = _lora(lora_model(_tiny_qwen(), 4, 8, 0.0, "all-linear", layers=1, seed=4))
    assert a.keys() == b.keys() == c.keys() and a
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if "lora_A" in k)
    assert {k.split(".layers.")[1].split(".")[0] for k in a} == {"2"}  # top block of 3 only
    assert all(any(f".{m}.lora_" in k for k in a) for m in ("q_proj", "o_proj", "gate_proj", "down_proj"))


def test_init_adapter_replaces_fresh_weights_and_rejects_a_misfit(tmp_path: Path) -> None:
    trained = lora_model(_tiny_qwen(), 4, 8, 0.0, "all-linear", layers=1, seed=1)
    with torch.no_grad():
        for name, p in trained.named_parameters():
            if "lora_B" in name:
                p.fill_(0.5)  # fresh B matrices are zero: make the saved adapter differ from any fresh one
    trained.save_pretrained(str(tmp_path / "adapter"))
    loaded = _lora(lora_model(_tiny_qwen(), 4, 8, 0.0, "all-linear", layers=1, seed=2,
                              init_adapter=tmp_path / "adapter"))
    saved = _lora(trained)
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    with pytest.raises(ValueError, match="does not fit"):  # adapters on two blocks, the adapter covers one
        lora_model(_tiny_qwen(), 4, 8, 0.0, "all-linear", layers=2, init_adapter=tmp_path / "adapter")
    with pytest.raises(FileNotFoundError):
        lora_model(_tiny_qwen(), 4, 8, 0.0, "all-linear", init_adapter=tmp_path / "none")
    grown = lora_model(_tiny_qwen(), 4, 8, 0.0, "all-linear", layers=2, init_adapter=tmp_path / "adapter", grow=True)
    weights = _lora(grown)
    assert all(torch.equal(weights[k], saved[k]) for k in saved)  # the adapter's block as trained
    fresh_b = [k for k in weights if k not in saved and "lora_B" in k]
    assert fresh_b and all(not weights[k].any() for k in fresh_b)  # the new block: B = 0, no change yet
    same = lora_model(_tiny_qwen(), 4, 8, 0.0, "all-linear", layers=1, init_adapter=tmp_path / "adapter")
    ids = torch.tensor([[1, 5, 9, 3]])
    assert torch.allclose(grown(input_ids=ids).logits, same(input_ids=ids).logits)
    with pytest.raises(ValueError, match="does not fit"):  # growing never drops the adapter's tensors
        lora_model(_tiny_qwen(), 4, 8, 0.0, ["q_proj"], layers=1, init_adapter=tmp_path / "adapter", grow=True)


def test_step_echo_loss_history_and_latest_checkpoint(tmp_path: Path) -> None:
    lines: list[str] = []
    state = SimpleNamespace(global_step=7, max_steps=10)
    callback = step_echo(lines.append, lambda: "1.50 pairs/s")
    callback.on_log(None, state, None, logs={"loss": 0.25, "learning_rate": 1e-4})
    callback.on_log(None, state, None, logs={"loss": float("nan")})
    callback.on_log(None, state, None, logs={"train_runtime": 3.0})
    assert lines == ["step 7/10  loss 0.2500  lr 1.00e-04  1.50 pairs/s"]
    step_echo(None).on_log(None, state, None, logs={"loss": 0.25})  # quiet: no echo, no error

    history = [{"step": 1, "loss": 0.5}, {"step": 1, "eval_x": 2}, {"step": 2, "loss": 0.25}]
    assert loss_history(SimpleNamespace(state=SimpleNamespace(log_history=history))) == [(1, 0.5), (2, 0.25)]

    assert latest_checkpoint(tmp_path) is None
    for n in (9, 10, 2):
        (tmp_path / "checkpoints" / f"checkpoint-{n}").mkdir(parents=True)
    assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoints" / "checkpoint-10")


def test_silenced_trainer_drops_the_printer_and_keeps_the_step_echo(tmp_path: Path) -> None:
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", disable_tqdm=True)
    echo = step_echo(print)
    trainer = Trainer(model=_tiny_qwen(), args=args, callbacks=[echo])
    kinds = lambda: [type(c) for c in trainer.callback_handler.callbacks]  # noqa: E731
    assert PrinterCallback in kinds() and ProgressCallback not in kinds()
    assert silenced(trainer) is trainer
    assert PrinterCallback not in kinds() and echo in trainer.callback_handler.callbacks


def test_init_adapter_with_another_scaling_starts_at_the_same_model(tmp_path: Path) -> None:
    trained = lora_model(_tiny_qwen(), 4, 4, 0.0, "all-linear", layers=1, seed=1)  # alpha / r = 1, as a WiSE mix
    with torch.no_grad():
        for name, p in trained.named_parameters():
            if "lora_B" in name:
                p.normal_()
    trained.save_pretrained(str(tmp_path / "adapter"))
    ids = torch.tensor([[1, 5, 9, 3]])
    continued = lora_model(_tiny_qwen(), 4, 8, 0.0, "all-linear", layers=1, init_adapter=tmp_path / "adapter")
    assert torch.allclose(continued(input_ids=ids).logits, trained(input_ids=ids).logits, atol=1e-5)
    assert not torch.allclose(continued(input_ids=ids).logits, _tiny_qwen()(input_ids=ids).logits, atol=1e-3)
