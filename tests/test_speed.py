"""CPU inference speed-ups (issue 18): the dtype of ``"auto"`` by the hardware, shared query prefixes, int8.

Each speed-up must keep the judgements: the shared-prefix path gives the unshared path's scores within float
tolerance, bfloat16 and int8 agree with float32 within a stated tolerance on a fixed pair set.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rank1.backends.prefix import PrefixGroup, common_length, prefix_groups
from rank1.hardware import CpuChoice, cpu_dtype_choice, cpu_flags, gemm_gflops, has_bf16_units

QUERIES = ["what is the capital of france", "how do vaccines train the immune system", "who wrote war and peace"]
PASSAGES = [
    "Paris is the capital and largest city of France, on the Seine.",
    "Vaccines expose the body to a harmless piece of a pathogen so that the immune system learns to recognise it.",
    "Leo Tolstoy wrote War and Peace, published in 1869.",
    "The Eiffel Tower is in Paris.",
    "Bananas are rich in potassium.",
    "x",
]
PAIRS = [(q, p) for q in QUERIES for p in PASSAGES]


# -- the dtype of "auto" ----------------------------------------------------------------------------------


def test_bf16_units_are_read_from_the_cpu_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK1_CPU_DTYPE", raising=False)
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 amx_bf16 amx_tile\n\n")
    assert cpu_flags(info) == {"fpu", "avx2", "amx_bf16", "amx_tile"}
    assert cpu_flags(tmp_path / "missing") is None
    assert has_bf16_units({"avx512_bf16"}) and not has_bf16_units({"avx2", "avx512f"})
    assert cpu_dtype_choice(flags={"avx2", "amx_bf16"}) == CpuChoice("bfloat16", "CPU has amx_bf16")
    assert cpu_dtype_choice(flags={"avx2"}).dtype == "float32"
    monkeypatch.setenv("RANK1_CPU_DTYPE", "bfloat16")
    assert cpu_dtype_choice(flags={"avx2"}) == CpuChoice("bfloat16", "$RANK1_CPU_DTYPE")


def test_without_flags_the_choice_is_measured_once_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK1_CPU_DTYPE", raising=False)
    cache = tmp_path / "hardware.json"
    import rank1.hardware as hardware

    monkeypatch.setattr(hardware, "cpu_flags", lambda *a: None)
    first = cpu_dtype_choice(probe_cache=cache)
    assert first.dtype in ("float32", "bfloat16") and first.reason.startswith("measured GEMM")
    monkeypatch.setattr(hardware, "gemm_gflops", lambda *a, **k: pytest.fail("measured twice"))
    assert cpu_dtype_choice(probe_cache=cache) == first


def test_the_gemm_probe_measures_something() -> None:
    assert gemm_gflops("float32", size=128, seconds=0.05) > 0.1


def test_the_store_key_holds_the_resolved_dtype_not_auto(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rank1.reranker import Reranker

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    keys = {}
    for forced in ("float32", "bfloat16"):
        monkeypatch.setenv("RANK1_CPU_DTYPE", forced)
        auto = Reranker(model=str(tmp_path), mode="direct", load=False).store_settings.engine
        explicit = Reranker(model=str(tmp_path), mode="direct", backend_options={"dtype": forced},
                            load=False).store_settings.engine
        assert auto == explicit and f"dtype={forced}" in auto and "share_prefix" not in auto
        keys[forced] = auto
    assert keys["float32"] != keys["bfloat16"]
    int8 = Reranker(model=str(tmp_path), mode="direct", backend_options={"quantize": "int8"}, load=False)
    assert "dtype=float32 quantize=int8" in int8.store_settings.engine


def test_int8_is_for_the_cpu_in_float32() -> None:
    from rank1.backends.transformers import TransformersOptions

    for bad in ({"device": "cuda"}, {"dtype": "bfloat16"}):
        with pytest.raises(ValueError, match="int8 is for device cpu"):
            TransformersOptions(quantize="int8", **bad)
    assert TransformersOptions(quantize="int8").dtype_summary().startswith("float32 (auto")


def test_auto_under_a_quantized_format_says_why_on_a_bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a format fixes what ``auto`` means, the run summary gives that reason, not the CPU's (which said
    "float32 (auto: CPU has avx512_bf16)" for ``--quantize int8-smooth`` on a bf16 CPU)."""
    import rank1.backends.options as options
    from rank1.backends.openvino import OpenVINOOptions
    from rank1.backends.transformers import TransformersOptions
    from rank1.backends.vllm import VLLMOptions

    monkeypatch.setattr(options, "cpu_dtype_choice", lambda: CpuChoice("bfloat16", "CPU has avx512_bf16"))
    assert TransformersOptions().dtype_summary() == "bfloat16 (auto: CPU has avx512_bf16)"
    assert TransformersOptions(quantize="int8-smooth").dtype_summary() == (
        "float32 (auto: --quantize int8-smooth runs float32 between its int8 products)")
    assert VLLMOptions(weight_format="int8").dtype_summary() == (
        "float32 (auto: rank1's int8 copy runs float32 between its int8 products)")
    assert OpenVINOOptions().dtype_summary() == "float32 (auto: the openvino engine's default precision)"
    for opts in (TransformersOptions(quantize="int8-smooth"), VLLMOptions(weight_format="int8"), OpenVINOOptions()):
        assert opts.resolved_dtype() == "float32"
    assert TransformersOptions(device="cuda").dtype_summary() == "bfloat16 (auto: GPU)"


# -- shared prefixes ----------------------------------------------------------------------------------------


def test_prefix_groups_split_by_query_and_cover_every_list() -> None:
    preamble = list(range(100, 130))  # the instruction, shared by every prompt
    queries = [[1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 9, 9, 9, 9, 9, 9, 9]]
    ids = [preamble + q + [50 + d] * (3 + d) for q in queries for d in range(5)]
    groups = prefix_groups(ids, min_shared=16)
    assert sorted(i for g in groups for i in g.members) == list(range(10))
    assert [sorted(g.members) for g in groups] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert [g.shared for g in groups] == [38, 39]
    assert all(len(ids[i]) > g.shared for g in groups for i in g.members)
    assert groups[0].saved == 4 * 38


def test_prefix_groups_keep_a_token_of_each_list_and_leave_short_heads_alone() -> None:
    same = [5] * 20
    groups = prefix_groups([same, same, same + [1]], min_shared=16)
    assert groups == [PrefixGroup(19, [0, 1, 2])]  # identical lists: each keeps its last token
    assert prefix_groups([[1] * 10 + [2], [1] * 10 + [3]], min_shared=16) == [PrefixGroup(0, [0]),
                                                                                PrefixGroup(0, [1])]
    assert prefix_groups([]) == [] and common_length([1, 2, 3], [1, 2, 4, 5]) == 2


@pytest.fixture(scope="module")
def small_scores(smollm2_ref) -> dict[str, object]:
    """Scores of :data:`PAIRS` by ``smollm2-135m`` in direct mode, float32, without prefix sharing."""
    from rank1.reranker import Reranker

    reranker = Reranker(model=smollm2_ref.name, cache_dir=str(Path(smollm2_ref.path).parent), mode="direct",
                        batch_size=4, backend_options={"share_prefix": False, "dtype": "float32"})
    return {"reranker": reranker, "scores": [j.score for j in reranker.score(PAIRS)]}


def _scores(small_scores: dict, **options: object) -> tuple[list[float], object]:
    base = small_scores["reranker"]
    other = base.replace(backend_options={**base.config.backend_options, **options})
    return [j.score for j in other.score(PAIRS)], other.backend


def test_shared_prefix_scores_equal_the_unshared_ones(small_scores: dict) -> None:
    shared, backend = _scores(small_scores, share_prefix=True)
    assert max(abs(a - b) for a, b in zip(shared, small_scores["scores"])) < 1e-4
    tokens = backend.tokens
    assert tokens.reused > tokens.real / 3  # the instruction and the query, computed once per query
    assert tokens.computed < tokens.real


@pytest.mark.parametrize("options, tolerance", [({"quantize": "int8"}, 0.15), ({"dtype": "bfloat16"}, 0.1)])
def test_faster_number_formats_agree_with_float32(small_scores: dict, options: dict, tolerance: float) -> None:
    scores, _ = _scores(small_scores, share_prefix=True, **options)
    reference = small_scores["scores"]
    assert max(abs(a - b) for a, b in zip(scores, reference)) < tolerance
    for q in range(len(QUERIES)):  # the best passage of each query stays the best
        rows = slice(q * len(PASSAGES), (q + 1) * len(PASSAGES))
        best = max(range(len(PASSAGES)), key=lambda i: reference[rows][i])
        assert scores[rows][best] >= max(scores[rows]) - tolerance
