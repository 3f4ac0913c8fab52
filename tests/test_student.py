"""The labels-student recipe end to end at tiny scale: prepare -> train (killed, resumed) -> export -> load ->
rerank, plus the data preparation rules, the loss, and the shipped student's registry entry."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill.msmarco import DEV_FILE, POSITIVES_FILE, WINDOWS_FILE, PrepareConfig, prepare, read_groups, write_groups

TOPICS = ["tides moon gravity", "coffee caffeine sleep", "volcano lava eruption", "python snake venom",
          "solar panel energy", "bread yeast rising", "whale song ocean", "glacier ice melting"]


def _tiny_msmarco(root: Path) -> Path:
    """Three files in the shapes of shared/data/msmarco_train, 8 dev queries, 4 windows queries, 6 positives."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / DEV_FILE, "w") as f:
        for q, topic in enumerate(TOPICS):
            words = topic.split()
            for rank in range(1, 7):
                text = (f"All about {topic}: {' '.join(words * 2)} explained." if rank == 3 else
                        f"Passage {rank} mentions {words[rank % 3]} among other things like {TOPICS[(q + rank) % 8]}.")
                f.write(json.dumps({"qid": f"d{q}", "query": f"what about {topic}", "docid": f"d{q}-{rank}",
                                    "text": text, "bm25_rank": rank, "label": int(rank == 3)}) + "\n")
    with open(root / WINDOWS_FILE, "w") as f:
        for q, topic in enumerate(TOPICS[:4]):
            for w in range(2):
                passages = [f"Window {w} passage {i} on {topic if i == 1 else TOPICS[(q + i + 1) % 8]}."
                            for i in range(5)]
                f.write(json.dumps({"query": f"tell me of {topic}", "passages": passages, "ranking": "[2] > [1]",
                                    "labels": [int(w == 0 and i == 1) for i in range(5)]}) + "\n")
    with open(root / POSITIVES_FILE, "w") as f:
        for q, topic in enumerate(TOPICS[2:]):
            f.write(json.dumps({"qid": f"p{q}", "query": f"explain {topic}", "docid": f"pos{q}",
                                "text": f"{topic} is explained here in detail.", "label": 1, "answers": []}) + "\n")
    return root


def test_prepare_holds_out_dev_queries_and_draws_groups(tmp_path: Path) -> None:
    root = _tiny_msmarco(tmp_path / "data")
    cfg = PrepareConfig(negatives=2, dev_queries=3, seed=1)
    p = prepare(root, cfg, progress=False)
    assert len(p.dev_qids) == 3 and {r.qid for r in p.dev_rows} == set(p.dev_qids)
    trained = {g.qid for g in p.groups}
    assert not trained & set(p.dev_qids)
    held_texts = {r.query for r in p.dev_rows}
    assert not {g.query for g in p.groups} & held_texts
    assert p.counts == {"dev-bm25": 5, "windows": 4, "positives-mined": 6}
    assert [g.source for g in p.groups[:3]] == ["dev-bm25", "windows", "positives-mined"]  # interleaved
    for g in p.groups:
        assert g.labels == (1, 0, 0) and len(set(g.docids)) == 3 and g.docids[0] not in g.docids[1:]
    dev_group = next(g for g in p.groups if g.source == "dev-bm25")
    assert dev_group.docids[0].endswith("-3")  # the labelled passage is the positive
    assert prepare(root, cfg, progress=False).groups == p.groups  # seeded
    write_groups(tmp_path / "g.jsonl", p.groups)
    assert read_groups(tmp_path / "g.jsonl") == p.groups


def test_prepare_names_the_bad_line(tmp_path: Path) -> None:
    from rank1.io import InputError

    root = _tiny_msmarco(tmp_path / "data")
    with open(root / DEV_FILE, "a") as f:
        f.write('{"qid": "x", "query": "q"}\n')
    with pytest.raises(InputError, match=rf"{DEV_FILE}:49: row lacks docid"):
        prepare(root, PrepareConfig(dev_queries=1), progress=False)


def test_direct_loss_is_listwise_plus_pointwise() -> None:
    import torch
    import torch.nn.functional as F

    from distill.direct_train import direct_loss

    diff = torch.tensor([2.0, -1.0, 0.5, 1.0, 0.0])
    labels = torch.tensor([1.0, 0, 0, 1, 0])
    got = direct_loss(diff, labels, torch.tensor([3, 2]), pointwise_weight=0.5)
    listwise = (-torch.log_softmax(diff[:3], 0)[0] - torch.log_softmax(diff[3:], 0)[0]) / 2
    want = listwise + 0.5 * F.binary_cross_entropy_with_logits(diff, labels)
    assert math.isclose(float(got), float(want), rel_tol=1e-6)


def test_train_dtype_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from distill import direct_train

    monkeypatch.setenv("RANK1_CPU_DTYPE", "bfloat16")  # what rank1.hardware decides from the CPU flags
    assert direct_train.train_dtype() == "bfloat16"
    monkeypatch.setenv("RANK1_CPU_DTYPE", "float32")
    assert direct_train.train_dtype() == "float32" and direct_train.train_dtype(cuda=True) == "bfloat16"
    assert direct_train.train_dtype("float32", cuda=True) == "float32"


def _rationale_windows(root: Path) -> None:
    """Replace the tiny windows file with GPT-3.5-style answers: a ranking and one rationale line per passage."""
    with open(root / WINDOWS_FILE, "w") as f:
        for q, topic in enumerate(TOPICS[:4]):
            passages = [f"Passage {i} on {topic if i < 2 else TOPICS[(q + i + 1) % 8]} in some detail." for i in range(5)]
            lines = "\n".join(
                [f"- Passage [2] directly explains {topic}, making it the most relevant to the query.",
                 f"- [1]: This passage also covers {topic}, but less directly than passage [2].",
                 "- Passage [3] mentions a related idea, which is somewhat relevant to the query.",
                 f"- Passage [4] is about {TOPICS[(q + 5) % 8]} and does not address {topic} at all.",
                 f"- Passage [5] discusses {TOPICS[(q + 6) % 8]}, hence ranked lower than [4], and is off topic."])
            labels = [0, 1, 0, 0, 0] if q != 3 else [0, 0, 0, 1, 0]  # q3: the positive ranked 4th (inconsistent)
            f.write(json.dumps({"query": f"tell me of {topic}", "passages": passages,
                                "ranking": f"[2] > [1] > [3] > [4] > [5]\n\nReasoning:\n{lines}",
                                "labels": labels}) + "\n")


def test_rationale_traces_are_pointwise_consistent_and_held_out(tmp_path: Path) -> None:
    from distill.rationales import RationaleConfig, rationale_traces

    root = _tiny_msmarco(tmp_path / "data")
    _rationale_windows(root)
    made = rationale_traces(root, RationaleConfig(negatives=2, dev_queries=2, seed=0))
    by_q: dict[str, list] = {}
    for t in made.traces:
        by_q.setdefault(t.qid, []).append(t)
    assert len(by_q) == 3 and made.counts["inconsistent"] >= 1  # q3's positive was ranked 4th: dropped
    for rows in by_q.values():
        assert [t.label for t in rows] == [1, 0, 0] and all(t.answer == bool(t.label) for t in rows)
        assert rows[0].docid.endswith("-1") and {t.docid[-2:] for t in rows[1:]} == {"-3", "-4"}
        assert rows[0].reasoning.startswith("The passage directly explains")
    for t in made.traces:
        assert "[" not in t.reasoning and "ranked" not in t.reasoning and t.teacher.startswith("gpt-3.5")
    assert made.traces == rationale_traces(root, RationaleConfig(negatives=2, dev_queries=2, seed=0)).traces


@pytest.mark.slow
def test_labels_student_recipe_prepare_train_killed_resumed_export_rerank(tmp_path: Path, smollm2_ref) -> None:
    """The whole path through the CLI with the tiny model: a training run killed after its second checkpoint
    resumes from it and ends where an uninterrupted run ends; the exported model reranks the sample."""
    from safetensors.torch import load_file

    root = _tiny_msmarco(tmp_path / "data")
    env = {**os.environ, "RANK1_CACHE_DIR": str(Path(smollm2_ref.path).parent), "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "rank1.cli", "distill"]
    groups = tmp_path / "groups.jsonl"
    done = subprocess.run([*cli, "prepare", "--data", str(root), "--out", str(groups), "--dev-queries", "2",
                           "--negatives", "2", "--dev-out", str(tmp_path / "dev.jsonl")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["groups"] == len(read_groups(groups)) > 8

    def train_argv(out: Path) -> list[str]:
        return [*cli, "train-labels", str(groups), "--out", str(out), "--model", "smollm2-135m", "--max-steps", "6",
                "--groups-per-step", "2", "--layers", "2", "--lora-rank", "4", "--save-steps", "1"]

    whole = subprocess.run(train_argv(tmp_path / "whole"), capture_output=True, text=True, env=env, timeout=600)
    assert whole.returncode == 0, whole.stderr
    assert "6 steps" in whole.stdout and "resumed" not in whole.stdout

    killed = tmp_path / "killed"
    proc = subprocess.Popen(train_argv(killed), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if (killed / "checkpoints" / "checkpoint-3" / "trainer_state.json").exists():
                time.sleep(0.2)
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "training ended before it was killed"
    assert not (killed / "adapter_model.safetensors").exists()
    again = subprocess.run(train_argv(killed), capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "resumed from" in again.stdout and "6 steps" in again.stdout
    assert "checkpoint-3" in again.stdout or "checkpoint-4" in again.stdout
    # Same initialisation, data order and optimiser state: the resumed run follows the uninterrupted one
    # (checked within a tolerance: float kernels may differ in the last bits between processes).
    log, ref = (json.loads((d / "train_log.json").read_text()) for d in (killed, tmp_path / "whole"))
    assert [s for s, _ in log["losses"]] == [1, 2, 3, 4, 5, 6] and log["kind"] == "labels-student"
    assert all(math.isclose(x, y, rel_tol=1e-2) for (_, x), (_, y) in zip(log["losses"], ref["losses"]))
    # The replayed data order is the one the real run trained on; `unseen` writes the rest for a next phase.
    from distill.direct_train import DirectTrainConfig, drawn_groups

    assert ref["groups_drawn"] == drawn_groups(len(read_groups(groups)), DirectTrainConfig(max_steps=6))
    assert len(ref["groups_drawn"]) == 12 and ref["groups_file"] == str(groups) and ref["skip_groups"] == 0
    rest = tmp_path / "rest.jsonl"
    done = subprocess.run([*cli, "unseen", str(groups), "--steps", "6", "--out", str(rest)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    everything, left = read_groups(groups), read_groups(rest)
    assert left == [g for i, g in enumerate(everything) if i not in set(ref["groups_drawn"])]
    assert json.loads(done.stdout) == {"groups": len(everything), "skipped": 0, "drawn": 12, "unseen": len(left)}
    a, b = (load_file(str(d / "adapter_model.safetensors")) for d in (tmp_path / "whole", killed))
    assert a.keys() == b.keys()
    for k in a:
        assert float((a[k] - b[k]).norm()) <= 1e-3 * float(a[k].norm()) + 1e-6, k

    model_dir = tmp_path / "student-model"
    done = subprocess.run([*cli, "export", str(killed), "--out", str(model_dir)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "answer only" in (model_dir / "README.md").read_text()
    from rank1.pipeline import SAMPLE_DIR

    out, bm25 = tmp_path / "run.trec", tmp_path / "bm25.trec"
    done = subprocess.run([sys.executable, "-m", "rank1.cli", "retrieve", "--corpus", str(SAMPLE_DIR / "corpus.jsonl"),
                           "--topics", str(SAMPLE_DIR / "topics.tsv"), "--out", str(bm25), "-k", "3"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "rank1.cli", "rerank", "--run", str(bm25),
                           "--corpus", str(SAMPLE_DIR / "corpus.jsonl"), "--topics", str(SAMPLE_DIR / "topics.tsv"),
                           "--out", str(out), "--model", str(model_dir), "--mode", "direct", "--depth", "3",
                           "--no-cache", "--no-progress"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert len(out.read_text().splitlines()) >= 6

    # Shipped like the default student: bf16 adapter in a students folder, a registry entry, merged on first use.
    from distill.export import package_adapter
    from rank1 import students
    from rank1.models import ModelError, resolve_model
    from rank1.reranker import Reranker

    shelf = tmp_path / "students"
    info = package_adapter(killed, shelf / "tiny-student", card="# tiny student\n")
    assert info["size"] < (killed / "adapter_model.safetensors").stat().st_size  # bf16: smaller
    entry = students.Student("tiny-student", base="smollm2-135m", size=info["size"], sha256=info["sha256"])
    cache = Path(smollm2_ref.path).parent
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(students, "STUDENTS_DIR", shelf)
        mp.setitem(students.STUDENTS, entry.name, entry)
        ref = resolve_model("tiny-student", cache_dir=cache)
        assert ref.source == "student" and (Path(ref.path) / "README.md").read_text() == "# tiny student\n"
        assert resolve_model("tiny-student", cache_dir=cache).fingerprint == ref.fingerprint  # cached, same
        pairs = [("why do tides happen", "The Moon's gravity pulls the oceans."), ("why do tides happen", "Coffee.")]
        merged = Reranker(model="tiny-student", cache_dir=str(cache), mode="direct",
                          backend_options={"dtype": "float32"}).score(pairs)
        _assert_merged_equals_adapter(smollm2_ref, shelf / "tiny-student", pairs, [j.score for j in merged])
        mp.setitem(students.STUDENTS, entry.name, students.Student("tiny-student", "smollm2-135m", info["size"], "0" * 64))
        with pytest.raises(ModelError, match="adapter checksum mismatch"):
            resolve_model("tiny-student", cache_dir=cache)
    finally:
        mp.undo()


def _assert_merged_equals_adapter(base_ref, adapter_dir: Path, pairs: list[tuple[str, str]], scores: list[float]) -> None:
    """The merged copy scores as the base with the adapter applied by peft (float32)."""
    import torch
    from peft import PeftModel

    from rank1.backends.base import JudgeSettings, PromptBuilder
    from rank1.backends.transformers import load_model
    from rank1.prompts import get_template
    from rank1.scoring import answer_token_ids, p_true

    model, tokenizer = load_model(base_ref, dtype="float32")
    model = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
    builder, settings = PromptBuilder(get_template("rank1"), tokenizer), JudgeSettings(mode="direct")
    t, f = answer_token_ids(tokenizer, settings.answers)
    for (query, passage), score in zip(pairs, scores):
        ids = tokenizer(builder.build(query, passage).text + settings.close_empty, return_tensors="pt")
        with torch.inference_mode():
            logits = model(**ids).logits[0, -1]
        assert abs(p_true(float(logits[t]), float(logits[f])) - score) < 1e-4


@pytest.mark.slow
def test_reasoning_student_recipe_rationales_train_resume_init_export_rerank(tmp_path: Path, smollm2_ref) -> None:
    """GPT-3.5 rationales -> traces -> SFT with checkpoints (a run that lost its last checkpoint resumes from
    the one before and ends as the whole run) -> a second phase started from that adapter -> exported model
    reranks in reasoning mode."""
    from safetensors.torch import load_file

    from rank1 import Reranker

    root = _tiny_msmarco(tmp_path / "data")
    _rationale_windows(root)
    env = {**os.environ, "RANK1_CACHE_DIR": str(Path(smollm2_ref.path).parent), "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "rank1.cli", "distill"]
    traces = tmp_path / "traces.jsonl"
    done = subprocess.run([*cli, "rationales", "--data", str(root), "--out", str(traces), "--dev-queries", "2",
                           "--negatives", "2"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["traces"] == 9

    def train(out: Path, *extra: str) -> subprocess.CompletedProcess:
        argv = [*cli, "train", str(traces), "--out", str(out), "--model", "smollm2-135m", "--preset", "cpu-demo",
                "--lora-rank", "4", "--lora-alpha", "8", "--layers", "2", "--max-steps", "3", "--lr", "1e-3",
                "--cutoff", "256", "--save-steps", "1", *extra]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)

    first = tmp_path / "first"
    done = train(first)
    assert done.returncode == 0, done.stderr
    whole = json.loads((first / "train_log.json").read_text())
    assert [s for s, _ in whole["losses"]] == [1, 2, 3] and whole["resumed_from"] is None
    import shutil

    shutil.rmtree(first / "checkpoints" / "checkpoint-3")  # as if killed before the last checkpoint
    (first / "adapter_model.safetensors").unlink()
    done = train(first)
    assert done.returncode == 0, done.stderr
    again = json.loads((first / "train_log.json").read_text())
    assert again["resumed_from"].endswith("checkpoint-2") and [s for s, _ in again["losses"]] == [1, 2, 3]
    assert math.isclose(again["losses"][-1][1], whole["losses"][-1][1], rel_tol=1e-2)

    second = tmp_path / "second"
    done = train(second, "--init-adapter", str(first), "--lr", "1e-9")  # starts where the first ended
    assert done.returncode == 0, done.stderr
    a, b = (load_file(str(d / "adapter_model.safetensors")) for d in (first, second))
    assert a.keys() == b.keys() and all(float((a[k] - b[k]).abs().max()) < 1e-4 for k in a)
    bad = train(tmp_path / "bad", "--init-adapter", str(first), "--layers", "3")
    assert bad.returncode == 2 and "does not fit these LoRA settings" in bad.stderr

    model_dir = tmp_path / "reasoning-student"
    done = subprocess.run([*cli, "export", str(second), "--out", str(model_dir)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    from transformers import AutoTokenizer

    from distill.records import read_traces, to_dataset

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    for row in to_dataset(read_traces(traces)):  # the prompt's tokens are a prefix of the training row's
        prompt = tokenizer(row["prompt"])["input_ids"]
        assert tokenizer(row["prompt"] + row["completion"])["input_ids"][: len(prompt)] == prompt
    rows = [json.loads(line) for line in traces.read_text().splitlines()]
    pairs = [(r["query"], r["passage"]) for r in rows if r["qid"] == rows[0]["qid"]]
    judged = Reranker(model=str(model_dir), mode="reasoning", budget=8).score(pairs)
    assert len(judged) == 3 and all(0 <= j.score <= 1 and 0 < j.generated_tokens <= 8 for j in judged)
