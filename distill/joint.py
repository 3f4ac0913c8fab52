"""Joint training: reasoning-trace rows beside the labels student's groups, so one adapter serves both modes.

:func:`distill.direct_train.train_direct` given traces adds, to every optimiser step's direct loss (its query
groups, :func:`distill.direct_train.direct_loss`), ``trace_weight`` x the token-level cross-entropy of
``traces_per_step`` trace rows. A row is what the traces SFT (:mod:`distill.train`) trains on: the raw prompt
(:func:`distill.records.prompt_text`, ending ``<think>``) and the completion
(:func:`distill.records.training_completion`: ``" {reasoning}\\n</think> true|false"``), the loss on the
completion tokens only. Prompt and completion are tokenized apart, as reasoning mode sees them (the prompt's
tokens, then the ones the model writes). A row is cut to about ``max_trace_tokens`` by cutting its passage
(as :class:`~rank1.backends.base.PromptBuilder` cuts passages, and never longer than ``max_passage_tokens``);
the reasoning is kept whole.

Which rows a step trains on depends on the step number alone (:func:`trace_order`: a seeded permutation of the
traces, taken in turn, a fresh permutation each time they run out), so a resumed run replays the rows of the
uninterrupted one and :func:`drawn_traces` lists them without training.
"""

from __future__ import annotations

import random
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from distill.records import Trace, prompt_text, read_traces, training_completion

MIN_PASSAGE_TOKENS = 16
"""A row's passage keeps at least this many tokens, however long its reasoning (the row may then exceed
``max_trace_tokens``)."""


@lru_cache(maxsize=8)
def _permutation(n: int, seed: int, cycle: int) -> tuple[int, ...]:
    """The ``cycle``-th seeded order of ``n`` rows (a string seed: the same in every process)."""
    order = list(range(n))
    random.Random(f"traces:{seed}:{cycle}").shuffle(order)
    return tuple(order)


def trace_order(n: int, step: int, per_step: int, seed: int) -> list[int]:
    """Indices of the trace rows optimiser step ``step`` (0-based) trains on.

    Args:
        n: Trace rows available.
        step: Completed optimiser steps before this one (the trainer's ``global_step``).
        per_step: Rows per step.
        seed: The run's seed.
    """
    out = []
    for position in range(step * per_step, (step + 1) * per_step):
        cycle, at = divmod(position, n)
        out.append(_permutation(n, seed, cycle)[at])
    return out


def drawn_traces(n: int, steps: int, per_step: int, seed: int) -> list[int]:
    """Every trace row index a run of ``steps`` optimiser steps trains on, in order (rows repeat once used up)."""
    return [i for step in range(steps) for i in trace_order(n, step, per_step, seed)]


def read_answered(paths: Sequence[str | Path]) -> list[Trace]:
    """The traces with an answer in the trace JSONL files ``paths``, in file order (no files: none).

    Raises:
        ValueError: Files were given but none of their traces has an answer.
    """
    found = [t for path in paths for t in read_traces(path) if t.answer is not None]
    if paths and not found:
        raise ValueError(f"{', '.join(map(str, paths))}: no traces with an answer")
    return found


class TraceCollator:
    """Renders traces into one left-padded batch: the prompt, then the completion; ``labels`` hold the
    completion's tokens (``-100`` elsewhere), aligned with the last ``keep - 1`` positions.

    Args:
        tokenizer: The student's tokenizer.
        template: Raw prompt template (as the traces SFT).
        max_passage_tokens: Passages are never longer than this (as the direct collator cuts them).
        max_trace_tokens: Rows are cut to about this many tokens by cutting the passage further.
    """

    def __init__(self, tokenizer: Any, template: str, max_passage_tokens: int, max_trace_tokens: int) -> None:
        from rank1.backends.base import JudgeSettings
        from rank1.prompts import get_template

        self.tokenizer, self.template = tokenizer, template
        self.prompt_template = get_template(template)
        self.add_special_tokens = JudgeSettings.for_template(self.prompt_template).add_special_tokens
        self.max_passage_tokens, self.max_trace_tokens = max_passage_tokens, max_trace_tokens
        self._encoded: dict[Trace, tuple[list[int], int]] = {}

    def _prompt_ids(self, trace: Trace, passage: str) -> list[int]:
        text = prompt_text(replace(trace, passage=passage), self.template)
        return self.tokenizer(text, add_special_tokens=self.add_special_tokens)["input_ids"]

    def encode(self, trace: Trace) -> tuple[list[int], int]:
        """The row's token ids and how many of them, at the end, are the completion."""
        if trace not in self._encoded:
            from rank1.backends.base import PromptBuilder

            if trace.answer is None:
                raise ValueError(f"trace {trace.key} has no answer")
            text = training_completion(trace.reasoning, trace.answer)
            done = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            room = self.max_trace_tokens - len(done) - len(self._prompt_ids(trace, ""))
            budget = max(min(self.max_passage_tokens, room), MIN_PASSAGE_TOKENS)
            passage, _ = PromptBuilder(self.prompt_template, self.tokenizer, budget).truncate(trace.passage)
            self._encoded[trace] = (self._prompt_ids(trace, passage) + done, len(done))
        return self._encoded[trace]

    def __call__(self, traces: Sequence[Trace]) -> dict[str, Any]:
        """Model inputs, ``labels`` (rows x longest completion) and ``keep`` (positions whose logits count)."""
        import torch

        rows = [self.encode(t) for t in traces]
        width, pad = max(len(ids) for ids, _ in rows), self.tokenizer.pad_token_id
        span = max(n for _, n in rows)
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids, _ in rows])
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids, _ in rows])
        labels = torch.tensor([[-100] * (span - n) + ids[len(ids) - n:] for ids, n in rows])
        return {"input_ids": input_ids, "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
                "labels": labels, "keep": span + 1}


def trace_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Mean cross-entropy of the completion tokens of a :class:`TraceCollator` batch (logits of the completion
    positions only: the vocabulary-wide logits of the prompt are never formed)."""
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"], logits_to_keep=batch["keep"]).logits[:, :-1, :].float()
    labels = batch["labels"].to(logits.device)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


class JointTraces:
    """The trace half of a joint step: draws the step's rows, adds their weighted loss, keeps both parts for
    the log.

    Args:
        traces: Traces with an answer.
        collator: Renders them.
        weight: Weight of the trace loss beside the direct loss.
        per_step: Rows per optimiser step.
        seed: The run's seed (:func:`trace_order`).
    """

    def __init__(self, traces: Sequence[Trace], collator: TraceCollator, weight: float, per_step: int,
                 seed: int) -> None:
        if not traces or any(t.answer is None for t in traces):
            raise ValueError("joint training needs traces, each with an answer")
        if per_step < 1:
            raise ValueError("traces_per_step must be at least 1")
        self.traces, self.collator = list(traces), collator
        self.weight, self.per_step, self.seed = weight, per_step, seed
        self.drawn: list[int] = []
        self._pending: list[tuple[float, float]] = []

    def add(self, model: Any, direct: Any, step: int) -> Any:
        """``direct`` + weight x the trace loss of step ``step``'s rows (0-based, as :func:`trace_order`)."""
        rows = trace_order(len(self.traces), step, self.per_step, self.seed)
        self.drawn.extend(rows)
        part = trace_loss(model, self.collator([self.traces[i] for i in rows]))
        self._pending.append((float(direct.detach()), float(part.detach())))
        return direct + self.weight * part

    def annotate(self, logs: dict[str, float]) -> None:
        """Add ``direct_loss`` and ``trace_loss`` (means over the steps since the last log) to a log entry that
        has a ``loss``."""
        if "loss" in logs and self._pending:
            logs["direct_loss"] = sum(d for d, _ in self._pending) / len(self._pending)
            logs["trace_loss"] = sum(t for _, t in self._pending) / len(self._pending)
            self._pending.clear()


def loss_parts(trainer: Any) -> list[tuple[int, float, float]]:
    """``(step, direct loss, trace loss)`` of every logged step of a finished joint run (resumed steps included)."""
    return [(int(h["step"]), float(h["direct_loss"]), float(h["trace_loss"]))
            for h in trainer.state.log_history if "trace_loss" in h]
