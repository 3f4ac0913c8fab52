"""Contrastive training groups that teach negation and exclusion, in the :class:`distill.msmarco.Group` format.

``rank1 distill train-labels`` trains on them unchanged: a query, its relevant passage first, a *contrast*
passage on the same topic that must rank below it, then ordinary negatives. ``source`` names the rule:

* ``negate-answer`` (MS MARCO positives file and the dev file's *training* queries): the answer sentence of the
  positive (most stems shared with ``answers``, else with the query; a unique best, >= 2, not a question) is
  rewritten by one local rule of :mod:`distill.negation` (a negation removed or inserted, or an antonym swapped)
  so it no longer states the answer. With ``answers``, the edit must end at most 60 characters before the
  answer's own words (else the passage is skipped). Group: query, positive [1], negated near-copy [0],
  ``negatives`` ordinary negatives (a dev-file query's unlabelled BM25 top-20; a positives-file query's rank1
  BM25 ranks 1-20 over the pooled passages). Yes/no queries (an auxiliary first, or an answer opening with
  yes/no) are skipped: a passage saying "no" still answers them.
* ``negate-query`` (the mirror): where the query holds the edited words after a subject (``what foods are high
  in iron`` / ``... are high in iron``) the same rewrite of the query is grammatical by construction: that
  query, the negated passage [1], the original [0], negatives.
* ``exclude`` (ExcluIR style): ``Q, excluding any information about Y`` (four templates): N is the best-ranked
  hard negative with a salient term Y (capitalised run or word of idf >= ``min_idf``, repeated in N or in its
  first sentence) sharing no stem with Q or the positive P: P [1], N [0], negatives. Y in the query makes N
  lexically closer; the group teaches that an excluded topic is no reason to rank a passage higher.
* ``exclude-pair`` (a trap centred on Y): another query's positive P2 in Q's top 10, Y the longest run of that
  query's words that shares no stem with Q or P and that P2 contains: P [1], P2 [0], negatives. The traps of
  both exclude rules hold half the query's stems at least (on the topic, as an ExcluIR trap is).
* ``condaqa-flip`` (CondaQA dev): a question labelled YES on one edit of a passage and NO on another (edits 0
  original with the negation cue, 2 scope, 3 affirmative; paraphrases and DON'T KNOW unused; texts differ)
  gives ``QUESTION Relevant passages answer yes.`` (or ``no.``): the edit with that answer [1], its twins with
  the other [0]. Only the negation tells them apart; both polarities are built, as a NevIR pair has two queries.
* ``statement`` (:mod:`distill.statement`): for each passage pair above that differs by a negation (a
  ``negate-answer`` positive and its near-copy: ``negate-statement``; a CondaQA edit with its cue, 0 or 2, and the
  affirmative edit 3: ``condaqa-statement``) two groups whose queries are each passage's own clause around the
  change: each query's passage [1], its twin [0] (MS MARCO: and the negatives). Half rank the negated passage
  first, so polarity, not the mere presence of a negation, decides.

Held out: the dev split of :func:`distill.msmarco.prepare` (``dev_split(read_dev(...), dev_queries,
split_seed)``, defaults 100 and 0 whatever ``seed`` is; by qid and query text; its passages are not pooled), and
as a contrast dev set a seeded ``dev_fraction`` of the MS MARCO query texts and of the CondaQA PassageIDs: their
groups go to the dev set only, and their positives are no training group's passage. The dev set also gets the 50
NevIR *train* pairs (``nevir-train``: (q1, doc1 [1], doc2 [0]), (q2, doc2 [1], doc1 [0])). NevIR test, ExcluIR
and BoolQuestions files are never read. Training groups are interleaved across sources, as ``prepare`` does.
"""

from __future__ import annotations

import difflib
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from distill.msmarco import DEV_FILE, POSITIVES_FILE, Group, dev_split, interleave, read_dev, read_rows
from distill.negation import TEMPLATES, answer_sentence, is_yes_no, negate, pair_term, salient_term, with_clause
from distill.statement import statement_groups

MSMARCO_DIR = "msmarco_train"
CONDAQA_FILE = "condaqa/condaqa_dev_minus_nevir_test.jsonl"
NEVIR_TRAIN_FILE = "nevir/nevir_mini_train_q1_50_seed42.jsonl"
SOURCES = {"negate-answer": ("negate-answer", "negate-query"), "exclude": ("exclude", "exclude-pair"),
           "condaqa-flip": ("condaqa-flip",), "statement": ("negate-statement", "condaqa-statement")}


@dataclass(frozen=True)
class ContrastConfig:
    """How contrastive groups are built.

    Attributes:
        rules: Rules to run (``negate-answer``, ``exclude``, ``condaqa-flip``, ``statement``), in interleaving
            order.
        negatives: Ordinary hard negatives added to each MS MARCO group (beside the contrast passage).
        dev_fraction: Share of MS MARCO query texts and CondaQA PassageIDs held out as the contrast dev set.
        condaqa_dev_fraction: Share of CondaQA PassageIDs held out instead (``None``: ``dev_fraction``). Its pairs
            are the dev pairs most like NevIR's, so a larger share buys a paired dev set worth selecting on.
        max_per_rule: At most this many training groups per source (a seeded draw); ``None``: all.
        mine_depth: BM25 depth ordinary negatives and pair traps come from.
        min_idf: Smallest BM25 idf of an ``exclude`` term.
        dev_queries: MS MARCO dev-file queries held out as :func:`distill.msmarco.prepare`'s dev split.
        split_seed: Seed of that split (``prepare``'s default, so both exclude the same queries).
        seed: Seed of the contrast dev draw, templates and negatives.
    """

    rules: tuple[str, ...] = ("negate-answer", "exclude", "condaqa-flip", "statement")
    negatives: int = 2
    dev_fraction: float = 0.1
    condaqa_dev_fraction: float | None = None
    max_per_rule: int | None = None
    mine_depth: int = 20
    min_idf: float = 3.5
    dev_queries: int = 100
    split_seed: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.rules) - set(SOURCES)
        if unknown:
            raise ValueError(f"unknown rules {sorted(unknown)}; known: {', '.join(SOURCES)}")
        if self.negatives < 0 or not all(0 <= f < 1 for f in (self.dev_fraction, self.condaqa_share)) or (
                self.max_per_rule or 1) < 1:
            raise ValueError("negatives must be >= 0, dev fractions in [0, 1), max_per_rule >= 1")

    @property
    def condaqa_share(self) -> float:
        """The share of CondaQA PassageIDs held out."""
        return self.dev_fraction if self.condaqa_dev_fraction is None else self.condaqa_dev_fraction


class Item(NamedTuple):
    """An MS MARCO training query with one positive and its ordinary negatives' docids (best first)."""

    qid: str
    query: str
    docid: str
    text: str
    answers: str
    pool: tuple[str, ...]

    @property
    def key(self) -> str:
        """What the dev draw holds out: the query text (the same query under two qids stays on one side)."""
        return self.query.strip().lower()


def load_msmarco(root: Path, cfg: ContrastConfig, progress: bool = False) -> tuple[list[Item], dict[str, str], Any]:
    """Training items, the pooled texts and their BM25 index; prepare's dev split is left out by qid, query text
    and passage."""
    from rank1.records import Document, Query
    from rank1.retrieve.bm25 import BM25Index

    rows = read_dev(root / DEV_FILE)
    held = set(dev_split(rows, cfg.dev_queries, cfg.split_seed)[0])
    banned = {r.query.strip().lower() for r in rows if r.qid in held}
    banned_docs = {r.docid for r in rows if r.qid in held}  # not even as another query's negative
    rows = sorted((r for r in rows if r.query.strip().lower() not in banned and r.docid not in banned_docs),
                  key=lambda r: (r.qid, r.bm25_rank))
    texts = {r.docid: r.text for r in rows}
    unlabelled: dict[str, list[str]] = {}
    for r in rows:
        unlabelled.setdefault(r.qid, []).extend([] if r.label else [r.docid])
    items = [Item(r.qid, r.query, r.docid, r.text, "", tuple(unlabelled[r.qid])) for r in rows if r.label]
    positives = [o for _, o in read_rows(root / POSITIVES_FILE, ("qid", "query", "docid", "text"))
                 if o["query"].strip().lower() not in banned and str(o["docid"]) not in banned_docs]
    for o in positives:
        texts.setdefault(str(o["docid"]), o["text"])
    index = BM25Index.build({d: Document(d, t) for d, t in texts.items() if t.strip()}, progress=progress)
    run = index.search_many({str(o["qid"]): Query(str(o["qid"]), o["query"]) for o in positives},
                            k=cfg.mine_depth + 1, progress=progress)
    for o in sorted(positives, key=lambda o: str(o["qid"])):
        pool = tuple(d for d in run.get(str(o["qid"]), {}) if d != str(o["docid"]))[: cfg.mine_depth]
        items.append(Item(str(o["qid"]), o["query"], str(o["docid"]), o["text"], " ".join(o.get("answers") or []),
                          pool))
    return items, texts, index


def _group(qid: str, query: str, docs: Sequence[tuple[str, str]], source: str) -> Group:
    return Group(qid, query, tuple(d for d, _ in docs), tuple(t for _, t in docs), (1,) + (0,) * (len(docs) - 1),
                 source)


@dataclass
class _MsMarcoRules:
    """The MS MARCO rules over one pool of passages (``texts``) with one seeded generator."""

    texts: dict[str, str]
    idf: dict[str, float]
    cfg: ContrastConfig
    rng: random.Random
    stems: Callable[[str], list[str]]

    def negatives(self, item: Item, skip: set[str]) -> list[tuple[str, str]]:
        """``cfg.negatives`` ordinary negatives of ``item`` drawn from its pool, none in ``skip``."""
        pool = [d for d in item.pool if d not in skip and self.texts[d].strip() and self.texts[d] != item.text]
        return [(d, self.texts[d]) for d in self.rng.sample(pool, min(self.cfg.negatives, len(pool)))]

    def negate(self, item: Item, skip: set[str]) -> list[Group]:
        """The ``negate-answer`` group of ``item``, its ``negate-query`` mirror where one is grammatical, and the
        two ``negate-statement`` groups of the passage pair (:mod:`distill.statement`)."""
        span = None if is_yes_no(item.query, item.answers) else answer_sentence(
            item.text, item.answers or item.query, self.stems)
        sentence = item.text[span[0]:span[1]] if span else ""
        new = set(self.stems(item.answers)) - set(self.stems(item.query))  # the answer's own words
        anchor = next((m.start() for m in re.finditer(r"\w+", sentence) if set(self.stems(m.group())) & new), None)
        made = negate(sentence, item.query.strip(), anchor) if span else None
        if span is None or made is None:
            return []
        pos, neg = (item.docid, item.text), (item.docid + "#neg", item.text[: span[0]] + made[0] + item.text[span[1]:])
        negs = self.negatives(item, skip)
        return [_group(item.qid, item.query, [pos, neg, *negs], "negate-answer")] + (
            [_group(item.qid + "-not", made[2], [neg, pos, *negs], "negate-query")] if made[2] else []) + (
            statement_groups(item.qid, pos, neg, negs, "negate-statement", self.cfg.seed))

    def exclude(self, item: Item, skip: set[str], positive_of: dict[str, Item]) -> list[Group]:
        """The ``exclude`` and ``exclude-pair`` groups of ``item`` (``positive_of``: docid -> same-side item)."""
        avoid, out = set(self.stems(item.query)) | set(self.stems(item.text)), []
        want = set(self.stems(item.query))  # a trap must be on the topic: half the query's stems at least
        top = [d for d in item.pool[:10]
               if d not in skip and 2 * len(want & set(self.stems(self.texts[d]))) >= len(want)]
        plain = ((d, salient_term(self.texts[d], avoid, self.idf, self.stems, self.cfg.min_idf))
                 for d in top if d not in positive_of)
        pair = ((d, positive_of[d].key != item.key and pair_term(
            positive_of[d].query, self.texts[d], avoid, self.idf, self.stems, self.cfg.min_idf))
            for d in top if d in positive_of)
        for source, found in (("exclude", plain), ("exclude-pair", pair)):
            d, term = next(((d, t) for d, t in found if t), (None, None))
            if d is not None and term:
                query = with_clause(item.query, self.rng.choice(TEMPLATES), term)
                out.append(_group(f"{item.qid}-{source}", query,
                                  [(item.docid, item.text), (d, self.texts[d]), *self.negatives(item, skip | {d})],
                                  source))
        return out


def read_condaqa(path: str | Path) -> list[dict[str, Any]]:
    """The rows of the CondaQA file, each with the fields the CondaQA rules read (a missing one: InputError)."""
    return [o for _, o in read_rows(path, ("sentence1", "sentence2", "label", "PassageEditID", "PassageID",
                                           "QuestionID"))]


def condaqa_groups(rows: Sequence[dict[str, Any]]) -> list[tuple[str, Group]]:
    """``(PassageID, group)`` for each ``condaqa-flip`` group of the CondaQA rows (:func:`read_condaqa`; see the
    module docstring)."""
    by: dict[tuple[str, str], dict[int, tuple[str, str, str]]] = {}
    for o in rows:
        if o["label"] in ("YES", "NO") and int(o["PassageEditID"]) in (0, 2, 3):
            by.setdefault((str(o["PassageID"]), str(o["QuestionID"])), {})[int(o["PassageEditID"])] = (
                o["sentence1"], o["label"].lower(), o["sentence2"])
    out = []
    for (pid, qid), edits in sorted(by.items()):
        for edit, (text, label, question) in sorted(edits.items()):
            twins = {t: e for e, (t, lab, _) in sorted(edits.items(), reverse=True) if lab != label and t != text}
            if twins:
                docs = [(f"condaqa-{pid}-{edit}", text), *((f"condaqa-{pid}-{e}", t) for t, e in twins.items())]
                query = f"{question} Relevant passages answer {label}."
                out.append((pid, _group(f"condaqa-{pid}-{qid}-{label}-{edit}", query, docs, "condaqa-flip")))
    return out


def condaqa_statements(rows: Sequence[dict[str, Any]], seed: int = 0) -> list[tuple[str, Group]]:
    """``(PassageID, group)`` for the ``condaqa-statement`` groups of the CondaQA rows: each passage's edit with a
    negation cue (0, the original; 2, the scope edit) against its affirmative edit (3), by
    :func:`distill.statement.statement_groups`."""
    texts: dict[str, dict[int, str]] = {}
    for o in rows:
        texts.setdefault(str(o["PassageID"]), {})[int(o["PassageEditID"])] = o["sentence1"]
    out = []
    for pid, edits in sorted(texts.items()):
        for e in (0, 2):
            if e in edits and 3 in edits and edits[e] != edits[3]:
                a, b = (f"condaqa-{pid}-{e}", edits[e]), (f"condaqa-{pid}-3", edits[3])
                out += [(pid, g) for g in statement_groups(f"condaqa-{pid}-{e}v3", a, b, (), "condaqa-statement", seed)]
    return out


def nevir_train_groups(path: str | Path) -> list[Group]:
    """Two dev groups per NevIR *train* pair: (q1, doc1 [1], doc2 [0]) and (q2, doc2 [1], doc1 [0])."""
    from rank1.metrics import read_nevir_pairs

    topics, corpus, pairs = read_nevir_pairs(path)
    return [Group(q, topics[q].text, (d, o), (corpus[d].text, corpus[o].text), (1, 0), "nevir-train")
            for p in pairs for q, d, o in ((p.query_a, p.doc_a, p.doc_b), (p.query_b, p.doc_b, p.doc_a))]


@dataclass
class Contrast:
    """What :func:`build_contrast` produced: training groups (interleaved), dev groups, counts per source."""

    train: list[Group]
    dev: list[Group]
    counts: dict[str, dict[str, int]]
    config: ContrastConfig

    def summary(self) -> dict[str, Any]:
        """Counts and settings, for logs and model cards."""
        return {"train": len(self.train), "dev": len(self.dev), "by_source": self.counts,
                "config": asdict(self.config)}


def build_contrast(data_dir: str | Path, config: ContrastConfig = ContrastConfig(),
                   progress: bool = False) -> Contrast:
    """Build the contrastive groups from the shared data folder (``msmarco_train/``, ``condaqa/``, ``nevir/``).

    Raises:
        InputError: A malformed row (file and line named).
        FileNotFoundError: A needed file is missing.
    """
    root = Path(data_dir)
    msmarco = bool({"negate-answer", "exclude", "statement"} & set(config.rules))
    condaqa = bool({"condaqa-flip", "statement"} & set(config.rules))
    needed = [root / MSMARCO_DIR / DEV_FILE, root / MSMARCO_DIR / POSITIVES_FILE] * msmarco
    for path in needed + [root / CONDAQA_FILE] * condaqa:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing (see shared/data/README.md)")
    rng = random.Random(config.seed)
    made: dict[str, list[tuple[str, Group]]] = {s: [] for r in config.rules for s in SOURCES[r]}
    held: set[str] = set()
    if msmarco:
        from rank1.retrieve.tokenize import Tokenizer

        items, texts, index = load_msmarco(root / MSMARCO_DIR, config, progress)
        keys = sorted({it.key for it in items})
        held = set(random.Random(f"contrast-dev-{config.seed}").sample(keys, round(len(keys) * config.dev_fraction)))
        positive_of: tuple[dict[str, Item], dict[str, Item]] = ({}, {})  # training side, held-out side
        for it in items:
            positive_of[it.key in held].setdefault(it.docid, it)
        rules = _MsMarcoRules(texts, index.model.idf, config, rng, Tokenizer().tokenize)
        held_positives = set(positive_of[True])
        for it in items:
            side = it.key in held
            skip = set() if side else held_positives  # no training group shows a held-out positive
            for g in ((rules.negate(it, skip) if {"negate-answer", "statement"} & set(config.rules) else [])
                      + (rules.exclude(it, skip, positive_of[side]) if "exclude" in config.rules else [])):
                if g.source in made:
                    made[g.source].append((it.key, g))
    if condaqa:  # one held-out draw of PassageIDs, whichever CondaQA rules run
        condaqa_rows = read_condaqa(root / CONDAQA_FILE)
        found = condaqa_groups(condaqa_rows)
        pids = sorted({p for p, _ in found})
        held_count = round(len(pids) * config.condaqa_share)
        draw = random.Random(f"contrast-dev-condaqa-{config.seed}").sample(pids, held_count)
        held |= {f"condaqa:{p}" for p in draw}
        found += condaqa_statements(condaqa_rows, config.seed) if "statement" in config.rules else []
        for p, g in found:
            if g.source in made:
                made[g.source].append((f"condaqa:{p}", g))
    train: dict[str, list[Group]] = {}
    dev: list[Group] = []
    for source, pairs in made.items():
        dev += [g for k, g in pairs if k in held]
        train[source] = [g for k, g in pairs if k not in held]
        rng.shuffle(train[source])
        del train[source][config.max_per_rule or len(train[source]):]
    nevir = root / NEVIR_TRAIN_FILE
    dev += nevir_train_groups(nevir) if nevir.is_file() else []
    counts = {s: {"train": len(train.get(s, [])), "dev": sum(g.source == s for g in dev)}
              for s in [*made, "nevir-train"]}
    return Contrast(interleave(list(train.values())), dev, counts, config)


def mark_changes(before: str, after: str) -> str:
    """``after`` with the words changed from ``before`` marked ``[-old-]{+new+}`` (unmarked if mostly different)."""
    a, b = before.split(), after.split()
    sm = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    if sm.ratio() < 0.6:
        return after
    out: list[str] = []
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        old, new = " ".join(a[i1:i2]), " ".join(b[j1:j2])
        out += [new] if tag == "equal" else [f"[-{old}-]"] * bool(old) + [f"{{+{new}+}}"] * bool(new)
    return " ".join(out)


def _clip(text: str, width: int) -> str:
    """``width`` characters of ``text`` around its first change mark (from the start if it has none)."""
    marks = [i for i in (text.find("[-"), text.find("{+")) if i >= 0]
    at = max(0, min(marks, default=0) - width // 3)
    return ("..." if at else "") + text[at: at + width] + ("..." if at + width < len(text) else "")


def examples_text(groups: Sequence[Group], n: int = 30, seed: int = 0, width: int = 200) -> str:
    """``n`` groups drawn with ``seed`` as readable text (for a model card): source, query, the relevant passage,
    the contrast passage with its changes from the relevant one marked, and how many more negatives follow."""
    blocks = []
    for g in random.Random(seed).sample(list(groups), min(n, len(groups))):
        more = f"\n  (+ {len(g.passages) - 2} more negatives)" if len(g.passages) > 2 else ""
        blocks.append(f"[{g.source}] {g.qid}\n  query: {g.query}\n  + {_clip(g.passages[0], width)}\n"
                      f"  - {_clip(mark_changes(g.passages[0], g.passages[1]), width)}{more}")
    return "\n\n".join(blocks)
