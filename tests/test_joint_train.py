"""Joint training of the labels student (:mod:`distill.joint`): query groups in direct mode plus reasoning
traces, so one adapter serves both modes. The row order, the completion-only loss on the tiny real model, an
overfit check, and whole runs: joint steps checkpoint and resume onto the same rows; runs without traces
are the plain labels student's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from distill.joint import TraceCollator, drawn_traces, trace_loss, trace_order
from distill.msmarco import Group
from distill.records import Trace, prompt_text, training_completion

TOPICS = ["tides moon gravity", "coffee caffeine sleep", "volcano lava eruption", "whale song ocean"]


def _trace(i: int, answer: bool = True, passage_words: int = 12) -> Trace:
    topic = TOPICS[i % len(TOPICS)]
    passage = " ".join([f"{topic} passage {i}"] + ["detail"] * passage_words)
    reasoning = f"The passage {'explains' if answer else 'does not address'} {topic}, so it is {'' if answer else 'not '}relevant."
    return Trace(f"q{i}", f"d{i}", f"what about {topic}", "", passage, int(answer), "test", reasoning, answer)


def _groups(n: int) -> list[Group]:
    return [Group(f"q{i}", f"what about {t}", (f"p{i}", f"n{i}"), (f"All about {t}.", f"Nothing on {t}, only bread."),
                  (1, 0), "test") for i, t in enumerate(TOPICS * (n // len(TOPICS) + 1))][:n]


def test_trace_order_is_seeded_takes_all_rows_in_turn_and_cycles() -> None:
    first = drawn_traces(5, steps=5, per_step=2, seed=0)  # 10 rows from 5: two full cycles
    assert sorted(first[:5]) == sorted(first[5:]) == list(range(5)) and first[:5] != first[5:]
    assert first == drawn_traces(5, 5, 2, seed=0) != drawn_traces(5, 5, 2, seed=1)
    assert [trace_order(5, s, 2, 0) for s in range(5)] == [first[2 * s: 2 * s + 2] for s in range(5)]


@pytest.fixture(scope="module")
def tiny(smollm2_ref):
    """smollm2-135m (float32) and its tokenizer."""
    from rank1.backends.transformers import load_model

    return load_model(smollm2_ref, dtype="float32", device="cpu")


def test_trace_rows_are_prompt_then_completion_with_loss_on_the_completion_only(tiny) -> None:
    import torch
    import torch.nn.functional as F

    model, tokenizer = tiny
    short, long = _trace(0), _trace(1, answer=False, passage_words=400)
    collator = TraceCollator(tokenizer, "rank1", max_passage_tokens=160, max_trace_tokens=96)
    batch = collator([short, long])
    for row, trace, labels in zip(batch["input_ids"].tolist(), (short, long), batch["labels"].tolist()):
        done = [x for x in labels if x != -100]
        assert tokenizer.decode(done) == training_completion(trace.reasoning, trace.answer)  # reasoning kept whole
        assert row[-len(done):] == done
    ids, n = collator.encode(short)  # uncut: the SFT prompt's tokens, then the completion's
    assert tokenizer.decode(ids[:-n]) == prompt_text(short) and len(ids) < 96
    ids, n = collator.encode(long)  # cut: the passage shrinks, the row fits the budget
    assert 90 <= len(ids) <= 100 and prompt_text(long)[:40] == tokenizer.decode(ids[:-n])[:40]
    assert tokenizer.decode(ids[:-n]).endswith("<think>")

    with torch.no_grad():
        got = trace_loss(model, batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"]).logits
    span = batch["labels"].shape[1]  # the reference: every position's logits, the completion's labels only
    full = torch.full(batch["input_ids"].shape, -100)
    full[:, -span:] = batch["labels"]
    want = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), full[:, 1:].reshape(-1), ignore_index=-100)
    assert abs(float(got) - float(want)) < 1e-4
    assert int((full != -100).sum()) == sum(collator.encode(t)[1] for t in (short, long))


def test_trace_loss_falls_when_two_rows_are_trained_on(tiny) -> None:
    import copy

    import torch

    from distill.lora import lora_model

    base, tokenizer = tiny
    from distill.direct_train import DirectTrainConfig

    model = lora_model(copy.deepcopy(base), 4, 8, 0.0, DirectTrainConfig.target_modules, layers=2, seed=0)
    batch = TraceCollator(tokenizer, "rank1", 160, 384)([_trace(2), _trace(3, answer=False)])
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(6):
        loss = trace_loss(model, batch)
        losses.append(float(loss.detach()))
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.7 * losses[0], losses  # 3.0 -> 1.7


@pytest.mark.slow
def test_joint_run_checkpoints_resumes_onto_the_same_rows_and_weight_zero_is_the_plain_run(tmp_path: Path,
                                                                                            smollm2_ref) -> None:
    from distill.direct_train import DirectTrainConfig, train_direct

    groups, traces = _groups(8), [_trace(i, answer=i % 2 == 0) for i in range(3)]
    cfg = DirectTrainConfig(max_steps=3, groups_per_step=2, layers=2, lora_rank=4, lora_alpha=8, dtype="float32",
                            save_steps=1, learning_rate=1e-3, traces_per_step=2, max_trace_tokens=128)
    lines: list[str] = []
    whole = train_direct(groups, smollm2_ref.path, tmp_path / "whole", cfg, echo=lines.append, traces=traces)
    log = json.loads((tmp_path / "whole" / "train_log.json").read_text())
    assert whole.steps == 3 and (tmp_path / "whole" / "checkpoints" / "checkpoint-3").is_dir()
    assert log["trace_rows"] == 3 and log["traces_drawn"] == drawn_traces(3, 3, 2, seed=0)  # 6 rows: 2 cycles
    assert [s for s, *_ in log["loss_parts"]] == [1, 2, 3] and "(direct " in lines[0] and ", trace " in lines[0]
    for (_, total), (_, direct, trace) in zip(log["losses"], log["loss_parts"]):
        assert abs(total - (direct + 0.5 * trace)) < 1e-4

    # Killed before its last checkpoint: the rerun resumes at step 3 and trains on step 3's rows.
    shutil.rmtree(tmp_path / "whole" / "checkpoints" / "checkpoint-3")
    again = train_direct(groups, smollm2_ref.path, tmp_path / "whole", cfg, echo=None, traces=traces)
    assert again.resumed_from and again.resumed_from.endswith("checkpoint-2")
    assert again.traces_drawn == whole.traces_drawn[4:] and again.groups_drawn == whole.groups_drawn[4:]
    assert [x for part in again.loss_parts for x in part] == pytest.approx([x for part in whole.loss_parts
                                                                           for x in part], rel=1e-3)

    # Trace weight 0: the trace rows run but change nothing; the losses are the plain run's, to the bit.
    plain = train_direct(groups, smollm2_ref.path, tmp_path / "plain", cfg, echo=None)
    zero = train_direct(groups, smollm2_ref.path, tmp_path / "zero", DirectTrainConfig(**{**cfg.__dict__,
                                                                                          "trace_weight": 0.0}),
                        echo=None, traces=traces)
    assert plain.losses == zero.losses == [(s, d) for s, d, _ in zero.loss_parts]
    assert plain.losses[0][1] == whole.loss_parts[0][1]  # step 1 sees the same weights and groups
    plain_log = json.loads((tmp_path / "plain" / "train_log.json").read_text())
    assert not {"trace_rows", "traces_drawn", "loss_parts"} & plain_log.keys()


def test_read_answered_keeps_traces_with_an_answer_and_refuses_files_without(tmp_path: Path) -> None:
    from dataclasses import replace

    from distill.joint import read_answered
    from distill.records import write_traces

    write_traces(tmp_path / "a.jsonl", [_trace(0), replace(_trace(1), answer=None)])
    write_traces(tmp_path / "b.jsonl", [_trace(2, answer=False)])
    write_traces(tmp_path / "none.jsonl", [replace(_trace(3), answer=None)])
    assert read_answered([tmp_path / "a.jsonl", tmp_path / "b.jsonl"]) == [_trace(0), _trace(2, answer=False)]
    assert read_answered([]) == []
    with pytest.raises(ValueError, match="no traces with an answer"):
        read_answered([tmp_path / "none.jsonl"])
