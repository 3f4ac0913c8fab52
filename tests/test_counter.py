"""Counter-query contrast: the rules that flip a query, the score, and the composition over a real model."""

from __future__ import annotations

from pathlib import Path

import pytest

from rank1.counter import contrast_score, counter_query
from rank1.records import Document, Query


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("What desired outcome was not achieved by the two teams?", "What desired outcome was achieved by the two teams?"),
        ("Which country didn't have a treaty?", "Which country did have a treaty?"),
        ("Why can't penguins fly?", "Why can penguins fly?"),
        ("Which ships were never used as warships?", "Which ships were ever used as warships?"),
        ("a town without a railway", "a town with a railway"),
        ("Which age group had no individuals below the line?", "Which age group had some individuals below the line?"),
        ("Who failed to win the title?", "Who win the title?"),
        ("Which album did not include the single?", "Which album did include the single?"),  # past: a claim
        # an exclusion clause: the excluded part alone (what the answer must not be about)
        ("What is aTelecine's role, excluding any information about Sasha Grey?", "Sasha Grey"),
        ("symptoms of flu except fever", "fever"),
        ("What causes blisters, but not the role of serum?", "the role of serum"),
        ("Which parks, not those in Paris, allow dogs?", "those in Paris"),
        ("the history of the town, without mentioning the war", "the war"),
        # ... and requests that hold a negation
        ("where was anthony hopkins born, but I don't want anything about Hannibal", "Hannibal"),
        ("what year was he born. Do not include information about the move", "the move"),
        ("river otters, with no mention of Canada", "Canada"),
        ("solar panels; the passage should not discuss subsidies", "subsidies"),
        ("I don't want to know about cats, tell me about dogs", "cats"),
        # no negation or exclusion cue, no counter-query (a topical query keeps its plain score)
        ("What was the willing fate of the prisoners?", None),
        ("How does the body produce insulin?", None),
        ("anthony hopkins birthplace", None),
    ],
)
def test_counter_query_is_the_excluded_part_or_the_query_without_its_negation(query: str, expected: str | None) -> None:
    assert counter_query(query) == expected


def test_contrast_score_is_a_monotone_map_into_zero_one() -> None:
    assert contrast_score(0.7, 0.7, 1.0) == pytest.approx(0.5)
    assert contrast_score(1.0, 0.0, 2.0) == pytest.approx(1.0) and contrast_score(0.0, 1.0, 2.0) == pytest.approx(0.0)
    assert contrast_score(0.6, 0.9, 0.0) == 0.6  # off: the plain P(true)
    # the same P(true), a likelier counter-query: a lower score
    assert contrast_score(0.8, 0.1, 1.0) > contrast_score(0.8, 0.5, 1.0)


@pytest.mark.parametrize("weight", [-0.1, 4.5])
def test_a_contrast_outside_its_range_is_refused(weight: float) -> None:
    from rank1.reranker import RerankerConfig

    with pytest.raises(ValueError, match="contrast must lie in"):
        RerankerConfig(contrast=weight)


def test_contrast_wraps_any_mode_with_a_direct_counter_stage() -> None:
    from rank1.adaptive import AdaptiveReranker
    from rank1.counter import CounterReranker
    from rank1.reranker import Reranker

    plain = Reranker(mode="direct", contrast=0.0, load=False)
    assert not isinstance(plain, CounterReranker) and "contrast" not in plain.meta
    # the default model's dev-chosen contrast applies unless set; another model's (none) follows the model
    default = Reranker(load=False)
    assert isinstance(default, CounterReranker) and default.config.contrast == 1.5
    assert default.replace(model="rank1-0.5b-neg2").config.contrast == 0.0
    for mode in ("direct", "reasoning", "adaptive"):
        r = Reranker(mode=mode, contrast=0.5, fusion_weight=0.2, load=False)
        assert isinstance(r, CounterReranker)
        assert r.counter.config.mode == "direct" and r.counter.config.contrast == 0.0
        assert r.inner.config.mode == mode and r.inner.config.fusion_weight == 0.0  # fused once, at the end
        assert r.counter._model is r._model and r.inner._model is r._model
        assert r.meta["contrast"] == 0.5 and r.meta["mode"] == mode and r.meta["counter_revision"] >= 1
    assert isinstance(Reranker(mode="reasoning", contrast=1.0, load=False).inner, AdaptiveReranker)


@pytest.mark.slow
def test_contrast_discounts_each_pair_by_its_counter_query(smollm2_ref, tmp_path: Path) -> None:
    """Every judged pair of a flipped query scores contrast_score(P(q, d), P(counter(q), d)) from two plain
    direct judgements; an unflipped query keeps its plain scores; both stages go through the store."""
    from rank1.reranker import Reranker
    from rank1.store import ScoreStore

    corpus = {d: Document(d, t) for d, t in {
        "a": "The 1999 final went to penalties after neither team scored in regulation.",
        "b": "The 1999 final went to penalties after the score stayed 1-1 in regulation.",
        "c": "Penalty shootouts decide drawn knockout matches."}.items()}
    topics = {"q1": Query("q1", "Which final was not decided in regulation?"),
              "q2": Query("q2", "1999 final penalties"),  # a negation in its instruction only
              "q3": Query("q3", "1999 final penalties", "Passages that do not name the winner are irrelevant.")}
    run = {q: {"a": 3.0, "b": 2.0, "c": 1.0} for q in topics}
    base = Reranker(model=smollm2_ref.name, cache_dir=str(Path(smollm2_ref.path).parent), batch_size=2,
                    mode="direct", backend_options={"dtype": "float32"})
    plain = base.rerank_run(run, corpus, topics, depth=3, progress=False)
    # the counter-query is made from the query with its instruction, as the model reads it
    flipped = {q: Query(q, counter_query(topics[q].full_text)) for q in ("q1", "q3")}
    assert flipped["q3"].text == "1999 final penalties Passages that do name the winner are irrelevant."
    against = base.rerank_run({q: run[q] for q in flipped}, corpus, flipped, depth=3, progress=False)
    with ScoreStore(tmp_path / "s.sqlite") as store:
        contrasted = base.replace(contrast=1.0).rerank_run(run, corpus, topics, depth=3, progress=False, store=store)
        assert store.count() == 15 and contrasted.stats.counter == 6 and contrasted.stats.judged == 15
        again = base.replace(contrast=1.0).rerank_run(run, corpus, topics, depth=3, progress=False, store=store)
        assert again.stats.judged == 0 and again.stats.cached == 15
    p = {(q, d.doc_id): d.judgement.score for q, docs in plain.run.items() for d in docs}
    c = {(q, d.doc_id): d.judgement.score for q, docs in against.run.items() for d in docs}
    for q, docs in contrasted.run.items():
        for doc in docs:
            if q in flipped:
                assert doc.judgement.score == pytest.approx(contrast_score(p[q, doc.doc_id], c[q, doc.doc_id], 1.0))
                assert doc.judgement.counter_score == pytest.approx(c[q, doc.doc_id])
            else:
                assert doc.judgement.score == pytest.approx(p[q, doc.doc_id]) and doc.judgement.counter_score is None
    assert contrasted.meta["contrast"] == 1.0
    assert "p_true_counter" in next(contrasted.traces())
    pairs = [(topics[q].full_text, corpus[d].full_text) for q in sorted(run) for d in sorted(run[q])]
    by_pair = {(q, d.doc_id): d.judgement.score for q, docs in contrasted.run.items() for d in docs}
    scored = base.replace(contrast=1.0).score(pairs)
    assert [j.score for j in scored] == pytest.approx([by_pair[q, d] for q in sorted(run) for d in sorted(run[q])])
