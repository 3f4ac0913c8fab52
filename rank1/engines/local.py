"""The ``local`` engine: judge the chunks of a rerank job in this process, one after another."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

from rank1.engines.base import PairJudge, chunked
from rank1.progress import pair_progress

if TYPE_CHECKING:
    from rank1.scoring import Judgement
    from rank1.store import ScoreStore, StoreKey


class LocalEngine:
    """Judge every chunk with the reranker's own model; each chunk is stored as soon as it is judged, so a
    crash loses at most one chunk. The default engine of :meth:`rank1.reranker.Reranker.rerank_run`."""

    in_process = True

    def judge_chunks(
        self,
        judge: PairJudge,
        keys: Sequence["StoreKey"],
        texts: Mapping["StoreKey", tuple[str, str]],
        store: "ScoreStore | None",
        size: int,
        progress: bool,
    ) -> dict["StoreKey", "Judgement"]:
        """See :meth:`rank1.engines.base.JudgeEngine.judge_chunks`."""
        out: dict[StoreKey, Judgement] = {}
        with pair_progress(len(keys), judge.label, progress) as advance:
            for chunk in chunked(keys, size):
                judged = judge.judge([texts[k] for k in chunk], on_batch=advance)
                if store is not None:
                    store.put_many(zip(chunk, judged))
                out.update(zip(chunk, judged))
        return out
