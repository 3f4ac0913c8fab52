"""The test-time-compute curve's plot and markdown table, from the JSON ``benchmarks.ttc`` writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.ttc_data import NAMES

COLUMNS = ("collection", "point", "models", "coverage", "quality [95% CI]", "Δ vs direct [95% CI]",
           "tokens/pair", "pairs/s", "fallback", "closed </think>", "agrees with max budget", "agrees with direct")
MARKERS = {"direct": "D", "reasoning": "o-", "adaptive": "s"}


def _order(report: dict[str, Any]) -> list[str]:
    """The collections with rows, in run order."""
    have = {r["collection"] for r in report["rows"]}
    return [n for n in NAMES if n in have] + sorted(have - set(NAMES))


def _ci(value: Any, ci: list[float] | None) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _share(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def table_row(r: dict[str, Any]) -> list[str]:
    """One row of the table."""
    diff = r.get("diff_vs_direct")
    point = r["point"] + (f" ({_share(r['reasoned_share'])} reasoned)" if r.get("reasoned_share") is not None else "")
    timing = r.get("timing") or {}
    speed = f"{timing['pairs_per_second']:.2f}" if "pairs_per_second" in timing else "cached"
    agree = r.get("agree_with_max_budget")
    forced = f" (forced: {_share(r['forced_agree_with_unforced'])})" if r.get("forced_pairs") else ""
    reasoning = r["mode"] == "reasoning"
    shared = f" ({r['from_other_budgets']} from another budget)" if r.get("from_other_budgets") else ""
    return [r["collection"], point, r["models"], f"{r['pairs_judged']}/{r['pairs_planned']}{shared}",
            _ci(r["quality"], r["ci95"]), _ci(diff["diff"], diff["ci95"]) if diff else "–",
            "–" if r["gen_tokens_per_pair"] is None else f"{r['gen_tokens_per_pair']:.1f}", speed,
            _share(r.get("fallback_share")) if reasoning else "–",
            _share(r.get("closed_think_share")) if reasoning else "–",
            _share(agree) + forced if agree is not None else "–",
            _share(r.get("agree_with_direct")) if reasoning else "–"]


def table(report: dict[str, Any]) -> str:
    """The markdown table of every row, by collection (BM25 first), cheapest point first."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    rank = {"direct": -2, "adaptive": -1}
    for name in _order(report):
        rows = [r for r in report["rows"] if r["collection"] == name]
        bm25 = report.get("collections", {}).get(name, {}).get("bm25") or {"quality": rows[0].get("bm25")}
        cells = [f"{name} ({rows[0]['metric']})", "BM25", "", "", _ci(bm25["quality"], bm25.get("ci95"))]
        lines.append("| " + " | ".join(cells + [""] * (len(COLUMNS) - len(cells))) + " |")
        for r in sorted(rows, key=lambda r: (rank.get(r["mode"], r["budget"]), r["models"])):
            lines.append("| " + " | ".join(table_row(r)) + " |")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Quality against generated tokens per pair, one panel per collection: direct mode as a diamond, the
    reasoning budgets as a line, adaptive as a square (one of each per model), 95% intervals as error bars, BM25
    as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = _order(report)
    if not names:
        return
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        rows = [r for r in report["rows"] if r["collection"] == name and r["quality"] is not None]
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in sorted(rows, key=lambda r: r["budget"]):
            groups.setdefault((r["mode"], r["models"]), []).append(r)
        for i, ((mode, models), group) in enumerate(sorted(groups.items())):
            _errorbar(ax, group, MARKERS[mode], f"C{i}", f"{mode} {models}")
            for r in group if mode == "reasoning" else []:
                ax.annotate(f"b={r['budget']}", (r["gen_tokens_per_pair"], r["quality"]), fontsize=7)
        bm25 = report.get("collections", {}).get(name, {}).get("bm25", {}).get("quality")
        if bm25 is not None:
            ax.axhline(bm25, color="grey", ls="--", lw=1, label="BM25")
        ax.set_xscale("symlog", linthresh=10)
        ax.set(title=name, xlabel="generated tokens per pair", ylabel=rows[0]["metric"] if rows else "")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}", flush=True)


def _errorbar(ax: Any, rows: list[dict[str, Any]], fmt: str, color: str, label: str) -> None:
    """Rows as points with their 95% intervals as error bars."""
    x = [r["gen_tokens_per_pair"] or 0.0 for r in rows]
    y = [r["quality"] for r in rows]
    err = [[max(0.0, r["quality"] - r["ci95"][0]) for r in rows], [max(0.0, r["ci95"][1] - r["quality"]) for r in rows]]
    ax.errorbar(x, y, yerr=err, fmt=fmt, color=color, capsize=3, ms=4, label=label)
