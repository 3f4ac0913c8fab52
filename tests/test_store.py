"""The score store, and the reranker's use of it, on a fake backend (fast: no model)."""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from pathlib import Path
from typing import Sequence

import pytest

from rank1.hardware import cpu_dtype_choice

from rank1.backends import JudgeSettings, Prompt
from rank1.io import read_corpus, read_topics
from rank1.pipeline import SAMPLE_DIR
from rank1.records import Document, Query
from rank1.reranker import Reranker
from rank1.scoring import Judgement
from rank1.store import STORE_ENV, ScoreStore, StoreError, StoreSettings, default_store_path

SETTINGS = StoreSettings("fp", "rank1", "abc", "direct", 0, 512, "transformers device=cpu dtype=auto")


def _h(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) / 16**12


class FakeTokenizer:
    """One token per character."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(map(chr, ids))


class FakeBackend:
    """Scores depend on the prompt and, in the last digits, on the other prompts of the call (as padding
    does in a real batch); ``crash_at`` makes the n-th call (from 0) raise, like a killed process."""

    name = "fake"
    fingerprint = "fake"

    def __init__(self, crash_at: int | None = None) -> None:
        self.tokenizer = FakeTokenizer()
        self.calls: list[list[str]] = []
        self.crash_at = crash_at

    def judge(self, prompts: Sequence[Prompt], settings: JudgeSettings, on_batch=None) -> list[Judgement]:
        if len(self.calls) == self.crash_at:
            raise RuntimeError("killed")
        self.calls.append([p.text for p in prompts])
        company = sum(_h(p.text) for p in prompts) * 1e-9
        return [Judgement(_h(p.text) / 2 + company, truncated=p.truncated) for p in prompts]


@pytest.fixture
def make_reranker(tmp_path: Path):
    """``make(backend, **config)``: a reranker over a fake local model directory and ``backend``."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")

    def make(backend: FakeBackend, **config) -> Reranker:
        options = {"model": str(model), "template": "rank1", "mode": "direct", "batch_size": 2, **config}
        return Reranker.from_backend(backend, **options)

    return make


@pytest.fixture(scope="module")
def sample():
    corpus, topics = read_corpus(SAMPLE_DIR / "corpus.jsonl"), read_topics(SAMPLE_DIR / "topics.tsv")
    run = {q: {d: -float(i) for i, d in enumerate(sorted(d for d in corpus if d.startswith(p)))}
           for q, p in (("q1", "bee"), ("q3", "sky"), ("q5", "tide"))}
    return run, corpus, topics


# -- the store ---------------------------------------------------------------------------------------


def test_round_trip_is_exact_and_persistent(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "scores.sqlite"
    j = Judgement(0.1 + 0.2, "because\nreasons ✓", 17, True, False)
    with ScoreStore(path) as store:
        assert store.get_many([SETTINGS.key("q", "p")]) == {} and store.count() == 0
        assert store.put_many([(SETTINGS.key("q", "p"), j)]) == 1
        assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with ScoreStore(path) as store:
        got = store.get_many([SETTINGS.key("q", "p"), SETTINGS.key("q", "other")])
        assert got == {SETTINGS.key("q", "p"): j} and got[SETTINGS.key("q", "p")].score == 0.1 + 0.2
        assert type(got[SETTINGS.key("q", "p")].truncated) is bool and store.count() == 1


def test_every_setting_is_part_of_the_key(tmp_path: Path) -> None:
    keys = {SETTINGS.key("q", "p"), SETTINGS.key("q ", "p"), SETTINGS.key("q", "p ")}
    for field in dataclasses.fields(StoreSettings):
        value = getattr(SETTINGS, field.name)
        keys.add(dataclasses.replace(SETTINGS, **{field.name: value + 1 if isinstance(value, int) else value + "x"})
                 .key("q", "p"))
    assert len(keys) == 3 + len(dataclasses.fields(StoreSettings))
    with ScoreStore(tmp_path / "s.sqlite") as store:
        store.put_many((k, Judgement(i / 10)) for i, k in enumerate(sorted(keys)))
        assert store.count() == len(keys)
        assert {k: j.score for k, j in store.get_many(keys).items()} == {k: i / 10 for i, k in enumerate(sorted(keys))}


def test_a_pair_stored_again_replaces_its_row(tmp_path: Path) -> None:
    with ScoreStore(tmp_path / "s.sqlite") as store:
        store.put_many([(SETTINGS.key("q", "p"), Judgement(0.25))])
        store.put_many([(SETTINGS.key("q", "p"), Judgement(0.75))])
        assert store.count() == 1 and store.get_many([SETTINGS.key("q", "p")])[SETTINGS.key("q", "p")].score == 0.75


def test_a_failed_write_commits_nothing(tmp_path: Path) -> None:
    def items():
        yield SETTINGS.key("q", "a"), Judgement(0.5)
        raise RuntimeError("judging failed half-way")

    with ScoreStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(RuntimeError):
            store.put_many(items())
        assert store.count() == 0


def test_two_stores_on_one_file(tmp_path: Path) -> None:
    with ScoreStore(tmp_path / "s.sqlite") as one, ScoreStore(tmp_path / "s.sqlite") as two:
        one.put_many([(SETTINGS.key("q", "a"), Judgement(0.5))])
        two.put_many([(SETTINGS.key("q", "b"), Judgement(0.5))])
        assert one.count() == two.count() == 2


def test_bad_store_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="junk.sqlite: not a usable score cache"):
        ScoreStore(junk)
    assert junk.read_bytes() == b"not a database at all" * 100
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(StoreError, match="schema version 99"):
        ScoreStore(other)
    with pytest.raises(StoreError, match="cannot open"):
        ScoreStore(junk / "below-a-file.sqlite")


def test_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(STORE_ENV, raising=False)
    assert default_store_path() == Path.home() / ".cache" / "rank1" / "scores.sqlite"
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "s.sqlite"))
    assert default_store_path() == tmp_path / "s.sqlite"


# -- the reranker with a store -------------------------------------------------------------------------


def test_stored_pairs_are_not_judged_again(make_reranker, sample, tmp_path: Path) -> None:
    run, corpus, topics = sample
    with ScoreStore(tmp_path / "s.sqlite") as store:
        first = make_reranker(backend := FakeBackend()).rerank_run(run, corpus, topics, depth=3, progress=False,
                                                                   store=store)
        assert [len(c) for c in backend.calls] == [9] and store.count() == 9  # direct: chunks of 16 batches of 2
        reasoning = make_reranker(backend := FakeBackend(), mode="reasoning").rerank_run(
            run, corpus, topics, depth=3, progress=False)
        assert [len(c) for c in backend.calls] == [8, 1] and reasoning.stats.judged == 9  # 4 batches of 2
        assert (first.stats.pairs, first.stats.cached, first.stats.judged) == (9, 0, 9)
        again = make_reranker(backend := FakeBackend()).rerank_run(run, corpus, topics, depth=5, progress=False,
                                                                   store=store)
        assert [len(c) for c in backend.calls] == [6] and store.count() == 15
        assert (again.stats.pairs, again.stats.cached, again.stats.judged) == (15, 9, 6)
        scores = {(q, d.doc_id): d.score for q, docs in first.run.items() for d in docs if d.judgement}
        assert all(d.score == scores[q, d.doc_id] for q, docs in again.run.items() for d in docs if (q, d.doc_id) in scores)


def test_an_interrupted_job_resumes_to_the_same_result(make_reranker, sample, tmp_path: Path) -> None:
    run, corpus, topics = sample
    whole = make_reranker(FakeBackend()).rerank_run(run, corpus, topics, depth=5, progress=False, chunk_size=4)
    with ScoreStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(RuntimeError, match="killed"):
            make_reranker(FakeBackend(crash_at=2)).rerank_run(run, corpus, topics, depth=5, progress=False,
                                                              store=store, chunk_size=4)
        assert store.count() == 8  # two chunks committed, the third lost
        resumed = make_reranker(backend := FakeBackend()).rerank_run(run, corpus, topics, depth=5, progress=False,
                                                                     store=store, chunk_size=4)
    assert [len(c) for c in backend.calls] == [4, 3] and resumed.stats.cached == 8
    assert resumed.run == whole.run and list(resumed.traces()) == list(whole.traces())


def test_settings_that_change_a_judgement_miss_the_store(make_reranker, sample, tmp_path: Path) -> None:
    run, corpus, topics = sample
    with ScoreStore(tmp_path / "s.sqlite") as store:
        other_dtype = "float32" if cpu_dtype_choice().dtype == "bfloat16" else "bfloat16"  # not what auto is
        for changed in ({}, {"template": "rank1-answer"}, {"max_passage_tokens": 64}, {"mode": "reasoning"},
                        {"backend_options": {"dtype": other_dtype}}, {"batch_size": 4}):
            result = make_reranker(FakeBackend(), **changed).rerank_run(run, corpus, topics, depth=1,
                                                                        progress=False, store=store)
            assert result.stats.cached == (3 if changed == {"batch_size": 4} else 0)
        assert store.count() == 15


def test_empty_passages_are_skipped_and_counted(make_reranker, tmp_path: Path) -> None:
    corpus = {"a": Document("a", "some text"), "e": Document("e", " \n "), "b": Document("b", "more text"),
              "c": Document("c", "below the depth")}
    run = {"q": {"e": 4.0, "a": 3.0, "b": 2.0, "c": 1.0}}
    result = make_reranker(backend := FakeBackend()).rerank_run(run, corpus, {"q": Query("q", "query")}, depth=3,
                                                                progress=False)
    assert [d.doc_id for d in result.run["q"][2:]] == ["e", "c"] and result.run["q"][2][1:] == (-1.0, None)
    assert (result.stats.pairs, result.stats.empty, sum(map(len, backend.calls))) == (2, 1, 2)


def test_a_pair_occurring_twice_is_judged_once(make_reranker) -> None:
    corpus = {"a": Document("a", "same"), "b": Document("b", "same")}
    result = make_reranker(backend := FakeBackend()).rerank_run({"q": {"a": 2.0, "b": 1.0}}, corpus,
                                                                {"q": Query("q", "x")}, progress=False)
    assert backend.calls == [[backend.calls[0][0]]] and (result.stats.pairs, result.stats.judged) == (2, 1)
    assert result.run["q"][0].score == result.run["q"][1].score


def test_bad_depth_or_chunk_size(make_reranker, sample) -> None:
    run, corpus, topics = sample
    for bad in ({"depth": 0}, {"chunk_size": 0}):
        with pytest.raises(ValueError, match="at least 1"):
            make_reranker(FakeBackend()).rerank_run(run, corpus, topics, progress=False, **bad)


def test_close_releases_the_backend_once(make_reranker) -> None:
    closed: list[int] = []
    backend = FakeBackend()
    backend.close = lambda: closed.append(1)  # type: ignore[attr-defined]
    with make_reranker(backend) as reranker:
        deeper = reranker.replace(mode="reasoning", budget=8)
        assert deeper.backend is backend
    assert closed == [1] and not reranker.loaded
    reranker.close()  # nothing left to close
    assert closed == [1]


def test_export_and_import_move_judgements_exactly(tmp_path: Path) -> None:
    """What one machine's store exports, another's imports bit for bit; rows it holds already are kept."""
    other = dataclasses.replace(SETTINGS, mode="reasoning", model_fingerprint="other", engine="vllm dtype=float32")
    first = {SETTINGS.key("q", f"p{i}"): Judgement(i / 3, f"why {i}", i, bool(i % 2), False) for i in range(5)}
    first[other.key("q", "p0")] = Judgement(0.1 ** 7, "ü \"quoted\"\n", 96, True, True)
    with ScoreStore(tmp_path / "a.sqlite") as a:
        a.put_many(first.items())
        assert a.export(tmp_path / "all.jsonl.gz") == 6
        assert a.export(tmp_path / "fp.jsonl", fingerprints=["f"], modes=["direct"]) == 5
        assert a.export(tmp_path / "none.jsonl", fingerprints=["x"]) == 0
        assert a.export(tmp_path / "vllm.jsonl", engines=["vllm", "onnx"]) == 1
        assert a.export(tmp_path / "none.jsonl", engines=["dtype=auto"], modes=["reasoning"]) == 0
    mine = SETTINGS.key("q", "p1")
    with ScoreStore(tmp_path / "b.sqlite") as b:
        b.put_many([(mine, Judgement(0.5))])
        assert b.import_file(tmp_path / "all.jsonl.gz") == (6, 5)
        assert b.get_many([mine])[mine] == Judgement(0.5)
        got = b.get_many(first)
        assert {k: v for k, v in got.items() if k != mine} == {k: v for k, v in first.items() if k != mine}
        assert b.import_file(tmp_path / "fp.jsonl") == (5, 0)
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_bad_import_line_names_the_file_and_line_and_adds_nothing(tmp_path: Path) -> None:
    with ScoreStore(tmp_path / "a.sqlite") as a:
        a.put_many([(SETTINGS.key("q", "p"), Judgement(0.25))])
        a.export(tmp_path / "good.jsonl")
    good = (tmp_path / "good.jsonl").read_text()
    bad_rows = {"not json": "not JSON", good.replace('"budget": 0', '"budget": "0"'): "budget is '0'",
                good.replace('"score": 0.25, ', ""): "not an exported judgement"}
    for i, (text, want) in enumerate(bad_rows.items()):
        path = tmp_path / f"bad{i}.jsonl"
        path.write_text(good + "\n" + text + "\n")
        with ScoreStore(tmp_path / f"b{i}.sqlite") as b:
            with pytest.raises(StoreError, match=f"bad{i}.jsonl:3: {want}"):
                b.import_file(path)
            assert b.count() == 0


def test_cache_cli_exports_and_imports(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rank1.cli import app

    with ScoreStore(tmp_path / "a.sqlite") as a:
        a.put_many([(SETTINGS.key("q", "p"), Judgement(0.25))])
    runner = CliRunner()
    done = runner.invoke(app, ["cache", "export", str(tmp_path / "x.jsonl.gz"), "--cache", str(tmp_path / "a.sqlite")])
    assert done.exit_code == 0 and "1 of 1 judgements" in done.output
    done = runner.invoke(app, ["cache", "import", str(tmp_path / "x.jsonl.gz"), "--cache", str(tmp_path / "b.sqlite")])
    assert done.exit_code == 0 and "1 judgements, 1 new" in done.output
    (tmp_path / "bad.jsonl").write_text("{}\n")
    done = runner.invoke(app, ["cache", "import", str(tmp_path / "bad.jsonl"), "--cache", str(tmp_path / "b.sqlite")])
    assert done.exit_code == 2 and "bad.jsonl:1: not an exported judgement" in done.output


def test_a_reasoning_key_is_answered_from_another_budget_only_where_greedy_decoding_agrees(tmp_path: Path) -> None:
    """A trace that stopped by itself before its budget is the trace at every budget from its length up."""
    at = {b: dataclasses.replace(SETTINGS, mode="reasoning", budget=b) for b in (32, 64, 128, 512)}
    closed = Judgement(0.9, "short", 40, False, False)  # closed its block after 40 tokens at budget 64
    cut = Judgement(0.2, "long", 64, False, True)  # ran into budget 64: the fallback
    ended = Judgement(0.4, "ended", 50, False, True)  # an end token after 50 tokens, before budget 512
    with ScoreStore(tmp_path / "s.sqlite") as store:
        store.put_many([(at[64].key("q", "closed"), closed), (at[64].key("q", "cut"), cut),
                        (at[512].key("q", "ended"), ended)])
        assert store.get_many([at[128].key("q", "closed")]) == {}  # only when asked
        got = store.get_many([at[b].key("q", p) for b in (32, 128, 512) for p in ("closed", "cut", "ended")],
                             other_budgets=True)
        assert got == {at[128].key("q", "closed"): closed, at[512].key("q", "closed"): closed,
                       at[128].key("q", "ended"): ended, at[512].key("q", "ended"): ended}
        # and not below the trace's length, nor from a trace the budget cut
        direct = SETTINGS.key("q", "closed")
        assert store.get_many([direct], other_budgets=True) == {}


def test_only_budget_free_prompts_reuse_other_budgets() -> None:
    assert Reranker(model="rank1-0.5b-neg3", mode="reasoning", load=False).budget_free_prompts
    assert not Reranker(model="rank1-0.5b-neg3", mode="direct", load=False).budget_free_prompts
    assert not Reranker(model="rank1-0.5b-neg3", mode="reasoning", backend="vllm", load=False).budget_free_prompts
