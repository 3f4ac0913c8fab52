"""Teacher judgements (traces): one schema, JSONL and Rank1's alpaca training format, ``datasets``.

A :class:`Trace` is one teacher judgement of one (query, passage) pair, with the pair's label from the
qrels. Traces are stored as JSONL (one object per line, keys in field order) and can be exported to, and
imported from, the LLaMA-Factory alpaca rows Rank1 published its training set in:

=============== ==============================================================================================
alpaca field    trace fields
=============== ==============================================================================================
``instruction`` the Rank1 prompt for the pair, ending with ``<think>``:
                ``Determine if ... 'false'.\\nQuery: {query} {instruction}\\nPassage: {passage}\\n<think>``
``input``       ``""`` on export; on import it is appended to ``instruction`` (after a newline) before parsing,
                so rows that put ``Query: ...\\nPassage: ...`` in ``input`` read the same
``output``      ``{reasoning}\\n</think> true`` or ``{reasoning}\\n</think> false`` (the teacher's answer)
=============== ==============================================================================================

Import reads ``query`` and ``passage`` back from the prompt (``Query:`` line, ``Passage:`` up to the final
``<think>``); the ids, label and teacher are not in the alpaca rows, so they are given to
:func:`read_alpaca` (ids default to the row number, the label to the answer).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from rank1.io import InputError
from rank1.io.atomic import atomic_write
from rank1.io.text import iter_content_lines, parse_json_object
from rank1.prompts import get_template

CLOSE = "</think>"


@dataclass(frozen=True)
class Trace:
    """One teacher judgement of one pair.

    Attributes:
        qid: Query id.
        docid: Document id.
        query: Query text (without its instruction).
        instruction: Per-query instruction (FollowIR style); empty for most collections.
        passage: Passage text (title and text).
        label: Relevance grade from the qrels (0 for an unjudged hard negative).
        teacher: Name of the teacher model.
        reasoning: The teacher's reasoning (the text inside ``<think> ... </think>``).
        answer: The teacher's answer: ``True``, ``False``, or ``None`` when it gave none.
        p_true: The teacher's P(true) where it is known (rank1 backends), else ``None``.
        tokens: Tokens the teacher generated.
        fallback: The reasoning hit the token budget before ``</think>`` (Rank1's fallback gave the answer).
    """

    qid: str
    docid: str
    query: str
    instruction: str
    passage: str
    label: int
    teacher: str
    reasoning: str
    answer: bool | None
    p_true: float | None = None
    tokens: int = 0
    fallback: bool = False

    @property
    def key(self) -> tuple[str, str]:
        """``(qid, docid)``: the pair a trace belongs to."""
        return self.qid, self.docid

    @property
    def query_text(self) -> str:
        """The query with its instruction appended (what the prompt shows)."""
        return f"{self.query} {self.instruction}".strip()

    def to_json(self) -> str:
        """One JSONL line (no newline), keys in field order."""
        return json.dumps(asdict(self), ensure_ascii=False)


_FIELDS = {f.name for f in fields(Trace)}
_REQUIRED = {"qid", "docid", "query", "passage", "label", "teacher", "reasoning", "answer"}


def trace_from_dict(obj: dict[str, Any], path: str | Path = "<dict>", lineno: int | None = None) -> Trace:
    """Build a :class:`Trace` from a JSON object, checking fields and types.

    Raises:
        InputError: A missing or unknown field, or a value of the wrong type.
    """
    missing = sorted(_REQUIRED - obj.keys())
    unknown = sorted(obj.keys() - _FIELDS)
    if missing or unknown:
        raise InputError(path, lineno, f"trace {'lacks ' + ', '.join(missing) if missing else 'has unknown ' + ', '.join(unknown)}")
    checks = {"qid": str, "docid": str, "query": str, "instruction": str, "passage": str, "teacher": str,
              "reasoning": str}
    for name, kind in checks.items():
        if name in obj and not isinstance(obj[name], kind):
            raise InputError(path, lineno, f"trace field {name!r} must be a string")
    if isinstance(obj["label"], bool) or not isinstance(obj["label"], int):
        raise InputError(path, lineno, "trace field 'label' must be an integer")
    if obj["answer"] is not None and not isinstance(obj["answer"], bool):
        raise InputError(path, lineno, "trace field 'answer' must be true, false or null")
    return Trace(**{"instruction": "", **obj})


def read_traces(path: str | Path) -> list[Trace]:
    """Read a traces JSONL file.

    Raises:
        InputError: Bad JSON or a bad trace, with file and line.
    """
    return [trace_from_dict(parse_json_object(path, n, line), path, n) for n, line in iter_content_lines(path)]


def write_jsonl(path: str | Path, records: Iterable[Any]) -> int:
    """Write records that have ``to_json()`` as JSONL, atomically; returns how many were written."""
    n = 0
    with atomic_write(path) as fh:
        for record in records:
            fh.write(record.to_json() + "\n")
            n += 1
    return n


def write_traces(path: str | Path, traces: Iterable[Trace]) -> int:
    """Write traces as JSONL atomically; returns how many were written."""
    return write_jsonl(path, traces)


# -- Rank1's alpaca rows ----------------------------------------------------------------------------------


def completion(reasoning: str, answer: bool, with_reasoning: bool = True) -> str:
    """Rank1's output after the prompt: ``{reasoning}\n</think> true|false`` (the alpaca ``output``).

    Without reasoning it is ``\n</think> true|false``: exactly what direct mode appends before it reads the
    answer, so a label-only student is trained on the format it is scored in.
    """
    return f"{reasoning if with_reasoning else ''}\n{CLOSE} {'true' if answer else 'false'}"


def training_completion(reasoning: str, answer: bool, with_reasoning: bool = True) -> str:
    """:func:`completion` as the student is trained on it: reasoning starts with a space.

    The prompt ends with ``<think>``, and BPE merges its ``>`` with a word or a newline that follows directly,
    so without the space the prompt's tokens would not be a prefix of the training row's and the student would
    learn a boundary it never sees at inference, where generation starts after the prompt's own tokens. (The
    label-only completion needs no space: direct mode tokenizes prompt and ``\n</think>`` together too.)
    """
    if with_reasoning and reasoning and not reasoning.startswith(" "):
        reasoning = " " + reasoning
    return completion(reasoning, answer, with_reasoning)


def prompt_text(trace: Trace, template: str = "rank1") -> str:
    """The raw (non-chat) Rank1 prompt for the trace's pair, ending with ``<think>``."""
    t = get_template(template)
    if t.chat:
        raise ValueError(f"template {template!r} is a chat template; training rows use raw templates")
    return t.render(trace.query_text, trace.passage)


def to_alpaca(trace: Trace, template: str = "rank1") -> dict[str, str]:
    """One alpaca row (``instruction``, ``input``, ``output``) for a trace that has an answer."""
    if trace.answer is None:
        raise ValueError(f"trace {trace.key} has no answer")
    return {"instruction": prompt_text(trace, template), "input": "",
            "output": completion(trace.reasoning, trace.answer)}


_PROMPT = re.compile(r"(?:^|\n)Query: (?P<query>.*?)\n(?:<passage>\n)?Passage: (?P<passage>.*)\n<think>\s*$", re.S)
_OUTPUT = re.compile(r"^(?P<reasoning>.*)</think>\s*(?P<answer>true|false)\b", re.S | re.I)


def from_alpaca(row: dict[str, Any], qid: str, docid: str, teacher: str = "rank1-alpaca",
                label: int | None = None, where: tuple[str | Path, int | None] = ("<row>", None)) -> Trace:
    """Parse one alpaca row back into a :class:`Trace` (see the module docstring for the mapping).

    Raises:
        InputError: The row lacks a field, its prompt has no ``Query:``/``Passage:`` lines, or its output
            no ``</think> true|false``.
    """
    path, lineno = where
    for name in ("instruction", "output"):
        if not isinstance(row.get(name), str):
            raise InputError(path, lineno, f"alpaca row lacks a string {name!r}")
    text = row["instruction"] + (f"\n{row['input']}" if row.get("input") else "")
    prompt, out = _PROMPT.search(text), _OUTPUT.match(row["output"])
    if prompt is None:
        raise InputError(path, lineno, "alpaca prompt has no 'Query: ...\\nPassage: ...\\n<think>'")
    if out is None:
        raise InputError(path, lineno, "alpaca output does not end with '</think> true' or '</think> false'")
    answer = out["answer"].lower() == "true"
    reasoning = out["reasoning"][:-1] if out["reasoning"].endswith("\n") else out["reasoning"]
    return Trace(qid, docid, prompt["query"], "", prompt["passage"], int(answer) if label is None else label,
                 teacher, reasoning, answer)


def read_alpaca(path: str | Path, teacher: str = "rank1-alpaca", ids: Sequence[tuple[str, str]] | None = None,
                labels: Sequence[int] | None = None) -> list[Trace]:
    """Read alpaca rows (a JSON array, or JSONL) into traces.

    Args:
        path: The file.
        teacher: Teacher name recorded on every trace.
        ids: ``(qid, docid)`` per row; default ``(f"q{i}", f"d{i}")`` for row ``i``.
        labels: Label per row; default 1 for a ``true`` answer and 0 for ``false``.
    """
    rows = list(_alpaca_rows(path))
    if ids is not None and len(ids) != len(rows) or labels is not None and len(labels) != len(rows):
        raise ValueError(f"{path}: {len(rows)} rows but {len(ids or labels or [])} ids or labels")
    out = []
    for i, (lineno, row) in enumerate(rows):
        qid, docid = ids[i] if ids is not None else (f"q{i}", f"d{i}")
        out.append(from_alpaca(row, qid, docid, teacher, labels[i] if labels is not None else None, (path, lineno)))
    return out


def _alpaca_rows(path: str | Path) -> Iterator[tuple[int | None, dict[str, Any]]]:
    head = Path(path).read_text(encoding="utf-8", errors="replace").lstrip()[:1]
    if head == "[":
        try:
            rows = json.loads(Path(path).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(path, getattr(e, "lineno", None), f"invalid JSON: {e}") from None
        for row in rows:
            if not isinstance(row, dict):
                raise InputError(path, None, "alpaca rows must be JSON objects")
            yield None, row
        return
    for lineno, line in iter_content_lines(path):
        yield lineno, parse_json_object(path, lineno, line)


def write_alpaca(path: str | Path, traces: Iterable[Trace], template: str = "rank1") -> int:
    """Write traces with an answer as a JSON array of alpaca rows (LLaMA-Factory's format), atomically."""
    rows = [to_alpaca(t, template) for t in traces if t.answer is not None]
    with atomic_write(path) as fh:
        json.dump(rows, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    return len(rows)


def to_dataset(traces: Sequence[Trace], with_reasoning: bool = True, template: str = "rank1") -> Any:
    """A Hugging Face ``datasets.Dataset`` in trl's prompt-completion form (loss on the completion only).

    Args:
        traces: Traces with an answer (those without are skipped).
        with_reasoning: Train on reasoning and answer (``True``), or on the answer alone (``False``).
        template: Raw prompt template.

    Returns:
        A dataset with columns ``prompt``, ``completion``, ``qid``, ``docid``.
    """
    from datasets import Dataset

    rows = [t for t in traces if t.answer is not None]
    return Dataset.from_dict({
        "prompt": [prompt_text(t, template) for t in rows],
        "completion": [training_completion(t.reasoning, bool(t.answer), with_reasoning) for t in rows],
        "qid": [t.qid for t in rows],
        "docid": [t.docid for t in rows],
    })
