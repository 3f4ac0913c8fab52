"""Weight-space interpolation of two LoRA adapters over the same base (WiSE-FT, Wortsman et al. 2022).

A model fine-tuned further on a narrow task (negation, exclusion) loses some of what an earlier model did well
(topical ranking). Interpolating the two in weight space, ``W = W0 + (1 - w) dA + w dB`` with ``dA`` the
anchor's update and ``dB`` the fine-tuned one's, often keeps most of both; ``w`` is chosen on a dev set.

A LoRA update is ``dW = s B A`` (``s = alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA), so the mix is itself a
LoRA adapter of rank ``rA + rB``: ``A' = [A_a; A_b]``, ``B' = [(1 - w) s_a B_a, w s_b B_b]``, scaling 1. No
merge is needed: the result is an ordinary peft adapter folder (it loads, exports and packages as any other),
and its update equals the interpolation exactly, up to the saved dtype.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from distill.lora import scaling
from rank1.io.atomic import atomic_folder
from rank1.students import ADAPTER_FILE

CONFIG_FILE = "adapter_config.json"
_MUST_MATCH = ("peft_type", "base_model_name_or_path", "target_modules", "layers_to_transform", "bias", "use_dora",
               "modules_to_save", "fan_in_fan_out")


def _read(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from safetensors.torch import load_file

    config_path, weights_path = folder / CONFIG_FILE, folder / ADAPTER_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ValueError(f"{folder}: not a LoRA adapter folder (no {path.name})")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{config_path}: peft_type {config.get('peft_type')!r}, expected 'LORA'")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ValueError(f"{config_path}: per-module rank or alpha patterns are not supported")
    return config, load_file(str(weights_path))


def _same(key: str, value: Any) -> Any:
    """``value`` as compared: lists as sets; the base by its folder or registry name (a trained adapter records
    the local path of the base, a shipped one its registry name)."""
    if key == "base_model_name_or_path" and isinstance(value, str):
        return Path(value).name
    return sorted(value) if isinstance(value, list) else value


def interpolate(anchor: str | Path, tuned: str | Path, weight: float, out_dir: str | Path) -> dict[str, Any]:
    """Write the adapter whose update is ``(1 - weight) x anchor's + weight x tuned's`` into ``out_dir``.

    Args:
        anchor: Adapter folder of the model to fall back towards (``weight`` 0 gives it).
        tuned: Adapter folder of the further-trained model (``weight`` 1 gives it).
        weight: Interpolation weight; values outside [0, 1] extrapolate.
        out_dir: Adapter folder to write (atomically; replaced if it exists).

    Returns:
        ``{"path", "rank", "weight", "modules"}``.

    Raises:
        ValueError: A folder is not a LoRA adapter, or the two adapt different modules of different bases.
    """
    import torch
    from safetensors.torch import save_file

    a_dir, b_dir = Path(anchor), Path(tuned)
    (a_cfg, a_w), (b_cfg, b_w) = _read(a_dir), _read(b_dir)
    for key in _MUST_MATCH:
        if _same(key, a_cfg.get(key)) != _same(key, b_cfg.get(key)):
            raise ValueError(f"{a_dir} and {b_dir} differ in {key}: {a_cfg.get(key)!r} against {b_cfg.get(key)!r}")
    if set(a_w) != set(b_w):
        odd = sorted(set(a_w) ^ set(b_w))[0]
        raise ValueError(f"{a_dir} and {b_dir} adapt different modules (e.g. {odd})")
    factors = ((1.0 - weight) * scaling(a_cfg), weight * scaling(b_cfg))
    mixed: dict[str, Any] = {}
    for key in sorted(a_w):
        first, second = a_w[key].float(), b_w[key].float()
        if ".lora_A." in key:
            mixed[key] = torch.cat([first, second], dim=0)
        elif ".lora_B." in key:
            mixed[key] = torch.cat([factors[0] * first, factors[1] * second], dim=1)
        else:
            raise ValueError(f"{a_dir}: unexpected tensor {key} (only lora_A / lora_B are interpolated)")
        mixed[key] = mixed[key].to(a_w[key].dtype).contiguous()
    rank = int(a_cfg["r"]) + int(b_cfg["r"])
    config = {**a_cfg, "r": rank, "lora_alpha": rank, "use_rslora": False}
    recipe = {"anchor": str(a_dir), "tuned": str(b_dir), "weight": weight}
    out = Path(out_dir)
    with atomic_folder(out) as tmp:
        save_file(mixed, str(tmp / ADAPTER_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        log = b_dir / "train_log.json"
        meta = json.loads(log.read_text(encoding="utf-8")) if log.is_file() else {}
        (tmp / "train_log.json").write_text(json.dumps({**meta, "interpolation": recipe}, indent=1) + "\n",
                                            encoding="utf-8")
        for name in ("tokenizer.json", "tokenizer_config.json"):
            if (b_dir / name).is_file():
                shutil.copy(b_dir / name, tmp / name)
    return {"path": str(out), "rank": rank, "weight": weight, "modules": sum(".lora_A." in k for k in mixed)}
