"""A compact checkpoint (``rank1 distill checkpoint-compact``) is small, and a run resumed from it on another
machine (``checkpoint-restore``) goes on at the same step, data order and learning rate."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distill.checkpoint import MARK, compact, restore
from distill.cli import app
from distill.msmarco import Group


def _groups(n: int) -> list[Group]:
    return [Group(f"q{i}", f"what is topic {i}", (f"d{i}a", f"d{i}b"),
                  (f"Topic {i} is a thing that matters.", f"An unrelated passage, number {i}."), (1, 0), "test")
            for i in range(n)]


def test_compact_and_restore_refuse_folders_they_did_not_write(tmp_path: Path) -> None:
    bare = tmp_path / "checkpoint-4"
    bare.mkdir()
    (bare / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no optimizer.pt"):
        compact(bare, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="not a compact checkpoint"):
        restore(bare, tmp_path / "run")
    done = CliRunner().invoke(app, ["checkpoint-restore", str(bare), "--out", str(tmp_path / "run")])
    assert done.exit_code == 2 and done.output.startswith("error:") and len(done.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_run_resumed_from_a_compact_checkpoint_goes_on_where_it_stopped(tmp_path: Path, smollm2_ref) -> None:
    import torch
    from safetensors.torch import load_file

    from distill.direct_train import DirectTrainConfig, train_direct

    groups = _groups(8)
    cfg = DirectTrainConfig(max_steps=3, groups_per_step=2, layers=2, lora_rank=4, lora_alpha=8, dtype="float32",
                            save_steps=1, learning_rate=1e-3, warmup=0.0)
    whole_lines: list[str] = []
    whole = train_direct(groups, smollm2_ref.path, tmp_path / "whole", cfg, echo=whole_lines.append)
    saved = tmp_path / "whole" / "checkpoints" / "checkpoint-2"

    older = tmp_path / "repo" / "checkpoint-1"
    older.mkdir(parents=True)
    small = compact(saved, tmp_path / "repo")
    assert small == tmp_path / "repo" / "checkpoint-2" and not older.exists()  # one resume point kept
    assert (saved / "optimizer.pt").stat().st_size > 20 * (small / "optimizer.pt").stat().st_size
    assert {v.dtype for v in load_file(str(small / "adapter_model.safetensors")).values()} == {torch.bfloat16}
    assert json.loads((small / MARK).read_text())["dropped"].startswith("Adam moments")
    assert (small / "scheduler.pt").read_bytes() == (saved / "scheduler.pt").read_bytes()

    # Another machine: a fresh run folder, the compact checkpoint put back, the same command.
    placed = restore(small, tmp_path / "again")
    assert placed == tmp_path / "again" / "checkpoints" / "checkpoint-2"
    lines: list[str] = []
    again = train_direct(groups, smollm2_ref.path, tmp_path / "again", cfg, echo=lines.append)
    assert again.resumed_from and again.resumed_from.endswith("checkpoint-2") and again.steps == 3
    assert again.groups_drawn == whole.groups_drawn[4:]  # the same data order
    lr = re.compile(r"lr (\S+)")
    assert lr.search(lines[-1])[1] == lr.search(whole_lines[-1])[1]  # the same schedule
    # Step 3's loss is taken before its update, on step 2's weights (rounded to bfloat16 here).
    assert again.losses[-1][1] == pytest.approx(whole.losses[-1][1], rel=2e-2)
    shutil.rmtree(tmp_path / "whole")
