"""Training pairs from qrels and a first-stage run, the way Rank1 chose them.

Per query: judged positives, and hard negatives from the top of the first-stage run (ranks 1-5 and ranks
6-10) that the qrels do not mark relevant, in set numbers, drawn with a seeded generator. The result does
not depend on dictionary order: queries and documents are sorted before drawing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Collection, Mapping, NamedTuple, Sequence

from rank1.metrics import Pair as NevIRPair
from rank1.records import Query, best_first

if TYPE_CHECKING:
    from distill.msmarco import Group


class TrainPair(NamedTuple):
    """A pair to be judged by the teacher: ids, and the relevance grade from the qrels."""

    qid: str
    docid: str
    label: int
    source: str = ""  # "positive", "hard-1-5", "hard-6-10", "nevir"...


@dataclass(frozen=True)
class SamplingConfig:
    """How many pairs of each kind to draw per query.

    Attributes:
        positives: Judged relevant documents per query (grade at least ``min_rel``).
        hard_top5: Non-relevant documents from first-stage ranks 1-5.
        hard_6_10: Non-relevant documents from first-stage ranks 6-10.
        min_rel: The smallest grade that counts as relevant (2 for TREC DL passage, 1 elsewhere).
        judged_only: Draw negatives only among judged documents (grade below ``min_rel``).
        seed: Seed of the generator.
    """

    positives: int = 1
    hard_top5: int = 1
    hard_6_10: int = 1
    min_rel: int = 1
    judged_only: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.positives, self.hard_top5, self.hard_6_10) < 0:
            raise ValueError("pair counts must be at least 0")


def sample_pairs(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    config: SamplingConfig = SamplingConfig(),
    queries: Sequence[str] | None = None,
    available: Collection[str] | None = None,
) -> list[TrainPair]:
    """Draw positives and hard negatives for every query of ``run`` that has qrels.

    Args:
        qrels: ``{qid: {docid: grade}}``.
        run: ``{qid: {docid: first-stage score}}``; ranks follow scores (ties: smaller doc id first).
        config: Counts per query, relevance threshold, seed.
        queries: Only these queries (default: all queries with both a run and qrels).
        available: Only these documents (e.g. those whose text is at hand); default all.

    Returns:
        Pairs grouped by query (queries sorted), positives first, each group in drawn order.
    """
    rng = random.Random(config.seed)
    chosen = sorted(set(queries) if queries is not None else set(run) & set(qrels))
    out: list[TrainPair] = []
    for qid in chosen:
        judged = qrels.get(qid, {})
        ranked = [d for d, _ in best_first(run.get(qid, {}).items())]
        if available is not None:
            ranked = [d for d in ranked if d in available]
        positives = sorted(d for d, g in judged.items()
                           if g >= config.min_rel and (available is None or d in available))

        def negative(d: str) -> bool:
            grade = judged.get(d)
            return (grade is not None or not config.judged_only) and (grade or 0) < config.min_rel

        top5 = [d for d in ranked[:5] if negative(d)]
        next5 = [d for d in ranked[5:10] if negative(d)]
        for source, pool, k in (("positive", positives, config.positives), ("hard-1-5", top5, config.hard_top5),
                                ("hard-6-10", next5, config.hard_6_10)):
            for d in rng.sample(pool, min(k, len(pool))):
                out.append(TrainPair(qid, d, judged.get(d, 0), source))
    return out


def nevir_pairs(pairs: Sequence[NevIRPair]) -> list[TrainPair]:
    """Both queries of each NevIR pair with their own document (relevant) and the other one (not)."""
    out = []
    for qa, da, qb, db in pairs:
        out += [TrainPair(qa, da, 1, "nevir"), TrainPair(qa, db, 0, "nevir"),
                TrainPair(qb, db, 1, "nevir"), TrainPair(qb, da, 0, "nevir")]
    return out


def shuffled(pairs: Sequence[TrainPair], seed: int = 0, limit: int | None = None) -> list[TrainPair]:
    """The pairs in a seeded random order, cut to ``limit``."""
    out = list(pairs)
    random.Random(seed).shuffle(out)
    return out[:limit] if limit is not None else out


def group_pairs(groups: Sequence["Group"], negatives: int = 1, seed: int = 0, prefix: str = ""
                ) -> tuple[list[TrainPair], dict[str, Query], dict[str, str]]:
    """Pairs from training groups (``rank1 distill prepare`` / ``contrast`` files) for a teacher to judge.

    Each group gives its relevant passage and ``negatives`` of its other passages (seeded draw; a contrast
    group's near-copy is one of them when it is drawn). A group's query may be an edited copy of another
    group's (``negate-query``), so ids are scoped by the group's position: query ``"{prefix}{i}:{qid}"``,
    passage ``"{prefix}{i}:{docid}"``; the same files give the same ids, so :func:`distill.teacher.generate`
    resumes.

    Args:
        groups: Groups in file order (:func:`distill.msmarco.read_groups`).
        negatives: Non-relevant passages per group (at most those there are).
        seed: Seed of the draw.
        prefix: Put before every id (keeps two files' groups apart).

    Returns:
        ``(pairs, topics, passages)``: pairs with ``source`` ``"{group source}/positive"`` or
        ``"/negative"``; ``{qid: Query}``; ``{docid: passage text}``.

    Example:
        >>> from distill.msmarco import Group
        >>> g = Group("7", "q", ("a", "b", "c"), ("A", "B", "C"), (1, 0, 0), "negate-answer")
        >>> [p[:3] for p in group_pairs([g], negatives=1)[0]]
        [('0:7', '0:a', 1), ('0:7', '0:c', 0)]
    """
    rng = random.Random(seed)
    pairs: list[TrainPair] = []
    topics: dict[str, Query] = {}
    passages: dict[str, str] = {}
    for i, g in enumerate(groups):
        qid = f"{prefix}{i}:{g.qid}"
        topics[qid] = Query(qid, g.query)
        rel = [j for j, y in enumerate(g.labels) if y]
        neg = [j for j, y in enumerate(g.labels) if not y]
        for j in rel + rng.sample(neg, min(negatives, len(neg))):
            docid = f"{prefix}{i}:{g.docids[j]}"
            passages[docid] = g.passages[j]
            pairs.append(TrainPair(qid, docid, g.labels[j], f"{g.source}/{'positive' if g.labels[j] else 'negative'}"))
    return pairs, topics, passages
