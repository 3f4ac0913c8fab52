"""LoRA adapters for the students and the trainer plumbing both trainers share.

Both trainers (:mod:`distill.train`, reasoning traces; :mod:`distill.direct_train`, the labels student) build
their peft model here (seeded, optionally started from an earlier adapter), so an adapter of one can start the
other (``init_adapter``) when the LoRA settings match: same rank, target modules and blocks. They also share
the training dtype, the result record, the per-step echo, the loss history and the resume point. Both import
this module; neither imports the other.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from rank1.hardware import cpu_dtype_choice


@dataclass
class TrainResult:
    """What a training run did: the adapter folder, the logged losses, the time."""

    adapter_dir: str
    losses: list[tuple[int, float]] = field(default_factory=list)
    steps: int = 0
    rows: int = 0
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    resumed_from: str | None = None


def train_dtype(requested: str = "auto", cuda: bool = False) -> str:
    """The training dtype: bfloat16 on CUDA; on CPU as inference chooses it (bfloat16 where the CPU has
    bfloat16 matrix units, :func:`rank1.hardware.cpu_dtype_choice`), else float32."""
    if requested != "auto":
        return requested
    return "bfloat16" if cuda else cpu_dtype_choice().dtype


def lora_model(model: Any, rank: int, alpha: int, dropout: float, target_modules: str | Sequence[str],
               layers: int = 0, seed: int | None = None, init_adapter: str | Path | None = None,
               grow: bool = False) -> Any:
    """``model`` wrapped by peft with LoRA adapters: fresh ones, or those of ``init_adapter``.

    Args:
        model: A causal LM (transformers).
        rank: LoRA rank ``r``.
        alpha: LoRA ``alpha``.
        dropout: LoRA dropout.
        target_modules: ``"all-linear"`` (every linear layer of the blocks) or the names of the linear layers
            that get adapters.
        layers: Adapters on the top ``layers`` transformer blocks only (0: every block).
        seed: Seed everything (transformers ``set_seed``) before the LoRA A matrices are drawn, so the same
            seed gives the same adapter (``None``: leave the random state alone).
        init_adapter: An adapter folder whose weights replace the fresh ones (see :func:`load_init_adapter`).
        grow: With ``init_adapter``: the new settings may cover more blocks or layers than the adapter (same
            rank); the extra adapters stay fresh (B = 0), so the model starts exactly where the adapter left it.
    """
    from rank1.quiet import silence_bitsandbytes_notice

    silence_bitsandbytes_notice()  # peft imports bitsandbytes, whose optional-kernel notice is not the user's concern
    from peft import LoraConfig, get_peft_model
    from transformers import set_seed

    if seed is not None:
        set_seed(seed)

    n_layers = int(model.config.num_hidden_layers)
    blocks = list(range(n_layers - layers, n_layers)) if 0 < layers < n_layers else None
    target = target_modules if isinstance(target_modules, str) else list(target_modules)
    if blocks is not None and isinstance(target, str):  # peft wants names with layers_to_transform
        target = _block_linears(model)
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target,
                        layers_to_transform=blocks, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    if init_adapter:
        load_init_adapter(peft_model, init_adapter, grow=grow)
    return peft_model


def _block_linears(model: Any) -> list[str]:
    """Names of the linear layers inside the transformer blocks (``q_proj``, ..., ``down_proj`` for Qwen2)."""
    import torch

    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and ".layers." in name})


def load_init_adapter(model: Any, adapter_dir: str | Path, grow: bool = False) -> None:
    """Copy the LoRA weights of ``adapter_dir`` (``adapter_model.safetensors``) into the peft ``model``.

    Args:
        model: A peft model (:func:`lora_model`).
        adapter_dir: The adapter folder.
        grow: Allow model LoRA tensors the adapter does not cover (they keep their fresh values).

    When the adapter's scaling (``alpha / r``, from its ``adapter_config.json``) differs from the model's, its
    ``B`` matrices are rescaled, so the model starts exactly at the adapter's update (a WiSE mix has scaling 1,
    a trainer's default alpha = 2r has 2).

    Raises:
        ValueError: The adapter's tensors do not fit the model's LoRA settings (rank, modules, blocks): a
            tensor without a place in the model, or (unless ``grow``) a model LoRA tensor the adapter does not
            cover.
        FileNotFoundError: The folder has no ``adapter_model.safetensors``.
    """
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(adapter_dir) / "adapter_model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (an adapter folder is expected)")
    state = load_file(str(path))
    saved = _adapter_config(adapter_dir)
    factor = scaling(saved) / scaling(model.peft_config["default"].to_dict()) if saved else 1.0
    if factor != 1.0:  # e.g. a WiSE mix (scaling 1) continued with alpha = 2r: same update, B rescaled
        state = {k: v * factor if "lora_B" in k else v for k, v in state.items()}
    result = set_peft_model_state_dict(model, state)
    unexpected = list(result.unexpected_keys)
    untouched = [k for k in result.missing_keys if "lora_" in k and not grow]  # LoRA tensors left fresh
    if unexpected or untouched or not state:
        raise ValueError(f"{adapter_dir}: adapter does not fit these LoRA settings ({len(unexpected)} of its "
                         f"{len(state)} tensors have no place, {len(untouched)} LoRA tensors would stay fresh)")


def _adapter_config(adapter_dir: str | Path) -> dict[str, Any]:
    """The adapter's ``adapter_config.json`` (empty when the folder has none: a bare checkpoint)."""
    path = Path(adapter_dir) / "adapter_config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def scaling(config: dict[str, Any]) -> float:
    """The factor peft multiplies ``B A`` by: ``alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA."""
    r, alpha = int(config["r"]), float(config["lora_alpha"])
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def latest_checkpoint(out_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` folder under ``out_dir/checkpoints`` (``None`` if there is none)."""
    found = sorted(Path(out_dir, "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(found[-1]) if found else None


def loss_history(trainer: Any) -> list[tuple[int, float]]:
    """``(step, loss)`` of every logged step of a finished transformers ``Trainer`` (resumed steps included)."""
    return [(int(h["step"]), float(h["loss"])) for h in trainer.state.log_history if "loss" in h]


def silenced(trainer: Any) -> Any:
    """``trainer`` without transformers' ``PrinterCallback`` (its raw log dicts); :func:`step_echo` prints one
    line per logged step instead. Returns ``trainer``."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def step_echo(echo: Callable[[str], None] | None, suffix: Callable[[], str] | None = None) -> Any:
    """A ``TrainerCallback`` that calls ``echo`` with one line per logged step: step, loss, learning rate and
    ``suffix()`` (e.g. the throughput). Parts of the loss the log names ``<part>_loss`` follow it in
    parentheses (e.g. ``(direct 0.61, trace 1.93)``). NaN losses (steps without a loss) are not echoed."""
    from transformers import TrainerCallback

    class StepEcho(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if echo and logs and "loss" in logs and not math.isnan(float(logs["loss"])):
                parts = ", ".join(f"{k[:-5]} {float(v):.4f}" for k, v in logs.items() if k.endswith("_loss"))
                line = (f"step {state.global_step}/{state.max_steps}  loss {float(logs['loss']):.4f}"
                        + (f" ({parts})" if parts else "") + f"  lr {float(logs.get('learning_rate', 0)):.2e}")
                echo(line + (f"  {suffix()}" if suffix else ""))

    return StepEcho()
