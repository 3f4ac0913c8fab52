"""The engine side of :mod:`rank1.backends.vllm_round`: a vLLM logits processor (imports vLLM)."""

from __future__ import annotations

from typing import Any

from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from rank1.backends.base import JudgeSettings
from rank1.backends.vllm_round import EXTRA_ARGS_KEY, RequestState


class AnswerInRound(LogitsProcessor):
    """vLLM logits processor: appends the answer sequence when a request's reasoning ends (one
    :class:`~rank1.backends.vllm_round.RequestState` per request; see :mod:`rank1.backends.vllm_round`).

    Registered on the engine by :class:`~rank1.backends.vllm.VLLMBackend`; acts only on requests whose
    ``SamplingParams.extra_args`` carry :func:`~rank1.backends.vllm_round.request_args`.
    """

    def __init__(self, vllm_config: Any, device: Any, is_pin_memory: bool) -> None:
        from transformers import AutoTokenizer

        config = vllm_config.model_config
        self.tokenizer = AutoTokenizer.from_pretrained(config.tokenizer, trust_remote_code=config.trust_remote_code)
        self.states: dict[int, RequestState] = {}

    def is_argmax_invariant(self) -> bool:
        """It changes which token greedy decoding picks."""
        return False

    def _new_state(self, params: Any, prompt_ids: Any, out: list[int]) -> RequestState | None:
        args = (params.extra_args or {}).get(EXTRA_ARGS_KEY) if params is not None else None
        if args is None:
            return None
        settings = dict(args["settings"], answers=tuple(args["settings"]["answers"]))
        return RequestState(self.tokenizer, JudgeSettings(**settings), args["eos"], out)

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        """Track the batch's requests (added, removed, moved rows)."""
        process_dict_updates(self.states, batch_update, self._new_state)

    def apply(self, logits: Any) -> Any:
        """One step of every tracked request; the end-token check is one batched pass over the logits."""
        if not self.states:
            return logits
        eos = sorted({e for state in self.states.values() for e in state.eos})
        top = logits.amax(dim=-1).tolist()
        ends = logits[:, eos].amax(dim=-1).tolist()
        for row, state in self.states.items():
            state.step(logits[row], ends[row] >= top[row])
        return logits
