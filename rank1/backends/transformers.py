"""The transformers backend: batched, length-bucketed, KV-cached greedy reasoning on any device; its options;
and loading a Hugging Face model from safetensors (:func:`load_model`, also used by training and export).

Reasoning mode runs its own decoding loop instead of ``model.generate`` so that a sequence that has closed
its reasoning block leaves the batch at once (its rows are dropped from the KV cache), and so that the
answer logits are read at exactly the position after ``</think>``. Prompts are sorted by length and
batched with their neighbours, which keeps padding small.

Direct mode computes the head that a query's prompts share (the instruction and the query) once per chunk and
runs only each passage's tokens on its KV cache (:mod:`rank1.backends.prefix`): about a quarter fewer tokens
on DL19 top-100 prompts, the same scores within float tolerance (``benchmarks/speed_cpu.py``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

from rank1.backends.base import (BaseBackend, JudgeSettings, Prompt, ProgressCallback, answer_sequence, decoded_tail,
                                 length_buckets)
from rank1.backends.head import Float32Answers
from rank1.backends.int8 import int8_linear, int8_smooth
from rank1.backends.options import BackendOptions
from rank1.backends.prefix import plan_shared
from rank1.loading import ModelError, read_pretrained, torch_dtype_named
from rank1.models import ModelRef, resolve_model
from rank1.scoring import Judgement, p_true

QUANTIZE = (None, "4bit", "8bit", "int8", "int8-mixed", "int8-smooth")
"""The values of the ``quantize`` option."""

TORCH_INT8 = ("int8", "int8-mixed", "int8-smooth")
"""The ``quantize`` values run by torch's dynamic int8 linear layers (CPU, float32 activations)."""

MIN_SHARED = 16
"""Direct mode shares a prompt head among candidates when it is at least this many tokens long."""


@dataclass(frozen=True)
class TransformersOptions(BackendOptions):
    """The options of the transformers backend (and of :func:`load_model`).

    Attributes:
        dtype: ``"auto"`` (bfloat16 on CUDA; on CPU by the hardware, :func:`rank1.hardware.cpu_dtype_choice`)
            or a torch dtype name.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        quantize: ``None``; ``"4bit"`` (nf4, bf16 compute) or ``"8bit"`` via bitsandbytes; ``"int8"``: torch's
            dynamic int8 linear layers (CPU only, float32 activations, one weight scale per tensor);
            ``"int8-mixed"``: the same with one weight scale per output channel, the MLP down projections
            (whose inputs are too heavy-tailed for one activation scale per batch) kept in float32, and the
            answers read from the output layer's float32 rows (:func:`rank1.backends.int8.int8_linear`);
            ``"int8-smooth"``: ``int8-mixed`` after SmoothQuant (:func:`rank1.backends.int8.int8_smooth`: the
            int8 layers' inputs flattened channel by channel, the difference moved into their weights).
        share_prefix: Direct mode computes the prompt head that candidates share (instruction and query) once
            and reuses its KV cache for every passage (:mod:`rank1.backends.prefix`); the scores are the
            same within float tolerance, so it is not part of score-store keys.
    """

    device: str = "cpu"
    quantize: str | None = None
    share_prefix: bool = True

    NEUTRAL: ClassVar[tuple[str, ...]] = ("share_prefix",)
    GPU_AUTO: ClassVar[str] = "bfloat16"

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZE:
            raise ValueError(f"quantize must be 4bit, 8bit, int8, int8-mixed or int8-smooth, not {self.quantize!r}")
        if self.quantize in TORCH_INT8 and (self.device != "cpu" or self.dtype not in ("auto", "float32")):
            raise ValueError(f"quantize={self.quantize} is for device cpu with dtype auto or float32")

    def on_cpu(self) -> bool:
        """Whether the model runs on the CPU (``device="cpu"``)."""
        return self.device == "cpu"

    def fixed_auto(self) -> tuple[str, str] | None:
        """Under torch's int8 (``int8``, ``int8-mixed``, ``int8-smooth``) ``"auto"`` means float32, the precision
        between the int8 products (:meth:`BackendOptions.fixed_auto`)."""
        if self.quantize in TORCH_INT8:
            return "float32", f"--quantize {self.quantize} runs float32 between its int8 products"
        return None

    def float32_answers(self) -> bool:
        """A bfloat16/float16 model reads its answers in float32, and so do ``int8-mixed`` and ``int8-smooth``,
        whose output layer is int8 (``int8`` reads them from its int8 output layer)."""
        if self.quantize in TORCH_INT8:
            return self.quantize != "int8"
        return super().float32_answers()


def torch_dtype(dtype: str, device: str) -> Any:
    """The torch dtype called ``dtype`` (``"auto"`` resolved by :meth:`TransformersOptions.resolved_dtype`).

    Raises:
        ModelError: Not a torch dtype name.
    """
    return torch_dtype_named(TransformersOptions(dtype=dtype, device=device).resolved_dtype())


def _quantization(options: TransformersOptions) -> dict[str, Any]:
    """The ``from_pretrained`` arguments of ``options.quantize`` (none for ``None`` and torch's int8)."""
    if options.quantize in (None, *TORCH_INT8):
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
    """Load ``(model, tokenizer)`` from safetensors (never pickle, :func:`rank1.models.read_pretrained`), on
    ``device``, in eval mode, with a padding token.

    Args:
        ref: A :class:`~rank1.models.ModelRef`, or a spec string that is resolved first.
        dtype: ``"auto"`` (:meth:`TransformersOptions.resolved_dtype`) or a torch dtype name.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        quantize: ``None``, ``"4bit"`` (nf4, bf16 compute) or ``"8bit"`` via bitsandbytes, ``"int8"`` or
            ``"int8-mixed"`` or ``"int8-smooth"`` (torch dynamic int8 linear layers, CPU; :mod:`rank1.backends.int8`).
        trust_remote_code: Passed to transformers; off unless asked for.

    Raises:
        ModelError: A bad option, a missing bitsandbytes, or weights that cannot be loaded.
    """
    from rank1.quiet import silence_bitsandbytes_notice

    silence_bitsandbytes_notice()
    if isinstance(ref, str):
        ref = resolve_model(ref)
    try:
        options = TransformersOptions(dtype=dtype, trust_remote_code=trust_remote_code, device=device,
                                      quantize=quantize)
    except ValueError as err:
        raise ModelError(str(err)) from err
    bitsandbytes = _quantization(options)  # bitsandbytes places the model itself (device_map)
    model, tokenizer = read_pretrained(ref.path, ref.name, trust_remote_code,
                                       dtype=torch_dtype(options.resolved_dtype(), device), **bitsandbytes)
    if not bitsandbytes:
        model = model.to(device)
    if quantize == "int8-smooth":
        model = int8_smooth(ref, model, tokenizer)
    elif quantize in TORCH_INT8:
        model = int8_linear(model, mixed=quantize == "int8-mixed")
    model.eval()
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
    direct_batches = 16  # shared heads and length buckets work over this many batches (benchmarks/speed_cpu.py)

    def __init__(self, model: ModelRef, **options: Any) -> None:
        self.options = TransformersOptions.parse(options)
        o = self.options
        self.model, tokenizer = load_model(model, o.dtype, o.device, o.quantize, o.trust_remote_code)
        tokenizer.padding_side = "left"
        super().__init__(tokenizer, model.fingerprint)
        self.device = self.model.device
        self.answers = Float32Answers(self.model)  # answer logits in float32 when the model runs in bf16/fp16

    def close(self) -> None:
        """Remove the float32 answer hook; the model is released with the backend."""
        self.answers.close()

    def _p_true(self, logits: Any, settings: JudgeSettings) -> list[float]:
        """P(true) of each row from the last forward pass's ``[rows, vocab]`` logits: the two answer logits in
        float32 (:class:`~rank1.backends.head.Float32Answers`)."""
        pair = self.answers.logits(tuple(self.answer_tokens(settings)), logits).tolist()
        return [p_true(t, f) for t, f in pair]

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

    _buckets = staticmethod(length_buckets)  # indices sorted by length, cut into batches of neighbours

    def answer_scores(self, ids: Sequence[list[int]], settings: JudgeSettings) -> list[float]:
        """P(true) read at the last position of each token list.

        With ``share_prefix`` on, the heads that lists share (the instruction and query of one query's
        candidates) are computed once (:meth:`_shared_scores`); otherwise each list whole, in one forward pass
        per length-bucketed, left-padded batch of ``settings.batch_size`` lists.
        """
        import torch

        if self.options.share_prefix and all(len(x) >= 2 for x in ids):
            return self._shared_scores(ids, settings)
        with torch.inference_mode():
            return self._score_buckets(ids, settings, lambda batch, input_ids, mask, positions: self.model(
                input_ids=input_ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits[:, -1, :])

    def _score_buckets(self, lists: Sequence[list[int]], settings: JudgeSettings,
                       forward: Callable[[list[int], Any, Any, Any], Any]) -> list[float]:
        """P(true) at the last position of each token list: length-bucketed, left-padded batches of
        ``settings.batch_size`` through ``forward(batch indices, ids, mask, positions) -> last logits``."""
        scores = [0.0] * len(lists)
        for batch in self._buckets([len(x) for x in lists], settings.batch_size):
            rows = [lists[i] for i in batch]
            input_ids, mask, positions = self._batch(rows)
            self.tokens.count(rows, input_ids.shape[1])
            for i, score in zip(batch, self._p_true(forward(batch, input_ids, mask, positions), settings)):
                scores[i] = score
        return scores

    def _shared_scores(self, ids: Sequence[list[int]], settings: JudgeSettings) -> list[float]:
        """P(true) from shared heads (:func:`~rank1.backends.prefix.plan_shared`): the distinct heads in one
        left-padded forward pass, kept as a KV cache; then the tails, length-bucketed across all heads, each
        batch on the cache rows of its heads. Tails are left-padded too (the padding sits between head and tail,
        masked, positions continuing the head's), so every answer is read at the last position."""
        import copy

        import torch

        plan = plan_shared(ids, MIN_SHARED)
        with torch.inference_mode():
            head_ids, head_mask, head_positions = self._batch(plan.heads)
            self.tokens.count(plan.heads, head_ids.shape[1])
            self.tokens.real += plan.saved
            self.tokens.reused += plan.saved
            heads = self.model(input_ids=head_ids, attention_mask=head_mask, position_ids=head_positions,
                               use_cache=True, logits_to_keep=1).past_key_values
            head_lengths = head_mask.sum(-1)

            def on_heads(batch: list[int], input_ids: Any, tail_mask: Any, positions: Any) -> Any:
                which = torch.tensor([plan.head_of[i] for i in batch], device=self.device)
                cache = copy.deepcopy(heads)
                cache.batch_select_indices(which)
                return self.model(input_ids=input_ids, attention_mask=torch.cat([head_mask[which], tail_mask], 1),
                                  position_ids=positions + head_lengths[which][:, None], past_key_values=cache,
                                  use_cache=True, logits_to_keep=1).logits[:, -1, :]

            return self._score_buckets(plan.tails, settings, on_heads)

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
                logits = out.logits[:, -1, :]
                answers = self._p_true(logits, settings) if any(forced[seq] == [] for seq in active) else []
                keep: list[int] = []
                next_tokens: list[int] = []
                for row, seq in enumerate(active):
                    queue = forced[seq]
                    if queue == []:  # the answer position (answers computed above)
                        scores[seq] = answers[row]
                        continue
                    if queue:
                        token = queue.pop(0)
                    else:
                        token = int(logits[row].argmax())
                        if token in eos or len(generated[seq]) >= settings.budget:
                            continue  # no closed block: fallback below
                        generated[seq].append(token)
                        tail = decoded_tail(self.tokenizer, generated[seq])
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
