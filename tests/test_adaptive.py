"""Adaptive mode: direct judgements for every pair, reasoning only for the head of each list."""

from __future__ import annotations

from pathlib import Path

import pytest

from rank1.adaptive import select_for_reasoning
from rank1.io import read_corpus, read_run, read_topics
from rank1.pipeline import SAMPLE_DIR
from rank1.reranker import RerankerConfig


@pytest.mark.parametrize(
    ("scores", "top", "band", "expected"),
    [
        ([0.9, 0.1, 0.55, 0.7], 1, 0.1, [0, 2]),
        ([0.2, 0.2, 0.2], 2, 0.0, [0, 1]),  # ties: the earlier pair first
        ([0.3, 0.8], 0, 0.0, []),
        ([0.3, 0.8], 5, 0.0, [0, 1]),
        ([0.45, 0.6, 0.51], 0, 0.05, [0, 2]),
    ],
)
def test_select_for_reasoning(scores: list[float], top: int, band: float, expected: list[int]) -> None:
    assert select_for_reasoning(scores, top, band) == expected



@pytest.mark.parametrize(
    ("scores", "window", "band", "spread", "expected"),
    [
        ([0.9, 0.1, 0.55, 0.45], 2, 0.1, 0.0, [2]),  # the band only within the 2 best (0.9, 0.55)
        ([0.9, 0.1, 0.55, 0.45], None, 0.1, 0.0, [2, 3]),
        ([0.62, 0.6, 0.58], 2, 0.0, 0.05, [0, 1]),  # flat query: its head is reasoned
        ([0.62, 0.6, 0.58], 2, 0.0, 0.04, []),  # spread 0.04 is not below 0.04
        ([0.62, 0.6, 0.58], None, 0.0, 0.05, [0, 1, 2]),
        ([0.7, 0.7], 1, 0.0, 0.01, [0]),  # ties: the earlier pair heads the list
        ([], 3, 0.5, 1.0, []),
    ],
)
def test_select_for_reasoning_window_and_spread(scores: list[float], window: int | None, band: float,
                                                spread: float, expected: list[int]) -> None:
    """``window`` limits the band and spread criteria to the head of the list; ``spread`` reasons on the
    head of a query whose direct scores are too close to rank."""
    assert select_for_reasoning(scores, 0, band, window=window, spread=spread) == expected

@pytest.mark.parametrize("overrides", [{"adaptive_top": -1}, {"adaptive_band": 0.7}, {"mode": "adaptiv"},
                                       {"mode": "reasoning", "direct_blend": 1.5},
                                       {"mode": "direct", "direct_blend": 0.3}])
def test_bad_adaptive_settings_are_refused(overrides: dict) -> None:
    with pytest.raises(ValueError):
        RerankerConfig(**overrides)


@pytest.fixture(scope="module")
def sample_inputs(tmp_path_factory: pytest.TempPathFactory):
    """Candidates from the sample collection: two queries with the same 4 passages each."""
    corpus = read_corpus(SAMPLE_DIR / "corpus.jsonl")
    topics = read_topics(SAMPLE_DIR / "topics.tsv")
    ids = sorted(corpus)
    lines = [f"{q} Q0 {d} {r} {10 - r} t" for q in sorted(topics)[:2] for r, d in enumerate(ids[:4], 1)]
    path = tmp_path_factory.mktemp("adaptive") / "run.trec"
    path.write_text("\n".join(lines) + "\n")
    return read_run(path), corpus, topics


@pytest.mark.slow
def test_adaptive_reasons_on_the_head_only_and_keeps_the_rest_direct(smollm2_ref, sample_inputs) -> None:
    """Every reasoned pair carries the reasoning-mode judgement, every other one the direct one, exactly."""
    from rank1.reranker import Reranker

    run, corpus, topics = sample_inputs
    base = Reranker(model=smollm2_ref.name, cache_dir=str(Path(smollm2_ref.path).parent), batch_size=1,
                    budget=8, mode="direct")
    direct = base.rerank_run(run, corpus, topics, depth=4, progress=False)
    reasoning = base.replace(mode="reasoning").rerank_run(run, corpus, topics, depth=4, progress=False)
    adaptive = base.replace(mode="adaptive", adaptive_top=1).rerank_run(run, corpus, topics, depth=4, progress=False)

    for qid, docs in adaptive.run.items():
        direct_j = {d.doc_id: d.judgement for d in direct.run[qid]}
        reasoning_j = {d.doc_id: d.judgement for d in reasoning.run[qid]}
        head = {d.doc_id for d in direct.run[qid][:1]}
        assert len(docs) == 4
        for doc in docs:
            expected = reasoning_j[doc.doc_id] if doc.doc_id in head else direct_j[doc.doc_id]
            assert doc.judgement == expected
        assert [d.score for d in docs] == sorted((d.score for d in docs), reverse=True)
    assert adaptive.stats.generated_tokens < reasoning.stats.generated_tokens
    assert adaptive.stats.judged == 2 * 4 + 2 * 1 and adaptive.stats.restaged == 2 * 1
    assert adaptive.meta["mode"] == "adaptive" and adaptive.meta["adaptive_top"] == 1

    pairs = [(topics[q].full_text, corpus[d].full_text) for q in sorted(run) for d in sorted(run[q])]
    scored = base.replace(mode="adaptive", adaptive_top=1).score(pairs)
    by_pair = {(q, d.doc_id): d.judgement for q, docs in adaptive.run.items() for d in docs}
    assert scored == [by_pair[q, d] for q in sorted(run) for d in sorted(run[q])]


def test_reasoning_with_a_direct_blend_is_the_cascade_over_every_pair() -> None:
    from rank1.adaptive import AdaptiveReranker
    from rank1.reranker import Reranker

    blended = Reranker(mode="reasoning", direct_blend=0.3, contrast=0.0, load=False)  # no counter stage around it
    assert isinstance(blended, AdaptiveReranker) and blended._knobs[0] >= 10**6
    assert blended.deep.config.direct_blend == 0.0 and blended.direct.config.mode == "direct"
    assert blended.meta["direct_blend"] == 0.3 and "adaptive_top" not in blended.meta
    # no blend and no explainer, no cascade (neg2h reasons itself; the default, rank1-0.5b-neg3, recommends 1)
    assert not isinstance(Reranker(model="rank1-0.5b-neg2h", mode="reasoning", direct_blend=0.0, load=False),
                          AdaptiveReranker)
    assert isinstance(Reranker(mode="reasoning", contrast=0.0, load=False), AdaptiveReranker)
    assert isinstance(Reranker(model="rank1-0.5b-wise", mode="reasoning", load=False), AdaptiveReranker)


def test_a_student_with_an_explainer_has_it_reason() -> None:
    """wise (the default until 2026-12-04) was not trained to reason: in reasoning and adaptive mode its
    explainer (its own loaded model) writes the traces, named in the provenance; without a blend (v3) the
    cascade still hands it over."""
    from rank1.adaptive import AdaptiveReranker
    from rank1.reranker import Reranker

    for mode in ("reasoning", "adaptive"):
        cascade = Reranker(model="rank1-0.5b-wise", mode=mode, load=False)
        assert isinstance(cascade, AdaptiveReranker) and cascade.direct.model_ref.name == "rank1-0.5b-wise"
        assert cascade.deep.model_ref.name == "rank1-0.5b-neg3" and cascade.deep._model is not cascade._model
        assert cascade.meta["explainer"] == "rank1-0.5b-neg3" and cascade.meta["model"] == "rank1-0.5b-wise"
        assert cascade.deep.config.direct_blend == 0.0 and cascade.config.direct_blend == 1.0
    v3 = Reranker(model="rank1-0.5b-labels-v3", mode="reasoning", load=False)
    assert isinstance(v3, AdaptiveReranker) and v3.deep.model_ref.name == "rank1-0.5b-reasoning"
    assert "explainer" not in Reranker(model="rank1-0.5b-neg2h", mode="reasoning", load=False).meta


def test_a_students_dev_chosen_blend_is_its_default() -> None:
    """``rank1-0.5b-neg2`` recommends b = 1 for its modes that reason; an explicit blend wins, direct mode has
    none, and a mode change picks the recommendation up again."""
    from rank1.reranker import Reranker, RerankerConfig

    assert RerankerConfig(model="rank1-0.5b-neg2", mode="reasoning").direct_blend == 1.0
    assert RerankerConfig(model="rank1-0.5b-neg2").direct_blend == 0.0            # its mode: direct
    assert RerankerConfig(model="rank1-0.5b-neg2", mode="adaptive", direct_blend=0.25).direct_blend == 0.25
    assert RerankerConfig(model="rank1-0.5b-labels-v3", mode="reasoning").direct_blend == 0.0
    direct = Reranker(model="rank1-0.5b-neg2", load=False)
    assert direct.replace(mode="reasoning").config.direct_blend == 1.0
    assert direct.replace(model="rank1-0.5b-labels-v3", mode="reasoning").config.direct_blend == 0.0


@pytest.mark.slow
def test_direct_blend_mixes_the_two_judgements_of_every_pair(smollm2_ref, sample_inputs) -> None:
    """Reasoning with ``direct_blend`` b: every pair keeps its reasoning and scores (1-b)*reasoned + b*direct,
    through both paths (rerank_run and score); both stages are stored under their own mode."""
    from rank1.reranker import Reranker
    from rank1.store import ScoreStore

    run, corpus, topics = sample_inputs
    base = Reranker(model=smollm2_ref.name, cache_dir=str(Path(smollm2_ref.path).parent), batch_size=1,
                    budget=8, mode="direct", backend_options={"dtype": "float32"})
    direct = base.rerank_run(run, corpus, topics, depth=4, progress=False)
    reasoning = base.replace(mode="reasoning").rerank_run(run, corpus, topics, depth=4, progress=False)
    with ScoreStore(Path(smollm2_ref.path).parent / "blend.sqlite") as store:
        blended = base.replace(mode="reasoning", direct_blend=0.25).rerank_run(run, corpus, topics, depth=4,
                                                                               progress=False, store=store)
        assert store.count() == 16  # 8 direct + 8 reasoning judgements, each under its own mode
    for qid, docs in blended.run.items():
        d = {x.doc_id: x.judgement for x in direct.run[qid]}
        r = {x.doc_id: x.judgement for x in reasoning.run[qid]}
        for doc in docs:
            assert doc.judgement.reasoning == r[doc.doc_id].reasoning
            assert doc.judgement.score == pytest.approx(0.75 * r[doc.doc_id].score + 0.25 * d[doc.doc_id].score)
            assert doc.judgement.reasoned_score == r[doc.doc_id].score  # the trace's own verdict, beside the score
    traces = list(blended.traces())
    assert all(t["p_true_reasoned"] == by_doc.judgement.reasoned_score
               for t, by_doc in zip(traces, (x for docs in blended.run.values() for x in docs)))
    assert blended.stats.disagreements == sum(x.judgement.disagrees() for docs in blended.run.values() for x in docs)
    assert "p_true_reasoned" not in next(reasoning.traces())  # not blended: the score is the trace's verdict
    pairs = [(topics[q].full_text, corpus[d].full_text) for q in sorted(run) for d in sorted(run[q])]
    scored = base.replace(mode="reasoning", direct_blend=0.25).score(pairs)
    by_pair = {(q, d.doc_id): d.judgement.score for q, docs in blended.run.items() for d in docs}
    assert [j.score for j in scored] == pytest.approx([by_pair[q, d] for q in sorted(run) for d in sorted(run[q])])


@pytest.mark.slow
def test_the_default_reasons_through_its_explainer() -> None:
    """The real default in reasoning mode: its direct P(true) (blend 1), with a trace (its own, neg3 explains
    itself), not a degenerate one ("true true ...")."""
    from rank1.reranker import Reranker

    pair = ("what do fleas eat", "Adult fleas feed on the blood of mammals and birds; larvae eat organic debris.")
    with Reranker(mode="reasoning", budget=24, batch_size=1, contrast=0.0) as reranker:  # the cascade itself
        reasoned = reranker.score([pair])[0]
        direct = reranker.direct.score([pair])[0]
    assert reasoned.score == direct.score and reasoned.generated_tokens > 0
    assert reasoned.reasoned_score is not None and reasoned.reasoned_score != direct.score
    assert reasoned.reasoning.strip() and "true true" not in reasoned.reasoning.lower()
