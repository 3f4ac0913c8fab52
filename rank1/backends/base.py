"""The backend protocol, its settings, and the prompt building every backend shares.

A backend takes finished prompts (each ending with the opening of the reasoning block) and returns one
:class:`~rank1.scoring.Judgement` per prompt. Everything that does not depend on the inference engine —
templates, passage truncation and its accounting, answer-token ids — lives here, so the backends agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Protocol, Sequence, runtime_checkable

from rank1.prompts import PromptTemplate
from rank1.scoring import Judgement

ProgressCallback = Callable[[int, int], None]
"""Called after each finished batch with (pairs finished, tokens generated) in that batch."""


class Prompt(NamedTuple):
    """A rendered prompt and whether its passage had to be truncated to fit."""

    text: str
    truncated: bool = False


@dataclass(frozen=True)
class JudgeSettings:
    """How a backend judges a batch of prompts.

    Attributes:
        mode: ``"direct"`` (one forward pass, no reasoning) or ``"reasoning"`` (generate until the
            reasoning block closes, then read the answer).
        budget: Most tokens of reasoning generated per pair; past it Rank1's fallback applies.
        batch_size: Pairs per forward pass.
        think_close: Text that closes the reasoning block (from the template).
        answer_prefix: Text forced after the close before the answer is read (from the template).
        answers: The (true, false) answer words (from the template).
        add_special_tokens: Let the tokenizer add its special tokens (off for chat prompts, which
            carry them as text already).
    """

    mode: str = "reasoning"
    budget: int = 256
    batch_size: int = 8
    think_close: str = "</think>"
    answer_prefix: str = ""
    answers: tuple[str, str] = (" true", " false")
    add_special_tokens: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("direct", "reasoning"):
            raise ValueError(f"backend mode must be 'direct' or 'reasoning', not {self.mode!r}")
        if self.budget < 1 or self.batch_size < 1:
            raise ValueError("budget and batch_size must be at least 1")

    @property
    def close_empty(self) -> str:
        """What direct mode appends: an empty, closed reasoning block and the answer prefix."""
        return f"\n{self.think_close}{self.answer_prefix}"

    def reclose(self, reasoning: str) -> str:
        """What follows the prompt when the answer is read after ``reasoning`` whose own closing tag cannot
        be used (Rank1's fallback, or a tag merged into a longer token): the reasoning, a newline, the
        closing tag and the answer prefix."""
        return f"{reasoning}\n{self.think_close}{self.answer_prefix}"

    @classmethod
    def for_template(cls, template: PromptTemplate, **kwargs: Any) -> "JudgeSettings":
        """Settings that take the closing text and answer words from ``template``."""
        return cls(
            think_close=template.think_close,
            answer_prefix=template.answer_prefix,
            answers=template.answers,
            add_special_tokens=not template.chat,
            **kwargs,
        )


@runtime_checkable
class Backend(Protocol):
    """What the reranker needs from an inference engine."""

    name: str
    tokenizer: Any
    fingerprint: str

    def judge(
        self,
        prompts: Sequence[Prompt],
        settings: JudgeSettings,
        on_batch: ProgressCallback | None = None,
    ) -> list[Judgement]:
        """Judge every prompt; the result list is in the order of ``prompts``."""
        ...


class PromptBuilder:
    """Renders (query, passage) pairs with a template, truncating long passages.

    Args:
        template: The prompt template.
        tokenizer: The model's tokenizer (used for truncation and chat templates).
        max_passage_tokens: Passages longer than this many tokens are cut to it; each cut is flagged
            on the prompt so that it is counted and reported, never silent.
    """

    def __init__(self, template: PromptTemplate, tokenizer: Any, max_passage_tokens: int = 512) -> None:
        if max_passage_tokens < 1:
            raise ValueError("max_passage_tokens must be at least 1")
        self.template = template
        self.tokenizer = tokenizer
        self.max_passage_tokens = max_passage_tokens

    def truncate(self, passage: str) -> tuple[str, bool]:
        """The passage cut to :attr:`max_passage_tokens` tokens, and whether it was cut."""
        # Every token covers at least one byte, so a text of few bytes needs no encoding.
        if len(passage.encode("utf-8")) <= self.max_passage_tokens:
            return passage, False
        ids = self.tokenizer.encode(passage, add_special_tokens=False)
        if len(ids) <= self.max_passage_tokens:
            return passage, False
        return self.tokenizer.decode(ids[: self.max_passage_tokens]), True

    def build(self, query: str, passage: str) -> Prompt:
        """Render one pair; ``query`` already carries its instruction."""
        text, cut = self.truncate(passage)
        return Prompt(self.template.render(query, text, self.tokenizer), cut)
