"""The engine contract: what an engine is given (a :class:`PairJudge`) and what it must do (:class:`JudgeEngine`).

Nothing heavy is imported here, and nothing from :mod:`rank1.reranker`: a reranker satisfies
:class:`PairJudge` structurally.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

if TYPE_CHECKING:
    from rank1.scoring import Judgement
    from rank1.store import ScoreStore, StoreKey


class PairJudge(Protocol):
    """What an engine needs of a (single-mode) reranker."""

    config: Any
    """The reranker's :class:`~rank1.reranker.RerankerConfig` (frozen, picklable: a remote worker rebuilds
    the reranker from it)."""

    @property
    def meta(self) -> dict[str, Any]:
        """Provenance (model fingerprint, template hash...): remote workers must match it."""
        ...

    @property
    def label(self) -> str:
        """A short name for progress bars."""
        ...

    def judge(self, pairs: Sequence[tuple[str, str]],
              on_batch: Callable[[int, int], None] | None = None) -> list["Judgement"]:
        """Judge (query, passage) pairs in this process; ``on_batch(pairs, tokens)`` after each batch."""
        ...


class JudgeEngine(Protocol):
    """Judges the missing pairs of a rerank job: in this process or elsewhere (a cluster)."""

    in_process: bool
    """Whether the pairs are judged in the calling process (which must then load the model)."""

    def judge_chunks(
        self,
        judge: PairJudge,
        keys: Sequence["StoreKey"],
        texts: Mapping["StoreKey", tuple[str, str]],
        store: "ScoreStore | None",
        size: int,
        progress: bool,
    ) -> dict["StoreKey", "Judgement"]:
        """Judge the pairs of ``keys`` (texts in ``texts``) in consecutive chunks of ``size``, putting each
        finished chunk into ``store`` before the next is started; returns one judgement per key."""
        ...


def chunked(keys: Sequence["StoreKey"], size: int) -> list[Sequence["StoreKey"]]:
    """``keys`` cut into consecutive chunks of ``size`` (the last one may be shorter)."""
    return [keys[start : start + size] for start in range(0, len(keys), size)]
