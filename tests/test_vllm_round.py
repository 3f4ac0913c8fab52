"""The answer sequence both backends read the answer after, and reading it in the vLLM reasoning round.

No engine here: :class:`~rank1.backends.vllm_round.RequestState` is driven by a small greedy loop over logits
rows, with the real default tokenizer; ``tests/test_vllm.py`` runs it inside the real engine.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from rank1.backends.base import JudgeSettings, answer_sequence
from rank1.backends.vllm_round import RequestState, answered_in_round, reasoning_end


@pytest.fixture(scope="module")
def tok(reranker) -> Any:
    return reranker.backend.tokenizer


def encode(tok: Any, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


def test_after_a_closed_block_the_answer_prefix_follows_the_model_tokens(tok) -> None:
    settings = JudgeSettings(answer_prefix="\nAnswer:")
    tokens = encode(tok, "\nThe passage is about cats.\n</think>")
    sequence, text, fallback = answer_sequence(tok, tokens, settings)
    assert sequence == tokens + encode(tok, "\nAnswer:")
    assert text == "The passage is about cats." and not fallback


def test_the_fallback_keeps_the_model_tokens_up_to_the_last_sentence_end(tok) -> None:
    settings = JudgeSettings()
    whole = encode(tok, "\nThe passage is about cats.")
    sequence, text, fallback = answer_sequence(tok, whole, settings)
    assert fallback and text == "The passage is about cats."
    assert sequence[: len(whole)] == whole and tok.decode(sequence[len(whole):]) == "\n</think>"
    unfinished = encode(tok, "\nThe passage is about cats. It also")
    sequence, text, _ = answer_sequence(tok, unfinished, settings)
    assert text == "The passage is about cats." and tok.decode(sequence) == "\nThe passage is about cats.\n</think>"
    junk = whole + encode(tok, "\n") + [tok.convert_tokens_to_ids("<|im_start|>")]
    assert answer_sequence(tok, junk, settings)[0] == answer_sequence(tok, whole, settings)[0]
    assert tok.decode(answer_sequence(tok, [], settings)[0]) == "\n</think>"


def test_a_tag_merged_into_a_longer_token_is_closed_again(tok) -> None:
    tokens = encode(tok, " true </think>\n")
    assert tok.decode(tokens[-1:]) != ">"  # ">\n" is one token here
    sequence, text, fallback = answer_sequence(tok, tokens, JudgeSettings())
    assert tok.decode(sequence) == " true\n</think>" and text == "true" and not fallback


# -- the engine-side state, driven by a greedy loop --------------------------------------------------------


def run(tok: Any, wanted: list[int], settings: JudgeSettings, out: list[int] | None = None,
        discard_first: bool = False) -> tuple[list[int], list[dict[int, Any]]]:
    """Greedy decoding, through a :class:`RequestState`, of a model that wants ``wanted`` and then the end
    token; the output and, per step, the logits the engine reports (sampled token, after the state's step).
    ``discard_first``: a first step whose token the engine throws away (a chunked prefill's row)."""
    import torch

    eos = tok.eos_token_id
    out = list(out or [])
    state = RequestState(tok, settings, [eos], out)
    if discard_first:
        garbage = torch.zeros(len(tok))
        garbage[eos] = 10.0
        state.step(garbage, greedy_end=True)
    steps: list[dict[int, Any]] = []
    for _ in range(settings.budget + 16):
        row = torch.zeros(len(tok))
        row[wanted[len(out)] if len(out) < len(wanted) else eos] = 10.0
        state.step(row, greedy_end=bool(row[eos] >= row.max()))
        token = int(row.argmax())
        steps.append({token: SimpleNamespace(logprob=float(row[token]))})
        out.append(token)
        if token == eos:
            break
    return out, steps


@pytest.mark.parametrize("text, prefix", [
    ("\nThe passage is about cats.", ""),  # the model stops after a full sentence: the tag is forced
    ("\nThe passage is about cats.\n</think>", "\nAnswer:"),  # the model closes: the prefix is forced
])
def test_the_answer_sequence_is_forced_when_reasoning_ends(tok, text: str, prefix: str) -> None:
    settings = JudgeSettings(budget=64, answer_prefix=prefix)
    wanted = encode(tok, text) + (encode(tok, " and more") if "</think>" in text else [])
    out, steps = run(tok, wanted, settings)
    n = reasoning_end(tok, out, steps, settings, [tok.eos_token_id])
    reasoning = wanted[:n]
    assert n == len(encode(tok, text)) and out[:n] == reasoning
    assert answered_in_round(out, answer_sequence(tok, reasoning, settings)[0], [tok.eos_token_id])


def test_an_unfinished_sentence_at_the_budget_ends_the_request_for_a_second_call(tok) -> None:
    settings = JudgeSettings(budget=8)
    wanted = encode(tok, "\nThe passage is about cats. It also mentions dogs and birds and fish")
    out, steps = run(tok, wanted, settings)
    n = reasoning_end(tok, out, steps, settings, [tok.eos_token_id])
    assert n == 8 and out == [*wanted[:8], tok.eos_token_id]
    assert not answered_in_round(out, answer_sequence(tok, out[:n], settings)[0], [tok.eos_token_id])


def test_a_discarded_step_or_a_resumed_request_decides_again(tok) -> None:
    settings = JudgeSettings(budget=64)
    eos = tok.eos_token_id
    wanted = encode(tok, "\nThe passage is about cats. It also")
    out, _ = run(tok, wanted, settings, discard_first=True)
    assert out[: len(wanted)] == wanted  # the discarded step planned nothing that stuck
    # Resumed after preemption inside the forced tail: a new state plans again from the output it finds.
    whole = encode(tok, "\nThe passage is about cats.")
    sequence = answer_sequence(tok, whole, settings)[0]
    partial = sequence[: len(whole) + 1]
    resumed, _ = run(tok, partial, settings, out=partial)
    assert resumed == [*sequence, eos]
