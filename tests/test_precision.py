"""The bfloat16 path: answer logits read in float32 (rank1.backends.head), tested on every CPU.

On a CPU without bfloat16 units torch emulates bfloat16 (slower, same results), so these tests show a
developer on an AVX2 machine what a bfloat16 machine computes. The tolerances follow from measurement on the
sample collection with smollm2-135m (bfloat16 vs float32, direct mode): max |P(true) difference| 0.0037 with
the float32 answer head, 0.0084 without; 30 of 30 scores distinct with it, 13 of 30 without.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

BF16_VS_FP32 = 0.01
"""Most |P(true) difference| between bfloat16 (float32 answers) and float32 in direct mode on the sample."""


def test_store_keys_name_the_float32_answers() -> None:
    from rank1.reranker import Reranker

    def engine(**options: Any) -> str:
        return Reranker(mode="direct", backend_options=options, load=False).store_settings.engine

    assert "answers=float32" in engine(dtype="bfloat16") and "dtype=bfloat16" in engine(dtype="bfloat16")
    assert "answers=" not in engine(dtype="float32") and "answers=" not in engine(quantize="int8")
    vllm = Reranker(mode="direct", backend="vllm", backend_options={"dtype": "bfloat16"}, load=False)
    assert "answers=float32" in vllm.store_settings.engine


@pytest.fixture(scope="module")
def by_dtype(smollm2_ref: Any) -> dict[str, Any]:
    """smollm2-135m in direct mode, float32 and bfloat16 (whatever this CPU's ``auto`` is)."""
    from rank1.reranker import Reranker

    cache = str(Path(smollm2_ref.path).parent)
    return {dtype: Reranker(model=smollm2_ref.name, cache_dir=cache, mode="direct",
                            backend_options={"dtype": dtype}) for dtype in ("float32", "bfloat16")}


@pytest.mark.slow
def test_the_float32_head_is_active_in_bfloat16_only(by_dtype: dict[str, Any]) -> None:
    assert by_dtype["bfloat16"].backend.answers.active
    assert not by_dtype["float32"].backend.answers.active


@pytest.mark.slow
def test_bfloat16_answers_equal_a_float32_recomputation(by_dtype: dict[str, Any],
                                                        sample_pairs: list[tuple[str, str]]) -> None:
    """The answer logits are the final norm and the two answer rows in float32 over the bfloat16 body's hidden
    state, and finer than the model's own bfloat16 logits."""
    import torch

    backend = by_dtype["bfloat16"].backend
    settings = by_dtype["bfloat16"].settings
    ids = backend.tokenizer(sample_pairs[0][0] + " " + sample_pairs[0][1], return_tensors="pt")["input_ids"]
    captured: list[Any] = []
    hook = backend.model.model.norm.register_forward_hook(lambda m, i, o: captured.append(i[0][:, -1].float()))
    try:
        with torch.inference_mode():
            logits = backend.model(input_ids=ids, logits_to_keep=1).logits[:, -1, :]
            answers = backend.answers.logits(tuple(backend.answer_tokens(settings)), logits)
    finally:
        hook.remove()
    norm, head = backend.model.model.norm, backend.model.lm_head
    hidden = captured[0]
    expected = (hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
                * norm.weight.float()) @ head.weight[list(backend.answer_tokens(settings))].float().T
    assert answers.dtype == torch.float32
    assert torch.allclose(answers, expected, atol=1e-4)
    coarse = logits[:, list(backend.answer_tokens(settings))].float()
    assert (answers - coarse).abs().max() < 0.5 and not torch.equal(answers, coarse)


@pytest.mark.slow
def test_bfloat16_scores_are_continuous_and_near_float32(by_dtype: dict[str, Any],
                                                         sample_pairs: list[tuple[str, str]]) -> None:
    fp32 = [j.score for j in by_dtype["float32"].score(sample_pairs)]
    bf16 = [j.score for j in by_dtype["bfloat16"].score(sample_pairs)]
    assert len(set(bf16)) == len(set(fp32)) == len(sample_pairs)  # no ties (the passages all differ)
    assert max(abs(a - b) for a, b in zip(bf16, fp32)) <= BF16_VS_FP32


@pytest.mark.slow
def test_bfloat16_batch_company_moves_scores_a_little(by_dtype: dict[str, Any],
                                                      sample_pairs: list[tuple[str, str]]) -> None:
    """In bfloat16 a pair judged alone or among longer neighbours (other padding) scores within 0.02 (the
    README's bound for bfloat16; float32 is held to 1e-4 in tests/test_reranker.py)."""
    bf16 = by_dtype["bfloat16"]
    together = [j.score for j in bf16.score(sample_pairs[:8])]
    alone = [bf16.replace(batch_size=1).score([p])[0].score for p in sample_pairs[:8]]
    assert max(abs(a - b) for a, b in zip(alone, together)) <= 0.02


@pytest.mark.slow
def test_bfloat16_reasoning_reads_float32_answers(by_dtype: dict[str, Any],
                                                  sample_pairs: list[tuple[str, str]]) -> None:
    """Reasoning mode reads its answers through the same head: distinct scores in (0, 1)."""
    judged = by_dtype["bfloat16"].replace(mode="reasoning", budget=8).score(sample_pairs[:8])
    scores = [j.score for j in judged]
    assert any(j.generated_tokens > 0 for j in judged) and all(0.0 < s < 1.0 for s in scores)
    assert len(set(scores)) == len(scores)
