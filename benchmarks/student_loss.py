"""The labels student's loss curve: every step's loss and its 10-step mean, phase by phase.

Reads the ``train_log.json`` shipped with a student (``rank1/data/students/NAME/``) and writes a PNG::

    python -m benchmarks.student_loss --log rank1/data/students/rank1-0.5b-labels/train_log.json \
        --out benchmarks/results/student_loss.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

WINDOW = 10
"""Steps in the running mean."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", type=Path, required=True, help="train_log.json of a student")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = json.loads(args.log.read_text(encoding="utf-8"))
    steps, losses = zip(*log["losses"])
    mean = [sum(losses[max(0, i - WINDOW + 1) : i + 1]) / len(losses[max(0, i - WINDOW + 1) : i + 1])
            for i in range(len(losses))]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(steps, losses, lw=0.6, alpha=0.35, label="loss per step (2 groups, 8 pairs)")
    ax.plot(steps, mean, lw=2, label=f"{WINDOW}-step mean")
    end = 0
    for i, phase in enumerate(log.get("phases", []), 1):
        end += int(phase["steps"])
        ax.axvline(end, color="grey", ls=":", lw=1)
        ax.text(end, max(losses), f" end of phase {i}\n lr {phase['learning_rate']:g}", fontsize=7, va="top",
                ha="right")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("listwise CE + 0.5 x BCE")
    ax.set_title(f"{args.log.parent.name}: {log.get('pairs_seen', '?')} training pairs seen")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
