"""Statement queries: a minimal pair of queries for each minimal pair of passages, as a NevIR pair has.

A passage and its near-copy differ by a negation (inserted or removed) or a swapped antonym: an MS MARCO positive
and its ``negate-answer`` rewrite, or two CondaQA edits of one passage (the original with its negation cue or the
scope edit, against the affirmative edit). Each passage's query is its own deciding words, the clause of its
sentence around the change (:func:`distill.contrast_traces.find_change`, cut as
:func:`distill.contrast_traces.quote` cuts a quote), in one template drawn per pair (seeded by the pair's id), so
the two queries differ only where the passages do. Two groups per pair: (statement of A, A [1], B [0],
negatives) and (statement of B, B [1], A [0], negatives).

Half of these groups rank the negated passage first. The ``negate-answer`` groups alone always rank it last
(the MS MARCO query asks for the original claim), which rewards the shortcut "a negation makes a passage less
relevant"; NevIR punishes that shortcut, since its second query asks for the negated passage. Statement groups
reward matching the query's polarity instead.
"""

from __future__ import annotations

import random
from typing import Sequence

from distill.contrast_traces import find_change, quote
from distill.msmarco import Group

STATEMENT_TEMPLATES = ("{s}", "passages stating that {s}", "which source says that {s}?",
                       "find where it says {s}", "evidence that {s}")
_DANGLING = {"a", "an", "the", "and", "or", "but", "of", "in", "on", "at", "to", "for", "by", "with", "from", "as",
             "that", "which", "its", "their", "his", "her", "is", "are", "was", "were"}


def statement(text: str, other: str, pad: int = 6) -> str | None:
    """The clause of ``text`` around where it differs from ``other`` (``pad`` words either side, no ellipses, end
    punctuation or dangling function words at its end); None when the texts do not differ."""
    change = find_change(text, other)
    if change is None:
        return None
    words = quote(text, change.start, change.end, pad=pad).strip(".").split()
    while len(words) > 3 and words[-1].lower().strip(",;:") in _DANGLING:
        words.pop()
    return " ".join(words).rstrip(",;:") or None


def statement_groups(qid: str, a: tuple[str, str], b: tuple[str, str], negatives: Sequence[tuple[str, str]],
                     source: str, seed: int = 0) -> list[Group]:
    """The two groups of the pair ``a`` / ``b`` (``(docid, text)`` each), ids ``{qid}-sa`` and ``{qid}-sb``;
    none when a clause cannot be cut or both clauses read the same."""
    said = statement(a[1], b[1]), statement(b[1], a[1])
    if not all(said) or said[0] == said[1]:
        return []
    template = random.Random(f"{seed}:{qid}").choice(STATEMENT_TEMPLATES)
    out = []
    for tag, s, first, second in (("sa", said[0], a, b), ("sb", said[1], b, a)):
        docs = [first, second, *negatives]
        out.append(Group(f"{qid}-{tag}", template.format(s=s), tuple(d for d, _ in docs), tuple(t for _, t in docs),
                         (1,) + (0,) * (len(docs) - 1), source))
    return out
