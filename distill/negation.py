"""Local text-rewrite rules behind :mod:`distill.contrast`: negating a sentence, and picking exclusion terms.

:func:`negate` rewrites a sentence by one local rule so it no longer states what it did: a negation removed
(``is not X`` -> ``is X``, ``cannot`` -> ``can``, ``doesn't X`` -> ``does X``, ``never`` -> ``always``), one
inserted (``is X`` -> ``is not X``, ``can`` -> ``cannot``, ``has a`` -> ``has no``, ``has been`` -> ``has not
been``, ``contains`` -> ``does not contain`` for a short verb list), or an antonym swapped (increase/decrease,
legal/illegal, before/after, allowed/banned, ...). A sentence with a negation only has it removed. Given an anchor
(where the answer's own words start), the edit must end at most 60 characters before it; an edit the query shares
is preferred (its mirror rewrite of the query is grammatical by construction), then the nearest (without an
anchor: the earliest). :func:`answer_sentence` finds the sentence to negate, :func:`is_yes_no` the queries a
negation does not contrast, and :func:`salient_term` / :func:`pair_term` the terms an exclusion clause
(:func:`with_clause`) names.
"""

from __future__ import annotations

import re
from typing import Callable, NamedTuple

_AUX = "is|are|was|were|will|would|should|could|must"
_YES_NO = set(f"{_AUX}|can|do|does|did|has|have|had".split("|"))
_VERBS = {"contains": "contain", "causes": "cause", "requires": "require", "includes": "include",
          "provides": "provide", "allows": "allow", "occurs": "occur", "lasts": "last", "produces": "produce",
          "affects": "affect", "helps": "help", "takes": "take"}
_DETERMINERS = {"the", "a", "an", "its", "their", "his", "her", "of", "by", "these", "those", "this", "that",
                "my", "your", "our", "main", "other", "some", "any"}
_FUNCTION = set("than what which who whom whose how when where why does do did is are was were can could will "
                "would should the a an of in on for to and or with from by at as be been much many long most "
                "more less not no yes best good get".split())
_NOT_BEFORE_VERB = _DETERMINERS | {"good", "free", "do", "does", "did", "what", "who", "where", "which", "how",
                                   "when", "why"}  # "a can", "good will", "do have a", "what is X"
_PRONOUNS = {"it", "he", "she", "they", "you", "i", "we", "there"}
_ANTONYMS = [[("increase", "decrease"), ("increases", "decreases"), ("increased", "decreased"),
              ("increasing", "decreasing")], [("legal", "illegal")], [("before", "after")],
             [("allowed", "banned")], [("more", "less")], [("the most", "the least")], [("higher", "lower")],
             [("larger", "smaller")], [("always", "never")], [("possible", "impossible")],
             [("maximum", "minimum")], [("above", "below")], [("safe", "unsafe")]]
_FAMILY = {w: (f, side) for f, fam in enumerate(_ANTONYMS) for pair in fam for side, w in enumerate(pair)}
_NEGATION = re.compile(r"\b(?:not|no|never|cannot|none|neither|nor)\b|n't\b", re.I)
# (pattern, replacement, kind): lowercase, word-bounded; removals first so they win ties.
_RULES: list[tuple[str, str | Callable[[re.Match[str]], str], str]] = [
    (rf"\b({_AUX}|does|do|did|has|have|had) not (?!only\b)(\w+)", r"\1 \2", "remove-not"),
    (r"\b(?:cannot|can't) (\w+)", r"can \1", "remove-not"),
    (r"\bwon't (\w+)", r"will \1", "remove-not"),
    (r"\b(is|are|was|were|does|do|did|has|have|had|should|could|would)n't (\w+)", r"\1 \2", "remove-not"),
    (r"\bnever\b", "always", "remove-not"),
    (r"\b(is|are|was|were) (?!not\b|no\b|never\b|also\b|only\b|some\b)(\w+)", r"\1 not \2", "insert-not"),
    (r"\b(will|would|should|could|must) (?!not\b|never\b|also\b|only\b|\w+(?:ing|ed|s)\b)(\w+)", r"\1 not \2",
     "insert-not"),
    (r"\bcan (?!not\b|also\b|only\b|\w+(?:ing|ed|s)\b)(\w+)", r"cannot \1", "insert-not"),
    (r"\b(has|have|had) (?:a|an)\b", r"\1 no", "insert-no"),
    (r"\b(has|have|had) (been|\w+ed)\b", r"\1 not \2", "insert-not"),
    (rf"\b({'|'.join(_VERBS)})\b", lambda m: "does not " + _VERBS[m.group(1)], "verb-not"),
    *((rf"\b{a}\b", b, "antonym") for fam in _ANTONYMS for x, y in fam for a, b in ((x, y), (y, x))),
]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_CANDIDATE = re.compile(r"(?<![\w-])(?:[A-Z][a-z]+(?: [A-Z][a-z]+){0,2}|[a-z]{5,})(?![\w-])")


class Edit(NamedTuple):
    """One local rewrite of a sentence: ``old`` at ``start:end`` becomes ``new``."""

    start: int
    end: int
    old: str
    new: str
    kind: str


def sentence_edits(sentence: str) -> list[Edit]:
    """Every rule's possible edits of ``sentence`` (earliest first; removals before insertions at a tie)."""
    out = []
    for order, (pattern, repl, kind) in enumerate(_RULES):
        for m in re.finditer(pattern, sentence):
            before = sentence[: m.start()].split()
            if kind != "antonym" and before and before[-1].lower() in _NOT_BEFORE_VERB:
                continue
            out.append((m.start(), order, Edit(m.start(), m.end(), m.group(0),
                                               repl(m) if callable(repl) else m.expand(repl), kind)))
    return [e for _, _, e in sorted(out)]


def _sub_once(text: str, old: str, new: str) -> str | None:
    m = re.search(rf"(?<!\w){re.escape(old)}(?!\w)", text)
    return None if m is None else text[: m.start()] + new + text[m.end():]


def _mirror(query: str, e: Edit) -> str | None:
    """``query`` with the rewrite ``e`` made (an antonym in any form of its family, same direction), or None.

    A verb edit needs a subject question: the words before it not just a question word (``what is blue ice``
    has no grammatical negation by rule), the word after it no determiner or pronoun.
    """
    if e.kind != "antonym":
        m = re.search(rf"(?<!\w){re.escape(e.old)}(?!\w)", query)
        before, after = (query[: m.start()].split(), e.old.split()[1:]) if m else ([], [])
        if not m or len(before) < 2 or (after and after[0] in _DETERMINERS | _PRONOUNS):
            return None
        return query[: m.start()] + e.new + query[m.end():]
    family, side = _FAMILY[e.old]
    return next(filter(None, (_sub_once(query, p[side], p[1 - side]) for p in _ANTONYMS[family])), None)


def negate(sentence: str, query: str = "", anchor: int | None = None) -> tuple[str, Edit, str | None] | None:
    """Rewrite ``sentence`` by one rule: ``(new sentence, edit, mirror query or None)``; None if no rule applies.

    A sentence that holds a negation only has it removed (no antonym or second negation is stacked on it). The
    edit the query shares is preferred (the mirror query is ``query`` with that same rewrite; a query that holds
    a negation gets none), then, given ``anchor`` (where the answer starts), the edit ending nearest before it
    and at most 60 characters away (no other is taken), else the earliest.
    """
    edits = sentence_edits(sentence)
    if anchor is not None:  # the edit must govern the answer: at most ~10 words before it
        edits = sorted((e for e in edits if e.start <= anchor and anchor - e.end <= 60), key=lambda e: anchor - e.end)
    if _NEGATION.search(sentence):
        edits = [e for e in edits if e.kind == "remove-not"]
    if not edits:
        return None
    named = {e.old for e in edits if e.old.title() in sentence}  # "Community Legal Service": a name, no mirror
    mirrors = [] if _NEGATION.search(query) else [(e, m) for e in edits if e.old not in named
                                                  and (m := _mirror(query, e))]
    e, mirror = mirrors[0] if mirrors else (edits[0], None)
    return sentence[: e.start] + e.new + sentence[e.end:], e, mirror


def is_yes_no(query: str, answers: str = "") -> bool:
    """A yes/no query: its first word is an auxiliary verb, or the answer starts with yes or no."""
    first = query.strip().lower().split()[:1]
    return bool(first and first[0] in _YES_NO) or bool(re.match(r"\s*(yes|no)\b", answers, re.I))


def negation_cue(text: str) -> str | None:
    """The first negation cue of ``text`` (``not``, ``no``, ``never``, ``cannot``, ``n't``, ...), or None."""
    m = _NEGATION.search(text)
    return m.group(0) if m else None


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence of ``text``."""
    cuts = [0, *(m.end() for m in _SENTENCE_END.finditer(text)), len(text) + 1]
    return [(a, b - 1 if b <= len(text) else len(text)) for a, b in zip(cuts, cuts[1:])]


def answer_sentence(text: str, target: str, stems: Callable[[str], list[str]]) -> tuple[int, int] | None:
    """The span of the sentence sharing most stems with ``target`` (unique, >= 2, not a question), or None."""
    want = set(stems(target))
    scored = sorted(((len(want & set(stems(text[a:b]))), (a, b)) for a, b in sentence_spans(text)
                     if not text[a:b].rstrip().endswith("?")), reverse=True)
    if not scored or scored[0][0] < 2 or (len(scored) > 1 and scored[1][0] == scored[0][0]):
        return None
    return scored[0][1]


TEMPLATES = ("{q}, excluding any information about {y}", "{q}, but not about {y}",
             "{q}, without mentioning {y}", "{q}, other than {y}")


def with_clause(query: str, template: str, term: str) -> str:
    """``query`` with an exclusion clause (``template``: one of :data:`TEMPLATES`), its question mark
    kept last."""
    core = query.strip().rstrip("?.! ")
    return template.format(q=core, y=term) + ("?" if query.strip().endswith("?") else "")


def salient_term(text: str, avoid: set[str], idf: dict[str, float], stems: Callable[[str], list[str]],
                 min_idf: float) -> str | None:
    """A capitalised run or rare word of ``text`` that is central to it (repeated, or in its first sentence),
    all of whose stems have idf >= ``min_idf`` and none is in ``avoid``; the highest idf x count wins."""
    low, first = text.lower(), text[: sentence_spans(text)[0][1]].lower()
    best: tuple[float, str] | None = None
    starts = {a for a, _ in sentence_spans(text)}
    found = {m.group(0) if m.start() not in starts or " " in m.group(0) else m.group(0).lower()
             for m in _CANDIDATE.finditer(text)}  # a lone capitalised word opening a sentence: a common word
    for cand in sorted(found):
        st = stems(cand)
        if not st or set(st) & avoid or min(idf.get(s, 0.0) for s in st) < min_idf:
            continue
        count = len(re.findall(rf"(?<!\w){re.escape(cand.lower())}(?!\w)", low))
        if count >= 2 or cand.lower() in first:
            score = sum(idf.get(s, 0.0) for s in st) * count * (1.5 if cand[0].isupper() else 1.0)
            best = max(best or (score, cand), (score, cand))
    return best[1] if best else None


def pair_term(other_query: str, other_text: str, avoid: set[str], idf: dict[str, float],
              stems: Callable[[str], list[str]], min_idf: float) -> str | None:
    """The longest run (<= 3 words) of ``other_query`` that ``other_text`` contains, whose words have stems
    outside ``avoid`` (one of idf >= ``min_idf``) and that neither starts nor ends with a function word."""
    words = re.findall(r"[\w'-]+", other_query.lower())
    ok = [bool(stems(w)) and not set(stems(w)) & avoid and not w.isdigit() for w in words]
    runs = [words[i:j] for i in range(len(words)) for j in range(i + 1, min(i + 4, len(words) + 1))
            if all(ok[i:j]) and not {words[i], words[j - 1]} & _FUNCTION
            and max(idf.get(st, 0.0) for w in words[i:j] for st in stems(w)) >= min_idf]
    found = [" ".join(r) for r in runs if re.search(rf"(?<!\w){re.escape(' '.join(r))}(?!\w)", other_text.lower())]
    return max(found, key=lambda r: (len(r.split()), len(r), r)) if found else None
