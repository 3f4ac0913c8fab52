"""A persistent score store: every judged pair is kept, so that no judgement is ever computed twice.

The store is one SQLite file (WAL journal, so readers never block the writer) holding one row per judged
(query, passage) pair. A row is keyed by everything that decides the judgement: the model fingerprint,
the template name and hash, the mode and budget, the passage token limit, the engine (backend and its
options), and the sha256 of the query text (instruction included) and of the passage text. Scores are
stored as SQLite ``REAL`` (a double), so a stored score reads back bit for bit.

Example:
    >>> with ScoreStore("scores.sqlite") as store:  # doctest: +SKIP
    ...     found = store.get_many(keys)
    ...     store.put_many((k, judge(k)) for k in keys if k not in found)
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Iterable, Iterator, NamedTuple, Sequence

from rank1.scoring import JUDGEMENT_FIELDS, Judgement

STORE_ENV = "RANK1_SCORE_CACHE"
SCHEMA_VERSION = 1
_KEY_COLUMNS = ("model_fingerprint", "template", "template_hash", "mode", "budget", "max_passage_tokens",
                "engine", "query_sha256", "passage_sha256")
_VALUE_COLUMNS = JUDGEMENT_FIELDS
_ROW_COLUMNS = (*_KEY_COLUMNS, *_VALUE_COLUMNS, "created_at")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS judgements (
    model_fingerprint TEXT NOT NULL, template TEXT NOT NULL, template_hash TEXT NOT NULL,
    mode TEXT NOT NULL, budget INTEGER NOT NULL, max_passage_tokens INTEGER NOT NULL, engine TEXT NOT NULL,
    query_sha256 TEXT NOT NULL, passage_sha256 TEXT NOT NULL,
    score REAL NOT NULL, reasoning TEXT NOT NULL, generated_tokens INTEGER NOT NULL,
    truncated INTEGER NOT NULL, fallback INTEGER NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY ({", ".join(_KEY_COLUMNS)})
) WITHOUT ROWID
"""


class StoreError(RuntimeError):
    """The score store cannot be opened, read or written; the message names the file."""


def default_store_path() -> Path:
    """``$RANK1_SCORE_CACHE``, else ``~/.cache/rank1/scores.sqlite``."""
    return Path(os.environ.get(STORE_ENV) or "~/.cache/rank1/scores.sqlite").expanduser()


def text_sha256(text: str) -> str:
    """Hex sha256 of ``text`` as UTF-8."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class StoreKey(NamedTuple):
    """The primary key of a stored judgement (see the module docstring)."""

    model_fingerprint: str
    template: str
    template_hash: str
    mode: str
    budget: int
    max_passage_tokens: int
    engine: str
    query_sha256: str
    passage_sha256: str


@dataclass(frozen=True)
class StoreSettings:
    """Everything besides the pair itself that decides a judgement (build it with ``Reranker.store_settings``).

    Attributes:
        model_fingerprint: The weights and config (see :class:`rank1.models.ModelRef`).
        template: Prompt template name.
        template_hash: Prompt template hash.
        mode: ``direct`` or ``reasoning``.
        budget: Reasoning budget (0 in direct mode, where it plays no part).
        max_passage_tokens: Passage token limit.
        engine: Backend name and options, e.g. ``transformers device=cpu dtype=auto trust_remote_code=False``
            (options set to ``None`` are left out).
    """

    model_fingerprint: str
    template: str
    template_hash: str
    mode: str
    budget: int
    max_passage_tokens: int
    engine: str

    def key(self, query: str, passage: str) -> StoreKey:
        """The key of the pair (``query`` with its instruction, ``passage`` with its title) under these settings."""
        return StoreKey(*astuple(self), text_sha256(query), text_sha256(passage))


class ScoreStore:
    """Stored judgements in one SQLite file; a context manager that closes the connection on exit.

    Any number of processes may read and write the same file: each write is one transaction, and a
    writer waits up to ``timeout`` seconds for another one to finish.

    Args:
        path: The SQLite file; it and its folder are created when missing.
        timeout: Seconds to wait for a lock held by another process.

    Raises:
        StoreError: The file is not a score store (or of another schema version) or cannot be opened.
    """

    def __init__(self, path: str | Path, timeout: float = 60.0) -> None:
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except (OSError, sqlite3.Error) as err:
            raise StoreError(f"{self.path}: cannot open the score cache ({err})") from None
        try:
            self._setup()
        except sqlite3.Error as err:
            self._conn.close()
            raise StoreError(f"{self.path}: not a usable score cache ({err})") from None

    def _setup(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"schema version {version}, this rank1 reads {SCHEMA_VERSION}")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: commits survive a killed process
        if version == 0:
            with self._transaction():
                self._conn.execute(_SCHEMA)
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` when the body raises."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def __enter__(self) -> "ScoreStore":
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (committed rows are already on disk)."""
        self._conn.close()

    def get_many(self, keys: Iterable[StoreKey], other_budgets: bool = False) -> dict[StoreKey, Judgement]:
        """The stored judgements of those ``keys`` that are in the store.

        Args:
            keys: The keys to look up.
            other_budgets: Also answer a reasoning key (budget above 0) from the same pair judged under the
                same settings at another budget, where that reasoning stopped by itself (closed its block, or
                ended, before its budget) after no more tokens than the key's budget. Greedy decoding then
                writes the same tokens at any budget from that length up, so the judgement is the same: a
                budget sweep only generates for the pairs that ran into a smaller budget. Only for engines
                whose prompts do not depend on the budget (not where the budget's room in a fixed context
                cuts the prompt: :attr:`rank1.backends.options.BackendOptions.BUDGET_FITS_CONTEXT`).
        """
        columns = ", ".join(_VALUE_COLUMNS)
        query = f"SELECT {columns} FROM judgements WHERE " + " AND ".join(f"{c} = ?" for c in _KEY_COLUMNS)
        others = (f"SELECT {columns} FROM judgements WHERE "
                  + " AND ".join(f"{c} = ?" for c in _KEY_COLUMNS if c != "budget")
                  + " AND budget != ? AND generated_tokens <= ? AND (fallback = 0 OR generated_tokens < budget)"
                  " ORDER BY budget LIMIT 1")
        found: dict[StoreKey, Judgement] = {}
        try:
            for key in keys:
                row = self._conn.execute(query, key).fetchone()
                if row is None and other_budgets and key.budget > 0:
                    rest = [v for c, v in zip(_KEY_COLUMNS, key) if c != "budget"]
                    row = self._conn.execute(others, (*rest, key.budget, key.budget)).fetchone()
                if row is not None:
                    found[key] = Judgement.from_values(row)
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: cannot read the score cache ({err})") from None
        return found

    def put_many(self, items: Iterable[tuple[StoreKey, Judgement]]) -> int:
        """Store judgements in one transaction (a pair stored again replaces its row); returns how many."""
        now = time.time()
        rows: Sequence[tuple[object, ...]] = [
            (*key, *j.to_values(), now)
            for key, j in items
        ]
        self._insert(rows, "REPLACE")
        return len(rows)

    def _insert(self, rows: Sequence[tuple[object, ...]], conflict: str) -> None:
        """Insert full rows (:data:`_ROW_COLUMNS`) in one transaction; ``conflict``: REPLACE or IGNORE."""
        sql = (f"INSERT OR {conflict} INTO judgements ({', '.join(_ROW_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(_ROW_COLUMNS))})")
        try:
            with self._transaction():
                self._conn.executemany(sql, rows)
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: cannot write the score cache ({err})") from None

    def count(self) -> int:
        """How many judgements the store holds."""
        return int(self._conn.execute("SELECT COUNT(*) FROM judgements").fetchone()[0])

    def export(self, path: str | Path, fingerprints: Sequence[str] = (), modes: Sequence[str] = (),
               engines: Sequence[str] = ()) -> int:
        """Write stored judgements to a JSONL file (gzip when ``path`` ends in ``.gz``), one row an object with
        every column, in key order; atomically (temp file, then rename). Another machine's store takes them
        with :meth:`import_file`, so an evaluation can resume there.

        Args:
            path: The file to write.
            fingerprints: Only rows whose model fingerprint starts with one of these (all when empty).
            modes: Only rows of these modes (all when empty).
            engines: Only rows whose engine contains one of these (``"quantize=int8-smooth"``, ``"vllm"``; all
                when empty).

        Returns:
            How many rows were written.
        """
        columns = _ROW_COLUMNS
        where = [" OR ".join("model_fingerprint LIKE ?" for _ in fingerprints),
                 " OR ".join("mode = ?" for _ in modes),
                 " OR ".join("instr(engine, ?) > 0" for _ in engines)]
        sql = (f"SELECT {', '.join(columns)} FROM judgements"
               + "".join(f" {'WHERE' if i == 0 else 'AND'} ({w})" for i, w in enumerate(w for w in where if w))
               + f" ORDER BY {', '.join(_KEY_COLUMNS)}")
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp")
        n = 0
        try:
            with _open_text(tmp, "wt", gz=target.suffix == ".gz") as f:
                for row in self._conn.execute(sql, [*(f"{x}%" for x in fingerprints), *modes, *engines]):
                    f.write(json.dumps(dict(zip(columns, row)), ensure_ascii=False) + "\n")
                    n += 1
            os.replace(tmp, target)
        except (OSError, sqlite3.Error) as err:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"{target}: cannot export the score cache ({err})") from None
        return n

    def import_file(self, path: str | Path) -> tuple[int, int]:
        """Add the judgements of a file :meth:`export` wrote, in one transaction; rows already stored are kept
        as they are. A bad line stops the import with nothing added.

        Returns:
            ``(rows read, rows added)``.

        Raises:
            StoreError: ``FILE:LINE: what is wrong``, or the store cannot be written.
        """
        columns = _ROW_COLUMNS
        source = Path(path)
        rows: list[tuple[object, ...]] = []
        try:
            with _open_text(source, "rt", gz=source.suffix == ".gz") as f:
                for lineno, line in enumerate(f, 1):
                    if line.strip():
                        rows.append(_import_row(line, columns, f"{source}:{lineno}"))
        except (OSError, EOFError, UnicodeDecodeError) as err:
            raise StoreError(f"{source}: cannot read ({err})") from None
        before = self.count()
        self._insert(rows, "IGNORE")
        return len(rows), self.count() - before


def _open_text(path: Path, mode: str, gz: bool) -> IO[str]:
    """``path`` opened in text ``mode`` (UTF-8), through gzip when ``gz``."""
    return gzip.open(path, mode, encoding="utf-8") if gz else open(path, mode, encoding="utf-8")


def _import_row(line: str, columns: Sequence[str], where: str) -> tuple[object, ...]:
    """One exported row as column values, checked; ``where`` (``FILE:LINE``) names it in the error."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise StoreError(f"{where}: not JSON ({err.msg})") from None
    if not isinstance(obj, dict) or set(obj) != set(columns):
        raise StoreError(f"{where}: not an exported judgement (want the columns {', '.join(columns)})")
    texts = {"model_fingerprint", "template", "template_hash", "mode", "engine", "query_sha256", "passage_sha256",
             "reasoning"}
    for c in columns:
        want: tuple[type, ...] = (str,) if c in texts else (int, float) if c in ("score", "created_at") else (int,)
        if not isinstance(obj[c], want) or isinstance(obj[c], bool):
            raise StoreError(f"{where}: {c} is {obj[c]!r}")
    return tuple(obj[c] for c in columns)

