"""Readers and writers of rank1.io on small inline files, then on the real shared data."""

from __future__ import annotations

import gzip
import itertools
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rank1.io import (
    iter_corpus,
    iter_run,
    read_corpus,
    read_qrels,
    read_rankllm,
    read_run,
    read_topics,
    sort_run,
    write_run,
)
from rank1.io.text import iter_lines
from rank1.records import Document, Query, ScoredDoc

MakeFile = Callable[[str, str | bytes], Path]


# --- lines -------------------------------------------------------------------------------------


def test_iter_lines_strips_newlines_crlf_and_bom(make_file: MakeFile) -> None:
    path = make_file("a.txt", b"\xef\xbb\xbfone\r\ntwo\n\nthr\xc3\xa9e")
    assert list(iter_lines(path)) == [(1, "one"), (2, "two"), (3, ""), (4, "thr\u00e9e")]


def test_iter_lines_reads_gzip(tmp_path: Path) -> None:
    path = tmp_path / "a.txt.gz"
    path.write_bytes(gzip.compress(b"x\ny\n"))
    assert list(iter_lines(path)) == [(1, "x"), (2, "y")]


# --- runs --------------------------------------------------------------------------------------

RUN = "q1 Q0 d1 1 2.5 bm25\nq1 Q0 d2 x -1e3 bm25\n\nq2\tQ0\td9 1 0 bm25\n"


def test_read_run_keeps_order_and_ignores_rank(make_file: MakeFile) -> None:
    path = make_file("run.trec", RUN)
    assert read_run(path) == {"q1": {"d1": 2.5, "d2": -1000.0}, "q2": {"d9": 0.0}}
    assert list(read_run(path)["q1"]) == ["d1", "d2"]
    assert next(iter_run(path)) == ScoredDoc("q1", "d1", 2.5)


def test_sort_run_breaks_ties_by_doc_id_and_makes_scores_strictly_decreasing() -> None:
    ordered = sort_run({"q": {"b": 1.0, "c": 1.0, "a": 1.0, "z": 3.0, "y": 0.5}})
    ids = [doc for doc, _ in ordered["q"]]
    scores = [score for _, score in ordered["q"]]
    assert ids == ["z", "a", "b", "c", "y"]
    assert scores[:2] == [3.0, 1.0]
    assert scores[2] == float(np.nextafter(np.float32(1.0), np.float32(-np.inf)))
    assert scores[3] == float(np.nextafter(np.float32(scores[2]), np.float32(-np.inf)))
    assert scores[4] == 0.5
    assert all(x > y for x, y in itertools.pairwise(scores))


def test_write_run_round_trip_with_ties(tmp_path: Path) -> None:
    run = {"q2": {"d3": 0.1, "d1": 0.1, "d2": 1 / 3}, "q1": {"x": -2.0, "y": 7.25}}
    path = tmp_path / "out" / "run.trec"
    write_run(path, run, tag="mytag")
    lines = path.read_text().splitlines()
    assert lines[0] == f"q2 Q0 d2 1 {1 / 3!r} mytag"
    assert lines[1] == "q2 Q0 d1 2 0.1 mytag"
    assert lines[2] == f"q2 Q0 d3 3 {float(np.nextafter(np.float32(0.1), np.float32(-np.inf)))!r} mytag"
    assert [line.split()[0] for line in lines] == ["q2"] * 3 + ["q1"] * 2
    back = read_run(path)
    assert back == {q: dict(docs) for q, docs in sort_run(run).items()}
    assert back["q2"]["d2"] == 1 / 3 and back["q1"] == {"y": 7.25, "x": -2.0}
    # Rewriting what was read changes nothing: the scores are already strictly decreasing.
    write_run(tmp_path / "again.trec", back, tag="mytag")
    assert (tmp_path / "again.trec").read_text() == path.read_text()


def test_write_run_accepts_scored_docs(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    write_run(path, [ScoredDoc("b", "d1", 1.0), ScoredDoc("a", "d2", 2.0), ScoredDoc("b", "d3", 5.0)])
    assert read_run(path) == {"b": {"d3": 5.0, "d1": 1.0}, "a": {"d2": 2.0}}


@pytest.mark.parametrize(
    ("run", "tag"),
    [
        ({"q": {"d": 1.0}}, "two words"),
        ({"q": {"d": 1.0}}, ""),
        ({"q": {"d": math.nan}}, "t"),
        ({"q": {"d 1": 1.0}}, "t"),
        ({"q 1": {"d": 1.0}}, "t"),
        ([ScoredDoc("q", "d", 1.0), ScoredDoc("q", "d", 2.0)], "t"),
    ],
)
def test_write_run_rejects_unwritable_runs(tmp_path: Path, run: object, tag: str) -> None:
    with pytest.raises(ValueError):
        write_run(tmp_path / "run.trec", run, tag=tag)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


# --- qrels -------------------------------------------------------------------------------------


def test_read_qrels_trec(make_file: MakeFile) -> None:
    path = make_file("qrels.txt", "1 0 d1 2\n1 0 d2 -1\n2 Q0 d1 0\n")
    assert read_qrels(path) == {"1": {"d1": 2, "d2": -1}, "2": {"d1": 0}}
    assert read_qrels(path, "trec") == read_qrels(path)


def test_read_qrels_beir(make_file: MakeFile) -> None:
    path = make_file("qrels.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\n")
    assert read_qrels(path) == {"q1": {"d1": 1, "d2": 0}}
    assert read_qrels(path, "beir") == read_qrels(path)


def test_read_qrels_cranfield_maps_cleverdon_codes(make_file: MakeFile) -> None:
    path = make_file("cranqrel", "1 184 1 \r\n1 29 2\r\n1 31 3\r\n1 12 4\r\n2 7 -1\r\n2 8 5\r\n")
    assert read_qrels(path, "cranfield") == {
        "1": {"184": 4, "29": 3, "31": 2, "12": 1},
        "2": {"7": 0, "8": 0},
    }


# --- topics ------------------------------------------------------------------------------------


def test_read_topics_tsv(make_file: MakeFile) -> None:
    path = make_file("topics.txt", "156493\tdo goldfish grow\r\n\r\n1110199\twhat is wifi\r\n")
    assert read_topics(path) == {
        "156493": Query("156493", "do goldfish grow"),
        "1110199": Query("1110199", "what is wifi"),
    }


def test_read_topics_jsonl(make_file: MakeFile) -> None:
    path = make_file(
        "queries.jsonl",
        '{"_id": "a", "text": "first"}\n{"_id": 7, "text": "second", "instruction": "only recent ones"}\n',
    )
    assert read_topics(path) == {"a": Query("a", "first"), "7": Query("7", "second", "only recent ones")}


TREC_TOPICS = """
<top>
<num> Number: 301
<title> International   Organized Crime
<desc> Description:
Identify organizations that participate in international criminal activity.
<narr> Narrative:
A relevant document must as a minimum identify the organization.
</top>

<top>
<num>2</num><title>
MATHEMATICAL ANALYSIS
</title>
</top>
<top><num>3</num><desc>Description: only a description</desc></top>
"""


def test_read_topics_trec(make_file: MakeFile) -> None:
    topics = read_topics(make_file("topics.trec", TREC_TOPICS))
    assert topics == {
        "301": Query(
            "301",
            "International Organized Crime",
            "A relevant document must as a minimum identify the organization.",
        ),
        "2": Query("2", "MATHEMATICAL ANALYSIS"),
        "3": Query("3", "only a description"),
    }


def test_read_topics_cranfield_renumbers_in_file_order(make_file: MakeFile) -> None:
    path = make_file(
        "cran.qry",
        ".I 001\r\n.W\r\nwhat similarity\r\nlaws .\r\n.I 004\r\n.W\r\nheat conduction .\r\n",
    )
    assert read_topics(path) == {
        "1": Query("1", "what similarity laws ."),
        "2": Query("2", "heat conduction ."),
    }


RANKLLM = """[
  {"query": "q one", "hits": [
    {"content": "alpha", "qid": 11, "docid": "d1", "rank": 1, "score": 3.5},
    {"content": "beta", "qid": 11, "docid": "d2", "rank": 2, "score": 1}]},
  {"query": "q two", "hits": [
    {"content": "alpha", "qid": 12, "docid": "d1", "rank": 1, "score": -0.5}]}
]"""


def test_read_rankllm(make_file: MakeFile) -> None:
    path = make_file("cands.json", RANKLLM)
    cands = read_rankllm(path)
    assert cands.topics == {"11": Query("11", "q one"), "12": Query("12", "q two")}
    assert cands.corpus == {"d1": Document("d1", "alpha"), "d2": Document("d2", "beta")}
    assert cands.run == {"11": {"d1": 3.5, "d2": 1.0}, "12": {"d1": -0.5}}
    assert read_topics(path) == cands.topics
    assert read_corpus(path) == cands.corpus


# --- corpora -----------------------------------------------------------------------------------


def test_read_corpus_jsonl(make_file: MakeFile) -> None:
    path = make_file(
        "corpus.jsonl", '{"_id": "d1", "title": "T", "text": "body"}\n{"_id": "d2", "text": ""}\n'
    )
    assert read_corpus(path) == {"d1": Document("d1", "body", "T"), "d2": Document("d2", "")}
    assert read_corpus(path)["d1"].full_text == "T body"


def test_read_corpus_tsv_two_or_three_fields(make_file: MakeFile) -> None:
    path = make_file("collection.tsv", "0\tplain text\n1\ta title\tsome text\n")
    assert read_corpus(path) == {"0": Document("0", "plain text"), "1": Document("1", "some text", "a title")}


TREC_DOCS = """<DOC>
<DOCNO>1</DOCNO>
compact memories have   flexible
capacities
</DOC>
<DOC>
<DOCNO> FT-2 </DOCNO>
<HEADLINE>ignored headline</HEADLINE>
<TEXT>
first <B>part</B>
</TEXT>
<TEXT>second part</TEXT>
</DOC>
<DOC><DOCNO>3</DOCNO><P>inline</P></DOC>
"""


def test_read_corpus_trec_sgml(make_file: MakeFile) -> None:
    path = make_file("docs.trec", TREC_DOCS)
    assert list(iter_corpus(path)) == [
        Document("1", "compact memories have flexible capacities"),
        Document("FT-2", "first part second part"),
        Document("3", "inline"),
    ]


CRAN_DOCS = """.I 1
.T
experimental investigation
.A
brenckman,m.
.B
j. ae. scs. 25, 1958, 324.
.W
an experimental study
of a wing .
.X
1 5 1
.I 2
.T
.A
.W
abstract starts
.A
stray line in the abstract
.W
continues .
"""


def test_read_corpus_cranfield(make_file: MakeFile) -> None:
    corpus = read_corpus(make_file("cran.all", CRAN_DOCS))
    assert corpus == {
        "1": Document("1", "an experimental study of a wing .", "experimental investigation"),
        "2": Document("2", "abstract starts stray line in the abstract continues ."),
    }


# --- real data ---------------------------------------------------------------------------------


def test_real_vaswani(shared_data: Path) -> None:
    corpus = read_corpus(shared_data / "vaswani" / "doc-text.trec")
    assert len(corpus) == 11429
    assert corpus["1"].text.startswith("compact memories have flexible capacities a digital data")
    topics = read_topics(shared_data / "vaswani" / "query-text.trec")
    assert len(topics) == 93
    assert topics["93"].text.startswith("HIGH FREQUENCY OSCILLATORS USING TRANSISTORS")
    qrels = read_qrels(shared_data / "vaswani" / "qrels")
    assert sum(map(len, qrels.values())) == 2083 and set(qrels) <= set(topics)
    assert {doc for docs in qrels.values() for doc in docs} <= set(corpus)


def test_real_cranfield(shared_data: Path) -> None:
    corpus = read_corpus(shared_data / "cranfield" / "cran.all.1400")
    assert len(corpus) == 1400
    assert corpus["1"].title == "experimental investigation of the aerodynamics of a wing in a slipstream ."
    assert "application to turbulent separations" in corpus["240"].text
    topics = read_topics(shared_data / "cranfield" / "cran.qry")
    assert list(topics) == [str(i) for i in range(1, 226)]
    assert topics["3"].text.startswith("what problems of heat conduction in composite slabs")
    qrels = read_qrels(shared_data / "cranfield" / "cranqrel", fmt="cranfield")
    assert set(qrels) == set(topics)
    assert sum(map(len, qrels.values())) == 1837
    assert {rel for docs in qrels.values() for rel in docs.values()} <= {0, 1, 2, 3, 4}
    assert {doc for docs in qrels.values() for doc in docs} <= set(corpus)


def test_real_trec_dl_topics_and_rankllm(shared_data: Path) -> None:
    dl = shared_data / "trec_dl"
    assert len(read_topics(dl / "topics.dl19-passage.txt")) == 43
    assert len(read_topics(dl / "topics.dl20.txt")) == 200
    for year in ("19", "20"):
        cands = read_rankllm(dl / f"bm25_top100_dl{year}.json")
        assert cands.run == read_run(dl / f"bm25_top100_dl{year}.trec")
        assert list(cands.run) == list(read_run(dl / f"bm25_top100_dl{year}.trec"))
        assert set(cands.topics) == set(cands.run)
    assert len(cands.topics) == 54 and len(cands.corpus) > 5000


def test_real_nevir_beir_files(shared_data: Path) -> None:
    nevir = shared_data / "nevir"
    topics = read_topics(nevir / "derived_test1000_queries.jsonl")
    corpus = read_corpus(nevir / "derived_test1000_corpus.jsonl")
    qrels = read_qrels(nevir / "derived_test1000_qrels.tsv")
    assert (len(topics), len(corpus), len(qrels)) == (2000, 2000, 2000)
    assert qrels["783-2_q1"] == {"783-2_doc1": 1, "783-2_doc2": 0}
