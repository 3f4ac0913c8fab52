"""A training checkpoint small enough to commit, so a run that outlives a session resumes on the next machine.

A transformers ``Trainer`` checkpoint of a LoRA student holds the adapter in float32 and Adam's two moments
(``optimizer.pt``, twice the adapter again): about 220 MB for the 1.5B student at rank 16. :func:`compact`
keeps everything a resume needs except the moments: the adapter in bfloat16, ``optimizer.pt`` with its
parameter groups and an empty state (so Adam starts its moments and bias correction afresh, as at step 1), and
the scheduler, RNG and trainer state unchanged (so the learning-rate schedule and the data order go on where
they stopped). The files a resume does not read (the base's tokenizer, peft's blank model card) are left out.
:func:`restore` puts such a folder back under ``out_dir/checkpoints``, where a rerun of the same
training command with the same ``--out`` finds it. The 1.5B student's compact checkpoint is 37 MB.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from rank1.io.atomic import atomic_folder

ADAPTER = "adapter_model.safetensors"
OPTIMIZER = "optimizer.pt"
UNREAD = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
          "chat_template.jinja", "README.md")
"""What a Trainer saves beside the adapter that a resume does not read: the base's tokenizer (11 MB) and peft's
blank model card."""
MARK = "compact.json"
"""Written beside a compact checkpoint: what was dropped, so a log can say the moments restarted."""


def compact(checkpoint: str | Path, out_dir: str | Path, dtype: str = "bfloat16") -> Path:
    """Write a compact copy of the Trainer checkpoint ``checkpoint`` (a ``checkpoint-N`` folder).

    Args:
        checkpoint: The ``checkpoint-N`` folder a ``Trainer`` saved.
        out_dir: Parent folder; the copy goes to ``out_dir/checkpoint-N``, written atomically, and replaces any
            other ``checkpoint-*`` there (one resume point is kept).
        dtype: The adapter's saved dtype.

    Returns:
        The written folder.

    Raises:
        FileNotFoundError: ``checkpoint`` has no adapter or no ``optimizer.pt``.
    """
    import torch
    from safetensors.torch import load_file, save_file

    src = Path(checkpoint)
    for name in (ADAPTER, OPTIMIZER):
        if not (src / name).is_file():
            raise FileNotFoundError(f"{src}: no {name} (not a Trainer checkpoint of a LoRA student)")
    optimizer: dict[str, Any] = torch.load(src / OPTIMIZER, map_location="cpu", weights_only=True)
    tensors = {k: v.to(getattr(torch, dtype)).contiguous() for k, v in load_file(str(src / ADAPTER)).items()}
    target = Path(out_dir) / src.name
    with atomic_folder(target) as tmp:
        for path in src.iterdir():
            if path.is_file() and path.name not in (ADAPTER, OPTIMIZER, *UNREAD):
                shutil.copy(path, tmp / path.name)
        save_file(tensors, str(tmp / ADAPTER), metadata={"format": "pt"})
        torch.save({"state": {}, "param_groups": optimizer["param_groups"]}, tmp / OPTIMIZER)
        (tmp / MARK).write_text(json.dumps({"from": str(src), "adapter_dtype": dtype,
                                            "dropped": "Adam moments (they restart at the resume)"}) + "\n")
    for old in Path(out_dir).glob("checkpoint-*"):
        if old != target and old.is_dir():
            shutil.rmtree(old)
    return target


def restore(compact_dir: str | Path, out_dir: str | Path) -> Path:
    """Copy a compact checkpoint to ``out_dir/checkpoints/checkpoint-N``, where a rerun of the training command
    with ``--out out_dir`` resumes from it (an existing newer checkpoint there is left alone and wins).

    Raises:
        FileNotFoundError: ``compact_dir`` is not a ``checkpoint-N`` folder written by :func:`compact`.
    """
    src = Path(compact_dir)
    if not (src / MARK).is_file() or not src.name.startswith("checkpoint-"):
        raise FileNotFoundError(f"{src}: not a compact checkpoint (no {MARK}, or not named checkpoint-N)")
    target = Path(out_dir) / "checkpoints" / src.name
    if not target.exists():
        with atomic_folder(target) as tmp:
            for path in src.iterdir():
                shutil.copy(path, tmp / path.name)
    return target
