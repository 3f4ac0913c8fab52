"""The llamacpp backend: options and store keys, the missing-extra error, the GGUF export, and scores against the
exact path on smollm2-135m (the model tests skip when llama-cpp-python is not installed: ``pip install
'rank1[llamacpp]'``, which compiles llama.cpp)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from tests.test_openvino import concordance

Q8_VS_FP32 = 0.05
"""Most |P(true) difference| of q8_0 weights against float32 on the sample (smollm2-135m, direct mode)."""

Q8_CONCORDANCE = 0.8
"""Least share of a query's candidate pairs that q8_0 orders as float32 does, on the sample (smollm2's scores of
one query lie within about 0.1 of each other, so near-ties swap; the ranking-quality bar is measured on real
collections in benchmarks/quantized.py)."""

NO_LLAMACPP = "llama-cpp-python is not installed: pip install 'rank1[llamacpp]'"


def engine(**options: Any) -> str:
    from rank1.reranker import Reranker

    return Reranker(mode="direct", backend="llamacpp", backend_options=options, load=False).store_settings.engine


def test_store_keys_name_the_weight_format_and_not_the_threads() -> None:
    assert engine() == engine(threads=2) == engine(weight_format="q8_0", dtype="float32")
    assert "weight_format=q8_0" in engine() and "dtype=float32" in engine() and "answers=" not in engine()
    assert engine(weight_format="q4_0") != engine()


def test_bad_options_fail_before_loading() -> None:
    from rank1.backends import backend_options, check_options

    with pytest.raises(ValueError, match="weight_format must be q8_0 or q4_0"):
        check_options("llamacpp", {"weight_format": "int8"})
    with pytest.raises(ValueError, match="computes in float32; dtype 'bfloat16'"):
        check_options("llamacpp", {"dtype": "bfloat16"})
    with pytest.raises(ValueError, match="n_ctx must be at least 64"):
        check_options("llamacpp", {"n_ctx": 8})
    with pytest.raises(ValueError, match="--quantize 4bit"):
        backend_options("llamacpp", quantize="4bit")
    with pytest.raises(ValueError, match="the llamacpp backend runs on the CPU"):
        backend_options("llamacpp", device="cuda")
    assert backend_options("llamacpp") == {"dtype": "auto"}
    assert backend_options("llamacpp", quantize="int4") == {"dtype": "auto", "weight_format": "q4_0"}


def test_a_missing_extra_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rank1.backends.llamacpp import LlamaCppBackend
    from rank1.models import ModelError, ModelRef

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else find_spec(name, *a))
    with pytest.raises(ModelError, match=r"^the llamacpp backend needs llama-cpp-python: pip install "
                                         r"'rank1\[llamacpp\]'"):
        LlamaCppBackend(ModelRef("x", str(tmp_path), "fp", "student"))


def test_only_models_from_a_gguf_file_can_be_exported(tmp_path: Path) -> None:
    from rank1.backends.gguf_export import exported
    from rank1.models import ModelError, ModelRef

    with pytest.raises(ModelError, match=r"come from a GGUF file .*'my-model' \(local\) does not"):
        exported(ModelRef("my-model", str(tmp_path), "fp", "local"), "q8_0")


@pytest.fixture(scope="module")
def engines(smollm2_ref: Any) -> dict[str, Any]:
    """smollm2-135m on the exact path (transformers, float32) and on llama.cpp (q8_0 weights)."""
    pytest.importorskip("llama_cpp", reason=NO_LLAMACPP)
    from rank1.reranker import Reranker

    cache = str(Path(smollm2_ref.path).parent)
    exact = Reranker(model=smollm2_ref.name, cache_dir=cache, mode="direct", backend_options={"dtype": "float32"})
    return {"exact": exact, "q8_0": Reranker(model=smollm2_ref.name, cache_dir=cache, mode="direct",
                                             backend="llamacpp", backend_options={"weight_format": "q8_0"})}


@pytest.mark.slow
def test_the_gguf_copy_is_cached_beside_the_model(engines: dict[str, Any], smollm2_ref: Any) -> None:
    from rank1.backends.gguf_export import exported

    copy = exported(smollm2_ref, "q8_0")
    assert copy.parent.parent == Path(smollm2_ref.path).parent and copy.parent.name.endswith(".gguf-q8_0")
    stamp = copy.stat().st_mtime_ns
    assert exported(smollm2_ref, "q8_0") == copy and copy.stat().st_mtime_ns == stamp
    merged = sum(p.stat().st_size for p in Path(smollm2_ref.path).glob("*.safetensors"))
    assert copy.stat().st_size < merged / 1.5  # int8 blocks against the cached float weights
    assert not [p for p in copy.parent.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


@pytest.mark.slow
def test_q8_0_scores_are_distinct_near_float32_and_rank_alike(engines: dict[str, Any],
                                                              sample_pairs: list[tuple[str, str]]) -> None:
    exact = [j.score for j in engines["exact"].score(sample_pairs)]
    q8 = [j.score for j in engines["q8_0"].score(sample_pairs)]
    assert len(set(q8)) == len(sample_pairs)
    assert max(abs(a - b) for a, b in zip(exact, q8)) <= Q8_VS_FP32
    assert concordance([q for q, _ in sample_pairs], exact, q8) >= Q8_CONCORDANCE


@pytest.mark.slow
def test_reasoning_matches_the_exact_paths_greedy_text(engines: dict[str, Any],
                                                       sample_pairs: list[tuple[str, str]]) -> None:
    """Greedy reasoning on q8_0 weights: a trace within the budget, with the fallback where it runs out; the
    first generated words agree with the exact path's on most pairs."""
    pairs = sample_pairs[:4]
    exact = engines["exact"].replace(mode="reasoning", budget=24).score(pairs)
    q8 = engines["q8_0"].replace(mode="reasoning", budget=24).score(pairs)
    for judgement in q8:
        assert 0 < judgement.generated_tokens <= 24 and 0.0 <= judgement.score <= 1.0
        assert judgement.fallback or judgement.generated_tokens < 24  # a spent budget takes the fallback
    same_start = sum(a.reasoning.split()[:3] == b.reasoning.split()[:3] for a, b in zip(exact, q8))
    assert same_start >= len(pairs) // 2
