"""A harder exclusion dev set: traps that answer the query as well as the wanted passage does.

The ``exclude`` / ``exclude-pair`` groups of :mod:`distill.contrast` put a passage about the excluded term Y
below the answer; most of those traps do not answer the query, so a topical reranker already ranks the answer
first (92.9% top-1 for the default). ExcluIR's traps answer the query *and* talk about Y. :func:`harden` builds
such traps from the dev groups alone (never from a test collection): the answer passage P with the first
sentence of the group's trap that names Y appended (``P + " " + sentence``), so both passages answer the query and
only the trap mentions what the query excludes. Each dev exclusion group gives two groups:

* ``append``: the group's own query (one of :data:`distill.negation.TEMPLATES`: ``excluding any information
  about Y``, ``but not about Y``, ``without mentioning Y``, ``other than Y``), P [1], P + sentence [0], the trap
  [0];
* ``append-negated``: the same passages under the exclusion phrased as a negated request, one of
  :data:`NEGATED_TEMPLATES` by the group's position (``but I don't want anything about Y``...): English ways
  to exclude a topic that hold a negation cue, which a negation rule must not read as a claim to flip.

Groups whose trap has no sentence naming Y, or whose query no template parses, are skipped.
"""

from __future__ import annotations

import re
from typing import Iterable

from distill.msmarco import Group
from distill.negation import TEMPLATES

NEGATED_TEMPLATES = ("{q}, but I don't want anything about {y}", "{q}. Do not include information about {y}",
                     "{q}, with no mention of {y}", "{q}; the passage should not discuss {y}")
"""Exclusions phrased as negated requests (dev only; fixed before any measurement with them)."""

_PARSERS = [re.compile(re.escape(t).replace(r"\{q\}", "(?P<q>.+?)").replace(r"\{y\}", "(?P<y>.+?)") + r"\??$")
            for t in TEMPLATES]


def parse(query: str) -> tuple[str, str] | None:
    """``(core query, excluded term)`` of a query built by :func:`distill.negation.with_clause`, else None.

    Example:
        >>> parse("where was anthony hopkins born, without mentioning Hannibal?")
        ('where was anthony hopkins born', 'Hannibal')
    """
    for parser in _PARSERS:
        m = parser.match(query.strip())
        if m:
            return m.group("q"), m.group("y")
    return None


def naming(text: str, term: str) -> str | None:
    """The first sentence of ``text`` that names ``term`` (case ignored), else None.

    Example:
        >>> naming("Born in Wales. Best known as Hannibal Lecter. Knighted.", "hannibal")
        'Best known as Hannibal Lecter.'
    """
    for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
        if re.search(r"\b" + re.escape(term) + r"\b", sentence, re.IGNORECASE):
            return sentence
    return None


def harden(groups: Iterable[Group]) -> list[Group]:
    """The ``append`` and ``append-negated`` groups (module docstring) of the ``exclude`` / ``exclude-pair``
    groups among ``groups``, in order; other groups are ignored."""
    out = []
    for i, g in enumerate(x for x in groups if x.source in ("exclude", "exclude-pair")):
        parsed = parse(g.query)
        sentence = parsed and naming(g.passages[1], parsed[1])
        if not parsed or not sentence:
            continue
        core, term = parsed
        answer, trap = g.passages[0], g.passages[1]
        docs = (g.docids[0], g.docids[0] + "+y", g.docids[1])
        passages = (answer, f"{answer} {sentence}", trap)
        negated = NEGATED_TEMPLATES[i % len(NEGATED_TEMPLATES)].format(q=core, y=term)
        out += [Group(g.qid + "-append", g.query, docs, passages, (1, 0, 0), "append"),
                Group(g.qid + "-append-negated", negated, docs, passages, (1, 0, 0), "append-negated")]
    return out
