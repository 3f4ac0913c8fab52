"""Reading a resolved model folder into transformers, and the error every model step raises.

The lowest layer of model handling: it imports nothing of rank1 (and torch and transformers only inside its
functions). :mod:`rank1.models` (resolving, verifying, converting, merging) and the backends build on it;
:mod:`rank1.models` re-exports these names.
"""

from __future__ import annotations

from typing import Any


class ModelError(RuntimeError):
    """A model spec cannot be resolved, verified, converted or loaded."""


def torch_dtype_named(name: str) -> Any:
    """The torch dtype called ``name`` (``"bfloat16"``, ``"float16"``, ``"float32"``...; no ``"auto"``).

    Raises:
        ModelError: Not a torch dtype name.
    """
    import torch

    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype):
        raise ModelError(f"unknown dtype {name!r} (use auto, bfloat16, float16 or float32)")
    return value


def read_pretrained(path: str, name: str, trust_remote_code: bool = False, **kwargs: Any) -> tuple[Any, Any]:
    """``(model, tokenizer)`` read by transformers from the model folder (or hub id) ``path``: safetensors only
    (never pickle), without transformers' per-tensor progress bar, the tokenizer with a padding token (its end
    token where it has none). The model stays where transformers puts it and in its default mode.

    Args:
        path: A Hugging Face model folder (a :attr:`ModelRef.path`).
        name: The model's name, for the error message.
        trust_remote_code: Passed to transformers; off unless asked for.
        **kwargs: More arguments of the model's ``from_pretrained`` (``dtype``, ``quantization_config``...).

    Raises:
        ModelError: The weights or the tokenizer cannot be read.
    """
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a cached load takes seconds; its per-tensor bar is noise
    try:
        model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, trust_remote_code=trust_remote_code,
                                                     **kwargs)
        tokenizer = read_tokenizer(path, trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load model {name!r} from {path}: {err}") from err
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    return model, tokenizer


def read_tokenizer(path: str, trust_remote_code: bool = False) -> Any:
    """The tokenizer of the model folder (or hub id) ``path``, with a padding token (its end token where it has
    none).

    Raises:
        OSError, ValueError: transformers cannot read it.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
