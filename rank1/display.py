"""Results as tables: pandas frames and the HTML that Jupyter shows for a :class:`~rank1.reranker.RerankResult`.

pandas is imported only when a frame is asked for. The HTML is self-contained (no pandas, no JavaScript):
one row per judged document with its P(true) and its reasoning folded in a ``<details>`` element, every
text escaped.

Example:
    >>> result = reranker.rerank_run(run, corpus, topics, depth=10)   # doctest: +SKIP
    >>> result                     # in Jupyter: the table                 doctest: +SKIP
    >>> result.to_pandas()         # one row per document                  doctest: +SKIP
    >>> compare_runs({"BM25": run, "rank1": result.scores()}, qrels)   # doctest: +SKIP
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from rank1.scoring import JUDGEMENT_FIELDS, NOT_JUDGED, Judgement

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ("qid", "docid", "rank", "score", "p_true", *JUDGEMENT_FIELDS[1:], "p_true_reasoned", "p_true_counter")
"""Columns of :func:`result_rows` and :func:`result_frame`."""

MAX_HTML_ROWS = 50
"""Documents shown in a result's HTML table (the rest are counted, not drawn)."""

PREVIEW_CHARS = 80
"""Characters of reasoning shown before it is folded."""


class RankedDocLike(Protocol):
    """What a table row is drawn from: a :class:`rank1.results.RankedDoc`."""

    @property
    def doc_id(self) -> str: ...

    @property
    def score(self) -> float: ...

    @property
    def judgement(self) -> Judgement | None: ...


class ResultLike(Protocol):
    """What this module draws: a :class:`rank1.results.RerankResult`, named by its shape (``rank1.results``
    imports this module, not the other way round). ``stats`` is a :class:`rank1.results.RerankStats`."""

    @property
    def run(self) -> Mapping[str, Sequence[RankedDocLike]]: ...

    @property
    def stats(self) -> Any: ...

    @property
    def meta(self) -> Mapping[str, Any]: ...


def result_rows(result: ResultLike, judged_only: bool = False) -> list[dict[str, Any]]:
    """One row per document of ``result.run``, queries in run order, documents best first.

    Documents below the reranking depth (or with an empty text) have no judgement: their ``p_true`` is
    NaN and their reasoning empty.

    Args:
        result: A reranked run.
        judged_only: Leave out the documents without a judgement.

    Returns:
        Dicts with the keys of :data:`COLUMNS` (``p_true_reasoned`` only where the score is blended,
        ``p_true_counter`` only under counter-query contrast).
    """
    rows = []
    for qid, docs in result.run.items():
        for rank, doc in enumerate(docs, 1):
            if doc.judgement is None and judged_only:
                continue
            j = doc.judgement or NOT_JUDGED
            rows.append({"qid": qid, "docid": doc.doc_id, "rank": rank, "score": doc.score, "p_true": j.score,
                         **j.details()})
    return rows


def result_frame(result: ResultLike, judged_only: bool = False) -> pd.DataFrame:
    """:func:`result_rows` as a pandas DataFrame (columns :data:`COLUMNS`)."""
    import pandas as pd

    return pd.DataFrame(result_rows(result, judged_only), columns=list(COLUMNS))


def _reasoning_cell(text: str) -> str:
    """Reasoning, escaped; longer than :data:`PREVIEW_CHARS` it is folded behind its first words."""
    if not text:
        return ""
    if len(text) <= PREVIEW_CHARS:
        return html.escape(text)
    preview = html.escape(text[:PREVIEW_CHARS].rstrip()) + "&hellip;"
    return (f"<details><summary>{preview}</summary>"
            f"<div style='white-space:pre-wrap;max-width:60em'>{html.escape(text)}</div></details>")


def result_html(result: ResultLike, max_rows: int = MAX_HTML_ROWS) -> str:
    """An HTML summary of a reranked run: provenance, counts, and a table of its judged documents.

    Args:
        result: A reranked run.
        max_rows: Draw at most this many rows; the rest are counted below the table.

    Returns:
        Self-contained HTML (inline styles only); every text from the data is escaped.
    """
    meta = result.meta
    stats = result.stats
    head = (f"<b>RerankResult</b>: {len(result.run)} queries, {stats.pairs} judged pairs "
            f"({stats.cached} from the store), {stats.generated_tokens} reasoning tokens, "
            f"{stats.truncated} truncated, {stats.fallbacks} fallbacks, {stats.seconds:.1f} s<br>"
            + html.escape(" | ".join(f"{k}={meta[k]}" for k in ("model", "template", "mode", "budget", "backend")
                                     if k in meta)))
    rows = result_rows(result, judged_only=True)
    cells = []
    for row in rows[:max_rows]:
        flags = " ".join(f for f in ("truncated", "fallback") if row[f])
        if Judgement(row["p_true"], reasoned_score=row.get("p_true_reasoned")).disagrees():
            flags += f" reasoning disagrees (P(true) {row['p_true_reasoned']:.2f})"
        cells.append(
            "<tr>" + "".join(f"<td>{html.escape(str(row[k]))}</td>" for k in ("qid", "docid", "rank"))
            + f"<td>{row['score']:.4f}</td><td>{row['p_true']:.4f}</td><td>{html.escape(flags)}</td>"
            + f"<td style='text-align:left'>{_reasoning_cell(row['reasoning'])}</td></tr>"
        )
    more = f"<p>&hellip; {len(rows) - max_rows} more judged documents (see <code>to_pandas()</code>)</p>" \
        if len(rows) > max_rows else ""
    header = "".join(f"<th>{c}</th>" for c in ("qid", "docid", "rank", "score", "P(true)", "flags", "reasoning"))
    return (f"<div><p>{head}</p><table><thead><tr>{header}</tr></thead>"
            f"<tbody>{''.join(cells)}</tbody></table>{more}</div>")


def compare_runs(
    runs: Mapping[str, Mapping[str, Mapping[str, float]]],
    qrels: Mapping[str, Mapping[str, int]] | str,
    measure: str = "nDCG@10",
) -> pd.DataFrame:
    """Per-query values of one measure for several runs, side by side (with :func:`rank1.metrics`).

    Args:
        runs: ``{name: {qid: {docid: score}}}``, e.g. ``{"BM25": first_stage, "rank1": result.scores()}``.
        qrels: Relevance judgements, or the path of a qrels file.
        measure: An ``ir_measures`` measure name.

    Returns:
        A DataFrame indexed by query id (judged queries only), one column per run, and with two or more
        runs a ``delta`` column: the last run minus the first. The mean over queries is ``frame.mean()``.
    """
    import pandas as pd

    from rank1.metrics import evaluate

    columns = {}
    for name, run in runs.items():
        _, rows = evaluate(run, qrels, [measure], per_query=True)
        columns[name] = pd.Series({r.query_id: r.value for r in rows}, dtype=float)
    frame = pd.DataFrame(columns)
    frame.index.name = "qid"
    if len(columns) > 1:
        names = list(columns)
        frame["delta"] = frame[names[-1]] - frame[names[0]]
    return frame
