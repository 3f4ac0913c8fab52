"""Template reasoning traces for the contrast groups (distill/contrast_traces.py, `rank1 distill contrast-traces`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distill.contrast import TEMPLATES, ContrastConfig, build_contrast
from distill.contrast_traces import contrast_traces, cue, find_change, quote, split_clause
from distill.msmarco import Group, write_groups
from distill.negation import with_clause
from distill.records import read_traces
from rank1.cli import app

POS = "Iron is a metal. Spinach is high in iron and vitamin C. It grows fast."
NEGATED = "Iron is a metal. Spinach is not high in iron and vitamin C. It grows fast."
NEGATE = Group("7", "what foods are high in iron", ("d1", "d1#neg", "n1", "n2"),
               (POS, NEGATED, "Copper wiring is used in houses.", "Bananas are yellow fruit."), (1, 0, 0, 0),
               "negate-answer")
MIRROR = Group("7-not", "what foods are not high in iron", ("d1#neg", "d1", "n1"),
               (NEGATED, POS, "Copper wiring is used in houses."), (1, 0, 0), "negate-query")
EXCLUDE = Group("8-exclude", "who wrote hamlet, excluding any information about Denmark", ("p", "t", "n1", "n2"),
                ("Hamlet was written by William Shakespeare around 1600.",
                 "Hamlet is set in Denmark. Denmark was a kingdom with a royal castle at Elsinore.",
                 "Denmark has many bicycles.", "Macbeth is a tragedy about a Scottish king."), (1, 0, 0, 0), "exclude")
CONDAQA = Group("condaqa-1-q1-no-0", "Was gambling allowed there? Relevant passages answer no.",
                ("condaqa-1-0", "condaqa-1-3"), ("In 1900 gambling was not legal in the town.",
                                                 "In 1900 gambling was legal in the town."), (1, 0), "condaqa-flip")
NEVIR = Group("q1", "a query", ("a", "b"), ("doc a", "doc b"), (1, 0), "nevir-train")
GROUPS = [NEGATE, MIRROR, EXCLUDE, CONDAQA, NEVIR]
LABEL_WORDS = re.compile(r"\b(true|false)\b", re.I)


def by_doc(traces: list, qid: str) -> dict:
    return {t.docid: t for t in traces if t.qid == qid}


def test_split_clause_reads_back_every_template() -> None:
    for template in TEMPLATES:
        for query in ("who wrote hamlet", "who wrote hamlet, the play?", "cost of a dog, other than food"):
            term = "New York Times"
            assert split_clause(with_clause(query, template, term)) == (query.rstrip(), term), template
    assert split_clause("who wrote hamlet") is None


def test_changes_quotes_and_cues() -> None:
    c = find_change(NEGATED, POS)
    assert c is not None and (c.new, c.old) == ("not", "") and NEGATED[c.start:c.end] == "not"
    assert quote(NEGATED, c.start, c.end) == "Spinach is not high in iron and vitamin C"
    inserted = find_change(POS, NEGATED)                        # the original: the insertion point is quoted
    assert inserted is not None and inserted.new == "" and inserted.old == "not"
    assert quote(POS, inserted.start, inserted.end, pad=1) == "...is high..."
    assert cue("not high", "high") == "not" and cue("undisputed", "disputed") == "undisputed"
    assert cue("informally", "formally.") == "informally" and cue("under", "over") is None
    assert find_change(POS, POS) is None


def test_answers_follow_labels_and_reasoning_names_what_relevance_turns_on() -> None:
    made = contrast_traces(GROUPS, per_group=1, seed=0)
    assert all(t.answer is bool(t.label) for t in made.traces)
    assert not [t for t in made.traces if LABEL_WORDS.search(t.reasoning)]
    assert all(t.teacher == f"contrast-rules/{t.qid and g.source}" for g in GROUPS for t in made.traces
               if t.qid == g.qid)
    neg = by_doc(made.traces, "7")
    assert set(neg) == {"d1", "d1#neg", "n1"} or set(neg) == {"d1", "d1#neg", "n2"}
    assert '"Spinach is high in iron and vitamin C"' in neg["d1"].reasoning
    assert '"Spinach is not high in iron and vitamin C"' in neg["d1#neg"].reasoning
    assert "negation 'not'" in neg["d1#neg"].reasoning and "what foods are high in iron" in neg["d1#neg"].reasoning
    mirror = by_doc(made.traces, "7-not")
    assert "same negation 'not'" in mirror["d1#neg"].reasoning and mirror["d1#neg"].answer is True
    assert "without the negation 'not'" in mirror["d1"].reasoning and mirror["d1"].answer is False
    ex = by_doc(made.traces, "8-exclude")
    assert set(ex) == {"p", "t", "n2"}                          # n1 mentions Denmark: passed over
    assert all("Denmark" in t.reasoning and "who wrote hamlet" in t.reasoning for t in ex.values())
    assert '"Hamlet is set in Denmark' in ex["t"].reasoning and "Shakespeare" in ex["p"].reasoning
    cq = by_doc(made.traces, CONDAQA.qid)
    wanted = cq["condaqa-1-0"].reasoning
    assert "negation 'not'" in wanted and "answer to the question is no" in wanted
    assert "without a negation" in cq["condaqa-1-3"].reasoning and "is yes" in cq["condaqa-1-3"].reasoning
    assert "gambling was legal in the town" in cq["condaqa-1-3"].reasoning
    assert made.counts["nevir-train"] == {"groups": 1, "relevant": 0, "contrast": 0, "negative": 0, "dropped": 0}
    assert made.counts["exclude"] == {"groups": 1, "relevant": 1, "contrast": 1, "negative": 1, "dropped": 0}
    assert all(10 <= len(t.reasoning.split()) <= 70 for t in made.traces)


def test_no_negatives_and_label_words_dropped() -> None:
    made = contrast_traces([NEGATE, EXCLUDE], per_group=0)
    assert {t.docid for t in made.traces} == {"d1", "d1#neg", "p", "t"}
    truth = NEGATE._replace(query="is it true that spinach is high in iron")
    made = contrast_traces([truth])
    assert made.traces == [] and made.counts["negate-answer"]["dropped"] == 2


def test_deterministic_for_a_seed_and_reads_no_file(opened_files) -> None:
    many = [g._replace(qid=f"{g.qid}-{i}") for i in range(12) for g in GROUPS]
    with opened_files() as seen:
        first = contrast_traces(many, seed=3)
    assert not [p for p in seen if p.endswith((".jsonl", ".tsv", ".json", ".csv"))]
    assert contrast_traces(many, seed=3).traces == first.traces
    other = contrast_traces(many, seed=4).traces
    assert [t.key for t in other if t.label] == [t.key for t in first.traces if t.label]
    assert [t.reasoning for t in other] != [t.reasoning for t in first.traces]   # wording varies with the seed
    assert len({t.reasoning.split(".")[0] for t in first.traces if t.qid.startswith("7-")}) > 1


def test_cli(tmp_path: Path) -> None:
    groups, out = tmp_path / "groups.jsonl", tmp_path / "traces.jsonl"
    write_groups(groups, GROUPS)
    result = CliRunner().invoke(app, ["distill", "contrast-traces", str(groups), "--out", str(out),
                                      "--per-group", "1", "--examples", "2", "--seed", "1"])
    assert result.exit_code == 0, result.output
    traces = read_traces(out)
    assert traces == contrast_traces(GROUPS, 1, 1).traces
    assert "exclude" in result.output and "total" in result.output and result.output.count("reasoning:") == 2
    bad = CliRunner().invoke(app, ["distill", "contrast-traces", str(groups), "--out", str(out), "--per-group", "-1"])
    assert bad.exit_code == 2


def test_real_data(shared_data: Path, opened_files) -> None:
    if not (shared_data / "condaqa").is_dir():
        pytest.skip("../shared/data/condaqa not found")
    with opened_files() as seen:
        made = contrast_traces(build_contrast(shared_data, ContrastConfig(rules=("condaqa-flip",))).train)
    opened = [p for p in seen if str(shared_data) in str(Path(p).resolve())]
    assert opened and not [p for p in opened if "derived_test" in p or "excluir" in p]  # test sets never read
    n = made.counts["condaqa-flip"]
    assert n["groups"] > 400 and n["relevant"] >= 0.95 * n["groups"] and n["contrast"] >= n["relevant"]
    assert all(t.answer is bool(t.label) and not LABEL_WORDS.search(t.reasoning) for t in made.traces)
    wanted = [t for t in made.traces if t.label]
    assert all(f"answer to the question is {t.query.rstrip('.').split()[-1]}," in t.reasoning for t in wanted)
    named = sum("negation '" in t.reasoning or "without a negation" in t.reasoning for t in made.traces)
    assert named >= 0.6 * len(made.traces)
