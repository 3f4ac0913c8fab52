"""Supervised fine-tuning of a student on traces: trl's ``SFTTrainer`` with a peft LoRA adapter.

The training rows are prompt-completion pairs (:func:`distill.records.to_dataset`): the raw Rank1 prompt
(ending ``<think>``) and the completion ``{reasoning}\\n</think> true|false`` (or ``\\n</think> true|false``
for a label-only student). The loss is on the completion tokens only (trl's ``completion_only_loss``).
Defaults are Rank1's (LoRA rank 32, alpha 64, every linear layer, lr 1e-4, 2 epochs, cosine schedule,
5% warmup, 2500-token cutoff); the ``cpu-demo`` preset is a small, quick configuration for CPUs. QLoRA
(the base model in 4 bit through bitsandbytes) is used with ``quantize="4bit"`` on a CUDA machine.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from distill.lora import TrainResult, latest_checkpoint, lora_model, loss_history, silenced, step_echo, train_dtype
from distill.records import Trace, to_dataset


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (defaults: Rank1's).

    Attributes:
        lora_rank: LoRA rank ``r``.
        lora_alpha: LoRA ``alpha``.
        lora_dropout: LoRA dropout.
        target_modules: Modules that get adapters (``"all-linear"``: every linear layer but the head).
        learning_rate: Peak learning rate.
        epochs: Passes over the data.
        max_steps: Stop after this many optimiser steps (``-1``: run the epochs).
        scheduler: Learning-rate schedule.
        warmup: Warmup, as a fraction of the steps.
        cutoff: Longest training sequence in tokens (longer ones are cut).
        batch_size: Rows per device step.
        grad_accum: Steps accumulated per optimiser step.
        with_reasoning: Train on reasoning + answer; ``False`` trains on the answer alone.
        quantize: ``"4bit"`` for QLoRA (CUDA only), else ``None``.
        gradient_checkpointing: Trade compute for memory.
        seed: Seed for initialisation and data order.
        logging_steps: Log the loss every this many steps.
        layers: Adapters on the top ``layers`` transformer blocks only (0: every block).
        init_adapter: Start from this adapter's LoRA weights (same rank, modules and blocks), e.g. the labels
            student, instead of a fresh initialisation.
        save_steps: Checkpoint every this many steps under ``out_dir/checkpoints`` (two kept); a rerun with the
            same ``out_dir`` resumes from the newest. 0: no checkpoints.
    """

    lora_rank: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.05
    target_modules: str | tuple[str, ...] = "all-linear"
    learning_rate: float = 1e-4
    epochs: float = 2.0
    max_steps: int = -1
    scheduler: str = "cosine"
    warmup: float = 0.05
    cutoff: int = 2500
    batch_size: int = 1
    grad_accum: int = 8
    with_reasoning: bool = True
    quantize: str | None = None
    gradient_checkpointing: bool = False
    seed: int = 0
    logging_steps: int = 1
    layers: int = 0
    init_adapter: str | None = None
    save_steps: int = 0


PRESETS: dict[str, dict[str, Any]] = {
    "rank1": {},
    # small and quick on a laptop CPU: low rank, one epoch, short sequences, no accumulation
    "cpu-demo": {"lora_rank": 8, "lora_alpha": 16, "epochs": 1.0, "cutoff": 768, "grad_accum": 1,
                 "batch_size": 1, "learning_rate": 2e-4},
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a named preset, with some fields overridden (``None`` values ignored)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return replace(TrainConfig(**PRESETS[name]), **{k: v for k, v in overrides.items() if v is not None})


def train(traces: Sequence[Trace], base_model: str, out_dir: str | Path, config: TrainConfig = TrainConfig(),
          echo: Callable[[str], None] | None = print, template: str = "rank1") -> TrainResult:
    """Train a LoRA adapter for ``base_model`` on the traces and save it in ``out_dir``.

    Args:
        traces: Filtered traces (those without an answer are skipped).
        base_model: Model spec of the student (embedded name, directory, hub id).
        out_dir: Where the adapter, tokenizer and ``train_log.json`` go.
        config: Training settings.
        echo: Called with one line per logged step (``None``: quiet).
        template: Raw prompt template of the training rows.

    Returns:
        The adapter folder, losses per logged step, steps, rows and time.
    """
    import torch

    from rank1.quiet import silence_bitsandbytes_notice

    silence_bitsandbytes_notice()  # trl imports bitsandbytes, whose optional-kernel notice is not the user's concern
    from trl import SFTConfig, SFTTrainer

    from rank1.backends.transformers import load_model
    from rank1.models import resolve_model
    from rank1.progress import Stopwatch

    timer = Stopwatch()
    ref = resolve_model(base_model)
    dataset = to_dataset(traces, config.with_reasoning, template)
    if len(dataset) == 0:
        raise ValueError("no traces with an answer to train on")
    cuda = torch.cuda.is_available()
    if config.quantize and not cuda:
        raise ValueError("QLoRA (quantize='4bit') needs a CUDA GPU; train without it on CPU")
    dtype = "auto" if config.quantize else train_dtype("auto", cuda)
    model, tokenizer = load_model(ref, dtype=dtype, device="cuda" if cuda else "cpu", quantize=config.quantize)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if config.quantize:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    model = lora_model(model, config.lora_rank, config.lora_alpha, config.lora_dropout, config.target_modules,
                       config.layers, seed=config.seed, init_adapter=config.init_adapter)
    out = Path(out_dir)
    args = SFTConfig(
        output_dir=str(out / "checkpoints"), num_train_epochs=config.epochs, max_steps=config.max_steps,
        learning_rate=config.learning_rate, lr_scheduler_type=config.scheduler, warmup_steps=config.warmup,
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.grad_accum,
        max_length=config.cutoff, completion_only_loss=True, packing=False, logging_steps=config.logging_steps,
        save_strategy="steps" if config.save_steps > 0 else "no", save_steps=max(config.save_steps, 1),
        save_total_limit=2, report_to="none", seed=config.seed, data_seed=config.seed,
        gradient_checkpointing=config.gradient_checkpointing, use_cpu=not cuda, bf16=dtype == "bfloat16",
        disable_tqdm=True, dataset_num_proc=None,
    )
    result = TrainResult(str(out), rows=len(dataset), config=asdict(config))
    trainer = silenced(SFTTrainer(model=model, args=args, train_dataset=dataset.remove_columns(["qid", "docid"]),
                                  processing_class=tokenizer, callbacks=[step_echo(echo)]))
    result.resumed_from = latest_checkpoint(out) if config.save_steps > 0 else None
    trainer.train(resume_from_checkpoint=result.resumed_from)
    result.steps = int(trainer.state.global_step)
    result.losses = loss_history(trainer)
    trainer.model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    result.seconds = timer.seconds
    meta = {"base_model": base_model, "base_fingerprint": ref.fingerprint, "template": template,
            **{k: v for k, v in asdict(result).items() if k != "adapter_dir"}}
    (out / "train_log.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return result


def read_train_log(adapter_dir: str | Path) -> dict[str, Any]:
    """The ``train_log.json`` :func:`train` left in an adapter folder (empty if absent)."""
    path = Path(adapter_dir) / "train_log.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
