"""From answer logits to a relevance score, and the record every judged pair produces.

The score is P(true): a softmax over the logits of the two answer tokens (``" true"``, ``" false"``) at the
answer position, which is the position right after the closed reasoning block.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal, NamedTuple, Sequence

Mode = Literal["direct", "reasoning"]
MODES: tuple[str, ...] = ("direct", "reasoning")
DEFAULT_BUDGET = 128  # most reasoning tokens per pair (library, CLI, HTTP server): the knee measured in issue 33


class Judgement(NamedTuple):
    """The verdict on one (query, passage) pair.

    Attributes:
        score: P(true) in [0, 1].
        reasoning: The generated reasoning (empty in direct mode).
        generated_tokens: Tokens generated for the reasoning (0 in direct mode).
        truncated: The passage was cut to fit the token limit.
        fallback: The reasoning budget ran out before ``</think>``; the reasoning was cut back to its
            last sentence end, the block closed, and the answer read from there (Rank1's rule).
        reasoned_score: Where ``score`` blends the P(true) read after the reasoning with the same model's
            direct P(true) (``direct_blend`` > 0, e.g. the default model, which explains itself with blend 1:
            its score is the direct one), the P(true) the reasoning itself reached; ``None`` otherwise.
            Compare it with ``score`` to see whether the trace argues for the score (:meth:`disagrees`).
            Not stored: the score store keeps each stage's own judgement.
        counter_score: Under counter-query contrast (``contrast`` > 0, :mod:`rank1.counter`), the direct P(true)
            of the query's negation for this passage, which ``score`` is discounted by; ``None`` otherwise.
            Not stored (its own judgement is, under the counter-query's text).
    """

    score: float
    reasoning: str = ""
    generated_tokens: int = 0
    truncated: bool = False
    fallback: bool = False
    reasoned_score: float | None = None
    counter_score: float | None = None

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> "Judgement":
        """A judgement from its field values as a table, a database row or an array returns them."""
        score, reasoning, tokens, truncated, fallback = values
        return cls(float(score), str(reasoning), int(tokens), bool(truncated), bool(fallback))

    def to_values(self) -> tuple[float, str, int, int, int]:
        """The field values as plain numbers (flags as 0/1), for tables and database rows."""
        return float(self.score), self.reasoning, int(self.generated_tokens), int(self.truncated), int(self.fallback)

    def details(self) -> dict[str, Any]:
        """Every stored field but the score, by name (the score is shown as ``p_true`` beside a run's score),
        ``p_true_reasoned`` (:attr:`reasoned_score`) where the score is blended, and ``p_true_counter``
        (:attr:`counter_score`) under counter-query contrast."""
        out = dict(zip(JUDGEMENT_FIELDS[1:], self[1:]))
        if self.reasoned_score is not None:
            out["p_true_reasoned"] = self.reasoned_score
        if self.counter_score is not None:
            out["p_true_counter"] = self.counter_score
        return out

    def disagrees(self) -> bool:
        """Whether the reasoning reached the other side of 0.5 than the (blended) score: the trace argues
        against the score it comes with. ``False`` where the score is not blended.

        Example:
            >>> Judgement(0.9, "The passage is about ...", 40, reasoned_score=0.2).disagrees()
            True
        """
        return self.reasoned_score is not None and (self.reasoned_score > 0.5) != (self.score > 0.5)


JUDGEMENT_FIELDS: tuple[str, ...] = Judgement._fields[:5]
"""The stored fields of a :class:`Judgement`, in order: the columns of the score store, Ray rows and tables
(``reasoned_score`` and ``counter_score`` are derived from two stored judgements, never stored themselves)."""

NOT_JUDGED = Judgement(math.nan)
"""What tables show for a document below the depth: P(true) NaN, no reasoning, no flags."""


def p_true(logit_true: float, logit_false: float) -> float:
    """Softmax of the ``true`` logit against the ``false`` logit, computed stably."""
    diff = logit_false - logit_true
    if diff > 0:
        e = math.exp(-diff)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(diff))


def answer_token_ids(tokenizer: Any, answers: tuple[str, str] = (" true", " false")) -> tuple[int, int]:
    """Token ids of the two answer words for this tokenizer.

    The words are tried as given (``" true"`` with its leading space, as Rank1 reads them); where the
    tokenizer does not encode one of them as a single token, the variants without the space and
    capitalised are tried in turn, and the first pair that are both single tokens wins.

    Raises:
        ValueError: No variant encodes both answers as single tokens.
    """
    true_word, false_word = answers

    def variants(word: str) -> list[str]:
        bare = word.strip()
        out = [word, bare, f" {bare}", bare.capitalize(), f" {bare.capitalize()}"]
        return list(dict.fromkeys(out))

    for t_word, f_word in zip(variants(true_word), variants(false_word)):
        t_ids = tokenizer.encode(t_word, add_special_tokens=False)
        f_ids = tokenizer.encode(f_word, add_special_tokens=False)
        if len(t_ids) == 1 and len(f_ids) == 1 and t_ids != f_ids:
            return t_ids[0], f_ids[0]
    raise ValueError(f"tokenizer has no single-token form of {answers!r}")


_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def cut_to_last_sentence(text: str) -> str:
    """Cut unfinished reasoning back to its last sentence end (keep all of it if it has none)."""
    ends = list(_SENTENCE_END.finditer(text))
    return text[: ends[-1].end()] if ends else text.rstrip()


def split_reasoning(text: str, close: str = "</think>") -> tuple[str, bool]:
    """The reasoning in a generated text, and whether Rank1's fallback applies to it.

    Args:
        text: The generated text (special tokens skipped).
        close: The closing tag of the reasoning block.

    Returns:
        ``(reasoning, fallback)``: the text before ``close`` and ``False`` when the block was closed;
        otherwise the text cut back to its last sentence end (:func:`cut_to_last_sentence`) and ``True``.
        The reasoning is stripped of surrounding whitespace.
    """
    if close in text:
        return text[: text.index(close)].strip(), False
    return cut_to_last_sentence(text).strip(), True
