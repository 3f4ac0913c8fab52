"""Model specs and their one resolver; sha256 verification; the GGUF -> safetensors cache; merged students.

A model spec is a registry name (an embedded model, :data:`rank1.registry.REGISTRY`, or a shipped student,
:data:`rank1.students.STUDENTS`), a local Hugging Face directory, a ``.gguf`` file or a Hugging Face hub id;
:func:`resolve_model` asks in that order. GGUF weights (embedded or user-given) are verified, converted once
with transformers into ``<cache>/<name>/`` (bfloat16 safetensors) and read from there afterwards; a student's
adapter is verified and merged once into its base, into ``<cache>/<student name>/``. The cache root is
``~/.cache/rank1/models``, or ``$RANK1_CACHE_DIR``, or the ``cache_dir`` argument. Nothing here imports torch
or transformers at module import time, and no pickle is ever loaded.

Layering: this module imports the registry and the student list (data) below it and no backend; the
backends import it. Reading a resolved folder into transformers is :func:`rank1.loading.read_pretrained` (the
student merge uses it); :func:`rank1.backends.transformers.load_model` adds the device, quantization and dtype options.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rank1.loading import ModelError, read_pretrained, read_tokenizer, torch_dtype_named  # also importable here
from rank1.registry import BASE_MODEL, DEFAULT_MODEL, REGISTRY, EmbeddedModel  # also importable from here
from rank1.students import ADAPTER_FILE, MERGED_DTYPE, STUDENTS, Student

CACHE_ENV = "RANK1_CACHE_DIR"
MANIFEST = "rank1-manifest.json"
GGUF_INDEX = "gguf-index.json"
CACHE_DTYPE = "bfloat16"
_CHUNK = 8 << 20
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: ``path`` is a local HF-format directory, or the hub id for ``source="hub"``.

    ``source`` is ``"embedded"``, ``"gguf"``, ``"local"`` or ``"hub"``; ``fingerprint`` identifies the
    weights and config (sha256-based; the id itself for hub models).
    """

    name: str
    path: str
    fingerprint: str
    source: str


@dataclass(frozen=True)
class ModelInfo:
    """A registry entry with its install and cache state, for ``rank1 models``."""

    model: EmbeddedModel | Student
    installed: bool
    cached: bool
    default: bool


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The model cache root: ``cache_dir``, else ``$RANK1_CACHE_DIR``, else ``~/.cache/rank1/models``."""
    root = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV) or "~/.cache/rank1/models"
    return Path(root).expanduser()


def copies_root(model: ModelRef) -> Path:
    """Where copies of ``model`` converted for another engine go: beside it in its model cache (an embedded model, a
    GGUF file, a student), or in the model cache root for a user's own folder or a hub id."""
    return Path(model.path).parent if model.source in ("embedded", "gguf", "student") else cache_root()


def _package_dir(package: str) -> Path | None:
    """Where ``package`` is installed, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None


def _part_paths(model: EmbeddedModel) -> list[Path]:
    """The installed part files of ``model``, in order; :class:`ModelError` naming what to install."""
    paths: list[Path | None] = []
    for package, rel in zip(model.packages, model.files, strict=True):
        base = _package_dir(package)
        paths.append(base / rel if base is not None and (base / rel).is_file() else None)
    missing = tuple(p for p, path in zip(model.packages, paths) if path is None)
    if missing:
        raise ModelError(f"model {model.name!r} is not installed ({len(missing)} of {len(paths)} packages "
                         f"missing); install it with: {model.pip_command(missing)}")
    return [p for p in paths if p is not None]


def list_models(cache_dir: str | Path | None = None) -> list[ModelInfo]:
    """The registry, each entry with ``installed`` (all parts present) and ``cached`` (converted)."""
    out = []
    for model in REGISTRY.values():
        try:
            installed = bool(_part_paths(model))
        except ModelError:
            installed = False
        cached = read_manifest(cache_root(cache_dir) / model.name, model.sha256) is not None
        out.append(ModelInfo(model, installed, cached, model.name == DEFAULT_MODEL))
    bases = {info.model.name: info for info in out}
    for student in STUDENTS.values():
        base = bases[student.base]
        merged = read_manifest(cache_root(cache_dir) / student.name) is not None
        out.append(ModelInfo(student, base.installed and student.present, merged, student.name == DEFAULT_MODEL))
    return out


def _sha256(paths: list[Path], label: str, out: Path | None = None) -> tuple[str, int]:
    """sha256 and size of the concatenation of ``paths``, streamed (and copied to ``out`` if given)."""
    from rich.console import Console
    from rich.progress import Progress

    console, digest, size = Console(stderr=True), hashlib.sha256(), 0
    with (Progress(console=console, transient=True, disable=not console.is_terminal) as bar,
          open(out if out is not None else os.devnull, "wb") as sink):
        task = bar.add_task(label, total=sum(p.stat().st_size for p in paths))
        for path in paths:
            with open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    sink.write(chunk)
                    bar.update(task, advance=len(chunk))
    return digest.hexdigest(), size


def read_manifest(directory: Path, source_sha256: str | None = None,
                  weights: str = "*.safetensors") -> dict[str, Any] | None:
    """The manifest of a complete cache dir (optionally for that source, with files matching ``weights``),
    else ``None``."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    ok = source_sha256 is None or manifest.get("source_sha256") == source_sha256
    ok = ok and (directory / "config.json").is_file() and any(directory.glob(weights))
    return manifest if ok else None


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize ``gguf`` with transformers and save model + tokenizer as safetensors in ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    from rank1.quiet import quiet_step

    src = str(gguf.parent)
    with quiet_step(f"converting {gguf.name} to safetensors (once)"):
        tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=str(gguf))
        model = AutoModelForCausalLM.from_pretrained(src, gguf_file=str(gguf), dtype=getattr(torch, CACHE_DTYPE),
                                                     quantization_config=GgufConfig(dequantize=True))
        model.hf_quantizer = None  # fully dequantized: plain Linear layers, safe to serialize
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)


def _gguf_builder(produce: Callable[[Path], Path], keep_gguf: bool) -> Callable[[Path], None]:
    """A cache builder that converts the GGUF ``produce(tmp_dir)`` yields (verified) into ``tmp_dir``."""
    def build(tmp: Path) -> None:
        gguf = produce(tmp)
        _convert_gguf(gguf, tmp)
        if gguf.parent == tmp and not keep_gguf:
            gguf.unlink()

    return build


def ensure_cached(name: str, root: Path, sha256: str, source: str, build: Callable[[Path], None],
                  dtype: str = CACHE_DTYPE, weights: str = "*.safetensors") -> Path:
    """Return ``root/name``, made by ``build(tmp_dir)`` (which saves a model folder there, with ``config.json``
    and files matching ``weights``) unless cached.

    The work happens in a temporary sibling directory; the manifest (naming ``sha256`` as the source) is
    written last and the directory is renamed into place, so an interrupted build is never mistaken for a
    finished one.
    """
    from rank1.io.atomic import atomic_folder, atomic_write  # not at the top: rank1.io imports numpy

    final = root / name
    if read_manifest(final, sha256, weights) is not None:
        return final
    with atomic_folder(final) as tmp:
        build(tmp)
        import transformers

        with atomic_write(tmp / MANIFEST) as f:
            f.write(json.dumps({"name": name, "source": source, "source_sha256": sha256, "format": 1,
                                "transformers_version": transformers.__version__, "dtype": dtype},
                               indent=2, sort_keys=True))
        for path in tmp.iterdir():  # safetensors makes owner-only files; share the cache
            path.chmod(0o755 if path.is_dir() else 0o644)
    return final


def _embedded(model: EmbeddedModel, root: Path, keep_gguf: bool) -> Path:
    def produce(tmp: Path) -> Path:
        parts = _part_paths(model)
        out = parts[0] if len(parts) == 1 else tmp / f"{model.name}.gguf"
        digest, size = _sha256(parts, f"verifying {model.name}", None if len(parts) == 1 else out)
        if digest != model.sha256 or size != model.size:
            if out.parent == tmp:
                out.unlink()
            raise ModelError(f"model {model.name!r}: checksum mismatch ({size} bytes, sha256 {digest}; "
                             f"expected {model.size}, {model.sha256}); reinstall: {model.pip_command()}")
        return out

    return ensure_cached(model.name, root, model.sha256, f"embedded:{model.name}", _gguf_builder(produce, keep_gguf))


def _file_sha256(path: Path, root: Path) -> str:
    """sha256 of a user's weights file (GGUF, safetensors), memoised in ``root/gguf-index.json`` by
    (path, size, mtime); entries of files that no longer exist are dropped when the index is rewritten."""
    st, key = path.stat(), str(path.resolve())
    index_path = root / GGUF_INDEX
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    hit = index.get(key, {})
    if hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns and "sha256" in hit:
        return str(hit["sha256"])
    digest, _ = _sha256([path], f"hashing {path.name}")
    index = {k: v for k, v in index.items() if Path(k).is_file()}
    index[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    from rank1.io.atomic import atomic_write

    with atomic_write(index_path) as f:
        f.write(json.dumps(index, indent=2, sort_keys=True))
    return digest


def _fingerprint(directory: Path, source_sha256: str | None = None, root: Path | None = None) -> str:
    """sha256 of config.json plus the source's sha256 (converted and merged models), or else plus the sha256
    of every safetensors file (memoised by path, size and mtime in ``root``): two fine-tuned copies of one
    architecture have the same file names and sizes, and must not share score-cache entries."""
    h = hashlib.sha256((directory / "config.json").read_bytes())
    weights = [source_sha256] if source_sha256 else [
        f"{f.name}:{_file_sha256(f, root or cache_root())}" for f in sorted(directory.glob("*.safetensors"))]
    return hashlib.sha256("\n".join([h.hexdigest(), *weights]).encode()).hexdigest()


def verify_student(student: Student) -> str:
    """Check a student's adapter against its size and sha256; returns the sha256.

    Raises:
        ModelError: The adapter is missing or does not match the student list.
    """
    path = student.folder / ADAPTER_FILE
    if not path.is_file():
        raise ModelError(f"model {student.name!r}: adapter {path} is missing (reinstall rank1)")
    digest, size = _sha256([path], f"verifying {student.name}")
    if (digest, size) != (student.sha256, student.size):
        raise ModelError(f"model {student.name!r}: adapter checksum mismatch ({size} bytes, sha256 {digest}; "
                         f"expected {student.size}, {student.sha256}); reinstall rank1")
    return digest


def merge_into(base_path: str, adapter_dir: str | Path, out: Path, dtype: str = MERGED_DTYPE) -> None:
    """Merge the LoRA adapter in ``adapter_dir`` into the base model at ``base_path``; save into ``out``.

    The base is read on the CPU in ``dtype`` (``"auto"``: as the CPU runs models,
    :func:`rank1.hardware.cpu_dtype_choice`); the adapter folder's model card, if any, is copied along.

    Raises:
        ModelError: A bad dtype, or a base that cannot be read.
    """
    from rank1.hardware import cpu_dtype_choice
    from rank1.quiet import quiet_step

    with quiet_step(f"merging adapter {Path(adapter_dir).name} into its base (once)"):
        from peft import PeftModel

        torch_dtype = torch_dtype_named(cpu_dtype_choice().dtype if dtype == "auto" else dtype)
        model, tokenizer = read_pretrained(base_path, Path(base_path).resolve().name, dtype=torch_dtype)
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
        merged.save_pretrained(str(out), safe_serialization=True)
        tokenizer.save_pretrained(str(out))
    card = Path(adapter_dir) / "README.md"
    if card.is_file():
        (out / "README.md").write_bytes(card.read_bytes())


def _student(student: Student, root: Path, keep_gguf: bool) -> Path:
    """The merged student folder in the cache (made on first use), keyed by the base's and adapter's sha256."""
    base = resolve_model(student.base, cache_dir=root, keep_gguf=keep_gguf)
    base_sha = str((read_manifest(Path(base.path)) or {}).get("source_sha256"))
    source = hashlib.sha256(f"{base_sha}+{verify_student(student)}".encode()).hexdigest()
    return ensure_cached(student.name, root, source, f"student:{student.base}+{student.name}",
                         lambda tmp: merge_into(base.path, student.folder, tmp), dtype=MERGED_DTYPE)


def cached_ref(name: str, directory: Path, source: str) -> ModelRef:
    sha = str((read_manifest(directory) or {}).get("source_sha256"))
    return ModelRef(name=name, path=str(directory), fingerprint=_fingerprint(directory, sha), source=source)


def resolve_model(spec: str, cache_dir: str | Path | None = None, keep_gguf: bool = False) -> ModelRef:
    """Turn a model spec into a :class:`ModelRef`, verifying and converting GGUF weights on first use.

    Args:
        spec: A registry name (e.g. ``"qwen2.5-coder-0.5b"``), a local HF directory, a ``.gguf`` file,
            or a Hugging Face hub id (``"org/name"``; not contacted here).
        cache_dir: Root of the converted-model cache (default ``$RANK1_CACHE_DIR`` or
            ``~/.cache/rank1/models``).
        keep_gguf: Keep the assembled ``.gguf`` of a multi-part embedded model in its cache dir.

    Raises:
        ModelError: Unknown name, missing package (with the pip command), bad checksum, bad directory.
    """
    root = cache_root(cache_dir)
    if spec in REGISTRY:
        return cached_ref(spec, _embedded(REGISTRY[spec], root, keep_gguf), "embedded")
    if spec in STUDENTS:
        return cached_ref(spec, _student(STUDENTS[spec], root, keep_gguf), "student")
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file() or not any(path.glob("*.safetensors")):
            raise ModelError(f"{spec}: not a Hugging Face model directory with config.json and *.safetensors "
                             "weights (pickled weights are never loaded)")
        return ModelRef(name=path.resolve().name, path=str(path.resolve()),
                        fingerprint=_fingerprint(path, root=root), source="local")
    if path.is_file() and path.suffix.lower() == ".gguf":
        sha = _file_sha256(path, root)
        name = f"gguf-{sha[:16]}"
        directory = ensure_cached(name, root, sha, f"gguf:{path.resolve()}",
                                  _gguf_builder(lambda _tmp: path.resolve(), False))
        return cached_ref(path.stem, directory, "gguf")
    if path.exists() or spec.lower().endswith(".gguf") or spec.startswith((".", "/", "~")):
        raise ModelError(f"{spec}: not a model directory or .gguf file")
    if _HUB_ID.match(spec):
        return ModelRef(name=spec, path=spec, fingerprint=spec, source="hub")
    raise ModelError(f"unknown model {spec!r}; known models: {', '.join(REGISTRY)} "
                     "(or give a local directory, a .gguf file or a Hugging Face id org/name)")
