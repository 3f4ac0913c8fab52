"""Reasoning traces from GPT-3.5's listwise rationales (``msmarco_train_gpt35_windows.jsonl``).

Each row of the windows file is a query, five BM25 passages, MS MARCO's sparse labels, and GPT-3.5's answer:
a ranking ``[3] > [1] > ...`` followed, in most rows, by one rationale line per passage (``- Passage [3]
directly addresses ...`` or ``- [3]: This passage ...``). A trace is one passage's line, cut to that passage:

* **Rewritten pointwise**: the line's reference to its own passage becomes "The passage", and clauses that
  compare with other passages (``[n]``, "ranked lower", "top-ranked") are dropped, so the reasoning reads
  as a judgement of one pair, which is what the student sees at test time; a line whose first clause is
  comparative is dropped whole (counted as ``short``).
* **Answer from the label**, not from GPT-3.5: ``true`` for an MS MARCO positive, ``false`` otherwise.
* **Kept only where the teacher agrees** (consistency filter): a positive is kept when GPT-3.5 put it in its
  top ``keep_top``; an unlabelled passage is kept as a negative when GPT-3.5 put it at ``negative_from`` or
  below (unlabelled passages ranked high may be relevant: MS MARCO's labels are sparse). Each kept positive
  brings up to ``negatives`` kept negatives of the same query (seeded draw); queries without a kept positive
  give nothing.

Queries whose text is one of the held-out dev split's (:func:`distill.msmarco.dev_split`) are dropped, as in
:func:`distill.msmarco.prepare`; ids are ``w{n}`` / ``w{n}-{i}`` in the same numbering as its window groups.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

from distill.msmarco import DEV_FILE, WINDOWS_FILE, dev_split, read_dev, read_rows
from distill.records import Trace
from rank1.io import InputError

TEACHER = "gpt-3.5-turbo-listwise"
_ORDER = re.compile(r"\[(\d+)\](?:\s*>\s*\[\d+\])+")
_LINE = re.compile(r"^\s*(?:[-*\u2022]|\d+\.)\s*(?:\*\*)?(?:Passage\s*)?\[(\d+)\](?:\*\*)?\s*[:\-\u2013]?\s*(.+)$",
                   re.M | re.I)
_OTHER = re.compile(r"\[\d+\]|\branked\b|\branking\b|top-ranked|other passages|\bpassages\b", re.I)
_CLAUSE = re.compile(r"(?<=[,;])\s+|(?<=\.)\s+")


@dataclass(frozen=True)
class RationaleConfig:
    """Which rationales become traces.

    Attributes:
        negatives: Negatives kept per kept positive (same query).
        keep_top: A positive is kept when GPT-3.5 ranked it this high or higher (1 = first).
        negative_from: An unlabelled passage is a negative when GPT-3.5 ranked it this low or lower.
        min_words: Rewritten rationales shorter than this are dropped.
        dev_queries: Dev-file queries held out (their texts are dropped here), as ``rank1 distill prepare``.
        seed: Seed of the split and the negative draw.
    """

    negatives: int = 3
    keep_top: int = 2
    negative_from: int = 4
    min_words: int = 6
    dev_queries: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if self.negatives < 0 or self.keep_top < 1 or self.negative_from <= self.keep_top or self.min_words < 0:
            raise ValueError("need negatives >= 0, keep_top >= 1, negative_from > keep_top, min_words >= 0")


class Window(NamedTuple):
    """GPT-3.5's answer for one window: its order of the passages (1-based) and one rationale per passage."""

    order: tuple[int, ...]
    rationales: dict[int, str]


def parse_window(ranking: str) -> Window:
    """The ranking ``[a] > [b] > ...`` and the per-passage rationale lines of a GPT-3.5 answer.

    >>> w = parse_window("[2] > [1]\\n\\nReasoning:\\n- Passage [2] defines it.\\n- [1]: This passage is off topic.")
    >>> w.order, w.rationales[2], w.rationales[1]
    ((2, 1), 'defines it.', 'This passage is off topic.')
    """
    found = _ORDER.search(ranking)
    order = tuple(int(x) for x in re.findall(r"\[(\d+)\]", found.group(0))) if found else ()
    lines: dict[int, str] = {}
    for number, text in _LINE.findall(ranking):
        lines.setdefault(int(number), text.strip())
    return Window(order, lines)


def pointwise(rationale: str) -> str:
    """A listwise rationale line rewritten as a judgement of its own passage (see the module docstring).

    >>> pointwise("directly defines the term, hence ranked higher than Passage [3].")
    'The passage directly defines the term.'
    >>> pointwise("This passage also mentions the date, but it is similar to [1].")
    'This passage mentions the date.'
    >>> pointwise("is similar to [1], but it lacks the date.")  # comparative at its core: dropped
    ''
    """
    text = rationale.replace("**", "").strip()
    clauses = [c for c in _CLAUSE.split(text) if c]
    if not clauses or _OTHER.search(clauses[0]):
        return ""  # the judgement itself is comparative: nothing pointwise is left to keep
    kept = [c for c in clauses if not _OTHER.search(c)]
    out = " ".join(kept).strip().rstrip(",;").strip()
    out = re.sub(r"^(but|and|while|although|however),?\s+", "", out, flags=re.I)
    out = re.sub(r"^it\s+", "", out)
    out = re.sub(r"^((?:this|the) passage) also\b", r"\1", out, flags=re.I)
    if not out:
        return ""
    if not re.match(r"(this|the) passage\b", out, re.I):
        out = "The passage " + out[0].lower() + out[1:]
    out = out[0].upper() + out[1:]
    return out if out.endswith(".") else out.rstrip(",;:") + "."


@dataclass
class RationaleTraces:
    """What :func:`rationale_traces` produced: the traces and counts of what was kept and why not."""

    traces: list[Trace]
    counts: dict[str, int]
    config: RationaleConfig

    def summary(self) -> dict[str, Any]:
        """Counts and settings, for logs and model cards."""
        return {"traces": len(self.traces), "positives": sum(t.label for t in self.traces),
                "counts": self.counts, "config": asdict(self.config)}


def rationale_traces(data_dir: str | Path, config: RationaleConfig = RationaleConfig()) -> RationaleTraces:
    """Consistent, pointwise reasoning traces from the windows file in ``data_dir`` (positives first per query).

    Raises:
        InputError: A malformed row (file and line named).
        FileNotFoundError: The dev or windows file is missing.
    """
    root = Path(data_dir)
    for name in (DEV_FILE, WINDOWS_FILE):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root / name}: missing (see shared/data/README.md)")
    dev_rows = read_dev(root / DEV_FILE)
    held = set(dev_split(dev_rows, config.dev_queries, config.seed)[0])
    banned = {r.query for r in dev_rows if r.qid in held}
    by_query: dict[str, list[tuple[str, int, int | None, str]]] = {}
    counts = {"windows": 0, "no_rationales": 0, "dev_query": 0, "inconsistent": 0, "short": 0}
    for lineno, o in read_rows(root / WINDOWS_FILE, ("query", "passages", "ranking", "labels")):
        passages, labels = o["passages"], o["labels"]
        if not isinstance(passages, list) or not isinstance(labels, list) or len(labels) != len(passages):
            raise InputError(root / WINDOWS_FILE, lineno, "passages and labels must be lists of the same length")
        counts["windows"] += 1
        window = parse_window(str(o["ranking"]))
        if not window.rationales:
            counts["no_rationales"] += 1
        items = by_query.setdefault(o["query"], [])
        for i, (text, label) in enumerate(zip(passages, labels)):
            place = window.order.index(i + 1) + 1 if i + 1 in window.order else None
            items.append((text, int(label), place, window.rationales.get(i + 1, "")))
    rng = random.Random(config.seed)
    traces: list[Trace] = []
    for n, query in enumerate(sorted(by_query)):
        if query in banned:
            counts["dev_query"] += 1
            continue
        positives, negatives = [], []
        for i, (text, label, place, line) in enumerate(by_query[query]):
            if not line or place is None:
                continue
            wanted = place <= config.keep_top if label else place >= config.negative_from
            reasoning = pointwise(line) if wanted else ""
            if not wanted:
                counts["inconsistent"] += 1
            elif len(reasoning.split()) < config.min_words:
                counts["short"] += 1
            else:
                trace = Trace(f"w{n}", f"w{n}-{i}", query, "", text, label, TEACHER, reasoning, bool(label))
                (positives if label else negatives).append(trace)
        if positives:
            traces.extend(positives)
            traces.extend(rng.sample(negatives, min(len(negatives), config.negatives * len(positives))))
    return RationaleTraces(traces, counts, config)
