"""Training groups for the duo judge (:mod:`rank1.duo`) from ordinary training groups.

A group ``(query, positive, negatives...)`` gives, for each of its first ``negatives`` negatives, one duo group
of two rows: the positive as Passage A beside the negative as Passage B (label 1) and the same two swapped
(label 0). Both orders sit in one group, so the listwise loss of ``rank1 distill train-labels`` asks for the
right order over the wrong one and the judge cannot learn a side. In the groups of ``rank1 distill contrast``
the first negative is the contrast passage (the positive's negated or edited near-copy, or the exclusion's trap).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from distill.msmarco import Group
from rank1.duo import DUO_WORDS, duo_text


def duo_groups(groups: Iterable[Group], negatives: int = 1, max_words: int = DUO_WORDS) -> Iterator[Group]:
    """Duo groups of ``groups`` (the module docstring), in order; source ``<source>-duo``.

    Args:
        groups: Training groups, relevant passage first.
        negatives: How many of each group's negatives (from the first) to pair with its positive.
        max_words: Words kept of each passage (:func:`rank1.duo.duo_text`).

    Raises:
        ValueError: ``negatives`` below 1.
    """
    if negatives < 1:
        raise ValueError(f"negatives must be at least 1, not {negatives}")
    for g in groups:
        pos_id, pos = g.docids[0], g.passages[0]
        for k, (neg_id, neg) in enumerate(zip(g.docids[1:1 + negatives], g.passages[1:1 + negatives])):
            yield Group(f"{g.qid}:duo{k}", g.query, (f"{pos_id}>{neg_id}", f"{neg_id}>{pos_id}"),
                        (duo_text(pos, neg, max_words), duo_text(neg, pos, max_words)), (1, 0), f"{g.source}-duo")
