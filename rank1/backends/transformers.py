"""The transformers backend: batched, length-bucketed, KV-cached greedy reasoning on any device.

Reasoning mode runs its own decoding loop instead of ``model.generate`` so that a sequence that has closed
its reasoning block leaves the batch at once (its rows are dropped from the KV cache), and so that the
answer logits are read at exactly the position after ``</think>``. Prompts are sorted by length and
batched with their neighbours, which keeps padding small.
"""

from __future__ import annotations

from typing import Any, Sequence

from rank1.backends.base import JudgeSettings, Prompt, ProgressCallback, answer_sequence
from rank1.models import ModelRef, load_model
from rank1.scoring import Judgement, answer_token_ids, p_true


class TransformersBackend:
    """Judges prompts with a Hugging Face causal LM.

    Args:
        model: The resolved model (see :func:`rank1.models.resolve_model`).
        dtype: ``"auto"`` or a torch dtype name.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        quantize: ``None``, ``"4bit"`` or ``"8bit"`` (bitsandbytes).
        trust_remote_code: Passed to transformers; off unless asked for.
    """

    name = "transformers"

    def __init__(
        self,
        model: ModelRef,
        dtype: str = "auto",
        device: str = "cpu",
        quantize: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        self.model, self.tokenizer = load_model(
            model, dtype=dtype, device=device, quantize=quantize, trust_remote_code=trust_remote_code
        )
        self.model.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.fingerprint = model.fingerprint
        self.device = self.model.device

    # -- shared pieces -------------------------------------------------------------------------------

    def _encode(self, texts: Sequence[str], settings: JudgeSettings) -> list[list[int]]:
        enc = self.tokenizer(list(texts), add_special_tokens=settings.add_special_tokens)
        return enc["input_ids"]

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

    def _answer_scores(self, ids: Sequence[list[int]], settings: JudgeSettings) -> list[float]:
        """P(true) read at the last position of each token list, in one forward pass per batch."""
        import torch

        true_id, false_id = answer_token_ids(self.tokenizer, settings.answers)
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

    # -- the protocol --------------------------------------------------------------------------------

    def judge(
        self,
        prompts: Sequence[Prompt],
        settings: JudgeSettings,
        on_batch: ProgressCallback | None = None,
    ) -> list[Judgement]:
        """Judge ``prompts`` (see :class:`rank1.backends.base.Backend`)."""
        if not prompts:
            return []
        if settings.mode == "direct":
            closed = [p.text + settings.close_empty for p in prompts]
            ids = self._encode(closed, settings)
            out: list[Judgement] = []
            for start in range(0, len(ids), settings.batch_size * 4):
                chunk = ids[start : start + settings.batch_size * 4]
                for k, score in enumerate(self._answer_scores(chunk, settings)):
                    out.append(Judgement(score, truncated=prompts[start + k].truncated))
                if on_batch:
                    on_batch(len(chunk), 0)
            return out
        return self._reason(prompts, settings, on_batch)

    def _reason(
        self, prompts: Sequence[Prompt], settings: JudgeSettings, on_batch: ProgressCallback | None
    ) -> list[Judgement]:
        ids = self._encode([p.text for p in prompts], settings)
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

        true_id, false_id = answer_token_ids(self.tokenizer, settings.answers)
        close = settings.think_close
        prefix = self.tokenizer.encode(settings.answer_prefix, add_special_tokens=False)
        eos = {t for t in [self.tokenizer.eos_token_id, self.tokenizer.pad_token_id] if t is not None}
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
            rescored = self._answer_scores([x for _, x in rescore], settings)
            for (s, _), score in zip(rescore, rescored):
                results[s] = (score, *results[s][1:])
        return results
