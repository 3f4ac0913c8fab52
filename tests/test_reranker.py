"""The reasoning reranker on the real embedded default model (no mocks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rank1.io import read_corpus, read_run, read_topics, write_run
from rank1.pipeline import SAMPLE_DIR
from rank1.prompts import get_template
from rank1.scoring import answer_token_ids, cut_to_last_sentence, p_true

pytestmark = pytest.mark.slow

SKY = "why is the sky blue"
SKY_YES = ("Sunlight is scattered by the molecules of the air, and short wavelengths scatter much more strongly "
           "than long ones. Blue light is therefore scattered across the whole sky, so the sky looks blue.")
SKY_NO = "Our sky blue interior paint covers in one coat and dries in two hours. Mix with white for a lighter shade."
TIDE = "what causes tides"
TIDE_YES = "Tides are caused mainly by the Moon's gravity pulling on the oceans, with a smaller pull from the Sun."
TIDE_NO = "Tide laundry detergent removes tough stains in cold water. Use one cap for a normal load."


def test_raw_prompt_bytes_are_rank1s() -> None:
    text = get_template("rank1").render("what is a flea instruction here", "Fleas are insects.")
    assert text == (
        "Determine if the following passage is relevant to the query. Answer only with 'true' or 'false'.\n"
        "Query: what is a flea instruction here\nPassage: Fleas are insects.\n<think>"
    )


def test_chat_prompt_wraps_the_same_text(reranker) -> None:
    tok = reranker.backend.tokenizer
    text = get_template("rank1-chat-answer").render("q", "p", tok)
    assert "<|im_start|>user\nDetermine if the following passage is relevant" in text
    assert text.endswith("<|im_start|>assistant\n<think>")


def test_answer_tokens_are_single_with_leading_space(reranker) -> None:
    tok = reranker.backend.tokenizer
    true_id, false_id = answer_token_ids(tok)
    assert tok.convert_ids_to_tokens([true_id, false_id]) == ["\u0120true", "\u0120false"]
    assert (true_id, false_id) == (830, 895)  # Qwen2.5's " true" / " false"


def test_direct_scores_are_probabilities_and_rank_the_relevant_first(reranker) -> None:
    judged = reranker.score([(SKY, SKY_YES), (SKY, SKY_NO), (TIDE, TIDE_YES), (TIDE, TIDE_NO)])
    scores = [j.score for j in judged]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[0] > scores[1] and scores[2] > scores[3]
    assert all(j.reasoning == "" and j.generated_tokens == 0 and not j.fallback for j in judged)


def test_scores_do_not_depend_on_batch_company(reranker) -> None:
    """Left padding and length bucketing must not change a pair's score (float32 on every CPU: in bfloat16 the
    body's rounding follows the batch, see tests/test_precision.py)."""
    exact = reranker.replace(backend_options={"dtype": "float32"})
    alone = exact.replace(batch_size=1).score([(SKY, SKY_NO)])[0].score
    together = exact.score([(SKY, SKY_YES + " " + SKY_YES), (SKY, SKY_NO), (TIDE, TIDE_NO)])[1].score
    assert together == pytest.approx(alone, abs=1e-4)


def test_reasoning_answer_matches_a_fresh_forward_pass(reranker) -> None:
    """The in-loop answer logits (KV cache, rows leaving the batch) equal a recomputation from scratch."""
    thinker = reranker.replace(mode="reasoning", budget=48, batch_size=4, template="rank1-chat-answer")
    pairs = [(SKY, SKY_YES), (SKY, SKY_NO), (TIDE, TIDE_YES), (TIDE, TIDE_NO)]
    judged = thinker.score(pairs)
    for j in judged:
        assert 0.0 <= j.score <= 1.0 and j.generated_tokens <= 48
        assert "</think>" not in j.reasoning
    closed = [(p, j) for p, j in zip(pairs, judged) if not j.fallback]
    assert closed, "the default model closed no reasoning block within 48 tokens"
    backend, settings = thinker.backend, thinker.settings
    # Recompute one closed pair: prompt + reasoning + close + prefix, scored directly.
    (q, passage), j = closed[0]
    prompt = thinker.prompts.build(q, passage).text
    full = backend.tokenizer(prompt, add_special_tokens=settings.add_special_tokens)["input_ids"]
    generated = backend.tokenizer(j.reasoning + settings.think_close + settings.answer_prefix,
                                  add_special_tokens=False)["input_ids"]
    fresh = backend.answer_scores([full + generated], settings)[0]
    assert fresh == pytest.approx(j.score, abs=0.05)


def test_fallback_fires_when_the_budget_runs_out(reranker) -> None:
    starved = reranker.replace(mode="reasoning", budget=2, template="think-chat-answer")
    judged = starved.score([(SKY, SKY_YES), (TIDE, TIDE_NO)])
    for j in judged:
        assert j.fallback and j.generated_tokens == 2 and 0.0 <= j.score <= 1.0


def test_long_passages_are_truncated_and_counted(reranker) -> None:
    short = reranker.replace(max_passage_tokens=16)
    corpus = read_corpus(SAMPLE_DIR / "corpus.jsonl")
    topics = read_topics(SAMPLE_DIR / "topics.tsv")
    run = {"q3": {"sky-1": 3.0, "sky-4": 2.0, "sky-2": 1.0}}
    result = short.rerank_run(run, corpus, topics, depth=2, progress=False)
    assert result.stats.pairs == 2 and result.stats.truncated == 2
    assert [d.judgement.truncated for d in result.run["q3"][:2]] == [True, True]
    assert result.run["q3"][2] == ("sky-2", -1.0, None)  # below the depth: kept, in order, below


def test_rerank_run_round_trips_through_a_run_file(reranker, tmp_path: Path) -> None:
    corpus = read_corpus(SAMPLE_DIR / "corpus.jsonl")
    topics = read_topics(SAMPLE_DIR / "topics.tsv")
    run = {"q1": {f"bee-{i}": float(10 - i) for i in range(1, 6)}, "q5": {f"tide-{i}": float(i) for i in range(1, 6)}}
    result = reranker.rerank_run(run, corpus, topics, depth=4, progress=False)
    write_run(tmp_path / "out.trec", result.scores())
    back = read_run(tmp_path / "out.trec")
    assert list(back) == ["q1", "q5"]
    for qid, docs in result.run.items():
        assert list(back[qid]) == [d.doc_id for d in docs]
        assert [back[qid][d.doc_id] for d in docs] == pytest.approx([d.score for d in docs], abs=1e-6)
    traces = list(result.traces())
    assert len(traces) == 8 and {t["template"] for t in traces} == {reranker.template.name}
    assert all(t["model_fingerprint"] == reranker.model_ref.fingerprint for t in traces)


def test_rerank_single_query(reranker) -> None:
    ranked = reranker.rerank(TIDE, {"no": TIDE_NO, "yes": TIDE_YES}, top_k=1)
    assert [r.doc_id for r in ranked] == ["yes"]


def test_scoring_helpers() -> None:
    assert p_true(0.0, 0.0) == 0.5
    assert p_true(1000.0, 0.0) == 1.0 and p_true(0.0, 1000.0) == 0.0
    assert cut_to_last_sentence("One. Two is cut") == "One."
    assert cut_to_last_sentence("no end") == "no end"


def test_a_blended_judgement_carries_its_reasonings_verdict() -> None:
    from rank1.scoring import JUDGEMENT_FIELDS, Judgement

    plain, blended = Judgement(0.8, "why", 9), Judgement(0.8, "why", 9, reasoned_score=0.3)
    assert "p_true_reasoned" not in plain.details() and not plain.disagrees()
    assert blended.details() == {**plain.details(), "p_true_reasoned": 0.3} and blended.disagrees()
    assert not blended._replace(reasoned_score=0.6).disagrees()
    assert blended.to_values() == plain.to_values() and len(JUDGEMENT_FIELDS) == 5  # stored fields only


def test_quantized_4bit_backend_on_a_second_model(smollm2_ref) -> None:
    """bitsandbytes nf4 loads on CPU and the whole path runs on another tokenizer (SmolLM2)."""
    from rank1.reranker import Reranker

    quantized = Reranker(model=smollm2_ref.path, mode="direct", backend_options={"quantize": "4bit"})
    assert type(quantized.backend.model.model.layers[0].mlp.down_proj).__name__ == "Linear4bit"
    assert quantized.template.name == "rank1"  # a local folder: Rank1's raw template
    judged = quantized.score([(SKY, SKY_YES), (SKY, SKY_NO)])
    assert all(0.0 <= j.score <= 1.0 for j in judged)
