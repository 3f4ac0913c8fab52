"""The score store answers one reasoning budget from another (:meth:`rank1.store.ScoreStore.get_many`), checked
on the real default model: the claim it rests on is that greedy decoding writes the same trace at any budget
from the trace's own length up."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.slow
def test_a_trace_that_stopped_before_its_budget_is_the_trace_at_a_larger_one(
    tmp_path: Path, sample_pairs: list[tuple[str, str]]
) -> None:
    from rank1.reranker import Reranker
    from rank1.store import ScoreStore

    pairs = sample_pairs[:3]  # one batch: reasoning on the default model is slow on CPUs without bf16 units
    with Reranker(mode="reasoning", budget=96, direct_blend=0.0, batch_size=3) as small:
        large = small.replace(budget=160)
        short, long = small.score(pairs), large.score(pairs)
        stopped = [i for i, j in enumerate(short) if not j.fallback or j.generated_tokens < 96]
        assert stopped, "no trace stopped before 96 tokens: the test checks nothing"  # neg3 writes ~80 a pair
        for i in stopped:
            assert (long[i].reasoning, long[i].generated_tokens, long[i].fallback) == (
                short[i].reasoning, short[i].generated_tokens, short[i].fallback)
            assert long[i].score == pytest.approx(short[i].score, abs=1e-4)  # other batch neighbours late on
        with ScoreStore(tmp_path / "scores.sqlite") as store:
            store.put_many((small.store_settings.key(*p), j) for p, j in zip(pairs, short))
            keys = [large.store_settings.key(*p) for p in pairs]
            found = store.get_many(keys, other_budgets=large.budget_free_prompts)
    assert sorted(keys.index(k) for k in found) == stopped
