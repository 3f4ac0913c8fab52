"""Shared prompt heads: which token lists to judge from one computed prefix.

Every candidate of a query is judged with the same prompt up to its passage (the instruction and the
query). :func:`prefix_groups` finds such heads from the token lists alone, so it needs no knowledge of the
template: the lists are sorted, and runs of neighbours are grouped to save the most tokens. A backend then computes each group's prefix once and only the suffixes per pair.

Example:
    >>> ids = [[1, 2, 3, 4, 9], [1, 2, 3, 4, 8, 8], [7, 7, 7]]
    >>> prefix_groups(ids, min_shared=2)
    [PrefixGroup(shared=4, members=[1, 0]), PrefixGroup(shared=0, members=[2])]
"""

from __future__ import annotations

from typing import NamedTuple, Sequence


class PrefixGroup(NamedTuple):
    """Token lists that start with the same ``shared`` tokens (indices into the judged lists).

    Every member is longer than ``shared``: each keeps at least one token of its own, at which its answer is
    read. A group of one has ``shared=0``.
    """

    shared: int
    members: list[int]

    @property
    def saved(self) -> int:
        """Tokens not computed when the prefix is computed once: ``(members - 1) x shared``."""
        return (len(self.members) - 1) * self.shared


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def prefix_groups(ids: Sequence[Sequence[int]], min_shared: int = 16) -> list[PrefixGroup]:
    """Group token lists by shared heads of at least ``min_shared`` tokens, computing as few tokens as possible.

    In sorted order, lists that share a head are neighbours, and the head of a run of neighbours is the
    smallest common length of adjacent ones. The runs are chosen by dynamic programming to save the most
    tokens (:attr:`PrefixGroup.saved`): a query's candidates form one group rather than joining the
    next query's on the instruction they also share. A head stops one token short of its shortest member.

    Returns:
        Groups covering every index exactly once (members in sorted-token order); a group of one has
        ``shared=0``.
    """
    order = sorted(range(len(ids)), key=lambda i: (list(ids[i]), i))
    n = len(order)
    adjacent = [common_length(ids[order[k]], ids[order[k + 1]]) for k in range(n - 1)]
    best = [0] * (n + 1)  # best[j]: most tokens saved over order[:j]
    start = [0] * (n + 1)  # where the last group of that best split starts
    for j in range(1, n + 1):
        best[j], start[j] = best[j - 1], j - 1  # order[j - 1] alone
        shared = len(ids[order[j - 1]]) - 1
        for i in range(j - 2, -1, -1):  # the group order[i:j]
            shared = min(shared, adjacent[i], len(ids[order[i]]) - 1)
            if shared < min_shared:
                break
            if best[i] + (j - 1 - i) * shared > best[j]:
                best[j], start[j] = best[i] + (j - 1 - i) * shared, i
    groups: list[PrefixGroup] = []
    j = n
    while j:
        i = start[j]
        members = order[i:j]
        shared = min([len(ids[m]) - 1 for m in members] + adjacent[i : j - 1]) if len(members) > 1 else 0
        groups.append(PrefixGroup(shared, members))
        j = i
    return groups[::-1]


class SharedPlan(NamedTuple):
    """How to judge token lists from shared heads: each distinct head is computed once, then each list's own
    tokens (its tail) on top of its head's KV cache, in batches that mix the tails of any heads.

    Attributes:
        heads: The distinct heads (a list without a shared head gets its first token as its own head).
        head_of: For each list, the index of its head.
        tails: For each list, its tokens after its head (never empty).
    """

    heads: list[list[int]]
    head_of: list[int]
    tails: list[list[int]]

    @property
    def saved(self) -> int:
        """Prompt tokens not computed: every list's head tokens beyond each head's one computation."""
        whole = sum(len(self.heads[h]) for h in self.head_of)
        return whole - sum(len(h) for h in self.heads)


def plan_shared(ids: Sequence[Sequence[int]], min_shared: int = 16) -> SharedPlan:
    """The :class:`SharedPlan` of ``ids`` from :func:`prefix_groups`.

    Raises:
        ValueError: A list of fewer than two tokens (it has no tail to read its answer at).

    Example:
        >>> plan_shared([[1, 2, 3, 4, 9], [1, 2, 3, 4, 8, 8], [7, 7, 7]], min_shared=2)
        SharedPlan(heads=[[1, 2, 3, 4], [7]], head_of=[0, 0, 1], tails=[[9], [8, 8], [7, 7]])
    """
    if any(len(x) < 2 for x in ids):
        raise ValueError("every token list needs at least two tokens to share a head")
    heads: list[list[int]] = []
    head_of, tails = [0] * len(ids), [[] for _ in ids]  # type: list[int], list[list[int]]
    for group in prefix_groups(ids, min_shared):
        cut = group.shared if len(group.members) > 1 else 1
        heads.append(list(ids[group.members[0]][:cut]))
        for i in group.members:
            head_of[i], tails[i] = len(heads) - 1, list(ids[i][cut:])
    return SharedPlan(heads, head_of, tails)
