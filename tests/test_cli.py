"""The command line end to end: instant help, exit codes, one-line errors, nothing half-written."""

from __future__ import annotations

import json
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
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "rank1.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "rerank" in done.stdout
    assert time.perf_counter() - start < 3.0  # well under a second here; slack for loaded CI machines


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


BAD_CASES = [
    # (what, files to write {name: content}, arguments, expected text in the error)
    ("run with 5 columns", {"run.trec": "q1 Q0 bee-1 1 2.0\n"}, ["evaluate", "{run.trec}", QRELS], "run.trec:1"),
    ("non-numeric score", {"run.trec": "q1 Q0 bee-1 1 high x\n"}, ["evaluate", "{run.trec}", QRELS], "run.trec:1"),
    ("duplicate docid", {"run.trec": "q1 Q0 a 1 2 x\nq1 Q0 a 2 1 x\n"}, ["evaluate", "{run.trec}", QRELS],
     "run.trec:2"),
    ("bad qrels", {"run.trec": "q1 Q0 a 1 2 x\n", "q.txt": "q1 0 a high\n"}, ["evaluate", "{run.trec}", "{q.txt}"],
     "q.txt:1"),
    ("unknown measure", {"run.trec": "q1 Q0 a 1 2 x\n"}, ["evaluate", "{run.trec}", QRELS, "-m", "nDCG@ten"],
     "nDCG@ten"),
    ("missing run file", {}, ["evaluate", "{nothing.trec}", QRELS], "nothing.trec"),
    ("bad topics", {"t.tsv": "q1\tone\ttwo\n"}, ["retrieve", "--corpus", CORPUS, "--topics", "{t.tsv}", "--out",
                                                "{out.trec}"], "t.tsv:1"),
    ("bad corpus", {"c.jsonl": '{"_id": "a", "text": "x"}\n{oops\n'},
     ["retrieve", "--corpus", "{c.jsonl}", "--topics", TOPICS, "--out", "{out.trec}"], "c.jsonl:2"),
    ("rerank: docid missing from corpus", {"run.trec": "q1 Q0 nope 1 2 x\n"},
     ["rerank", "--run", "{run.trec}", "--corpus", CORPUS, "--topics", TOPICS, "--out", "{out.trec}"], "nope"),
    ("rerank: query missing from topics", {"run.trec": "q99 Q0 bee-1 1 2 x\n"},
     ["rerank", "--run", "{run.trec}", "--corpus", CORPUS, "--topics", TOPICS, "--out", "{out.trec}"], "q99"),
    ("rerank: unknown model", {"run.trec": "q1 Q0 bee-1 1 2 x\n"},
     ["rerank", "--run", "{run.trec}", "--corpus", CORPUS, "--topics", TOPICS, "--out", "{out.trec}",
      "--model", "no-such-model"], "no-such-model"),
    ("rerank: bad mode", {"run.trec": "q1 Q0 bee-1 1 2 x\n"},
     ["rerank", "--run", "{run.trec}", "--corpus", CORPUS, "--topics", TOPICS, "--out", "{out.trec}",
      "--mode", "psychic"], "psychic"),
    ("rerank: no inputs", {}, ["rerank", "--out", "{out.trec}"], "--run"),
]


@pytest.mark.parametrize("what,files,args,expected", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path: Path, what, files, args, expected) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    argv = [str(tmp_path / a[1:-1]) if a.startswith("{") else a for a in args]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.trec").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)  # no temp files left behind


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
    assert "18 pairs" in result.stdout and "0 passages truncated" in result.stdout
    run = read_run(out)
    assert {q: set(d) for q, d in run.items()} == {q: set(d) for q, d in read_run(first).items()}
    records = [json.loads(line) for line in traces.read_text().splitlines()]
    assert len(records) == 18 and all(0.0 <= r["score"] <= 1.0 for r in records)
    assert {r["mode"] for r in records} == {"direct"}
