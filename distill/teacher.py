"""Teachers write reasoning traces: any rank1 backend, or any OpenAI-compatible chat endpoint.

* :class:`RerankerTeacher` runs a rank1 :class:`~rank1.Reranker` in reasoning mode (transformers or vLLM
  backend). Its decoding is **greedy** (rank1's backends are): the traces are deterministic, and Rank1's
  temperature (0.3) does not apply; the budget defaults to Rank1's 1000 new tokens. The answer is
  P(true) >= 0.5, and P(true) is recorded.
* :class:`ChatTeacher` asks an OpenAI-compatible chat endpoint (DeepSeek's R1 API, ``vllm serve``, ...) with
  the Rank1 prompt as the user turn, at Rank1's settings (temperature 0.3, 1000 new tokens; a seed is sent
  where the server honours one). The reasoning is the message's ``reasoning_content`` (R1's API) or the text
  before ``</think>``; the answer is the last ``true``/``false`` after it. P(true) is read from the answer
  token's top log-probabilities where the server returns them (``logprobs=True``), else left unknown.

:func:`generate` judges pairs in batches and appends each finished trace to a JSONL file at once (flushed
and fsynced); run again, it skips the pairs already in the file, so an interrupted job resumes.
"""

from __future__ import annotations

import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol, Sequence

from distill.records import CLOSE, Trace, trace_from_dict
from distill.sampling import TrainPair
from rank1.io.text import parse_json_object
from rank1.prompts import get_template
from rank1.records import Query

RANK1_TEMPERATURE = 0.3
RANK1_MAX_TOKENS = 1000


class TeacherOutput(NamedTuple):
    """What a teacher says about one pair."""

    reasoning: str
    answer: bool | None
    p_true: float | None = None
    tokens: int = 0
    fallback: bool = False


class Teacher(Protocol):
    """Anything that judges (query, passage) pairs with reasoning."""

    name: str

    def judge(self, pairs: Sequence[tuple[str, str]]) -> list[TeacherOutput]:
        """One output per (query with instruction, passage) pair, in order."""
        ...


class RerankerTeacher:
    """A rank1 reranker in reasoning mode as the teacher (greedy decoding; see the module docstring).

    Args:
        model: Model spec (embedded name, directory, hub id).
        backend: ``transformers`` or ``vllm``.
        budget: Most reasoning tokens per pair (Rank1 generated at most 1000).
        template: Prompt template (default: the model's).
        batch_size: Pairs per batch.
        **backend_options: Passed to the backend (``dtype``, ``max_model_len``...).
    """

    def __init__(self, model: str, backend: str = "transformers", budget: int = RANK1_MAX_TOKENS,
                 template: str | None = None, batch_size: int = 8, **backend_options: Any) -> None:
        from rank1.reranker import Reranker

        self.reranker = Reranker(model=model, backend=backend, mode="reasoning", budget=budget,
                                 template=template, batch_size=batch_size, backend_options=backend_options)
        self.name = self.reranker.model_ref.name

    def judge(self, pairs: Sequence[tuple[str, str]]) -> list[TeacherOutput]:
        """Judge pairs in reasoning mode; the answer is P(true) >= 0.5."""
        return [TeacherOutput(j.reasoning, j.score >= 0.5, j.score, j.generated_tokens, j.fallback)
                for j in self.reranker.score(pairs)]


_ANSWER = re.compile(r"\b(true|false)\b", re.I)


def parse_reply(content: str, reasoning_content: str | None = None) -> tuple[str, bool | None, bool]:
    """Split a chat reply into (reasoning, answer, unfinished).

    The reasoning is ``reasoning_content`` when the server gives it, else the text before ``</think>``
    (a leading ``<think>`` dropped); the answer is the last ``true``/``false`` word after the reasoning
    (``None`` if there is none). ``unfinished``: no closed reasoning block was found.
    """
    content = content or ""
    if reasoning_content:
        reasoning, tail, unfinished = reasoning_content, content, False
    elif CLOSE in content:
        reasoning, tail = content.split(CLOSE, 1)
        unfinished = False
    else:
        reasoning, tail, unfinished = content, content, True
    reasoning = reasoning.strip()
    if reasoning.startswith("<think>"):
        reasoning = reasoning[len("<think>"):].strip()
    words = _ANSWER.findall(tail)
    return reasoning, (words[-1].lower() == "true") if words else None, unfinished


def answer_p_true(logprobs: Any) -> float | None:
    """P(true) at the last answer token of a chat reply, from its top log-probabilities (``None`` if absent)."""
    tokens = getattr(logprobs, "content", None) or []
    for tok in reversed(tokens):
        if tok.token.strip().lower() in ("true", "false"):
            best: dict[str, float] = {}
            for alt in getattr(tok, "top_logprobs", None) or [tok]:
                word = alt.token.strip().lower()
                if word in ("true", "false"):
                    best[word] = max(best.get(word, -math.inf), alt.logprob)
            if len(best) < 2:
                return None
            t, f = math.exp(best["true"]), math.exp(best["false"])
            return t / (t + f)
    return None


@dataclass
class ChatTeacher:
    """An OpenAI-compatible chat endpoint as the teacher.

    Attributes:
        base_url: The API root, e.g. ``https://api.deepseek.com`` or ``http://127.0.0.1:8000/v1``.
        model: The model name the server knows.
        api_key_env: Environment variable holding the key (a placeholder is sent when it is unset, as
            local servers need none).
        temperature: Sampling temperature (Rank1: 0.3).
        max_tokens: Most new tokens per reply (Rank1: 1000).
        seed: Sent with every request (servers that honour it sample reproducibly).
        template: Prompt template whose task text is the user turn.
        logprobs: Ask for the answer token's log-probabilities (to record P(true)).
        workers: Requests in flight at once.
        timeout: Seconds per request.
    """

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = RANK1_TEMPERATURE
    max_tokens: int = RANK1_MAX_TOKENS
    seed: int | None = 0
    template: str = "rank1"
    logprobs: bool = False
    workers: int = 4
    timeout: float = 600.0

    def __post_init__(self) -> None:
        from openai import OpenAI

        self.client = OpenAI(base_url=self.base_url, api_key=os.environ.get(self.api_key_env) or "EMPTY",
                             timeout=self.timeout, max_retries=3)
        self.name = self.model

    def _one(self, pair: tuple[str, str]) -> TeacherOutput:
        extra: dict[str, Any] = {"logprobs": True, "top_logprobs": 5} if self.logprobs else {}
        if self.seed is not None:
            extra["seed"] = self.seed
        reply = self.client.chat.completions.create(
            model=self.model, temperature=self.temperature, max_tokens=self.max_tokens,
            messages=[{"role": "user", "content": get_template(self.template).user_text(*pair)}], **extra)
        choice = reply.choices[0]
        reasoning, answer, unfinished = parse_reply(
            choice.message.content or "", getattr(choice.message, "reasoning_content", None))
        tokens = reply.usage.completion_tokens if reply.usage else 0
        p = answer_p_true(choice.logprobs) if self.logprobs else None
        return TeacherOutput(reasoning, answer, p, tokens, unfinished or choice.finish_reason == "length")

    def judge(self, pairs: Sequence[tuple[str, str]]) -> list[TeacherOutput]:
        """Send every pair (``workers`` at a time); results in order."""
        with ThreadPoolExecutor(max(1, self.workers)) as pool:
            return list(pool.map(self._one, pairs))


# -- resumable generation ---------------------------------------------------------------------------------


def done_keys(path: str | Path) -> set[tuple[str, str]]:
    """The (qid, docid) keys already in a traces file; a torn last line (a crash mid-write) is cut off."""
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return set()
    data = p.read_bytes()
    if not data.endswith(b"\n"):  # the last write did not finish: drop it, it will be judged again
        with p.open("r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)
        data = data[: data.rfind(b"\n") + 1]
    keys = set()
    for n, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if line.strip():
            trace = trace_from_dict(parse_json_object(p, n, line), p, n)
            keys.add(trace.key)
    return keys


@dataclass
class GenerateStats:
    """What :func:`generate` did."""

    pairs: int = 0
    skipped: int = 0
    judged: int = 0
    tokens: int = 0
    seconds: float = 0.0


def generate(pairs: Sequence[TrainPair], topics: dict[str, Query], passages: dict[str, str], teacher: Teacher,
             out: str | Path, batch_size: int = 8, progress: bool = True) -> GenerateStats:
    """Have ``teacher`` judge every pair not yet in ``out``, appending each trace as it is finished.

    Args:
        pairs: The pairs (e.g. from :func:`distill.sampling.sample_pairs`).
        topics: ``{qid: Query}`` for every pair.
        passages: ``{docid: passage text}`` for every pair.
        teacher: The teacher.
        out: The traces JSONL file (created, or appended to).
        batch_size: Pairs handed to the teacher at a time (and so lost at most on a crash).
        progress: Draw a progress bar.

    Raises:
        KeyError: A pair's query or document is missing.
    """
    from rank1.progress import Stopwatch, pair_progress

    timer, stats = Stopwatch(), GenerateStats(pairs=len(pairs))
    for p in pairs:
        if p.qid not in topics or p.docid not in passages:
            raise KeyError(f"pair ({p.qid!r}, {p.docid!r}): query or document missing")
    seen = done_keys(out)
    todo = list({p[:2]: p for p in pairs if (p.qid, p.docid) not in seen}.values())
    stats.skipped = len(pairs) - len(todo)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a", encoding="utf-8") as fh, \
            pair_progress(len(todo), f"teacher {teacher.name}", progress) as advance:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            outputs = teacher.judge([(topics[p.qid].full_text, passages[p.docid]) for p in batch])
            for p, o in zip(batch, outputs):
                q = topics[p.qid]
                trace = Trace(p.qid, p.docid, q.text, q.instruction, passages[p.docid], p.label, teacher.name,
                              o.reasoning, o.answer, o.p_true, o.tokens, o.fallback)
                fh.write(trace.to_json() + "\n")
                stats.tokens += o.tokens
            fh.flush()
            os.fsync(fh.fileno())
            stats.judged += len(batch)
            advance(len(batch), sum(o.tokens for o in outputs))
    stats.seconds = timer.seconds
    return stats
