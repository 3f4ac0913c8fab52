"""The backend protocol, its settings, the flow every backend shares, and prompt building.

A backend takes finished prompts (each ending with the opening of the reasoning block) and returns one
:class:`~rank1.scoring.Judgement` per prompt. Everything that does not depend on the inference engine —
templates, passage truncation and its accounting, answer and end-token ids, direct-mode judging, the
answer sequence after the reasoning — lives here (:class:`BaseBackend`), so the backends agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, NamedTuple, Protocol, Sequence, runtime_checkable

from rank1.backends.options import BackendOptions
from rank1.prompts import PromptTemplate
from rank1.scoring import DEFAULT_BUDGET, Judgement, answer_token_ids, cut_to_last_sentence, split_reasoning

JUDGE_REVISION = 2
"""Revision of how backends turn a generation into a judgement, part of score-store keys so that a change
re-judges pairs instead of reusing stored scores (2: the fallback keeps the model's own reasoning tokens)."""
CLOSE_WINDOW = 8
"""Generated tokens decoded when looking for the closing tag (it may span several)."""

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
    budget: int = DEFAULT_BUDGET
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
        """The text that closes ``reasoning`` whose own closing tag cannot be used (Rank1's fallback, or a
        tag merged into a longer token): the reasoning, a newline, the closing tag and the answer prefix
        (see :func:`answer_sequence`)."""
        return f"{reasoning}\n{self.think_close}{self.answer_prefix}"

    def closes(self, tokenizer: Any, generated: Sequence[int]) -> bool:
        """Whether the closing tag shows in the last generated tokens (:func:`decoded_tail`): a greedy loop
        stops there."""
        return self.think_close in decoded_tail(tokenizer, generated)

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


def decoded_tail(tokenizer: Any, generated: Sequence[int]) -> str:
    """The last :data:`CLOSE_WINDOW` generated tokens decoded with special tokens kept: where a closing tag
    that spans several tokens, or merged into a longer one, can be seen."""
    return tokenizer.decode(list(generated[-CLOSE_WINDOW:]), skip_special_tokens=False)


def answer_sequence(tokenizer: Any, tokens: list[int], settings: JudgeSettings) -> tuple[list[int], str, bool]:
    """The tokens after the prompt at whose end the answer is read, given the generated reasoning ``tokens``.

    * A block that ends on the closing tag: the reasoning tokens, then the answer prefix.
    * Otherwise (budget spent, the model stopped, or the tag merged into a longer token), Rank1's fallback:
      the reasoning cut back to its last sentence end (or to the tag), trailing whitespace dropped, then
      ``"\\n"``, the closing tag and the answer prefix (:meth:`JudgeSettings.reclose`). The model's own
      tokens are kept up to the last one that lies wholly inside the cut text; only the rest of that text
      and the closing tail are encoded. (Rank1 re-encodes the whole stripped text; keeping the model's
      tokens keeps its leading whitespace and lets the vLLM backend read such answers in one engine call.)

    Both backends build the answer step from this function, so they agree.

    Returns:
        ``(ids, reasoning text, fallback)``: the reasoning as :func:`~rank1.scoring.split_reasoning` gives it.
    """
    close = settings.think_close
    full = tokenizer.decode(tokens, skip_special_tokens=True)
    text, fallback = split_reasoning(full, close)
    if tokenizer.decode(tokens, skip_special_tokens=False).endswith(close):
        return [*tokens, *tokenizer.encode(settings.answer_prefix, add_special_tokens=False)], text, fallback
    cut = (full[: full.index(close)] if close in full else cut_to_last_sentence(full)).rstrip()
    kept, head = len(tokens), full  # head: the text of tokens[:kept]
    while kept and not cut.startswith(head):
        kept -= 1
        head = tokenizer.decode(tokens[:kept], skip_special_tokens=True)
    rest = cut[len(head):]
    return [*tokens[:kept], *tokenizer.encode(settings.reclose(rest), add_special_tokens=False)], text, fallback


def length_buckets(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by length (stable), cut into batches of ``batch_size`` neighbours (little padding)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


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

    def close(self) -> None:
        """Release what the backend holds (engine processes); it cannot judge afterwards."""
        ...


@dataclass
class TokenCounts:
    """Prompt tokens of the answer steps a backend has run (direct mode and fallbacks), for speed accounting.

    Attributes:
        real: Prompt tokens judged (every pair's whole prompt).
        reused: Of those, tokens not computed again: a shared head computed once (transformers), prefix-cache
            hits (vLLM).
        padded: Padding tokens computed besides them.
    """

    real: int = 0
    reused: int = 0
    padded: int = 0

    def count(self, rows: Sequence[Sequence[int]], width: int) -> None:
        """Count one batch of token lists padded to ``width``."""
        n = sum(len(r) for r in rows)
        self.real += n
        self.padded += width * len(rows) - n

    @property
    def computed(self) -> int:
        """Tokens run through the model: real minus reused, plus padding."""
        return self.real - self.reused + self.padded


class AnswerTokens(NamedTuple):
    """Token ids of the two answer words (see :func:`~rank1.scoring.answer_token_ids`)."""

    true: int
    false: int


class BaseBackend:
    """The judging flow the backends share, over the tokenizer's answer and end-token ids (computed once).

    A backend derives from this class, loads its model and calls ``super().__init__`` with the model's
    tokenizer (padding set up) and fingerprint; it implements :meth:`answer_scores` and :meth:`_reason`, and
    may override :meth:`fit` (a context limit) and :attr:`direct_batches`. Its options are the fields of
    :attr:`options_class`.

    Attributes:
        tokenizer: The model's tokenizer.
        fingerprint: The model's fingerprint (see :class:`rank1.models.ModelRef`).
        end_tokens: The ids that end a generation (end of text and padding), sorted.
        tokens: Prompt tokens of the answer steps run so far (:class:`TokenCounts`).
    """

    name: ClassVar[str]
    options_class: ClassVar[type[BackendOptions]] = BackendOptions
    direct_batches: ClassVar[int | None] = None
    """Direct mode judges (and reports progress for) this many batches of prompts at a time; ``None``: all
    prompts at once."""

    def __init__(self, tokenizer: Any, fingerprint: str) -> None:
        self.tokenizer = tokenizer
        self.fingerprint = fingerprint
        self.end_tokens: tuple[int, ...] = tuple(
            sorted({t for t in (tokenizer.eos_token_id, tokenizer.pad_token_id) if t is not None}))
        self._answer_tokens: dict[tuple[str, str], AnswerTokens] = {}
        self.tokens = TokenCounts()

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """Every option of this backend with its default (see :meth:`BackendOptions.defaults`)."""
        return cls.options_class.defaults()

    def answer_tokens(self, settings: JudgeSettings) -> AnswerTokens:
        """The token ids of ``settings.answers`` for this tokenizer (computed once per pair of words)."""
        ids = self._answer_tokens.get(settings.answers)
        if ids is None:
            ids = self._answer_tokens[settings.answers] = AnswerTokens(
                *answer_token_ids(self.tokenizer, settings.answers))
        return ids

    def encode(
        self, texts: Sequence[str], settings: JudgeSettings, room: int = 0
    ) -> tuple[list[list[int]], list[bool]]:
        """Token ids of prompt ``texts``, each fitted to leave ``room`` tokens of context (:meth:`fit`).

        Returns:
            The token lists and, for each, whether it was cut to fit.
        """
        ids = self.tokenizer(list(texts), add_special_tokens=settings.add_special_tokens)["input_ids"]
        fitted = [self.fit(x, room) for x in ids]
        return [f[0] for f in fitted], [f[1] for f in fitted]

    def fit(self, ids: list[int], room: int) -> tuple[list[int], bool]:
        """``ids`` cut to leave ``room`` tokens of the model's context free, and whether it was cut; by
        default there is no limit."""
        return ids, False

    def answer_scores(self, ids: Sequence[list[int]], settings: JudgeSettings) -> list[float]:
        """P(true) read at the position after each token list (one answer step per list)."""
        raise NotImplementedError

    def judge(self, prompts: Sequence[Prompt], settings: JudgeSettings,
              on_batch: ProgressCallback | None = None) -> list[Judgement]:
        """Judge ``prompts`` (see :class:`Backend`).

        Direct mode closes each prompt with an empty reasoning block
        (:attr:`JudgeSettings.close_empty`) and reads the answer after it (:meth:`answer_scores`);
        reasoning mode is the backend's own (:meth:`_reason`).
        """
        if not prompts:
            return []
        if settings.mode != "direct":
            return self._reason(prompts, settings, on_batch)
        ids, cut = self.encode([p.text + settings.close_empty for p in prompts], settings, room=1)
        step = settings.batch_size * self.direct_batches if self.direct_batches else len(ids)
        out: list[Judgement] = []
        for start in range(0, len(ids), step):
            scores = self.answer_scores(ids[start : start + step], settings)
            out += [Judgement(s, truncated=prompts[i].truncated or cut[i]) for i, s in enumerate(scores, start)]
            if on_batch:
                on_batch(len(scores), 0)
        return out

    def _reason(
        self, prompts: Sequence[Prompt], settings: JudgeSettings, on_batch: ProgressCallback | None
    ) -> list[Judgement]:
        """Reasoning mode: generate until the reasoning block closes (or the budget is spent), then read
        the answer at the end of :func:`answer_sequence`."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the backend holds; nothing by default."""


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
