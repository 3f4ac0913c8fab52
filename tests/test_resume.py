"""Nothing lost, nothing silent: a ``rank1 rerank`` killed with SIGKILL resumes from its score cache, judges
only what is missing, and writes the same bytes as an uninterrupted job; two jobs write the same bytes."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from rank1.pipeline import SAMPLE_DIR
from rank1.retrieve import retrieve

pytestmark = pytest.mark.slow

CORPUS, TOPICS = SAMPLE_DIR / "corpus.jsonl", SAMPLE_DIR / "topics.tsv"
SUMMARY = re.compile(r"(\d+) pairs \((\d+) from the cache, (\d+) judged")


class Job(NamedTuple):
    """The first-stage run, the rerank command, and an uninterrupted job's outputs."""

    dir: Path
    options: list[str]
    reference: Path
    pairs: int

    def argv(self, out: Path, cache: Path | None) -> list[str]:
        """``rank1 rerank`` writing ``out`` and ``out.jsonl`` (traces), with ``cache`` or ``--no-cache``."""
        return [sys.executable, "-m", "rank1.cli", "rerank", "--run", str(self.dir / "bm25.trec"),
                "--corpus", str(CORPUS), "--topics", str(TOPICS), "--out", str(out),
                "--traces", str(out.with_suffix(".jsonl")), "--mode", "direct", "--depth", "5",
                "--batch-size", "2", "--chunk-size", "4", "--no-progress", *self.options,
                *(["--cache", str(cache)] if cache else ["--no-cache"])]

    def complete(self, out: Path, cache: Path | None) -> tuple[int, int, int]:
        """Run to the end; (pairs, from the cache, judged) from the summary line."""
        done = subprocess.run(self.argv(out, cache), capture_output=True, text=True, env=_env(), timeout=600)
        assert done.returncode == 0, done.stderr
        match = SUMMARY.search(done.stdout)
        assert match, done.stdout
        return int(match[1]), int(match[2]), int(match[3])


def _env() -> dict[str, str]:
    """The environment of the jobs: one thread, since on a small machine that is busy with other work two
    threads fighting for the cores are several times slower than one (the scores do not change)."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _rows(cache: Path) -> dict[tuple[str, str], tuple[float, float]]:
    """(query sha256, passage sha256) -> (score, created_at) of every stored judgement."""
    if not cache.exists():
        return {}
    try:
        with sqlite3.connect(cache, timeout=10) as conn:
            rows = conn.execute("SELECT query_sha256, passage_sha256, score, created_at FROM judgements").fetchall()
    except sqlite3.OperationalError:  # the table is not there yet
        return {}
    finally:
        conn.close()
    return {(q, p): (s, t) for q, p, s, t in rows}


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory, small_model_options: list[str]) -> Job:
    """BM25 top 5 of the six sample queries, reranked once without interruption (fresh cache)."""
    directory = tmp_path_factory.mktemp("resume")
    retrieve(CORPUS, TOPICS, directory / "bm25.trec", k=5, progress=False)
    job = Job(directory, small_model_options, directory / "reference.trec", 0)
    pairs, cached, judged = job.complete(job.reference, directory / "reference.sqlite")
    assert cached == 0 and judged == pairs >= 24 and len(_rows(directory / "reference.sqlite")) == pairs
    return job._replace(pairs=pairs)


def test_killed_job_resumes_without_judging_a_stored_pair_again(job: Job) -> None:
    out, cache = job.dir / "killed.trec", job.dir / "killed.sqlite"
    proc = subprocess.Popen(job.argv(out, cache), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    try:
        while proc.poll() is None and len(_rows(cache)) < 8:  # at least two chunks committed
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the job ended before it was killed: {stderr.decode()}"
    assert not [p.name for p in job.dir.iterdir() if "killed.trec" in p.name or "killed.jsonl" in p.name]
    stored = _rows(cache)
    assert 8 <= len(stored) < job.pairs and len(stored) % 4 == 0  # whole chunks only

    pairs, cached, judged = job.complete(out, cache)
    assert (pairs, cached, judged) == (job.pairs, len(stored), job.pairs - len(stored))
    after = _rows(cache)
    assert len(after) == job.pairs and all(after[k] == v for k, v in stored.items())  # no row written again
    assert out.read_bytes() == job.reference.read_bytes()
    assert out.with_suffix(".jsonl").read_bytes() == job.reference.with_suffix(".jsonl").read_bytes()


def test_same_inputs_give_byte_identical_outputs(job: Job, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second job without any cache judges every pair again and writes the same run and traces."""
    out, default_cache = tmp_path / "again.trec", tmp_path / "default.sqlite"
    monkeypatch.setenv("RANK1_SCORE_CACHE", str(default_cache))
    assert job.complete(out, None) == (job.pairs, 0, job.pairs)
    assert out.read_bytes() == job.reference.read_bytes()
    assert out.with_suffix(".jsonl").read_bytes() == job.reference.with_suffix(".jsonl").read_bytes()
    assert not default_cache.exists()  # --no-cache: not even the default cache is opened


def test_a_fully_cached_job_never_loads_the_model(job: Job, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pair in the cache: the job writes the reference outputs without creating a backend (for vLLM,
    minutes of engine start-up saved)."""
    from typer.testing import CliRunner

    import rank1.reranker
    from rank1.cli import app

    def no_backend(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded although every pair was cached")

    cache, out = tmp_path / "full.sqlite", tmp_path / "cached.trec"
    cache.write_bytes((job.dir / "reference.sqlite").read_bytes())
    monkeypatch.setattr(rank1.reranker, "create_backend", no_backend)
    done = CliRunner().invoke(app, job.argv(out, cache)[3:])
    assert done.exit_code == 0, done.output
    assert SUMMARY.search(done.output).groups() == (str(job.pairs), str(job.pairs), "0")  # type: ignore[union-attr]
    assert out.read_bytes() == job.reference.read_bytes()
    assert out.with_suffix(".jsonl").read_bytes() == job.reference.with_suffix(".jsonl").read_bytes()
