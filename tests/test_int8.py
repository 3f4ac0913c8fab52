"""torch's dynamic int8 paths of the transformers backend (``quantize="int8"``, ``"int8-mixed"``, ``"int8-smooth"``)."""

from __future__ import annotations

from typing import Any

import pytest

from rank1.backends import check_options
from rank1.backends.transformers import TransformersOptions

MIXED_TOLERANCE = 0.05
"""Most mean |P(true) difference| of int8-mixed against float32 on the sample (smollm2-135m, direct mode; 0.017
measured, per-tensor int8 0.029)."""


def test_int8_mixed_is_a_cpu_float32_option() -> None:
    options = check_options("transformers", {"quantize": "int8-mixed"})
    assert options.resolved_dtype() == "float32" and options.float32_answers()  # its output layer is int8
    assert not check_options("transformers", {"quantize": "int8"}).float32_answers()
    for bad in ({"device": "cuda"}, {"dtype": "bfloat16"}):
        with pytest.raises(ValueError, match="quantize=int8-mixed is for device cpu with dtype auto or float32"):
            TransformersOptions(quantize="int8-mixed", **bad)


def test_int8_linear_leaves_the_named_layers_in_float32() -> None:
    import torch

    from rank1.backends.int8 import MIXED_FLOAT, int8_linear

    block = torch.nn.ModuleDict({name: torch.nn.Linear(8, 8) for name in ("q_proj", "o_proj", "down_proj")})
    model = torch.nn.ModuleDict({"layer": block, "lm_head": torch.nn.Linear(8, 4)})

    def float_layers(m: Any) -> set[str]:
        return {name for name, module in m.named_modules() if type(module) is torch.nn.Linear}

    assert float_layers(int8_linear(model)) == set()
    assert float_layers(int8_linear(model, mixed=True)) == {"layer.down_proj"}
    assert MIXED_FLOAT == ("down_proj",)
    assert float_layers(int8_linear(model, mixed=True, keep_float=("o_proj",))) == {"layer.o_proj"}
    assert float_layers(model) == {"layer.q_proj", "layer.o_proj", "layer.down_proj", "lm_head"}  # a copy


@pytest.fixture(scope="module")
def engines(smollm2_ref: Any) -> dict[str, Any]:
    """smollm2-135m in float32 and through the int8 paths."""
    from pathlib import Path

    from rank1.reranker import Reranker

    cache = str(Path(smollm2_ref.path).parent)
    options = {"float32": {"dtype": "float32"}, **{q: {"quantize": q} for q in ("int8", "int8-mixed", "int8-smooth")}}
    return {name: Reranker(model=smollm2_ref.name, cache_dir=cache, mode="direct", backend_options=o)
            for name, o in options.items()}


@pytest.mark.slow
def test_int8_mixed_keeps_the_down_projections_and_the_answer_rows_in_float32(engines: dict[str, Any]) -> None:
    import torch

    backend = engines["int8-mixed"].backend
    model = backend.model
    linear = {name: type(m) for name, m in model.named_modules() if "proj" in name or name == "lm_head"}
    down = {name for name in linear if name.endswith("down_proj")}
    assert down and all(linear[name] is torch.nn.Linear for name in down)
    quantized = {name for name, kind in linear.items() if kind is not torch.nn.Linear}
    assert quantized == set(linear) - down and "lm_head" in quantized
    assert backend.answers.active and model.lm_head.float_weight.dtype == torch.float32
    assert engines["int8-mixed"].store_settings.engine != engines["int8"].store_settings.engine
    assert "quantize=int8-mixed" in engines["int8-mixed"].store_settings.engine
    assert "answers=float32" in engines["int8-mixed"].store_settings.engine  # not the float32-head judgements


@pytest.mark.slow
def test_int8_mixed_answers_equal_a_float32_output_layer(engines: dict[str, Any],
                                                         sample_pairs: list[tuple[str, str]]) -> None:
    """The int8 output layer only drives generation: direct scores are those of the same int8 body with the
    output layer left in float32."""
    from rank1.backends.int8 import int8_linear

    exact = engines["float32"]
    float_model = exact.backend.model
    exact.backend.model = int8_linear(float_model, mixed=True, keep_float=("down_proj", "lm_head"))
    try:
        reference = [j.score for j in exact.score(sample_pairs)]
    finally:
        exact.backend.model = float_model
    scores = [j.score for j in engines["int8-mixed"].score(sample_pairs)]
    assert scores == pytest.approx(reference, abs=1e-5)


@pytest.mark.slow
def test_int8_mixed_scores_close_to_float32(engines: dict[str, Any], sample_pairs: list[tuple[str, str]]) -> None:
    exact, mixed = ([j.score for j in engines[name].score(sample_pairs)] for name in ("float32", "int8-mixed"))
    assert sum(abs(a - b) for a, b in zip(exact, mixed)) / len(exact) < MIXED_TOLERANCE
    assert exact != mixed  # quantized for real


@pytest.mark.slow
def test_int8_smooth_calibrates_once_and_stays_close_to_float32(engines: dict[str, Any], smollm2_ref: Any,
                                                                sample_pairs: list[tuple[str, str]]) -> None:
    """SmoothQuant's maxima are measured on first use and cached beside the model; the smoothed int8 model
    judges near float32, not like int8-mixed, under its own store key."""
    from pathlib import Path

    from rank1.backends.int8 import MAXIMA_FILE, SMOOTH_REVISION, activation_maxima_of
    from rank1.models import read_manifest

    smooth = engines["int8-smooth"]
    exact, scores = ([j.score for j in engines[name].score(sample_pairs)] for name in ("float32", "int8-smooth"))
    cached = Path(smollm2_ref.path).parent / f"{smollm2_ref.name}.sq{SMOOTH_REVISION}-maxima"
    assert read_manifest(cached, smollm2_ref.fingerprint, MAXIMA_FILE) is not None
    assert sum(abs(a - b) for a, b in zip(exact, scores)) / len(exact) < MIXED_TOLERANCE
    assert scores != [j.score for j in engines["int8-mixed"].score(sample_pairs)]
    assert "quantize=int8-smooth" in smooth.store_settings.engine
    stamp = (cached / MAXIMA_FILE).stat().st_mtime_ns
    maxima = activation_maxima_of(smollm2_ref, None, None)  # cached: no model needed
    assert (cached / MAXIMA_FILE).stat().st_mtime_ns == stamp and len(maxima) > 0
