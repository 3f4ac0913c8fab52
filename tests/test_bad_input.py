"""Bad input through the command line: one line ``error: FILE:LINE: ...``, exit code 2, nothing written,
and no model loaded. Empty and huge passages are not errors: they are skipped or truncated, and counted."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rank1 import reranker as reranker_module
from rank1.cli import app
from rank1.io import read_run
from rank1.models import REGISTRY, EmbeddedModel
from rank1.pipeline import SAMPLE_DIR

runner = CliRunner()
CORPUS, TOPICS, QRELS = (str(SAMPLE_DIR / n) for n in ("corpus.jsonl", "topics.tsv", "qrels.txt"))
RUN = "q1 Q0 bee-1 1 2 x\nq1 Q0 bee-2 2 1 x\n"


def rerank(*options: str, run: str = "{run.trec}", corpus: str = CORPUS, topics: str = TOPICS) -> list[str]:
    """``rank1 rerank`` arguments; ``{name}`` stands for ``tmp_path / name``."""
    return ["rerank", "--run", run, "--corpus", corpus, "--topics", topics, "--out", "{out.trec}",
            "--traces", "{out.jsonl}", "--no-progress", *options]


def retrieve(corpus: str = CORPUS, topics: str = TOPICS) -> list[str]:
    return ["retrieve", "--corpus", corpus, "--topics", topics, "--out", "{out.trec}"]


BAD_CASES: list[tuple[str, dict[str, str | bytes], list[str], str]] = [
    # (what, files to write {name: content}, arguments, expected text in the error)
    # -- run files
    ("run with 5 columns", {"run.trec": "q1 Q0 bee-1 1 2.0\n"}, ["evaluate", "{run.trec}", QRELS], "run.trec:1"),
    ("non-numeric score", {"run.trec": "q1 Q0 bee-1 1 high x\n"}, ["evaluate", "{run.trec}", QRELS], "run.trec:1"),
    ("duplicate docid", {"run.trec": "q1 Q0 a 1 2 x\nq1 Q0 a 2 1 x\n"}, ["evaluate", "{run.trec}", QRELS],
     "run.trec:2"),
    ("missing run file", {}, ["evaluate", "{nothing.trec}", QRELS], "nothing.trec: no such file"),
    ("rerank: empty run file", {"run.trec": ""}, rerank(), "run.trec: empty file"),
    ("rerank: NUL byte in run", {"run.trec": b"q1 Q0 bee-1 1 2 x\nq1 Q0 bee\x00 2 1 x\n"}, rerank(),
     "run.trec:2: NUL byte"),
    ("rerank: bad UTF-8 in run", {"run.trec": b"q1 Q0 bee-\xff 1 2 x\n"}, rerank(), "run.trec:1: not valid UTF-8"),
    ("rerank: docid missing from corpus", {"run.trec": "q1 Q0 bee-1 1 2 x\nq1 Q0 nope 2 1 x\n"}, rerank(),
     "run.trec:2: document 'nope' of query 'q1' is not in the corpus"),
    ("rerank: query missing from topics", {"run.trec": RUN + "q99 Q0 bee-1 1 2 x\n"}, rerank(),
     "run.trec:3: query 'q99' is not in the topics"),
    # -- qrels
    ("bad qrels", {"run.trec": RUN, "q.txt": "q1 0 a high\n"}, ["evaluate", "{run.trec}", "{q.txt}"], "q.txt:1"),
    ("NUL byte in qrels", {"run.trec": RUN, "q.txt": b"q1 0 bee-1 1\nq1 0 \x00 1\n"},
     ["evaluate", "{run.trec}", "{q.txt}"], "q.txt:2: NUL byte"),
    ("empty qrels", {"run.trec": RUN, "q.txt": ""}, ["evaluate", "{run.trec}", "{q.txt}"], "q.txt: empty file"),
    # -- topics
    ("bad topics", {"t.tsv": "q1\tone\ttwo\n"}, retrieve(topics="{t.tsv}"), "t.tsv:1"),
    ("rerank: bad UTF-8 in topics", {"run.trec": RUN, "t.tsv": b"q1\tbees\nq2\t\xc3(\n"}, rerank(topics="{t.tsv}"),
     "t.tsv:2: not valid UTF-8"),
    ("rerank: NUL byte in topics", {"run.trec": RUN, "t.tsv": b"q1\tbe\x00es\n"}, rerank(topics="{t.tsv}"),
     "t.tsv:1: NUL byte"),
    ("rerank: empty topics", {"run.trec": RUN, "t.tsv": ""}, rerank(topics="{t.tsv}"), "t.tsv: empty file"),
    ("rerank: topic without text", {"run.trec": RUN, "t.tsv": "q1\t \n"}, rerank(topics="{t.tsv}"),
     "t.tsv:1: query 'q1' has empty text"),
    # -- corpora
    ("bad corpus", {"c.jsonl": '{"_id": "a", "text": "x"}\n{oops\n'}, retrieve(corpus="{c.jsonl}"), "c.jsonl:2"),
    ("rerank: bad UTF-8 in corpus", {"run.trec": RUN, "c.jsonl": b'{"_id": "bee-1", "text": "\xff"}\n'},
     rerank(corpus="{c.jsonl}"), "c.jsonl:1: not valid UTF-8"),
    ("rerank: NUL byte in corpus", {"run.trec": RUN, "c.jsonl": b'{"_id": "bee-1", "text": "a"}\n{"_id": "\x00"}\n'},
     rerank(corpus="{c.jsonl}"), "c.jsonl:2: NUL byte"),
    ("rerank: duplicate document", {"run.trec": RUN, "c.jsonl": '{"_id": "bee-1", "text": "a"}\n' * 2},
     rerank(corpus="{c.jsonl}"), "c.jsonl:2"),
    ("rerank: empty corpus", {"run.trec": RUN, "c.jsonl": ""}, rerank(corpus="{c.jsonl}"), "c.jsonl: empty file"),
    ("rerank: bad candidates", {"cand.json": "[{oops"}, ["rerank", "--candidates", "{cand.json}", "--out",
                                                        "{out.trec}"], "cand.json"),
    # -- options and their combinations
    ("rerank: no inputs", {}, ["rerank", "--out", "{out.trec}"], "--run"),
    ("rerank: run and candidates", {"run.trec": RUN, "cand.json": "[]"}, rerank("--candidates", "{cand.json}"),
     "not both"),
    ("rerank: zero depth", {"run.trec": RUN}, rerank("--depth", "0"), "--depth must be at least 1, not 0"),
    ("rerank: negative depth", {"run.trec": RUN}, rerank("--depth", "-3"), "--depth must be at least 1, not -3"),
    ("rerank: options before inputs", {}, rerank("--depth", "0"), "--depth"),
    ("rerank: unknown backend", {"run.trec": RUN}, rerank("--backend", "onnx"), "unknown backend 'onnx'"),
    ("rerank: unknown template", {"run.trec": RUN}, rerank("--template", "rank2"), "unknown template 'rank2'"),
    ("rerank: bad mode", {"run.trec": RUN}, rerank("--mode", "psychic"), "psychic"),
    ("rerank: 3-bit quantization", {"run.trec": RUN}, rerank("--quantize", "3bit"),
     "quantize must be 4bit, 8bit, int8, int8-mixed or int8-smooth"),
    ("rerank: zero batch size", {"run.trec": RUN}, rerank("--batch-size", "0"), "batch_size must be at least 1"),
    ("rerank: zero budget", {"run.trec": RUN}, rerank("--budget", "0"), "budget must be at least 1"),
    ("rerank: zero chunk size", {"run.trec": RUN}, rerank("--chunk-size", "0"), "--chunk-size must be at least 1"),
    ("rerank: fusion weight above 1", {"run.trec": RUN}, rerank("--fusion-weight", "2"), "fusion_weight"),
    ("rerank: contrast above 4", {"run.trec": RUN}, rerank("--contrast", "5"), "contrast must lie in [0, 4]"),
    ("rerank: tag with a space", {"run.trec": RUN}, rerank("--tag", "my run"), "--tag"),
    ("rerank: output is a folder", {"run.trec": RUN, "sub/x": ""}, rerank("--out", "{sub}"), "is a directory"),
    ("rerank: cache and no cache", {"run.trec": RUN}, rerank("--cache", "{s.sqlite}", "--no-cache"), "not both"),
    ("rerank: cache is not a database", {"run.trec": RUN, "s.sqlite": "not sqlite\n" * 100},
     rerank("--cache", "{s.sqlite}"), "s.sqlite: not a usable score cache"),
    ("rerank: unknown model", {"run.trec": RUN}, rerank("--model", "no-such-model"), "no-such-model"),
    ("rerank: inputs before the model", {"run.trec": b"\x00"}, rerank("--model", "no-such-model"), "run.trec:1"),
    ("unknown measure", {"run.trec": RUN}, ["evaluate", "{run.trec}", QRELS, "-m", "nDCG@ten"], "nDCG@ten"),
]


@pytest.fixture(autouse=True)
def _no_model_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad input must fail before a model is loaded: loading one fails the test (exit code 1)."""

    def load(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(reranker_module, "create_backend", load)


def _invoke(tmp_path: Path, files: dict[str, str | bytes], args: list[str]):
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content.encode() if isinstance(content, str) else content)
    return runner.invoke(app, [str(tmp_path / a[1:-1]) if a.startswith("{") else a for a in args])


def _assert_clean_failure(result, tmp_path: Path, files: dict[str, str | bytes], expected: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({n.split("/")[0] for n in files})  # nothing new
    for name, content in files.items():
        assert (tmp_path / name).read_bytes() == (content.encode() if isinstance(content, str) else content)


@pytest.mark.parametrize("what,files,args,expected", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path: Path, what, files, args, expected) -> None:
    _assert_clean_failure(_invoke(tmp_path, files, args), tmp_path, files, expected)


def test_model_checksum_mismatch(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, fake_model) -> None:
    entry = fake_model(sha256="0" * 64)
    args = rerank("--model", entry.name, "--cache-dir", str(tmp_path_factory.mktemp("models")))
    result = _invoke(tmp_path, {"run.trec": RUN}, args)
    _assert_clean_failure(result, tmp_path, {"run.trec": RUN}, f"model {entry.name!r}: checksum mismatch")


def test_model_package_missing(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    entry = EmbeddedModel("fake-missing", packages=("rank1_no_such_package_part1",), files=("data/part01.bin",),
                          size=1, sha256="0" * 64, version="1.0")
    monkeypatch.setitem(REGISTRY, entry.name, entry)
    args = rerank("--model", entry.name, "--cache-dir", str(tmp_path_factory.mktemp("models")))
    result = _invoke(tmp_path, {"run.trec": RUN}, args)
    _assert_clean_failure(result, tmp_path, {"run.trec": RUN},
                          "is not installed (1 of 1 packages missing); install it with: pip install "
                          "rank1-no-such-package-part1==1.0")


@pytest.mark.slow
def test_huge_passage_is_truncated_and_empty_passage_skipped(tmp_path: Path, small_model_options: list[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1 MB passage is cut to --max-passage-tokens and counted; an empty one is not judged, with a warning."""
    monkeypatch.undo()  # this one loads the model
    corpus = ('{"_id": "huge", "text": "%s"}\n{"_id": "empty", "text": ""}\n{"_id": "bee", "text": "Bees make honey."}\n'
              % ("honey " * 175_000))
    assert len(corpus) > 1_000_000
    files = {"run.trec": "q1 Q0 huge 1 3 x\nq1 Q0 empty 2 2 x\nq1 Q0 bee 3 1 x\n", "c.jsonl": corpus}
    result = _invoke(tmp_path, files, rerank("--depth", "2", "--mode", "direct", "--no-cache", *small_model_options,
                                             corpus="{c.jsonl}"))
    assert result.exit_code == 0, result.output
    assert "1 pairs (0 from the cache, 1 judged" in result.stdout and "1 passages truncated" in result.stdout
    assert "1 empty passages skipped" in result.stdout
    assert result.stderr.startswith("warning: 1 documents of the run have an empty text: not judged")
    run = read_run(tmp_path / "out.trec")["q1"]
    assert list(run) == ["huge", "empty", "bee"] and (run["empty"], run["bee"]) == (-1.0, -2.0)
