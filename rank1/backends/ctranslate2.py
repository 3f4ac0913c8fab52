"""The CTranslate2 backend: int8 weights on the CPU, the fast quantized path.

CTranslate2 (``pip install 'rank1[ctranslate2]'``) runs a converted copy of the model with int8 weights (one
scale per output channel) and activations quantized per row on the fly, through its own GEMM kernels. The
copy is made once from the model's Hugging Face folder (:func:`converted`, about 20 s for the 0.5B students) and
cached beside it in the model cache, keyed by the model's fingerprint; the original is untouched.

Direct mode reads P(true) from the logits of one step after each prompt (a prompt runs alone: CTranslate2
does not pad, and one prompt is already a matrix of ~100-500 rows). Reasoning mode generates a length-bucketed
batch greedily, each row stopping once its reasoning block closes, and reads the answer after
:func:`~rank1.backends.base.answer_sequence`, exactly as the other backends do (a closed block gets the
answer prefix, anything else Rank1's fallback).

Measured against the exact paths in ``benchmarks/quantized.py`` (``benchmarks/results/quantized.json``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

from rank1.backends.base import BaseBackend, JudgeSettings, Prompt, ProgressCallback, answer_sequence
from rank1.backends.options import EngineOptions
from rank1.loading import ModelError, read_tokenizer
from rank1.models import ModelRef, copies_root, ensure_cached
from rank1.scoring import Judgement, p_true

COMPUTE_TYPES = ("int8", "float32")
"""The values of the ``compute_type`` option."""


@dataclass(frozen=True)
class CTranslate2Options(EngineOptions):
    """The options of the CTranslate2 backend.

    Attributes:
        dtype: ``"auto"`` or ``"float32"``: what is not int8 runs in float32 (CTranslate2 has no bfloat16 on CPU).
        compute_type: ``"int8"`` (weights int8 per output channel, activations per row; the default) or
            ``"float32"`` (the converted model unquantized, to check the engine against the exact path).
        device: ``"cpu"`` or ``"cuda"``.
        threads: Threads per forward pass (0: CTranslate2's default, every core); only speed, so not part of
            score-store keys.
    """

    compute_type: str = "int8"
    device: str = "cpu"

    ENGINE: ClassVar[str] = "ctranslate2"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.compute_type not in COMPUTE_TYPES:
            raise ValueError(f"compute_type must be {' or '.join(COMPUTE_TYPES)}, not {self.compute_type!r}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu or cuda for the ctranslate2 backend, not {self.device!r}")

    def on_cpu(self) -> bool:
        """Whether the model runs on the CPU."""
        return self.device == "cpu"


def converted(model: ModelRef, compute_type: str) -> Path:
    """The CTranslate2 copy of ``model`` with weights in ``compute_type``, converted on first use.

    The copy is ``<name>.ct2-<compute_type>`` beside the model in its cache (for a user's own folder or a hub
    id: in the model cache root) and is made again when the model's fingerprint changes; it is built in a
    temporary folder and renamed into place (:func:`rank1.models.ensure_cached`), so an interrupted
    conversion leaves nothing half-written.

    Raises:
        ModelError: ctranslate2 is not installed, or the model cannot be converted.
    """
    if importlib.util.find_spec("ctranslate2") is None:
        raise ModelError("the ctranslate2 backend needs ctranslate2: pip install 'rank1[ctranslate2]'")
    root = copies_root(model)
    name = f"{model.name.replace('/', '--')}.ct2-{compute_type}"

    def build(tmp: Path) -> None:
        from ctranslate2.converters import TransformersConverter

        from rank1.quiet import quiet_step

        with quiet_step(f"Converting {model.name} for CTranslate2 ({compute_type}, once)"):
            TransformersConverter(model.path, low_cpu_mem_usage=True).convert(
                str(tmp), quantization=compute_type, force=True)

    try:
        return ensure_cached(name, root, model.fingerprint, f"ctranslate2:{model.name}", build, dtype=compute_type,
                             weights="model.bin")
    except (OSError, ValueError, NotImplementedError) as err:
        raise ModelError(f"cannot convert {model.name!r} ({model.path}) for CTranslate2: {err}") from err


def close_position(tokenizer: Any, tokens: Sequence[int], close: str, window: int = 8) -> int:
    """How many of ``tokens`` run up to the first token whose decoded tail contains ``close`` (all of them if
    none does): where the transformers backend's loop stops generating."""
    for k in range(1, len(tokens) + 1):
        if close in tokenizer.decode(tokens[max(0, k - window) : k], skip_special_tokens=False):
            return k
    return len(tokens)


class CTranslate2Backend(BaseBackend):
    """Judges prompts with a CTranslate2 ``Generator`` over a converted copy of the model.

    Args:
        model: The resolved model (a local Hugging Face folder: an embedded model, a student, a path).
        **options: The fields of :class:`CTranslate2Options`.

    Raises:
        ValueError: An option the backend does not take, or a bad value.
        rank1.models.ModelError: ctranslate2 is missing or the model cannot be converted or loaded.
    """

    name = "ctranslate2"
    options_class = CTranslate2Options

    def __init__(self, model: ModelRef, **options: Any) -> None:
        self.options = o = CTranslate2Options.parse(options)
        import ctranslate2

        path = converted(model, o.compute_type)
        try:
            self.generator = ctranslate2.Generator(str(path), device=o.device, compute_type=o.compute_type,
                                                   intra_threads=o.threads)
            tokenizer = read_tokenizer(model.path, o.trust_remote_code)
        except (OSError, ValueError, RuntimeError) as err:
            raise ModelError(f"cannot load {model.name!r} with CTranslate2 from {path}: {err}") from err
        super().__init__(tokenizer, model.fingerprint)

    def close(self) -> None:
        """Free the engine's weights."""
        self.generator.unload_model()

    def _tokens(self, ids: Sequence[int]) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens(list(ids))

    def answer_scores(self, ids: Sequence[list[int]], settings: JudgeSettings) -> list[float]:
        """P(true) from the first step's logits after each token list, one list at a time."""
        import numpy as np

        true, false = self.answer_tokens(settings)
        scores = []
        for row in ids:
            self.tokens.count([row], len(row))
            result = self.generator.generate_batch([self._tokens(row)], max_length=1, return_logits_vocab=True,
                                                   include_prompt_in_result=False)[0]
            logits = np.asarray(result.logits[0]).reshape(-1)
            scores.append(p_true(float(logits[true]), float(logits[false])))
        return scores

    def _reason(
        self, prompts: Sequence[Prompt], settings: JudgeSettings, on_batch: ProgressCallback | None
    ) -> list[Judgement]:
        """Reasoning mode: greedy generation in length-bucketed batches, each row stopped once its block
        closes (or its budget is spent, or it ends), then one answer step per row (:meth:`answer_scores`)."""
        ids, _ = self.encode([p.text for p in prompts], settings)
        order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
        results: list[Judgement | None] = [None] * len(prompts)
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            generated = self._generate([ids[i] for i in batch], settings)
            tokens = 0
            for i, gen in zip(batch, generated):
                gen = gen[: close_position(self.tokenizer, gen, settings.think_close)]
                sequence, text, fallback = answer_sequence(self.tokenizer, gen, settings)
                score = self.answer_scores([ids[i] + sequence], settings)[0]
                results[i] = Judgement(score, text, len(gen), prompts[i].truncated, fallback)
                tokens += len(gen)
            if on_batch:
                on_batch(len(batch), tokens)
        return [r for r in results if r is not None]

    def _generate(self, ids: list[list[int]], settings: JudgeSettings) -> list[list[int]]:
        """Greedy continuations of ``ids`` (at most ``settings.budget`` tokens each, end tokens left out); a row
        stops at the step where the closing tag appears in its decoded tail."""
        texts: dict[int, list[int]] = {b: [] for b in range(len(ids))}

        def closed(step: Any) -> bool:
            seen = texts[step.batch_id]
            seen.append(step.token_id)
            return settings.closes(self.tokenizer, seen)

        results = self.generator.generate_batch(
            [self._tokens(x) for x in ids], max_length=settings.budget, sampling_topk=1, beam_size=1,
            include_prompt_in_result=False, end_token=list(self.end_tokens), callback=closed)
        self.tokens.count(ids, max(len(x) for x in ids))
        return [[t for t in r.sequences_ids[0] if t not in self.end_tokens] for r in results]
