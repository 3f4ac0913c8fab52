"""The llama.cpp backend: the model as a requantized GGUF file, run by llama.cpp on the CPU.

llama.cpp (``pip install 'rank1[llamacpp]'``, which builds llama-cpp-python from source: a few minutes, so
``make install`` leaves it out) runs the GGUF format the embedded models come in. A student's adapter is
merged into its base, and the merged weights are written back into a copy of the base's GGUF in ``q8_0``
(int8 in blocks of 32, the default) or ``q4_0`` (4-bit in blocks of 32) by :mod:`rank1.backends.gguf_export`,
once per model and format, cached beside the model. llama.cpp quantizes the activations to match the weights'
blocks inside its matrix products and keeps the key/value cache in float16.

One sequence runs at a time (llama-cpp-python's high-level engine): consecutive prompts reuse the key/value
cache of their common prefix (a query's instruction and text are computed once for its candidates when they
come in order; a reasoning pair's answer step continues its own generation). Direct mode reads P(true) from the
logits after each prompt; reasoning mode decodes greedily until the reasoning block closes (or the budget is
spent, or the model ends), then reads the answer after :func:`~rank1.backends.base.answer_sequence`, exactly as
the other backends do.
"""

from __future__ import annotations

import importlib.util
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Sequence

from rank1.backends.base import BaseBackend, JudgeSettings, Prompt, ProgressCallback, answer_sequence
from rank1.backends.gguf_export import WEIGHT_FORMATS, exported
from rank1.backends.options import EngineOptions
from rank1.backends.vllm import fit_to_context
from rank1.hardware import usable_cores
from rank1.loading import ModelError, read_tokenizer
from rank1.models import ModelRef
from rank1.scoring import Judgement, p_true


@dataclass(frozen=True)
class LlamaCppOptions(EngineOptions):
    """The options of the llama.cpp backend.

    Attributes:
        dtype: ``"auto"`` or ``"float32"``: llama.cpp computes what is not quantized in float32.
        weight_format: ``"q8_0"`` (the default) or ``"q4_0"`` (the embedding matrix, also the output layer,
            stays ``q8_0``).
        n_ctx: Context in tokens (prompt, reasoning and answer); longer prompts lose passage tokens.
        threads: Threads per forward pass (0: one per core this process may use); only speed, so not part of
            score-store keys.
        extra_buffers: llama.cpp's extra weight buffers (weights repacked for the CPU's kernels, AMX tiles):
            ``"on"``, ``"off"`` or ``"auto"``: off where llama.cpp was built with its AMX kernels (its system info
            says ``AMX_INT8 = 1``, as a native build on a CPU with AMX does), which crashed (SIGSEGV in
            ``ggml_backend_amx_mul_mat``) with llama-cpp-python 0.3.36, on the base's own Q4 file as on a q8_0
            export. Only speed, so not part of score-store keys.
    """

    weight_format: str = "q8_0"
    n_ctx: int = 4096
    extra_buffers: str = "auto"

    NEUTRAL: ClassVar[tuple[str, ...]] = ("threads", "extra_buffers")
    ENGINE: ClassVar[str] = "llamacpp"
    BUDGET_FITS_CONTEXT: ClassVar[bool] = True  # n_ctx holds the prompt and the budget

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weight_format not in WEIGHT_FORMATS:
            raise ValueError(f"weight_format must be {' or '.join(WEIGHT_FORMATS)}, not {self.weight_format!r}")
        if self.n_ctx < 64:
            raise ValueError(f"n_ctx must be at least 64, not {self.n_ctx}")
        if self.extra_buffers not in ("auto", "on", "off"):
            raise ValueError(f"extra_buffers must be auto, on or off, not {self.extra_buffers!r}")

    def use_extra_buffers(self) -> bool:
        """:attr:`extra_buffers` with ``"auto"`` decided by the llama.cpp build (off where it runs AMX kernels)."""
        if self.extra_buffers != "auto":
            return self.extra_buffers == "on"
        import llama_cpp

        return "AMX_INT8 = 1" not in llama_cpp.llama_print_system_info().decode(errors="replace")

    def thread_count(self) -> int:
        """The threads to run: :attr:`threads`, or the cores this process may use."""
        return self.threads or len(usable_cores())


@contextmanager
def _model_defaults(extra_buffers: bool) -> Iterator[None]:
    """While loading: llama.cpp's default model parameters with ``use_extra_bufts`` set (llama-cpp-python's
    ``Llama`` takes no argument for it), restored afterwards."""
    import llama_cpp.llama_cpp as lib

    default = lib.llama_model_default_params

    def params() -> Any:
        p = default()
        p.use_extra_bufts = extra_buffers
        return p

    lib.llama_model_default_params = params
    try:
        yield
    finally:
        lib.llama_model_default_params = default


class LlamaCppBackend(BaseBackend):
    """Judges prompts with llama.cpp over a GGUF copy of the model.

    Args:
        model: The resolved model: an embedded model, a student or a ``.gguf`` file (the tokenizer metadata is
            taken from the GGUF the model came from).
        **options: The fields of :class:`LlamaCppOptions`.

    Raises:
        ValueError: An option the backend does not take, or a bad value.
        rank1.models.ModelError: llama-cpp-python is missing, or the model cannot be exported or loaded.
    """

    name = "llamacpp"
    options_class = LlamaCppOptions
    direct_batches = 4

    def __init__(self, model: ModelRef, **options: Any) -> None:
        self.options = o = LlamaCppOptions.parse(options)
        if importlib.util.find_spec("llama_cpp") is None:
            raise ModelError("the llamacpp backend needs llama-cpp-python: pip install 'rank1[llamacpp]' (it "
                             "compiles llama.cpp, a few minutes)")
        from llama_cpp import Llama

        path = exported(model, o.weight_format)
        threads = o.thread_count()
        try:
            with _model_defaults(o.use_extra_buffers()):
                self.llm = Llama(str(path), n_ctx=o.n_ctx, n_batch=512, n_threads=threads, n_threads_batch=threads,
                                 logits_all=False, verbose=False)
            tokenizer = read_tokenizer(model.path, o.trust_remote_code)
        except (OSError, ValueError, RuntimeError) as err:
            raise ModelError(f"cannot load {model.name!r} with llama.cpp from {path}: {err}") from err
        super().__init__(tokenizer, model.fingerprint)

    def close(self) -> None:
        """Free the engine's weights and context."""
        self.llm.close()

    def fit(self, ids: list[int], room: int) -> tuple[list[int], bool]:
        """``ids`` cut (:func:`~rank1.backends.vllm.fit_to_context`) to leave ``room`` tokens of ``n_ctx`` free."""
        return fit_to_context(ids, self.options.n_ctx - room)

    def _logits_after(self, ids: Sequence[int]) -> Any:
        """The logits after ``ids``, computing only what the cache does not hold already (its common prefix
        with the last sequence run; at least the last token is run again)."""
        import numpy as np

        llm = self.llm
        held = llm.input_ids[: llm.n_tokens]
        n = min(len(held), len(ids) - 1)
        if n > 0:
            diff = np.flatnonzero(held[:n] != np.asarray(ids[:n]))
            n = int(diff[0]) if diff.size else n
        llm.n_tokens = max(n, 0)  # eval() drops the cache from here on
        self.tokens.real += len(ids)
        self.tokens.reused += llm.n_tokens
        llm.eval(list(ids[llm.n_tokens :]))
        return self._logits()

    def _logits(self) -> Any:
        """The logits after the last token evaluated (a numpy view of llama.cpp's buffer)."""
        import numpy as np

        return np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),))

    def answer_scores(self, ids: Sequence[list[int]], settings: JudgeSettings) -> list[float]:
        """P(true) from the logits after each token list, one list at a time."""
        true, false = self.answer_tokens(settings)
        scores = []
        for row in ids:
            logits = self._logits_after(row)
            scores.append(p_true(float(logits[true]), float(logits[false])))
        return scores

    def _reason(
        self, prompts: Sequence[Prompt], settings: JudgeSettings, on_batch: ProgressCallback | None
    ) -> list[Judgement]:
        """Reasoning mode, one prompt at a time: greedy decoding until the block closes, then the answer step
        (which continues on the generation's cache)."""
        room = settings.budget + 16
        ids, _ = self.encode([p.text for p in prompts], settings, room=room)
        results: list[Judgement] = []
        for start in range(0, len(ids), settings.batch_size):
            tokens = 0
            for i in range(start, min(start + settings.batch_size, len(ids))):
                gen = self._generate(ids[i], settings)
                sequence, text, fallback = answer_sequence(self.tokenizer, gen, settings)
                score = self.answer_scores([ids[i] + sequence], settings)[0]
                results.append(Judgement(score, text, len(gen), prompts[i].truncated, fallback))
                tokens += len(gen)
            if on_batch:
                on_batch(min(settings.batch_size, len(ids) - start), tokens)
        return results

    def _generate(self, ids: list[int], settings: JudgeSettings) -> list[int]:
        """The greedy continuation of ``ids``: at most ``settings.budget`` tokens, cut where the closing tag
        appears in the decoded tail, end tokens left out."""
        import numpy as np

        logits = self._logits_after(ids)
        gen: list[int] = []
        while len(gen) < settings.budget:
            token = int(np.argmax(logits))
            if token in self.end_tokens:
                break
            gen.append(token)
            if settings.closes(self.tokenizer, gen):
                break
            if len(gen) < settings.budget:
                self.llm.eval([token])
                logits = self._logits()
        return gen
