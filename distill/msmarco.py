"""Training groups from the MS MARCO passage data in ``shared/data/msmarco_train`` (none of it from DL19/DL20).

Three sources (see that folder's README), each turned into query *groups*: one relevant passage and
``negatives`` hard negatives of the same query, the form the labels student is trained on
(:mod:`distill.direct_train`):

* ``msmarco_dev_bm25top20.jsonl`` (475 dev queries x their BM25 top-20, sparse binary labels): the queries
  are split by a seeded draw into a **held-out dev split** (``dev_queries`` of them, for model selection and
  thresholds; never trained on) and training queries. A training group is the labelled positive and
  negatives drawn from the unlabelled passages of the same BM25 top-20 (the first-stage distribution the
  reranker sees at test time).
* ``msmarco_train_gpt35_windows.jsonl`` (1,100 queries x 2 windows of 5 BM25 passages): a window with a
  labelled positive gives a group, its negatives drawn from the unlabelled passages of both windows of that
  query (ranked by GPT-3.5's listwise ranking is ignored here: labels only).
* ``msmarco_train_positives.jsonl`` (1,743 queries, one positive each): negatives mined with BM25 over the
  union of every passage of the three files, from ranks 1-20 minus the positive.

Queries whose text is a held-out dev query are dropped from every training source (the positives file
shares 147 query texts with the dev file). Everything is drawn with one seeded generator, sources are
interleaved (dev-file groups, window groups and mined groups in turn), so a run cut short by a step limit
still sees all three.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

from rank1.io import InputError
from rank1.io.text import iter_content_lines, parse_json_object

DEV_FILE = "msmarco_dev_bm25top20.jsonl"
WINDOWS_FILE = "msmarco_train_gpt35_windows.jsonl"
POSITIVES_FILE = "msmarco_train_positives.jsonl"


class Group(NamedTuple):
    """One training group: a query, its relevant passage first, then hard negatives.

    ``labels[i]`` is 1 for ``passages[i]`` relevant (only ``passages[0]``), else 0; ``source`` names the file
    the group came from (``dev-bm25``, ``windows``, ``positives-mined``).
    """

    qid: str
    query: str
    docids: tuple[str, ...]
    passages: tuple[str, ...]
    labels: tuple[int, ...]
    source: str

    def to_json(self) -> str:
        """One JSONL line (no newline)."""
        return json.dumps(self._asdict(), ensure_ascii=False)


@dataclass(frozen=True)
class PrepareConfig:
    """How training groups are drawn.

    Attributes:
        negatives: Hard negatives per group (the group has ``1 + negatives`` passages).
        dev_queries: Queries of the dev file held out as the dev split (never trained on).
        mine_depth: BM25 depth the positives file's negatives are drawn from.
        sources: Which sources to use, in interleaving order.
        seed: Seed of every draw.
    """

    negatives: int = 3
    dev_queries: int = 100
    mine_depth: int = 20
    sources: tuple[str, ...] = ("dev-bm25", "windows", "positives-mined")
    seed: int = 0

    def __post_init__(self) -> None:
        if self.negatives < 1 or self.dev_queries < 0 or self.mine_depth < 2:
            raise ValueError("negatives must be >= 1, dev_queries >= 0, mine_depth >= 2")
        unknown = set(self.sources) - {"dev-bm25", "windows", "positives-mined"}
        if unknown:
            raise ValueError(f"unknown sources {sorted(unknown)}; known: dev-bm25, windows, positives-mined")


class DevRow(NamedTuple):
    """A row of the dev file: a query and one of its BM25 top-20 passages with the MS MARCO label."""

    qid: str
    query: str
    docid: str
    text: str
    bm25_rank: int
    label: int


def read_rows(path: str | Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each JSON-lines row of ``path`` (blank lines skipped).

    Raises:
        InputError: A line is not a JSON object, or lacks one of the ``required`` keys (file and line named).
    """
    path = Path(path)
    for lineno, line in iter_content_lines(path):
        obj = parse_json_object(path, lineno, line)
        missing = [k for k in required if k not in obj]
        if missing:
            raise InputError(path, lineno, f"row lacks {', '.join(missing)}")
        yield lineno, obj


def read_dev(path: str | Path) -> list[DevRow]:
    """The dev file's rows (``qid, query, docid, text, bm25_rank, label``)."""
    keys = ("qid", "query", "docid", "text", "bm25_rank", "label")
    return [DevRow(str(o["qid"]), o["query"], str(o["docid"]), o["text"], int(o["bm25_rank"]), int(o["label"]))
            for _, o in read_rows(Path(path), keys)]


def dev_split(rows: Sequence[DevRow], n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``(dev qids, training qids)``: ``n`` queries of the dev file drawn with ``seed``, the rest; both sorted."""
    qids = sorted({r.qid for r in rows})
    held = set(random.Random(seed).sample(qids, min(n, len(qids))))
    return sorted(held), [q for q in qids if q not in held]


def _group(rng: random.Random, qid: str, query: str, positive: tuple[str, str],
           pool: Sequence[tuple[str, str]], k: int, source: str) -> Group | None:
    pool = [p for p in pool if p[0] != positive[0] and p[1].strip() and p[1] != positive[1]]
    if len(pool) < k:
        return None
    negs = rng.sample(pool, k)
    return Group(qid, query, (positive[0], *(d for d, _ in negs)), (positive[1], *(t for _, t in negs)),
                 (1,) + (0,) * k, source)


def _dev_groups(rows: Sequence[DevRow], train_qids: set[str], cfg: PrepareConfig,
                rng: random.Random) -> list[Group]:
    by_q: dict[str, list[DevRow]] = {}
    for r in rows:
        if r.qid in train_qids:
            by_q.setdefault(r.qid, []).append(r)
    out = []
    for qid in sorted(by_q):
        ranked = sorted(by_q[qid], key=lambda r: r.bm25_rank)
        pool = [(r.docid, r.text) for r in ranked if not r.label]
        for pos in (r for r in ranked if r.label):
            g = _group(rng, qid, pos.query, (pos.docid, pos.text), pool, cfg.negatives, "dev-bm25")
            if g:
                out.append(g)
    return out


def _window_groups(path: Path, banned: set[str], cfg: PrepareConfig, rng: random.Random) -> list[Group]:
    by_query: dict[str, list[tuple[str, int]]] = {}
    for lineno, o in read_rows(path, ("query", "passages", "labels")):
        labels = o["labels"]
        if not isinstance(o["passages"], list) or not isinstance(labels, list) or len(labels) != len(o["passages"]):
            raise InputError(path, lineno, "passages and labels must be lists of the same length")
        by_query.setdefault(o["query"], []).extend(zip(o["passages"], (int(x) for x in labels)))
    out = []
    for n, query in enumerate(sorted(by_query)):
        if query in banned:
            continue
        items = [(f"w{n}-{i}", text) for i, (text, _) in enumerate(by_query[query])]
        pool = [it for it, (_, lab) in zip(items, by_query[query]) if not lab]
        for it, (_, lab) in zip(items, by_query[query]):
            if lab:
                g = _group(rng, f"w{n}", query, it, pool, cfg.negatives, "windows")
                if g:
                    out.append(g)
    return out


def _mined_groups(path: Path, extra: Iterable[tuple[str, str]], banned: set[str], cfg: PrepareConfig,
                  rng: random.Random, progress: bool) -> list[Group]:
    from rank1.records import Document, Query
    from rank1.retrieve.bm25 import BM25Index

    rows = [o for _, o in read_rows(path, ("qid", "query", "docid", "text"))]
    texts = {str(o["docid"]): o["text"] for o in rows}
    for docid, text in extra:
        texts.setdefault(docid, text)
    index = BM25Index.build({d: Document(d, t) for d, t in texts.items() if t.strip()}, progress=progress)
    kept = [o for o in rows if o["query"] not in banned]
    run = index.search_many({str(o["qid"]): Query(str(o["qid"]), o["query"]) for o in kept},
                            k=cfg.mine_depth + 1, progress=progress)
    out = []
    for o in sorted(kept, key=lambda o: str(o["qid"])):
        qid, pos = str(o["qid"]), str(o["docid"])
        pool = [(d, texts[d]) for d in run.get(qid, {}) if d != pos][: cfg.mine_depth]
        g = _group(rng, qid, o["query"], (pos, o["text"]), pool, cfg.negatives, "positives-mined")
        if g:
            out.append(g)
    return out


def interleave(lists: Sequence[Sequence[Group]]) -> list[Group]:
    """The groups of ``lists`` taken in turn (the first of each, then the second of each, ...)."""
    out: list[Group] = []
    for i in range(max((len(x) for x in lists), default=0)):
        out.extend(x[i] for x in lists if i < len(x))
    return out


@dataclass
class Prepared:
    """What :func:`prepare` produced: training groups (interleaved), the dev split, and counts."""

    groups: list[Group]
    dev_qids: list[str]
    dev_rows: list[DevRow]
    counts: dict[str, int]
    config: PrepareConfig

    def summary(self) -> dict[str, Any]:
        """Counts and settings, for logs and model cards."""
        return {"groups": len(self.groups), "pairs": sum(len(g.labels) for g in self.groups),
                "by_source": self.counts, "dev_queries": len(self.dev_qids), "config": asdict(self.config)}


def prepare(data_dir: str | Path, config: PrepareConfig = PrepareConfig(), progress: bool = True) -> Prepared:
    """Read the three MS MARCO files in ``data_dir`` and draw training groups (see the module docstring).

    Raises:
        InputError: A malformed row (file and line named).
        FileNotFoundError: A file is missing.
    """
    root = Path(data_dir)
    for name in (DEV_FILE, WINDOWS_FILE, POSITIVES_FILE):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root / name}: missing (see shared/data/README.md)")
    rng = random.Random(config.seed)
    dev_rows = read_dev(root / DEV_FILE)
    dev_qids, train_qids = dev_split(dev_rows, config.dev_queries, config.seed)
    held = set(dev_qids)
    banned = {r.query for r in dev_rows if r.qid in held}
    made: dict[str, list[Group]] = {}
    for source in config.sources:
        if source == "dev-bm25":
            made[source] = _dev_groups(dev_rows, set(train_qids), config, rng)
        elif source == "windows":
            made[source] = _window_groups(root / WINDOWS_FILE, banned, config, rng)
        else:
            extra = [(r.docid, r.text) for r in dev_rows if r.qid not in held]
            made[source] = _mined_groups(root / POSITIVES_FILE, extra, banned, config, rng, progress)
    for groups in made.values():
        rng.shuffle(groups)
    return Prepared(interleave([made[s] for s in config.sources]), dev_qids,
                    [r for r in dev_rows if r.qid in held], {s: len(g) for s, g in made.items()}, config)


def write_groups(path: str | Path, groups: Iterable[Group]) -> int:
    """Write groups as JSONL, atomically; returns how many."""
    from distill.records import write_jsonl

    return write_jsonl(path, groups)


def read_groups(path: str | Path) -> list[Group]:
    """Read groups written by :func:`write_groups`."""
    keys = Group._fields
    out = []
    for lineno, o in read_rows(Path(path), keys):
        if not (len(o["docids"]) == len(o["passages"]) == len(o["labels"]) >= 2):
            raise InputError(path, lineno, "docids, passages and labels must have the same length (>= 2)")
        out.append(Group(str(o["qid"]), o["query"], tuple(map(str, o["docids"])), tuple(o["passages"]),
                         tuple(int(x) for x in o["labels"]), str(o["source"])))
    return out
