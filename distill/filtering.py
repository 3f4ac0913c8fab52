"""Which teacher traces to train on, and why the others go.

Rules, applied in this order (a trace is counted under the first rule that drops it):

0. ``held-out``: the trace's query or passage text is one of ``held_out`` (the queries and passages of dev
   groups, e.g. ``rank1 distill contrast --dev-out``), so no training row shows a dev item.
1. ``no-answer``: the teacher gave no ``true``/``false``.
2. ``disagrees``: the answer is not the label (relevant iff the grade is at least ``min_rel``).
3. ``unfinished``: the reasoning hit the budget before ``</think>`` (off unless ``drop_unfinished``).
4. ``too-long``: more than ``max_tokens`` generated tokens or ``max_chars`` characters of reasoning.
5. ``duplicate``: the same (qid, docid), or the same query and passage text, as an earlier kept trace.
6. ``student-wrong``: self-filtering. A first-round student (a rank1 reranker, direct mode by default)
   judges every remaining pair; a pair whose label it still gets wrong with P(true) on the far side of
   ``student_margin`` is dropped as likely label or trace noise (a pair the trained student cannot fit).
   With ``student_keep="wrong"`` the rule turns round (``student-right``): only the pairs the student gets
   wrong are kept, the hard ones for a STaR-style round where a trace is worth most when it corrects the
   student's direct verdict (its ``student_margin``: a pair counts as right only when the student is this sure).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from distill.records import Trace

REASONS = ("held-out", "no-answer", "disagrees", "unfinished", "too-long", "duplicate", "student-wrong", "student-right")
STUDENT_KEEP = ("right", "wrong")


@dataclass(frozen=True)
class FilterConfig:
    """Filtering settings.

    Attributes:
        min_rel: The smallest grade that counts as relevant.
        drop_unfinished: Drop traces whose reasoning never closed (Rank1's fallback answered).
        max_tokens: Drop traces with more generated tokens (``None``: no cap).
        max_chars: Drop traces with longer reasoning (``None``: no cap).
        dedupe: Drop repeated pairs (same ids, or same query and passage text).
        student_margin: Self-filtering drops a positive with student P(true) below ``0.5 - margin`` and a
            negative with P(true) above ``0.5 + margin``.
        student_keep: ``right`` (default): drop what the student gets wrong, as above; ``wrong``: keep only
            what it gets wrong (a positive below ``0.5 + margin``, a negative above ``0.5 - margin``).
        held_out: Query and passage texts no kept trace may show (see :func:`held_out_texts`).
    """

    min_rel: int = 1
    drop_unfinished: bool = False
    max_tokens: int | None = None
    max_chars: int | None = None
    dedupe: bool = True
    student_margin: float = 0.0
    student_keep: str = "right"
    held_out: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.student_keep not in STUDENT_KEEP:
            raise ValueError(f"student_keep must be one of {', '.join(STUDENT_KEEP)}, not {self.student_keep!r}")


@dataclass
class FilterReport:
    """How many traces came in, were kept, and went for each reason."""

    total: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        out = [f"kept {self.kept} of {self.total} traces"]
        out += [f"dropped {self.dropped[r]}: {r}" for r in REASONS if self.dropped[r]]
        return out

    def as_dict(self) -> dict[str, Any]:
        """For JSON output."""
        return {"total": self.total, "kept": self.kept, "dropped": {r: self.dropped[r] for r in REASONS}}


def held_out_texts(groups: Sequence[Any]) -> frozenset[str]:
    """Every query and passage text of ``groups`` (records with ``query`` and ``passages``): a dev set."""
    return frozenset(t for g in groups for t in (g.query, *g.passages))


def _reason(trace: Trace, config: FilterConfig, seen: set[Any]) -> str | None:
    if trace.query_text in config.held_out or trace.passage in config.held_out:
        return "held-out"
    if trace.answer is None:
        return "no-answer"
    if trace.answer != (trace.label >= config.min_rel):
        return "disagrees"
    if config.drop_unfinished and trace.fallback:
        return "unfinished"
    if (config.max_tokens is not None and trace.tokens > config.max_tokens
            or config.max_chars is not None and len(trace.reasoning) > config.max_chars):
        return "too-long"
    if config.dedupe:
        keys = (("ids", *trace.key), ("text", trace.query_text, trace.passage))
        if any(k in seen for k in keys):
            return "duplicate"
        seen.update(keys)
    return None


def filter_traces(traces: Sequence[Trace], config: FilterConfig = FilterConfig(),
                  student: Any = None) -> tuple[list[Trace], FilterReport]:
    """Apply the rules of the module docstring.

    Args:
        traces: The teacher's traces, in file order (the first of duplicates is kept).
        config: Filtering settings.
        student: Optional first-round student: a :class:`rank1.Reranker` (its mode is used as it is).

    Returns:
        ``(kept traces, report)``.
    """
    report, seen, kept = FilterReport(total=len(traces)), set(), []
    for trace in traces:
        reason = _reason(trace, config, seen)
        if reason:
            report.dropped[reason] += 1
        else:
            kept.append(trace)
    if student is not None and kept:
        kept = _by_student(kept, student, config, report)
    report.kept = len(kept)
    return kept, report


def _by_student(kept: list[Trace], student: Any, config: FilterConfig, report: FilterReport) -> list[Trace]:
    """The traces the self-filtering rule keeps (``student_keep``), counting the others in ``report``."""
    judged = student.score([(t.query_text, t.passage) for t in kept])
    keep_wrong, m = config.student_keep == "wrong", config.student_margin
    survivors = []
    for t, j in zip(kept, judged):
        relevant = t.label >= config.min_rel
        if keep_wrong:  # right only when sure: a positive at or above 0.5 + m, a negative at or below 0.5 - m
            right = j.score >= 0.5 + m if relevant else j.score <= 0.5 - m
            reason = "student-right" if right else None
        else:  # wrong only when sure
            wrong = j.score < 0.5 - m if relevant else j.score > 0.5 + m
            reason = "student-wrong" if wrong else None
        if reason:
            report.dropped[reason] += 1
        else:
            survivors.append(t)
    return survivors
