"""From a trained adapter to a model folder that rank1 loads by path (either backend).

:func:`export` loads the base model, applies the LoRA adapter, merges it into the weights
(``merge_and_unload``), and saves safetensors, the tokenizer and a model card (``README.md`` with the data
and the training settings) into a temporary folder that is renamed into place at the end, so the folder is
complete or absent. With ``quantize_4bit`` a second folder ``<out>-4bit`` holds a bitsandbytes nf4 copy
(needs a bitsandbytes build that quantizes on the machine's device).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from distill.train import read_train_log
from rank1.io.atomic import atomic_folder
from rank1.students import MERGED_DTYPE

CARD = """---
library_name: transformers
base_model: {base_model}
tags: [rank1, reranker, reasoning, distillation, lora-merged]
---

# {name}

A rank1 reasoning reranker distilled from teacher traces: a query and a passage go in with the Rank1 prompt
(`Determine if the following passage is relevant to the query. Answer only with 'true' or 'false'.`, then
`Query:`, `Passage:`, and `<think>`); the model reasons, closes with `</think>` and answers ` true` or ` false`;
the relevance score is P(true) from those two logits.

Load it by path: `rank1 rerank --model {path_hint} ...` or `Reranker(model="{path_hint}")`
(`--backend transformers` or `--backend vllm`).

## Training

* base model: `{base_model}` (fingerprint `{base_fingerprint}`)
* method: fine-tuning with a LoRA adapter (peft; trl SFTTrainer or transformers Trainer), merged into the
  weights; loss: {target}
* training rows (query groups for a labels student): {rows}; optimiser steps: {steps}; time: {seconds:.0f} s
* settings: {settings}
* loss per logged step (first, last): {loss_span}

## Data

{data}
"""


def model_card(adapter_dir: str | Path, name: str, path_hint: str, data: str = "") -> str:
    """The README.md of an exported model, from the adapter's ``train_log.json`` and a data description."""
    log = read_train_log(adapter_dir)
    cfg = log.get("config", {})
    losses = log.get("losses", [])
    span = f"{losses[0][1]:.4f} -> {losses[-1][1]:.4f}" if losses else "not logged"
    if log.get("kind") == "labels-student" and log.get("trace_rows"):
        target = ("both modes: listwise softmax + weighted pointwise BCE on the direct-mode score of query groups, "
                  f"plus {cfg.get('trace_weight')} x token cross-entropy on the completions (reasoning, answer) of "
                  f"{cfg.get('traces_per_step')} of {log['trace_rows']} traces a step (distill.joint)")
    elif log.get("kind") == "labels-student":
        target = ("answer only, no reasoning: listwise softmax over each query group's l_true - l_false plus "
                  "weighted pointwise BCE, on the direct-mode score (distill.direct_train)")
    else:
        target = "reasoning + answer" if cfg.get("with_reasoning", True) else "answer only, no reasoning"
    return CARD.format(base_model=log.get("base_model", "?"), base_fingerprint=log.get("base_fingerprint", "?"),
                       name=name, path_hint=path_hint, target=target, rows=log.get("rows", log.get("groups", "?")),
                       steps=log.get("steps", "?"), seconds=float(log.get("seconds", 0.0)),
                       settings=json.dumps(cfg, sort_keys=True), loss_span=span,
                       data=data or "Teacher traces filtered by `rank1 distill filter`; see the training log.")


def export(adapter_dir: str | Path, out_dir: str | Path, base_model: str | None = None, dtype: str = MERGED_DTYPE,
           quantize_4bit: bool = False, data: str = "") -> dict[str, Any]:
    """Merge an adapter into its base model and save a loadable model folder.

    Args:
        adapter_dir: Folder written by :func:`distill.train.train`.
        out_dir: Folder to write (replaced if it exists).
        base_model: Base model spec (default: the one in the adapter's training log).
        dtype: Dtype the adapter is merged and saved in: float32 by default, as rank1 merges the students it
            ships (:data:`rank1.students.MERGED_DTYPE`; a bfloat16 merge rounds small LoRA updates away), whatever
            dtype the model later runs in; ``"auto"``: as this CPU runs models (bfloat16 where it has bf16 units).
        quantize_4bit: Also write ``<out_dir>-4bit``, an nf4 copy through bitsandbytes.
        data: Description of the training data for the model card.

    Returns:
        ``{"path": ..., "path_4bit": ... or None, "bytes": ...}``.

    Raises:
        ValueError: No base model known.
    """
    import torch

    from rank1.models import resolve_model
    from rank1.models import merge_into

    log = read_train_log(adapter_dir)
    spec = base_model or log.get("base_model")
    if not spec:
        raise ValueError(f"{adapter_dir}: no base model given and none in train_log.json")
    base = resolve_model(spec)
    out = Path(out_dir)
    with atomic_folder(out) as tmp:
        merge_into(base.path, adapter_dir, tmp, dtype=dtype)  # one status line, as a student's first use
        card = model_card(adapter_dir, out.name, str(out), data)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        if log:
            shutil.copy(Path(adapter_dir) / "train_log.json", tmp / "train_log.json")
    result: dict[str, Any] = {"path": str(out), "path_4bit": None,
                              "bytes": sum(p.stat().st_size for p in out.glob("*.safetensors"))}
    if quantize_4bit:
        result["path_4bit"] = _quantized_copy(out, torch.cuda.is_available())
    return result


def _quantized_copy(src: Path, cuda: bool) -> str:
    """Save an nf4 (bitsandbytes) copy of the model in ``src`` next to it, as ``<src>-4bit``."""
    from rank1.backends.transformers import load_model
    from rank1.models import resolve_model

    model, tokenizer = load_model(resolve_model(str(src)), quantize="4bit", device="cuda" if cuda else "cpu")
    out = src.with_name(src.name + "-4bit")
    with atomic_folder(out) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        shutil.copy(src / "README.md", tmp / "README.md")
    return str(out)


def package_adapter(adapter_dir: str | Path, out_dir: str | Path, card: str, dtype: str = "bfloat16",
                    base_name: str | None = None) -> dict[str, Any]:
    """Copy an adapter into a folder that ships inside rank1 (``rank1/data/students/<name>``).

    The LoRA weights are cast to ``dtype`` (bfloat16 halves the size), and ``adapter_config.json``,
    ``train_log.json`` and ``card`` (the model card, ``README.md``) go beside them (``base_name`` replaces the
    local base path in ``adapter_config.json``); the folder is written atomically.

    Returns:
        ``{"path", "size", "sha256"}`` of ``adapter_model.safetensors``: the registry entry's fields
        (:class:`rank1.students.Student`).
    """
    import hashlib

    import torch
    from safetensors.torch import load_file, save_file

    src, out = Path(adapter_dir), Path(out_dir)
    tensors = {k: v.to(getattr(torch, dtype)).contiguous() for k, v in load_file(str(src / "adapter_model.safetensors")).items()}
    with atomic_folder(out) as tmp:
        save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        for name in ("adapter_config.json", "train_log.json"):
            if (src / name).is_file():
                shutil.copy(src / name, tmp / name)
        config = json.loads((tmp / "adapter_config.json").read_text())
        if base_name:  # not this machine's cache path: the registry name of the base
            config["base_model_name_or_path"] = base_name
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        (tmp / "README.md").write_text(card, encoding="utf-8")
        for path in tmp.iterdir():
            path.chmod(0o644)
    blob = (out / "adapter_model.safetensors").read_bytes()
    return {"path": str(out), "size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
