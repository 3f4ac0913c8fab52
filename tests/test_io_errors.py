"""Malformed inputs: every reader raises InputError naming the file and the offending line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from rank1.io import InputError, atomic_write, read_corpus, read_qrels, read_rankllm, read_run, read_topics
from rank1.io.text import iter_lines

MakeFile = Callable[[str, str | bytes], Path]


class Case(NamedTuple):
    name: str  # file name (its extension may drive format detection)
    content: bytes
    read: Callable[[Path], Any]
    line: int | None  # the line the error must name; None: the file as a whole
    message: str  # a fragment of the message


def qrels_as(fmt: str) -> Callable[[Path], Any]:
    return lambda path: read_qrels(path, fmt)


CASES: dict[str, Case] = {
    # runs
    "run: wrong column count": Case(
        "r.trec", b"q Q0 d1 1 2.0 t\nq Q0 d2 2 1.0\n", read_run, 2, "expected 6 columns"
    ),
    "run: non-numeric score": Case("r.trec", b"q Q0 d1 1 high t\n", read_run, 1, "is not a number"),
    "run: NaN score": Case("r.trec", b"q Q0 d1 1 1 t\nq Q0 d2 2 NaN t\n", read_run, 2, "not finite"),
    "run: infinite score": Case("r.trec", b"q Q0 d1 1 -inf t\n", read_run, 1, "not finite"),
    "run: duplicate docid": Case(
        "r.trec", b"q Q0 d1 1 3 t\nq Q0 d2 2 2 t\nq Q0 d1 3 1 t\n", read_run, 3, "(first at line 1)"
    ),
    "run: empty file": Case("r.trec", b"", read_run, None, "empty file"),
    "run: only blank lines": Case("r.trec", b"\n  \n\t\n", read_run, None, "empty file"),
    "run: bad UTF-8": Case("r.trec", b"q Q0 d1 1 1 t\nq Q0 d\xe9 2 0 t\n", read_run, 2, "not valid UTF-8"),
    "gzip: corrupt data": Case("r.trec.gz", b"\x1f\x8b\x08\x00garbage", read_run, 1, "gzip"),
    # qrels
    "qrels: duplicate judgement": Case(
        "q.txt", b"1 0 d1 1\n1 0 d2 0\n1 0 d1 2\n", read_qrels, 3, "first at line 1"
    ),
    "qrels: non-integer relevance": Case("q.txt", b"1 0 d1 1\n1 0 d2 0.5\n", read_qrels, 2, "not an integer"),
    "qrels: 5 columns": Case("q.txt", b"1 0 d1 1\n1 0 d2 1 x\n", qrels_as("trec"), 2, "expected 4 columns"),
    "qrels: 3 columns with auto": Case("cranqrel", b"\n1 184 2\n", read_qrels, 2, "fmt='cranfield'"),
    "qrels: beir without header": Case("q.tsv", b"q1\td1\t1\n", qrels_as("beir"), 1, "header"),
    "qrels: beir 2 columns": Case(
        "q.tsv", b"query-id\tcorpus-id\tscore\nq1\td1\n", read_qrels, 2, "3 tab-separated"
    ),
    "qrels: unknown Cranfield code": Case(
        "cranqrel", b"1 184 2\n1 29 7\n", qrels_as("cranfield"), 2, "code '7'"
    ),
    "qrels: empty file": Case("q.txt", b"\n", read_qrels, None, "empty file"),
    # corpora
    "corpus: unterminated DOC": Case(
        "d.trec",
        b"<DOC>\n<DOCNO>1</DOCNO>\n</DOC>\n<DOC>\n<DOCNO>2</DOCNO>\ntext\n",
        read_corpus,
        4,
        "never closed",
    ),
    "corpus: DOC without DOCNO": Case(
        "d.trec",
        b"<DOC>\n<DOCNO>1</DOCNO>\n</DOC>\n\n<DOC>\n<TEXT>x</TEXT>\n</DOC>\n",
        read_corpus,
        5,
        "without <DOCNO>",
    ),
    "corpus: nested DOC": Case(
        "d.trec",
        b"\n<DOC>\n<DOCNO>1</DOCNO>\n<DOC>\n<DOCNO>2</DOCNO>\n</DOC>\n",
        read_corpus,
        2,
        "not closed before the <DOC> at line 4",
    ),
    "corpus: text outside DOC": Case(
        "d.trec", b"<DOC>\n<DOCNO>1</DOCNO>\n</DOC>\nstray\n", read_corpus, 4, "outside a <DOC>"
    ),
    "corpus: stray </DOC>": Case(
        "d.trec", b"<DOC><DOCNO>1</DOCNO></DOC></DOC>\n", read_corpus, 1, "without an open"
    ),
    "corpus: duplicate doc id": Case(
        "c.tsv", b"d1\tone\nd2\ttwo\nd1\tthree\n", read_corpus, 3, "first at line 1"
    ),
    "corpus: tsv with 4 fields": Case("c.tsv", b"d1\ta\tb\tc\n", read_corpus, 1, "found 4 fields"),
    "corpus: jsonl without _id": Case(
        "c.jsonl", b'{"_id": "d1", "text": "a"}\n{"text": "b"}\n', read_corpus, 2, "missing field '_id'"
    ),
    "corpus: invalid JSON line": Case(
        "c.jsonl", b'{"_id": "d1", "text": "a"}\n\n{"_id": "d2", "text": }\n', read_corpus, 3, "invalid JSON"
    ),
    "corpus: JSON line not an object": Case(
        "c.jsonl", b'["d1", "a"]\n', read_corpus, 1, "expected a JSON object"
    ),
    "corpus: cranfield text before .I": Case(
        "cran.all",
        b"preamble\n.I 1\n.W\ntext\n",
        lambda p: read_corpus(p, "cranfield"),
        1,
        "before the first '.I'",
    ),
    "corpus: cranfield .I without id": Case(
        "cran.all", b".I 1\n.W\nx\n.I\n.W\ny\n", read_corpus, 4, "without a record id"
    ),
    # topics
    "topics: NUL byte": Case("t.tsv", b"1\tfirst\n2\tsec\x00ond\n", read_topics, 2, "NUL byte"),
    "topics: tsv with 3 fields": Case("t.tsv", b"1\tfirst\n2\tsecond\tthird\n", read_topics, 2, "found 3"),
    "topics: duplicate qid": Case("t.tsv", b"1\tfirst\n1\tagain\n", read_topics, 2, "first at line 1"),
    "topics: empty text": Case("t.tsv", b"1\tfirst\n2\t  \n", read_topics, 2, "empty text"),
    "topics: block without num": Case(
        "t.trec",
        b"<top>\n<num>1</num><title>a</title>\n</top>\n<top>\n<title>b</title>\n</top>\n",
        read_topics,
        4,
        "no <num>",
    ),
    "topics: unterminated <top> at EOF": Case(
        "t.trec",
        b"<top>\n<num>1</num><title>a</title>\n</top>\n\n<top>\n<num>2</num>\n<title>b\n",
        read_topics,
        5,
        "never closed",
    ),
    "topics: unterminated <top> before next": Case(
        "t.trec",
        b"<top>\n<num>1</num><title>a</title>\n</top>\n<top>\n<num>2</num>\n<top>\n<num>3</num>\n</top>\n",
        read_topics,
        4,
        "not closed before the <top> at line 6",
    ),
    "topics: jsonl without _id": Case("t.jsonl", b'{"text": "a"}\n', read_topics, 1, "missing field '_id'"),
    "topics: jsonl text not a string": Case(
        "t.jsonl", b'{"_id": "1", "text": 5}\n', read_topics, 1, "must be a string"
    ),
    # rank_llm JSON
    "rankllm: missing hits": Case(
        "c.json",
        b'[\n  {"query": "a", "qid": "1", "hits": []},\n  {"query": "b"}\n]\n',
        read_rankllm,
        3,
        "entry[1]: missing field 'hits'",
    ),
    "rankllm: invalid JSON": Case(
        "c.json", b'[\n {"query": "a",\n  "hits": [}\n]\n', read_rankllm, 3, "invalid JSON"
    ),
    "rankllm: not an array": Case("c.json", b'{"query": "a"}', read_rankllm, 1, "JSON array"),
    "rankllm: hit without docid": Case(
        "c.json",
        b'[{"query": "a", "hits": [{"content": "x", "qid": 1, "score": 1}]}]',
        read_rankllm,
        1,
        "entry[0].hits[0]: missing field 'docid'",
    ),
    "rankllm: conflicting content": Case(
        "c.json",
        b'[{"query": "a", "hits": [{"content": "x", "qid": 1, "docid": "d", "score": 1}]},\n'
        b' {"query": "b", "hits": [{"content": "y", "qid": 2, "docid": "d", "score": 1}]}]',
        read_rankllm,
        2,
        "different content",
    ),
    "rankllm: no hits, no qid": Case(
        "c.json", b'[{"query": "a", "hits": []}]', read_rankllm, 1, "query id is unknown"
    ),
    "rankllm: empty array": Case("c.json", b"[ ]", read_rankllm, None, "no entries"),
    # files
    "missing file": Case("", b"", lambda p: read_run(p / "nowhere" / "run.trec"), None, "no such file"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_malformed_input_raises_located_input_error(tmp_path: Path, case: Case) -> None:
    path = tmp_path / case.name if case.name else tmp_path
    if case.name:
        path.write_bytes(case.content)
    with pytest.raises(InputError) as info:
        case.read(path)
    err = info.value
    text = str(err)
    expected_path = str(path / "nowhere" / "run.trec") if not case.name else str(path)
    assert err.path == expected_path
    assert err.line == case.line
    where = expected_path if case.line is None else f"{expected_path}:{case.line}"
    assert text.startswith(f"{where}: "), text
    assert case.message in text, text
    assert "\n" not in text


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        list(iter_lines(tmp_path))


@pytest.mark.parametrize("reader", [read_run, read_topics, read_corpus, read_qrels])
def test_unknown_format_or_missing_file(tmp_path: Path, reader: Callable[..., Any]) -> None:
    with pytest.raises(InputError, match="no such file"):
        reader(tmp_path / "absent.txt")
    if reader is not read_run:
        with pytest.raises(ValueError, match="unknown"):
            reader(tmp_path / "absent.txt", fmt="xml")


# --- atomic write ------------------------------------------------------------------------------


def test_atomic_write_failure_leaves_target_untouched(tmp_path: Path, make_file: MakeFile) -> None:
    target = make_file("run.trec", "old content\n")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target) as handle:
        handle.write("partial new content")
        raise RuntimeError("boom")
    assert target.read_text() == "old content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.trec"]


def test_atomic_write_replaces_and_creates_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "f.bin"
    with atomic_write(target, "wb") as handle:
        handle.write(b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]
    with pytest.raises(ValueError), atomic_write(target, "a"):
        pass
