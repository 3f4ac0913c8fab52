"""Pairwise ("duo") reranking of the top of a list: two passages side by side, one judgement.

A pointwise judge sees one passage at a time, so two near-copies that differ in a "not" get nearly the same
score. The duo stage (after duoT5's mono-duo design, Pradeep et al. 2021) shows the judge both at once with the
``duo`` template: ``P(true)`` is the probability that Passage A is more relevant than Passage B. Each of the top
``k`` documents of a query is compared with every other one in both orders (``k * (k - 1)`` judgements), and the
top ``k`` are reordered by the symmetric sum of :func:`aggregate`; the rest keep their place and score below.

Judgements go through the reranker, so they are stored and resumed like any other: the store key holds the
``duo`` template and the two passages' text (:func:`duo_text`) as the passage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import permutations
from typing import TYPE_CHECKING

from rank1.records import Document, Query

if TYPE_CHECKING:
    from rank1.reranker import Reranker
    from rank1.store import ScoreStore

DUO_TEMPLATE = "duo"
DUO_WORDS = 200
"""Words kept of each passage of a duo prompt (both must fit beside each other)."""


def clip_words(text: str, max_words: int) -> str:
    """``text`` cut to its first ``max_words`` words (whitespace-separated)."""
    words = text.split()
    return text if len(words) <= max_words else " ".join(words[:max_words])


def duo_text(a: str, b: str, max_words: int = DUO_WORDS) -> str:
    """The ``{passage}`` field of a duo prompt: Passage A, then Passage B, each cut to ``max_words`` words."""
    return f"Passage A: {clip_words(a, max_words)}\nPassage B: {clip_words(b, max_words)}"


def top_k(scores: Mapping[str, float], k: int) -> list[str]:
    """The ``k`` best documents, best first; ties broken by docid (deterministic)."""
    return sorted(scores, key=lambda d: (-scores[d], d))[:k]


def aggregate(prefs: Mapping[tuple[str, str], float], docs: Sequence[str]) -> dict[str, float]:
    """duoT5's symmetric sum, scaled to [0, 1]: for each document the mean over the others of ``P(d > o)`` and
    ``1 - P(o > d)``.

    Args:
        prefs: ``P(a > b)`` for every ordered pair of distinct ``docs``.
        docs: The documents compared.
    """
    n = len(docs) - 1
    if n < 1:
        return {d: 0.5 for d in docs}
    return {d: sum(prefs[d, o] + 1.0 - prefs[o, d] for o in docs if o != d) / (2 * n) for d in docs}


def reorder(scores: Mapping[str, float], wins: Mapping[str, float]) -> dict[str, float]:
    """``scores`` with the documents of ``wins`` moved above all others, ordered by ``wins`` (ties: by their
    earlier score, then docid). Their new scores are ``top + 1 + win`` (``top``: the best earlier score), so the
    run stays strictly decreasing where ``wins`` differ; the others keep theirs."""
    top = max(scores.values())
    order = sorted(wins, key=lambda d: (-wins[d], -scores[d], d))
    out = {d: s for d, s in scores.items() if d not in wins}
    step = 1e-9
    for rank, d in enumerate(order):
        out[d] = top + 1.0 + wins[d] - step * rank
    return out


def duo_rerank(judge: Reranker, scores: Mapping[str, Mapping[str, float]], corpus: Mapping[str, Document],
               topics: Mapping[str, Query], k: int = 4, store: ScoreStore | None = None,
               max_words: int = DUO_WORDS, progress: bool = True) -> dict[str, dict[str, float]]:
    """Reorder the top ``k`` of each query of a scored run with a duo judge.

    Args:
        judge: A reranker whose template is ``duo`` (a model trained for it), without contrast or fusion.
        scores: ``{qid: {docid: score}}`` from an earlier stage (higher is better).
        corpus: ``{docid: Document}`` holding every top-``k`` document.
        topics: ``{qid: Query}``.
        k: How many documents of each query to compare (all ordered pairs: ``k * (k - 1)`` judgements).
        store: Where duo judgements are looked up first and stored.
        max_words: Words kept of each passage (:func:`duo_text`).
        progress: Draw a progress bar.

    Returns:
        The run with the top ``k`` of each query reordered (:func:`reorder`).

    Raises:
        ValueError: ``judge`` does not use the duo template, or ``k`` is below 2.
    """
    if judge.template.name != DUO_TEMPLATE:
        raise ValueError(f"the duo stage needs a judge with the {DUO_TEMPLATE!r} template, "
                         f"not {judge.template.name!r}")
    if k < 2:
        raise ValueError(f"the duo stage compares at least 2 documents, not k={k}")
    run: dict[str, dict[str, float]] = {}
    pseudo: dict[str, Document] = {}
    ordered: dict[str, tuple[str, str]] = {}
    tops = {q: top_k(docs, k) for q, docs in scores.items() if len(docs) > 1}
    for q, docs in tops.items():
        pairs = {f"{a}\t{b}": (a, b) for a, b in permutations(docs, 2)}
        run[q] = {pid: -float(n) for n, pid in enumerate(pairs)}  # first-stage scores that keep the pairs' order
        ordered.update(pairs)
        pseudo.update({pid: Document(pid, duo_text(corpus[a].full_text, corpus[b].full_text, max_words))
                       for pid, (a, b) in pairs.items()})
    if not run:
        return {q: dict(d) for q, d in scores.items()}
    result = judge.rerank_run(run, pseudo, topics, depth=k * (k - 1), store=store, progress=progress)
    out = {q: dict(d) for q, d in scores.items()}
    for q, docs in result.run.items():
        prefs = {ordered[d.doc_id]: d.judgement.score for d in docs if d.judgement is not None}
        if len(prefs) == len(tops[q]) * (len(tops[q]) - 1):
            out[q] = reorder(scores[q], aggregate(prefs, tops[q]))
    return out
