"""Reasoning traces for the contrastive groups of :mod:`distill.contrast`, naming what relevance turns on.

``rank1 distill contrast-traces`` turns each group into pointwise :class:`distill.records.Trace` rows for
``rank1 distill train``: the relevant passage, every contrast passage (the near-copy, the trap, the CondaQA
twins) and at most ``per_group`` ordinary negatives. The reasoning is written by template from the group
itself (no model call), in the students' style: what the query asks, what the passage says at the deciding
span (quoted), the verdict; the answer is the label (``True`` for 1). Per rule:

* ``negate-answer`` / ``negate-query`` / ``negate-statement`` / ``condaqa-statement``: the words changed between
  the passage and its near-copy (:mod:`difflib` over words, as :func:`distill.contrast.mark_changes`) locate the
  deciding sentence, which is
  quoted around the change; a contrast passage's trace names the negation cue or the swapped word that reverses
  its claim (or, for ``negate-query``, the query's negation its claim lacks).
* ``exclude`` / ``exclude-pair``: the excluded term Y is read back from the query by the templates of
  :data:`distill.negation.TEMPLATES` (:func:`split_clause`); the relevant passage answers the question and does
  not mention Y, the trap is quoted where it mentions Y.
* ``condaqa-flip``: the query ``QUESTION Relevant passages answer yes.`` holds the question and the wanted
  answer; each edit is quoted where it differs from its twin, and the trace says which answer that wording
  gives (naming its negation cue when the changed words hold one).
* Ordinary negatives: the passage's opening words quoted, and that it does not address the query (never one
  that mentions an excluded Y). ``nevir-train`` (dev) and unknown sources get no traces (no rule tells why).

Wording varies by seeded template variants (one generator per group, from ``seed`` and the qid, so a group's
traces do not depend on the others). No reasoning holds the words "true" or "false": a trace whose quote or
query would bring one in is dropped and counted.
"""

from __future__ import annotations

import difflib
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, NamedTuple, Sequence

from distill.msmarco import Group
from distill.negation import TEMPLATES, negation_cue, sentence_spans
from distill.records import Trace

TEACHER = "contrast-rules"
QUOTE_WORDS = 14   # at most this many words of a passage are quoted
QUERY_WORDS = 20   # the query is restated up to this many words (a CondaQA question: up to 15)
_LABEL_WORDS = re.compile(r"\b(?:true|false)\b", re.I)
_CONDAQA = re.compile(r"(?s)^(?P<question>.*\S)\s+Relevant passages answer (?P<want>yes|no)\.$")
_CLAUSES = [re.compile("(?s)^(?P<q>.+)" + re.escape(t.split("{q}")[1].split("{y}")[0]) + r"(?P<y>.+?)(?P<mark>\?)?$")
            for t in TEMPLATES]
_LEXICAL = re.compile(r"\b(?:without|except|unless|unlike|absen(?:ce|t)|lack(?:s|ed|ing)?|fail(?:s|ed|ure)?|"
                      r"refus\w*|avoid\w*|prevent\w*|prohibit\w*|den(?:y|ies|ied)|instead|rarely|hardly|barely|"
                      r"seldom|nothing|nobody|nowhere|unable|un(?!der|til|ion|it|iv|iqu|iform|less)[a-z]{4,})\b", re.I)
_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non-", "non")
_PUNCT = ".,;:!?\"'()"
Rng = random.Random


class Change(NamedTuple):
    """Where ``text`` differs from a near-copy: chars ``start:end`` of ``text`` (equal at an insertion point),
    and the words of the deciding run: ``text``'s (``new``) and the near-copy's there (``old``)."""

    start: int
    end: int
    new: str
    old: str


def cue(new: str, old: str) -> str | None:
    """The negation cue the words ``new`` hold where a near-copy has ``old``: a negation word
    (:func:`distill.negation.negation_cue`), a lexical one (``lack``, ``except``, ``rarely``, ``unable``; CondaQA's
    kinds), or a word with a negative prefix whose stem ``old`` has (``informally`` against ``formally``);
    None if none."""
    lexical, stems = _LEXICAL.search(new), {w.lower().strip(_PUNCT) for w in old.split()}
    prefixed = (w.strip(_PUNCT) for w in new.split() for p in _PREFIXES
                if w.lower().startswith(p) and w.lower()[len(p):].strip(_PUNCT) in stems)
    return negation_cue(new) or (lexical.group(0) if lexical else None) or next(prefixed, None)


def split_clause(query: str) -> tuple[str, str] | None:
    """``(question, Y)`` of a query made by :func:`distill.negation.with_clause` (its question mark restored to
    the question), or None when no template of :data:`distill.negation.TEMPLATES` matches."""
    found = [m for m in (p.match(query.strip()) for p in _CLAUSES) if m and m["y"].strip()]
    m = max(found, key=lambda m: m.start("y"), default=None)  # the clause is the last one in the query
    return None if m is None else (m["q"].strip() + (m["mark"] or ""), m["y"].strip())


def find_change(text: str, other: str) -> Change | None:
    """The deciding change of ``text`` against ``other`` (word diff): the first changed run that holds a negation
    cue (else the first), joined with the runs after it while they stay within :data:`QUOTE_WORDS` words."""
    words = list(re.finditer(r"\S+", text))
    a, b = other.split(), [w.group() for w in words]
    ops = [op for op in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes() if op[0] != "equal"]
    if not ops:
        return None
    runs = [(" ".join(b[j1:j2]), " ".join(a[i1:i2])) for _, i1, i2, j1, j2 in ops]
    has = [k for k, (new, old) in enumerate(runs) if cue(new, old)]
    lacks = [k for k, (new, old) in enumerate(runs) if cue(old, new)]
    first = (has or lacks or [0])[0]
    run = ops[first:first + 1] + [op for op in ops[first + 1:] if op[4] - ops[first][3] <= QUOTE_WORDS]
    j1, j2 = run[0][3], max(run[-1][4], run[0][3])
    start = words[j1].start() if j1 < len(words) else len(text)
    end = words[j2 - 1].end() if j2 > j1 else start
    return Change(start, end, runs[first][0].strip(_PUNCT), runs[first][1].strip(_PUNCT))


def quote(text: str, start: int, end: int | None = None, pad: int = 6) -> str:
    """The words of ``text``'s sentence around chars ``start:end`` (``pad`` either side, at most
    :data:`QUOTE_WORDS`), ``...`` where the sentence is cut, double quotes made single, end punctuation dropped."""
    end = start if end is None else end
    a, b = next(((a, b) for a, b in reversed(sentence_spans(text)) if a <= start), (0, len(text)))
    words = [(m.start() + a, m.end() + a, m.group()) for m in re.finditer(r"\S+", text[a:b])]
    if not words:
        return ""
    inside = [i for i, (s, e, _) in enumerate(words) if s < end and e > start]
    lo_f = inside[0] if inside else next((i for i, w in enumerate(words) if w[0] >= start), len(words))
    hi_f = inside[-1] if inside else lo_f - 1  # an insertion point: the words either side of it
    lo = max(0, lo_f - pad)
    hi = min(len(words), hi_f + pad + 1, lo + QUOTE_WORDS)
    body = " ".join(w for _, _, w in words[lo:hi]).replace('"', "'").rstrip(".,;:!?")
    return ("..." if lo else "") + body + ("..." if hi < len(words) else "")


def _clip_words(text: str, n: int) -> str:
    """``text`` in at most ``n`` words: its opening third and its end (where a long question asks), ``...`` between."""
    words = text.split()
    if len(words) > n:
        words = words[: n // 3] + ["..."] + words[n // 3 - n:]
    return " ".join(words).replace('"', "'")


def _asks(rng: Rng, query: str) -> str:
    q = _clip_words(query, QUERY_WORDS)
    return rng.choice((f'The query asks "{q}".', f'The query is "{q}".', f'The query wants to know "{q}".'))


def _yes(rng: Rng) -> str:
    return rng.choice(("so it answers the query directly.", "so the passage gives what the query asks for.",
                       "so it is relevant to the query."))


def _no(rng: Rng) -> str:
    return rng.choice(("so it does not give what the query asks for.", "so the passage does not answer the query.",
                       "so it is not relevant to the query."))


def negate_reasoning(g: Group, index: int, rng: Rng) -> str | None:
    """``negate-answer`` / ``negate-query``: passage ``index`` (0 or 1) quoted at its change from the other."""
    text, other = g.passages[index], g.passages[1 - index]
    c = find_change(text, other)
    if c is None:
        return None
    said = f'"{quote(text, c.start, c.end)}"'
    has, query_cue = cue(c.new, c.old), negation_cue(g.query)
    phrase = c.new if len(c.new.split()) <= 3 else has
    if g.labels[index]:
        how = (f"{said}, with the same negation '{query_cue}' as the query," if has and query_cue else
               f"{said} (with the negation '{phrase}')," if has else f"{said},")
        return f"{_asks(rng, g.query)} The passage {rng.choice(('states', 'says'))} {how} {_yes(rng)}"
    if has:
        why = f"the negation '{phrase}' reverses the claim"
    elif query_cue and cue(c.old, c.new):
        why = f"it states the claim without the negation '{query_cue}' the query asks about"
    elif c.new:
        why = f"'{c.new}' reverses the claim"
    else:
        why = "it states the claim the other way round, without its negation"
    return f"{_asks(rng, g.query)} The passage says {said}; {why}, {_no(rng)}"


def _excludes(rng: Rng, question: str, y: str) -> str:
    q = _clip_words(question, QUERY_WORDS)
    return rng.choice((f'The query asks "{q}" but excludes anything about {y}.',
                       f'The query asks "{q}" and rules out {y}.',
                       f'The query asks "{q}", leaving out {y}.'))


def _mention(text: str, term: str) -> re.Match[str] | None:
    return re.search(rf"(?<!\w){re.escape(term)}(?!\w)", text, re.I)


@lru_cache(maxsize=1)
def _stems() -> Callable[[str], list[str]]:
    from rank1.retrieve.tokenize import Tokenizer

    return Tokenizer().tokenize


def exclude_reasoning(g: Group, index: int, rng: Rng) -> str | None:
    """``exclude`` / ``exclude-pair``: the relevant passage answers without Y; the trap is quoted at Y."""
    parts = split_clause(g.query)
    if parts is None:
        return None
    question, y = parts
    text, found = g.passages[index], _mention(g.passages[index], parts[1])
    if g.labels[index]:
        if found:
            return None
        stems = _stems()
        want = set(stems(question))
        a, b = max(sentence_spans(text), key=lambda s: (len(want & set(stems(text[s[0]:s[1]]))), -s[0]))
        said = quote(text, a, b, pad=0)
        return (f"{_excludes(rng, question, y)} "
                + rng.choice((f'The passage answers it ("{said}") and says nothing about {y}, ',
                              f'The passage says "{said}" and does not touch on {y}, '))
                + _yes(rng))
    if not found:
        return None
    said = quote(text, found.start(), found.end())
    return (f"{_excludes(rng, question, y)} "
            + rng.choice((f'The passage is about {y} ("{said}"), which the query rules out, ',
                          f'The passage talks about {y}: "{said}". The query excludes that, ')) + _no(rng))


def condaqa_reasoning(g: Group, index: int, rng: Rng) -> str | None:
    """``condaqa-flip``: edit ``index`` quoted where it differs from its twin, and the answer that wording gives."""
    m = _CONDAQA.match(g.query)
    c = find_change(g.passages[index], g.passages[1 if index == 0 else 0])
    if m is None or c is None:
        return None
    want = m["want"]
    answer = want if g.labels[index] else {"yes": "no", "no": "yes"}[want]
    said = f'"{quote(g.passages[index], c.start, c.end)}"'
    lacks = cue(c.old, c.new) and not cue(c.new, c.old)
    has = None if lacks else cue(c.new, c.old) or cue(said, "")  # a scope edit: the cue is beside the change
    how = (" (stated without a negation)" if lacks else f" (with the negation '{has}')" if has else
           f" (with '{c.new}')" if 0 < len(c.new.split()) <= 3 and len(c.old.split()) <= 3 else "")
    q = _clip_words(m["question"], 15)
    head = rng.choice((f'The query asks "{q}" and wants passages whose answer is {want}.',
                       f'The query asks "{q}" and looks for passages that answer {want}.'))
    verdict = ("which is the answer the query asks for." if answer == want else
               f"not the {want} the query asks for.")
    return f"{head} Here the passage says {said}{how}, so the answer to the question is {answer}, {verdict}"


def negative_reasoning(g: Group, index: int, rng: Rng) -> str | None:
    """An ordinary negative: its opening words quoted, and that it does not address the query."""
    parts = split_clause(g.query) if g.source.startswith("exclude") else None
    if parts and _mention(g.passages[index], parts[1]):
        return None
    head = _excludes(rng, *parts) if parts else _asks(rng, g.query)
    said = quote(g.passages[index], 0, pad=QUOTE_WORDS)
    return head + rng.choice((f' The passage talks about "{said}", which does not address the question.',
                              f' The passage covers "{said}" and does not address what is asked.',
                              f' The passage is about "{said}", a different matter, {_no(rng)}'))


_RULES: dict[str, Callable[[Group, int, Rng], str | None]] = {
    "negate-answer": negate_reasoning, "negate-query": negate_reasoning, "exclude": exclude_reasoning,
    "exclude-pair": exclude_reasoning, "condaqa-flip": condaqa_reasoning, "negate-statement": negate_reasoning,
    "condaqa-statement": negate_reasoning}


def _contrast_count(g: Group) -> int:
    """How many passages after the first are contrast passages (the rest are ordinary negatives)."""
    return len(g.passages) - 1 if g.source == "condaqa-flip" else 1


@dataclass
class ContrastTraces:
    """What :func:`contrast_traces` made: the traces (group order) and counts per source."""

    traces: list[Trace]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts, for logs and model cards."""
        return {"traces": len(self.traces), "by_source": self.counts}


def contrast_traces(groups: Sequence[Group], per_group: int = 1, seed: int = 0) -> ContrastTraces:
    """Traces for ``groups``: relevant and contrast passages, and ``per_group`` ordinary negatives (seeded).

    Counts per source: ``groups``, ``relevant``, ``contrast``, ``negative`` traces written, ``dropped`` (no
    deciding span found, Y not where it should be, or a label word in the reasoning; a negative that does not
    fit, e.g. one that mentions the excluded Y, is passed over for the next one in the seeded order).
    """
    out: list[Trace] = []
    counts: dict[str, dict[str, int]] = {}
    for g in groups:
        n = counts.setdefault(g.source, dict.fromkeys(("groups", "relevant", "contrast", "negative", "dropped"), 0))
        n["groups"] += 1
        rule = _RULES.get(g.source)
        if rule is None:
            continue
        rng, before = random.Random(f"{seed}:{g.source}:{g.qid}"), n["negative"]
        k = 1 + _contrast_count(g)
        extra = list(range(k, len(g.passages)))
        rng.shuffle(extra)
        for i in [*range(k), *extra]:
            kind = "relevant" if i == 0 else "contrast" if i < k else "negative"
            if kind == "negative" and n["negative"] - before >= per_group:
                break
            reasoning = (negative_reasoning if kind == "negative" else rule)(g, i, rng)
            if reasoning is None or _LABEL_WORDS.search(reasoning):
                n["dropped"] += kind != "negative"  # a negative that does not fit is passed over
                continue
            n[kind] += 1
            out.append(Trace(g.qid, g.docids[i], g.query, "", g.passages[i], g.labels[i], f"{TEACHER}/{g.source}",
                             reasoning, bool(g.labels[i])))
    return ContrastTraces(out, counts)


def counts_text(made: ContrastTraces) -> str:
    """One line per source: groups, and traces written by kind."""
    lines = [f"{s:17} groups {n['groups']:5}  relevant {n['relevant']:5}  contrast {n['contrast']:5}  "
             f"negative {n['negative']:4}  dropped {n['dropped']:4}" for s, n in made.counts.items()]
    return "\n".join(lines + [f"{'total':17} traces {len(made.traces)}"])


def examples_text(traces: Sequence[Trace], n: int = 6, seed: int = 0) -> str:
    """``n`` traces drawn with ``seed``, readable: rule, ids, label, query and reasoning."""
    return "\n\n".join(f"[{t.teacher.split('/')[-1]}] {t.qid} / {t.docid}  label {t.label}\n  query: {t.query}\n"
                       f"  reasoning: {t.reasoning}"
                       for t in random.Random(seed).sample(list(traces), min(n, len(traces))))
