"""The command line end to end: instant help, evaluation, reranking (bad input: see test_bad_input.py)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rank1.cli import DEFAULT_MODEL, app
from rank1.io import read_run
from rank1.models import DEFAULT_MODEL as MODELS_DEFAULT
from rank1.pipeline import SAMPLE_DIR

runner = CliRunner()
CORPUS, TOPICS, QRELS = (str(SAMPLE_DIR / n) for n in ("corpus.jsonl", "topics.tsv", "qrels.txt"))


def test_help_is_instant_and_imports_no_torch() -> None:
    code = "import sys, rank1.cli; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", "rank1.cli", "--help"], capture_output=True, text=True)
    sub = subprocess.run([sys.executable, "-m", "rank1.cli", "distill", "--help"], capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0 and "rerank" in done.stdout
    assert sub.returncode == 0 and "generate" in sub.stdout and "export" in sub.stdout
    # CPU time, not wall time, so that a loaded machine does not fail it: ~0.5 s each here.
    assert (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime) < 3.0


def test_help_shows_the_extras_to_install() -> None:
    result = runner.invoke(app, ["rerank", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    for extra in ("ctranslate2", "openvino", "llamacpp"):
        assert f"pip install 'rank1[{extra}]'" in result.stdout


def test_version_and_default_model() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("rank1 ")
    assert DEFAULT_MODEL == MODELS_DEFAULT


def test_retrieve_then_evaluate(tmp_path: Path) -> None:
    out = tmp_path / "bm25.trec"
    result = runner.invoke(app, ["retrieve", "--corpus", CORPUS, "--topics", TOPICS, "--out", str(out), "-k", "5",
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    run = read_run(out)
    assert len(run) == 6 and all(len(docs) <= 5 for docs in run.values())
    result = runner.invoke(app, ["evaluate", str(out), QRELS, "-m", "nDCG@10", "-m", "P@1", "--json"])
    assert result.exit_code == 0, result.output
    values = json.loads(result.stdout)["measures"]
    assert set(values) == {"nDCG@10", "P@1"} and 0.0 < values["nDCG@10"] <= 1.0


def test_evaluate_per_query_table(tmp_path: Path) -> None:
    run = tmp_path / "run.trec"
    run.write_text("q1 Q0 bee-1 1 2.0 x\nq1 Q0 bee-2 2 1.0 x\n")
    result = runner.invoke(app, ["evaluate", str(run), QRELS, "--per-query"])
    assert result.exit_code == 0 and "q1" in result.stdout


@pytest.mark.slow
def test_rerank_command_on_the_sample(tmp_path: Path, reranker) -> None:
    first = tmp_path / "bm25.trec"
    assert runner.invoke(app, ["retrieve", "--corpus", CORPUS, "--topics", TOPICS, "--out", str(first), "-k", "4",
                               "--no-progress"]).exit_code == 0
    out, traces = tmp_path / "rank1.trec", tmp_path / "traces.jsonl"
    result = runner.invoke(app, ["rerank", "--run", str(first), "--corpus", CORPUS, "--topics", TOPICS,
                                 "--out", str(out), "--traces", str(traces), "--mode", "direct", "--depth", "3",
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "18 pairs (0 from the cache, 18 judged" in result.stdout and "0 passages truncated" in result.stdout
    run = read_run(out)
    assert {q: set(d) for q, d in run.items()} == {q: set(d) for q, d in read_run(first).items()}
    records = [json.loads(line) for line in traces.read_text().splitlines()]
    assert len(records) == 18 and all(0.0 <= r["score"] <= 1.0 for r in records)
    assert {r["mode"] for r in records} == {"direct"}
    again = tmp_path / "again.trec"
    result = runner.invoke(app, ["rerank", "--run", str(first), "--corpus", CORPUS, "--topics", TOPICS,
                                 "--out", str(again), "--mode", "direct", "--depth", "3", "--no-progress"])
    assert result.exit_code == 0 and "18 pairs (18 from the cache, 0 judged" in result.stdout, result.output
    assert again.read_bytes() == out.read_bytes()  # the default cache ($RANK1_SCORE_CACHE in the tests)


@pytest.mark.slow
def test_demo_writes_the_reranked_and_the_blended_run(tmp_path: Path, smollm2_ref) -> None:
    from rank1.pipeline import DEMO_FUSION_WEIGHT, demo
    from rank1.reranker import RerankerConfig

    config = RerankerConfig(model=smollm2_ref.name, cache_dir=str(Path(smollm2_ref.path).parent), mode="direct",
                            budget=8)
    res = demo(tmp_path, config, progress=False)
    why = res["explanation"]  # the top pick, judged again in reasoning mode by the model's explainer
    assert res["explainer"] == smollm2_ref.name  # not a shipped student: it explains itself
    assert why is not None and 0 < why.generated_tokens <= 8 and why.reasoning
    assert res["example"]["score"] == max(t["score"] for t in res["result"].traces())
    assert set(res) >= {"bm25", "rank1", "fused"} and all(0.0 <= res[k]["nDCG@10"] <= 1.0 for k in ("bm25", "rank1", "fused"))
    first, blended = read_run(res["paths"]["bm25"]), read_run(res["paths"]["fused"])
    p_true = {(t["qid"], t["docid"]): t["p_true"] for t in res["result"].traces()}
    for qid, docs in first.items():
        lo, hi = min(docs.values()), max(docs.values())
        w = res["fusion_weight"]
        assert w == DEMO_FUSION_WEIGHT  # smollm2 recommends no weight of its own
        expected = {d: (1 - w) * p_true[qid, d] + w * (s - lo) / (hi - lo)
                    for d, s in docs.items()}
        assert sorted(blended[qid], key=lambda d: -blended[qid][d]) == sorted(expected, key=lambda d: (-expected[d], d))
