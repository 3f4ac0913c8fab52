"""The transformers backend: batched, length-bucketed, KV-cached greedy reasoning on any device; its options;
and loading a Hugging Face model from safetensors (:func:`load_model`, also used by training and export).

Reasoning mode runs its own decoding loop instead of ``model.generate`` so that a sequence that has closed
its reasoning block leaves the batch at once (its rows are dropped from the KV cache), and so that the
answer logits are read at exactly the position after ``</think>``. Prompts are sorted by length and
batched with their neighbours, which keeps padding small.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from rank1.backends.base import BaseBackend, JudgeSettings, Prompt, ProgressCallback, answer_sequence
from rank1.backends.options import BackendOptions
from rank1.models import ModelError, ModelRef, resolve_model
from rank1.scoring import Judgement, p_true

QUANTIZE = (None, "4bit", "8bit")
"""The values of the ``quantize`` option."""

CPU_DEFAULT_DTYPE = "float32"
"""What ``dtype="auto"`` means on CPU: much faster than bfloat16 on CPUs without bfloat16 units (see
benchmarks/README.md)."""


@dataclass(frozen=True)
class TransformersOptions(BackendOptions):
    """The options of the transformers backend (and of :func:`load_model`).

    Attributes:
        dtype: ``"auto"`` (bfloat16 on CUDA, :data:`CPU_DEFAULT_DTYPE` on CPU) or a torch dtype name.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        quantize: ``None``, ``"4bit"`` (nf4, bf16 compute) or ``"8bit"``, via bitsandbytes.
    """

    device: str = "cpu"
    quantize: str | None = None

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZE:
            raise ValueError(f"quantize must be 4bit or 8bit, not {self.quantize!r}")


def torch_dtype(dtype: str, device: str) -> Any:
    """The torch dtype called ``dtype`` (``"auto"``: bfloat16 on CUDA, :data:`CPU_DEFAULT_DTYPE` elsewhere).

    Raises:
        ModelError: Not a torch dtype name.
    """
    import torch

    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else CPU_DEFAULT_DTYPE
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise ModelError(f"unknown dtype {dtype!r} (use auto, bfloat16, float16 or float32)")
    return value


def _quantization(options: TransformersOptions) -> dict[str, Any]:
    """The ``from_pretrained`` arguments of ``options.quantize`` (none when it is ``None``)."""
    if options.quantize is None:
        return {}
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelError("quantization needs bitsandbytes: pip install 'bitsandbytes>=0.45'")
    import torch
    from transformers import BitsAndBytesConfig

    config = (BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
              if options.quantize == "4bit" else BitsAndBytesConfig(load_in_8bit=True))
    return {"quantization_config": config, "device_map": {"": options.device}}


def load_model(ref: ModelRef | str, dtype: str = "auto", device: str = "cpu", quantize: str | None = None,
               trust_remote_code: bool = False) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` from safetensors (never pickle), in eval mode, with a padding token.

    Args:
        ref: A :class:`~rank1.models.ModelRef`, or a spec string that is resolved first.
        dtype: ``"auto"`` (bfloat16 on CUDA, :data:`CPU_DEFAULT_DTYPE` on CPU) or a torch dtype name.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        quantize: ``None``, ``"4bit"`` (nf4, bf16 compute) or ``"8bit"``, via bitsandbytes.
        trust_remote_code: Passed to transformers; off unless asked for.

    Raises:
        ModelError: A bad option, a missing bitsandbytes, or weights that cannot be loaded.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if isinstance(ref, str):
        ref = resolve_model(ref)
    torch_type = torch_dtype(dtype, device)
    try:
        options = TransformersOptions(dtype=dtype, trust_remote_code=trust_remote_code, device=device,
                                      quantize=quantize)
    except ValueError as err:
        raise ModelError(str(err)) from err
    kwargs = {"dtype": torch_type, "use_safetensors": True, "trust_remote_code": trust_remote_code,
              **_quantization(options)}
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a cached load takes seconds; its per-tensor bar is noise
    try:
        model = AutoModelForCausalLM.from_pretrained(ref.path, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(ref.path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load model {ref.name!r} from {ref.path}: {err}") from err
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    if quantize is None:
        model = model.to(device)
    model.eval()
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


class TransformersBackend(BaseBackend):
    """Judges prompts with a Hugging Face causal LM.

    Args:
        model: The resolved model (see :func:`rank1.models.resolve_model`).
        **options: The fields of :class:`TransformersOptions` (``dtype``, ``device``, ``quantize``,
            ``trust_remote_code``).

    Raises:
        ValueError: An option the backend does not take, or a bad value.
        rank1.models.ModelError: The model cannot be loaded.
    """

    name = "transformers"
    options_class = TransformersOptions
    direct_batches = 4

    def __init__(self, model: ModelRef, **options: Any) -> None:
        self.options = TransformersOptions.parse(options)
        self.model, tokenizer = load_model(model, **asdict(self.options))
        tokenizer.padding_side = "left"
        super().__init__(tokenizer, model.fingerprint)
        self.device = self.model.device

    # -- shared pieces -------------------------------------------------------------------------------

    def _batch(self, ids: Sequence[list[int]]) -> tuple[Any, Any, Any]:
        """Left-pad token lists into (input_ids, attention_mask, position_ids) tensors."""
        import torch

        width = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=self.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return input_ids, mask, positions

    @staticmethod
    def _buckets(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
        """Indices sorted by length (stable), cut into batches of neighbours."""
        order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def answer_scores(self, ids: Sequence[list[int]], settings: JudgeSettings) -> list[float]:
        """P(true) read at the last position of each token list, in one forward pass per length-bucketed batch
        of ``settings.batch_size`` lists."""
        import torch

        true_id, false_id = self.answer_tokens(settings)
        scores = [0.0] * len(ids)
        for batch in self._buckets([len(x) for x in ids], settings.batch_size):
            input_ids, mask, positions = self._batch([ids[i] for i in batch])
            with torch.inference_mode():
                out = self.model(
                    input_ids=input_ids, attention_mask=mask, position_ids=positions, logits_to_keep=1
                )
            logits = out.logits[:, -1, :].float()
            for row, i in enumerate(batch):
                scores[i] = p_true(float(logits[row, true_id]), float(logits[row, false_id]))
        return scores

    # -- reasoning mode ------------------------------------------------------------------------------

    def _reason(
        self, prompts: Sequence[Prompt], settings: JudgeSettings, on_batch: ProgressCallback | None
    ) -> list[Judgement]:
        """Reasoning mode, one length-bucketed batch at a time (:meth:`_reason_batch`)."""
        ids, _ = self.encode([p.text for p in prompts], settings)
        results: list[Judgement | None] = [None] * len(prompts)
        for batch in self._buckets([len(x) for x in ids], settings.batch_size):
            done = self._reason_batch([ids[i] for i in batch], settings)
            tokens = 0
            for (score, text, n_gen, fallback), i in zip(done, batch):
                results[i] = Judgement(score, text, n_gen, prompts[i].truncated, fallback)
                tokens += n_gen
            if on_batch:
                on_batch(len(batch), tokens)
        return [r for r in results if r is not None]

    def _reason_batch(
        self, ids: list[list[int]], settings: JudgeSettings
    ) -> list[tuple[float, str, int, bool]]:
        """Greedy reasoning for one batch; rows leave the batch as soon as their answer is read.

        A row generates until its text contains the closing tag. If the text ends exactly with it, the
        template's answer prefix is forced token by token, and the logits after the last forced token
        are the answer. Rows whose budget runs out (or that stop, or whose closing tag merged into a
        longer token) are finished by Rank1's fallback in one extra forward pass.

        Returns:
            One (score, reasoning, generated tokens, fallback) per row.
        """
        import torch

        true_id, false_id = self.answer_tokens(settings)
        close = settings.think_close
        prefix = self.tokenizer.encode(settings.answer_prefix, add_special_tokens=False)
        eos = self.end_tokens
        n = len(ids)
        generated: list[list[int]] = [[] for _ in range(n)]
        forced: list[list[int] | None] = [None] * n  # tokens still to force; [] = answer position next
        scores: list[float | None] = [None] * n
        active = list(range(n))  # row r of the tensors is sequence active[r]

        input_ids, mask, positions = self._batch(ids)
        cache = None
        with torch.inference_mode():
            while active:
                out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                                 past_key_values=cache, use_cache=True, logits_to_keep=1)
                cache = out.past_key_values
                logits = out.logits[:, -1, :].float()
                keep: list[int] = []
                next_tokens: list[int] = []
                for row, seq in enumerate(active):
                    queue = forced[seq]
                    if queue == []:  # the answer position
                        scores[seq] = p_true(float(logits[row, true_id]), float(logits[row, false_id]))
                        continue
                    if queue:
                        token = queue.pop(0)
                    else:
                        token = int(logits[row].argmax())
                        if token in eos or len(generated[seq]) >= settings.budget:
                            continue  # no closed block: fallback below
                        generated[seq].append(token)
                        tail = self.tokenizer.decode(generated[seq][-8:], skip_special_tokens=False)
                        if close in tail:
                            if not tail.endswith(close):
                                continue  # the close merged into a longer token: re-score below
                            forced[seq] = list(prefix)
                    keep.append(row)
                    next_tokens.append(token)
                if not keep:
                    break
                active = [active[r] for r in keep]
                if len(keep) < logits.shape[0]:
                    index = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(index)
                    mask, positions = mask[index], positions[index]
                input_ids = torch.tensor(next_tokens, device=self.device)[:, None]
                mask = torch.cat([mask, mask.new_ones((len(keep), 1))], dim=1)
                positions = positions[:, -1:] + 1
        return self._finish(ids, generated, scores, settings)

    def _finish(
        self,
        ids: list[list[int]],
        generated: list[list[int]],
        scores: list[float | None],
        settings: JudgeSettings,
    ) -> list[tuple[float, str, int, bool]]:
        """Reasoning texts, and Rank1's fallback for rows without an answer: the reasoning cut back to
        its last sentence end, the block closed (:func:`~rank1.backends.base.answer_sequence`), the answer
        read in one batched forward pass."""
        results: list[tuple[float, str, int, bool]] = []
        rescore: list[tuple[int, list[int]]] = []
        for seq, tokens in enumerate(generated):
            sequence, text, fallback = answer_sequence(self.tokenizer, tokens, settings)
            if scores[seq] is None:
                rescore.append((seq, ids[seq] + sequence))
            results.append((scores[seq] or 0.0, text, len(tokens), fallback))
        if rescore:
            rescored = self.answer_scores([x for _, x in rescore], settings)
            for (s, _), score in zip(rescore, rescored):
                results[s] = (score, *results[s][1:])
        return results
