"""The shared backend layer without a model: options, the score-store engine string, token ids, the direct flow."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pytest

from rank1.backends import (
    AnswerTokens,
    BaseBackend,
    JudgeSettings,
    Prompt,
    backend_class,
    check_options,
    option_defaults,
)
from rank1.backends.transformers import TransformersOptions
from rank1.hardware import cpu_dtype_choice
from rank1.backends.vllm import VLLMOptions

CPU_DTYPE = cpu_dtype_choice().dtype
ANSWERS = "answers=float32 " if CPU_DTYPE != "float32" else ""  # bfloat16 models read their answers in float32
ENGINE_DEFAULTS = {
    "transformers": f"transformers {ANSWERS}device=cpu dtype={CPU_DTYPE} trust_remote_code=False",
    "vllm": f"vllm answer_in_round=True {ANSWERS}dtype={CPU_DTYPE} enable_prefix_caching=True "
            "gpu_memory_utilization=0.9 tensor_parallel_size=1 trust_remote_code=False",
}
"""The engine part of score-store keys with every option at its default: stored scores are found by it, so
it must not change when the code does (a change would silently re-judge every stored pair). ``dtype="auto"``
appears resolved for this machine (:mod:`rank1.hardware`): a bfloat16 judgement is never read as float32;
``answers=float32`` marks bfloat16 judgements whose answer logits were read in float32 (rank1.backends.head), so
the coarse ones stored before that are judged again."""


@pytest.fixture
def local_model(tmp_path: Path) -> str:
    """A local model folder that resolves without loading anything."""
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    return str(tmp_path)


@pytest.mark.parametrize("backend", ["transformers", "vllm"])
@pytest.mark.parametrize("options", [{}, {"dtype": "auto"}])
def test_the_engine_string_of_default_options_is_pinned(local_model: str, backend: str, options: dict) -> None:
    from rank1.reranker import Reranker

    for mode, suffix in (("direct", ""), ("reasoning", " judge=2")):
        reranker = Reranker(model=local_model, backend=backend, mode=mode, backend_options=options, load=False)
        assert reranker.store_settings.engine == ENGINE_DEFAULTS[backend] + suffix


def test_the_engine_string_names_given_options(local_model: str) -> None:
    from rank1.reranker import Reranker

    hf = Reranker(model=local_model, mode="direct", backend_options={"dtype": "auto", "device": "cpu",
                                                                     "quantize": "4bit"}, load=False)
    assert hf.store_settings.engine == (f"transformers {ANSWERS}device=cpu dtype={CPU_DTYPE} quantize=4bit "
                                        "trust_remote_code=False")
    vl = Reranker(model=local_model, backend="vllm", mode="direct", backend_options={"max_model_len": 512,
                                                                                    "block_size": None}, load=False)
    assert vl.store_settings.engine == ENGINE_DEFAULTS["vllm"].replace(" tensor", " max_model_len=512 tensor")


def test_option_defaults_come_from_the_options_dataclass() -> None:
    assert option_defaults("transformers") == {"dtype": "auto", "trust_remote_code": False, "device": "cpu",
                                               "quantize": None, "share_prefix": True}
    assert option_defaults("vllm") == VLLMOptions.defaults() == backend_class("vllm").option_defaults()
    assert backend_class("transformers").options_class is TransformersOptions
    with pytest.raises(ValueError, match="unknown backend 'onnx'"):
        option_defaults("onnx")


def test_options_are_checked_in_one_place() -> None:
    assert check_options("transformers", {"quantize": "8bit"}) == TransformersOptions(quantize="8bit")
    with pytest.raises(ValueError,
                       match="quantize must be 4bit, 8bit, int8, int8-mixed or int8-smooth, not .3bit."):
        check_options("transformers", {"quantize": "3bit"})
    with pytest.raises(ValueError, match="unknown backend options: quantize"):
        check_options("vllm", {"quantize": "4bit"})
    with pytest.raises(ValueError, match="unknown backend options: max_model_len"):
        check_options("transformers", {"max_model_len": 512})
    for bad in ({"quantization": "int3"}, {"max_model_len": 10}, {"gpu_memory_utilization": 0.0},
                {"tensor_parallel_size": 0}):
        with pytest.raises(ValueError):
            check_options("vllm", bad)


def test_load_model_reports_bad_options_as_model_errors(tmp_path: Path) -> None:
    from rank1.backends.transformers import load_model
    from rank1.models import ModelError, ModelRef

    with pytest.raises(ModelError, match="quantize must be 4bit, 8bit, int8, int8-mixed or int8-smooth"):
        load_model(ModelRef("x", str(tmp_path), "fp", "local"), quantize="3bit")


class CountingTokenizer:
    """One token per character; counts ``encode`` calls."""

    eos_token_id, pad_token_id = 7, 3

    def __init__(self) -> None:
        self.encodes = 0

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        self.encodes += 1
        return [ord(c) for c in text]

    def __call__(self, texts: list[str], add_special_tokens: bool = True) -> dict[str, list[list[int]]]:
        return {"input_ids": [[ord(c) for c in t] for t in texts]}


class LengthBackend(BaseBackend):
    """Scores a token list by its length; ``fit`` cuts to ``limit`` tokens less the room asked for."""

    name = "length"
    direct_batches = 2

    def __init__(self, limit: int = 1000) -> None:
        super().__init__(CountingTokenizer(), "fp")
        self.limit, self.calls = limit, []

    def fit(self, ids: list[int], room: int) -> tuple[list[int], bool]:
        return ids[: self.limit - room], len(ids) > self.limit - room

    def answer_scores(self, ids: Sequence[list[int]], settings: JudgeSettings) -> list[float]:
        self.calls.append(len(ids))
        return [len(x) / 100 for x in ids]


def test_token_ids_are_computed_once() -> None:
    backend = LengthBackend()
    settings = JudgeSettings(answers=("t", "f"))
    assert backend.end_tokens == (3, 7)
    assert backend.answer_tokens(settings) == AnswerTokens(ord("t"), ord("f")) == (116, 102)
    calls = backend.tokenizer.encodes
    assert backend.answer_tokens(settings).true == 116 and backend.tokenizer.encodes == calls


def test_direct_mode_closes_each_prompt_and_judges_in_chunks() -> None:
    backend, progress = LengthBackend(limit=30), []
    settings = JudgeSettings(mode="direct", batch_size=2, think_close="</t>")
    prompts = [Prompt("a" * n, truncated=n == 3) for n in (1, 2, 3, 4, 5, 40)]
    judged = backend.judge(prompts, settings, on_batch=lambda n, k: progress.append((n, k)))
    tail = len(settings.close_empty)
    assert [j.score for j in judged] == [(n + tail) / 100 for n in (1, 2, 3, 4, 5)] + [0.29]
    assert [j.truncated for j in judged] == [False, False, True, False, False, True]
    assert backend.calls == [4, 2] and progress == [(4, 0), (2, 0)]
    assert backend.judge([], settings) == []


def test_a_backend_without_a_chunk_size_judges_all_at_once() -> None:
    backend: Any = LengthBackend()
    backend.direct_batches = None
    backend.judge([Prompt("x")] * 5, JudgeSettings(mode="direct", batch_size=1))
    assert backend.calls == [5]
