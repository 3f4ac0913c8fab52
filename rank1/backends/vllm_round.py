"""The answer read inside the reasoning round of the vLLM engine, without a second ``generate`` call.

Done in two calls, the answer step re-runs every pair through the engine: the prefix cache reuses whole
KV blocks only, so each pair recomputes the tokens after its last full block plus the answer tail.
Instead, a logits processor inside the engine (:class:`~rank1.backends.vllm_processor.AnswerInRound`,
one :class:`RequestState` per request) watches each reasoning request and, the step its reasoning ends (the
closing tag written, the model's greedy choice an end token, or the budget spent), forces the tokens of the
answer sequence that the two-call way would build (:func:`~rank1.backends.base.answer_sequence`), then an
end token at the answer position. A forced token's logit is set to +inf and every other logit is left as
the model gave it; the engine runs with ``logprobs_mode="processed_logits"``, so each step reports the
logits of its sampled token and of the two answers: +inf marks the forced steps, and the two answer logits
at the last step are the answer step's (P(true) is a difference of logits, so it is exact).

The engine's path is never trusted. The main process finds where the reasoning ended
(:func:`reasoning_end`: the first forced step, or the same text and budget rules), builds the answer
sequence from the reasoning tokens the two-call way, and reads the score from round one only when the output
is exactly that sequence plus one end token. Any other output (Rank1's fallback cutting an unfinished
sentence or trailing junk off the reasoning, which the engine cannot take back; a request the engine
preempted and resumed) is answered by a second call, as before. The per-step cost is one pass over the
logits for the end-token check and one to rank the sampled token, not a log-softmax.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any, Sequence

from rank1.backends.base import JudgeSettings, answer_sequence

EXTRA_ARGS_KEY = "rank1_answer_in_round"
"""Key of a request's ``SamplingParams.extra_args`` entry that asks for the answer in round one."""


def closes(tokenizer: Any, tokens: Sequence[int], close: str) -> bool:
    """Whether the text of ``tokens`` contains ``close``, checked on the last few tokens (callers check
    after every token, so an earlier occurrence has been seen already)."""
    return bool(tokens) and close in tokenizer.decode(tokens[-(len(close) + 1):], skip_special_tokens=False)


def ends_here(tokenizer: Any, tokens: Sequence[int], settings: JudgeSettings) -> bool:
    """Whether reasoning ``tokens`` end by length or text alone: the budget is spent or the tag written."""
    return len(tokens) >= settings.budget or closes(tokenizer, tokens, settings.think_close)


def reasoning_end(
    tokenizer: Any, tokens: Sequence[int], steps: Sequence[dict[int, Any]] | None, settings: JudgeSettings,
    eos: Sequence[int],
) -> int:
    """How many of a round-one output's ``tokens`` are reasoning: up to the first step :class:`RequestState`
    forced (its sampled token's logit is +inf in ``steps``, vLLM's per-step ``Logprob`` maps), the first end
    token the model chose, or the first point :func:`ends_here` holds. Without ``steps`` (a plain first
    round, stopped at the tag, an end token or the budget) that is all its tokens but a final end token."""
    for k, token in enumerate(tokens):
        if ends_here(tokenizer, tokens[:k], settings) or token in eos:
            return k
        if steps is not None and steps[k][token].logprob == math.inf:
            return k
    return len(tokens)


def answered_in_round(tokens: Sequence[int], sequence: Sequence[int], eos: Sequence[int]) -> bool:
    """Whether a round-one output is the answer sequence plus one end token (its last step is the answer's)."""
    return len(tokens) == len(sequence) + 1 and tokens[-1] in eos and list(tokens[:-1]) == list(sequence)


def request_args(settings: JudgeSettings, eos: Sequence[int]) -> dict[str, Any]:
    """The ``extra_args`` that switch :class:`~rank1.backends.vllm_processor.AnswerInRound` on for a request."""
    return {EXTRA_ARGS_KEY: {"settings": asdict(settings), "eos": list(eos)}}


class RequestState:
    """What :class:`~rank1.backends.vllm_processor.AnswerInRound` keeps for one request, and its step.

    :meth:`step` is called with the request's row of logits before each sampling step and whether the
    model's greedy choice there is an end token. While reasoning it leaves the row alone; the step the
    reasoning ends it plans the rest of the output: the answer sequence's remaining tokens and an end token
    when that sequence continues the output, else an end token at once; then it forces the plan token by
    token (the planned token's logit becomes +inf). A plan is followed only while the output matches it, so
    a step whose token the engine discards (a chunked prefill) or a request resumed after preemption
    decides again from the output it has.

    Args:
        tokenizer: The model's tokenizer.
        settings: The judge settings of the request.
        eos: The end tokens (the first ends the request when forced).
        out: The engine's live list of the request's output tokens.
    """

    def __init__(self, tokenizer: Any, settings: JudgeSettings, eos: Sequence[int], out: list[int]) -> None:
        self.tokenizer, self.settings, self.out = tokenizer, settings, out
        self.eos = tuple(int(e) for e in eos)
        self.end = self.eos[0]
        self.start, self.plan = 0, None

    def step(self, logits: Any, greedy_end: bool) -> None:
        """Leave ``logits`` (this request's row) alone, or force the next planned token in place."""
        out, n = self.out, len(self.out)
        if self.plan is not None and self.start < n < self.start + len(self.plan) \
                and out[self.start:] == self.plan[: n - self.start]:
            logits[self.plan[n - self.start]] = math.inf
            return
        self.plan = None  # still reasoning, or a stale plan: decide here
        if greedy_end or ends_here(self.tokenizer, out, self.settings):
            sequence = answer_sequence(self.tokenizer, list(out), self.settings)[0]
            fits = sequence[:n] == out
            self.start, self.plan = n, [*sequence[n:], self.end] if fits else [self.end]
            logits[self.plan[0]] = math.inf
