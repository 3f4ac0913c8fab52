"""Contrastive negation / exclusion groups (distill/contrast.py, distill/negation.py): rewrite rules, splits, format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distill.contrast import (ContrastConfig, build_contrast, condaqa_groups, examples_text, mark_changes,
                              nevir_train_groups, read_condaqa)
from distill.negation import answer_sentence, is_yes_no, negate, pair_term, salient_term, with_clause
from distill.msmarco import DEV_FILE, POSITIVES_FILE, dev_split, read_dev, read_groups, write_groups
from rank1.cli import app
from rank1.retrieve.tokenize import Tokenizer

STEMS = Tokenizer().tokenize


# -- the rewrite rules ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("sentence, expected", [
    ("Portuguese is spoken in Brazil.", "Portuguese is not spoken in Brazil."),
    ("The curfew is 10pm for minors in Hawaii.", "The curfew is not 10pm for minors in Hawaii."),
    ("It will rain tomorrow.", "It will not rain tomorrow."),
    ("Most birds can fly.", "Most birds cannot fly."),
    ("The company has a board of directors.", "The company has no board of directors."),
    ("Prices have increased since 2010.", "Prices have not increased since 2010."),
    ("The drug contains caffeine.", "The drug does not contain caffeine."),
    ("The main causes of the war were economic.", "The main causes of the war were not economic."),
    ("You cannot renew a passport online.", "You can renew a passport online."),
    ("It doesn't rain in June.", "It does rain in June."),
    ("Spiders do not eat plants.", "Spiders do eat plants."),
    ("He never eats meat.", "He always eats meat."),
    ("Marijuana is not legal in Texas.", "Marijuana is legal in Texas."),      # a negation is removed, not stacked
    ("Salt increases blood pressure.", "Salt decreases blood pressure."),
    ("Eat breakfast before noon.", "Eat breakfast after noon."),
    ("It is the most popular dish.", "It is not the most popular dish."),      # earliest edit wins
    ("Smoking in bars was banned in 2006.", "Smoking in bars was not banned in 2006."),
])
def test_negate_rewrites_one_local_span(sentence: str, expected: str) -> None:
    made = negate(sentence)
    assert made is not None and made[0] == expected and made[2] is None


@pytest.mark.parametrize("sentence", [
    "Damon and Affleck wrote Good will hunting in 1997.",   # "will" + gerund: a noun, not a modal
    "He bought a can of beans.",                            # "can" after a determiner: a noun
    "The causes of the fire remain unknown.",               # "causes" after a determiner: a noun
    "Not only cats but dogs sleep.",                        # a negation no rule can flip cleanly
    "We can only imagine it. Here are some of them.",      # "cannot only", "are not some": not grammatical
])
def test_negate_skips_sentences_no_rule_fits(sentence: str) -> None:
    assert negate(sentence) is None


def test_negate_prefers_the_edit_the_query_shares_and_mirrors_it() -> None:
    text, edit, mirror = negate("Iron is rare, and spinach and beans are high in iron.",
                                "what foods are high in iron")
    assert text == "Iron is rare, and spinach and beans are not high in iron."
    assert (edit.old, edit.new, edit.kind) == ("are high", "are not high", "insert-not")
    assert mirror == "what foods are not high in iron"
    # an antonym in another form of its family, same direction
    assert negate("Salt increases blood pressure.", "what foods increase blood pressure")[2] == \
        "what foods decrease blood pressure"


def test_negate_edits_next_to_the_answer_when_it_is_known() -> None:
    sentence = "Disney is big and the operating cost per day is around $355,000."
    assert negate(sentence)[0] == "Disney is not big and the operating cost per day is around $355,000."
    assert negate(sentence, anchor=sentence.index("$355"))[0] == \
        "Disney is big and the operating cost per day is not around $355,000."


@pytest.mark.parametrize("sentence, query", [
    ("Glacier ice is blue because it absorbs red light.", "what is blue ice"),         # only a question word first
    ("Trailer Park Boys is the comedy set in Nova Scotia.", "where is the trailer park boys set"),
    ("Get advice and legal help from the Community Legal Service.", "what is community legal service"),  # a name
    ("Gluten is not allowed on the diet.", "what foods are not allowed on the diet"),  # a negated query
])
def test_no_mirror_where_the_query_rewrite_is_not_grammatical_by_construction(sentence: str, query: str) -> None:
    made = negate(sentence, query)
    assert made is not None and made[2] is None


def test_yes_no_queries_and_answer_sentences() -> None:
    assert is_yes_no("do spiders eat other animals") and is_yes_no("Is a tomato a fruit?")
    assert is_yes_no("spiders and insects", "Yes, spiders eat insects.")
    assert not is_yes_no("what do spiders eat", "Insects.")
    text = "Disney runs 11 parks. On average the operating cost per day is around $355,000. Is that a lot?"
    a, b = answer_sentence(text, "Around $355,000 per day.", STEMS)
    assert text[a:b] == "On average the operating cost per day is around $355,000."
    assert answer_sentence("Cats sleep a lot. Dogs sleep a lot.", "how much do pets sleep", STEMS) is None  # a tie


def test_exclusion_clauses_and_terms() -> None:
    assert with_clause("what is the capital of france?", "{q}, excluding any information about {y}", "Paris") == \
        "what is the capital of france, excluding any information about Paris?"
    assert with_clause("gold price dammam", "{q}, but not about {y}", "silver") == \
        "gold price dammam, but not about silver"
    trap = ("Tennessee unemployment benefits help workers. Claim unemployment online. Today the office is open "
            "in Nashville.")
    idf = {s: 5.0 for s in STEMS("unemployment nashville claim online office benefits")}
    # Tennessee is in the query, "Today" opens a sentence (a common word), Nashville is neither repeated nor first
    assert salient_term(trap, set(STEMS("weather for tennessee in april")), idf, STEMS, 3.5) == "unemployment"
    assert salient_term(trap, set(STEMS("tennessee unemployment")), {}, STEMS, 3.5) is None
    idf = {s: 5.0 for s in STEMS("elkhart texas hickory creek")}
    assert pair_term("hickory creek rent prices", "The average rent in Hickory Creek is $1,767.",
                     set(STEMS("rent in amsterdam prices")), idf, STEMS, 3.5) == "hickory creek"
    assert pair_term("what is longer than a mile", "A kilometer is not longer than a mile.", set(), idf, STEMS,
                     3.5) is None  # no rare word, function words at the edges


def test_mark_changes_and_examples() -> None:
    assert mark_changes("Salt is bad for you", "Salt is not bad for you") == "Salt is {+not+} bad for you"
    assert mark_changes("Salt raises it", "Salt lowers it") == "Salt [-raises-] {+lowers+} it"
    text = examples_text(nevir_groups(), 2, seed=0)
    assert text.count("[nevir-train]") == 2 and "query:" in text and "{+" in text


# -- CondaQA and NevIR train ----------------------------------------------------------------------------------

def condaqa_row(pid: str, edit: int, qid: str, label: str, text: str, question: str = "Is it legal?") -> str:
    return json.dumps({"sentence1": text, "sentence2": question, "label": label, "PassageEditID": edit,
                       "PassageID": pid, "QuestionID": qid, "original cue": "not", "original sentence": text})


def test_condaqa_flip_pairs_edits_whose_answers_differ(make_file) -> None:
    path = make_file("condaqa.jsonl", "\n".join([
        condaqa_row("p1", 0, "q1", "NO", "Gambling is not legal here."),
        condaqa_row("p1", 1, "q1", "NO", "Gambling is not permitted here."),   # a paraphrase: unused
        condaqa_row("p1", 2, "q1", "NO", "Not here is gambling legal."),
        condaqa_row("p1", 3, "q1", "YES", "Gambling is legal here."),
        condaqa_row("p1", 0, "q2", "DON'T KNOW", "Gambling is not legal here.", "Is it taxed?"),
        condaqa_row("p1", 3, "q2", "YES", "Gambling is legal here.", "Is it taxed?"),
        condaqa_row("p2", 0, "q1", "YES", "Same text."), condaqa_row("p2", 3, "q1", "NO", "Same text."),
    ]) + "\n")
    found = condaqa_groups(read_condaqa(path))
    assert [p for p, _ in found] == ["p1", "p1", "p1"]
    by_qid = {g.qid: g for _, g in found}
    yes = by_qid["condaqa-p1-q1-yes-3"]
    assert yes.query == "Is it legal? Relevant passages answer yes."
    assert yes.passages == ("Gambling is legal here.", "Not here is gambling legal.", "Gambling is not legal here.")
    assert yes.labels == (1, 0, 0) and yes.source == "condaqa-flip"
    no = by_qid["condaqa-p1-q1-no-0"]
    assert no.query.endswith("answer no.") and no.passages == ("Gambling is not legal here.", "Gambling is legal here.")


def nevir_groups() -> list:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "pairs.jsonl"
        path.write_text(json.dumps({"id": "7-1", "q1": "Which team did not score?", "q2": "Which team scored?",
                                    "doc1": "Neither team scored in regulation.",
                                    "doc2": "Both teams scored in regulation."}) + "\n")
        return nevir_train_groups(path)


def test_nevir_train_pairs_become_two_dev_groups() -> None:
    a, b = nevir_groups()
    assert (a.qid, a.query, a.docids, a.labels) == ("7-1_q1", "Which team did not score?", ("7-1_doc1", "7-1_doc2"),
                                                    (1, 0))
    assert (b.qid, b.passages[0], b.source) == ("7-1_q2", "Both teams scored in regulation.", "nevir-train")


# -- the whole build, on a small folder and on the real data ----------------------------------------------------

def small_data(root: Path) -> Path:
    """A folder shaped like shared/data: 4 dev-file queries, 12 positives-file queries, CondaQA, NevIR train."""
    mm = root / "msmarco_train"
    mm.mkdir(parents=True)
    dev = []
    for q in range(4):
        for r in range(5):
            name = f"Kal{chr(97 + 5 * q + r)}ford"
            text = (f"Topic{q} river {r} is long. The {name} bridge is old. {name} is famous." if r else
                    f"Topic{q} river is spoken of. The main river of Topic{q} is wide and deep.")
            dev.append({"qid": f"d{q}", "query": f"what river of topic{q} is wide", "docid": f"dd{q}-{r}",
                        "text": text, "bm25_rank": r + 1, "label": int(r == 0)})
    (mm / DEV_FILE).write_text("".join(json.dumps(o) + "\n" for o in dev))
    pos = [{"qid": f"p{i}", "query": f"what city is the capital of country{i}", "docid": f"pp{i}",
            "text": f"Country{i} is in Europe. The capital city of country{i} is City{i}.",
            "label": 1, "answers": [f"The capital city of country{i} is City{i}."]} for i in range(12)]
    (mm / POSITIVES_FILE).write_text("".join(json.dumps(o) + "\n" for o in pos))
    (root / "condaqa").mkdir()
    (root / "condaqa" / "condaqa_dev_minus_nevir_test.jsonl").write_text("".join(
        condaqa_row(f"c{p}", e, "q1", lab, f"Passage {p}: it is {'not ' * (lab == 'NO')}allowed.") + "\n"
        for p in range(10) for e, lab in ((0, "NO"), (3, "YES"))))
    (root / "nevir").mkdir()
    (root / "nevir" / "nevir_mini_train_q1_50_seed42.jsonl").write_text(json.dumps(
        {"id": "1", "q1": "a?", "q2": "b?", "doc1": "A.", "doc2": "B."}) + "\n")
    return root


def check_no_leakage(train: list, dev: list, data: Path, dev_queries: int) -> None:
    """Held-out MS MARCO dev queries nowhere; no query, CondaQA passage or held-out positive on both sides."""
    rows = read_dev(data / "msmarco_train" / DEV_FILE)
    held = set(dev_split(rows, dev_queries, 0)[0])
    held_texts = {r.query.strip().lower() for r in rows if r.qid in held}
    held_docs = {r.docid for r in rows if r.qid in held}
    for g in train + dev:
        assert g.qid.split("-")[0] not in held and not held_docs & set(g.docids)
        assert not any(g.query.lower().startswith(t) for t in held_texts)
    def base(g) -> str:   # the held-out unit: an MS MARCO query or a CondaQA passage
        return "-".join(g.qid.split("-")[:2]) if g.source.startswith("condaqa") else g.qid.split("-")[0]

    assert not {base(g) for g in train} & {base(g) for g in dev if g.source != "nevir-train"}
    dev_positives = {g.docids[0].removesuffix("#neg") for g in dev if g.source != "nevir-train"}
    assert not dev_positives & {d.removesuffix("#neg") for g in train for d in g.docids}


def test_build_on_a_small_folder_and_the_cli(tmp_path: Path) -> None:
    data = small_data(tmp_path / "data")
    cfg = ContrastConfig(dev_fraction=0.25, dev_queries=1, negatives=1, min_idf=1.0)
    made = build_contrast(data, cfg)
    assert all(made.counts[s]["train"] > 0 for s in ("negate-answer", "negate-query", "exclude", "exclude-pair"))
    assert made.counts["condaqa-flip"] == {"train": 16, "dev": 4}      # two polarities x 10 passages, 2 held
    assert made.counts["condaqa-statement"] == {"train": 16, "dev": 4}  # the same passages, edit 0 against 3
    assert made.counts["negate-statement"]["train"] == 2 * made.counts["negate-answer"]["train"]
    assert made.counts["nevir-train"] == {"train": 0, "dev": 2}
    assert build_contrast(data, cfg).train == made.train                   # deterministic
    check_no_leakage(made.train, made.dev, data, 1)
    g = next(g for g in made.train if g.source == "negate-answer")
    assert g.passages[1] == g.passages[0].replace(" is City", " is not City") and g.labels == (1, 0, 0)
    assert [x.source for x in made.train[:7]] == ["negate-answer", "negate-query", "exclude", "exclude-pair",
                                                  "condaqa-flip", "negate-statement", "condaqa-statement"]
    m = next(g for g in made.train if g.source == "negate-query")
    assert m.query.endswith(" is not wide") and m.passages[0].endswith("is not wide and deep.") and \
        m.passages[1].endswith("is wide and deep.")
    x = next(g for g in made.train if g.source == "exclude")
    assert "kal" in x.query.lower() and x.query.split()[-1].lower() in x.passages[1].lower()
    assert x.query.split()[-1].lower() not in x.passages[0].lower()
    s = [g for g in made.train if g.source == "negate-statement" and g.qid.startswith(m.qid.split("-")[0] + "-")]
    assert len(s) == 2 and s[0].docids[:2] == s[1].docids[1::-1] and s[0].labels == s[1].labels == (1, 0, 0)
    assert s[1].query.replace(" not ", " ") == s[0].query and s[0].passages[2:] == s[1].passages[2:]
    capped = build_contrast(data, ContrastConfig(dev_fraction=0.25, dev_queries=1, max_per_rule=2,
                                                 rules=("negate-answer",)))
    assert capped.counts["negate-answer"]["train"] == 2 and "exclude" not in capped.counts
    wider = build_contrast(data, ContrastConfig(dev_fraction=0.25, condaqa_dev_fraction=0.5, dev_queries=1,
                                                negatives=1, min_idf=1.0))
    assert wider.counts["condaqa-flip"] == {"train": 10, "dev": 10}    # 5 of the 10 passages held out
    assert wider.counts["negate-answer"] == made.counts["negate-answer"]  # MS MARCO's draw unchanged
    check_no_leakage(wider.train, wider.dev, data, 1)

    out, dev_out = tmp_path / "c.jsonl", tmp_path / "d.jsonl"
    result = CliRunner().invoke(app, ["distill", "contrast", "--data", str(data), "--out", str(out),
                                      "--dev-out", str(dev_out), "--negatives", "1", "--dev-fraction", "0.25",
                                      "--examples", "2"])
    assert result.exit_code == 0, result.output
    assert "negate-answer     train" in result.output and "query:" in result.output
    assert read_groups(out) == build_contrast(data, ContrastConfig(dev_fraction=0.25, negatives=1)).train
    assert {g.source for g in read_groups(dev_out)} >= {"condaqa-flip", "nevir-train"}
    bad = CliRunner().invoke(app, ["distill", "contrast", "--data", str(data), "--out", str(out), "--dev-out",
                                   str(dev_out), "--rules", "negate,exclude"])
    assert bad.exit_code == 2 and "unknown rules" in bad.output


def test_real_data(shared_data: Path, tmp_path: Path, opened_files) -> None:
    if not (shared_data / "condaqa").is_dir():
        pytest.skip("../shared/data/condaqa not found")
    with opened_files() as seen:
        made = build_contrast(shared_data)
    opened = [p for p in seen if str(shared_data) in str(Path(p).resolve())]
    assert opened and not [p for p in opened if "derived_test" in p or "excluir" in p]  # test sets never read
    assert len(made.train) >= 1500 and {g.source for g in made.train} >= {"negate-answer", "exclude",
                                                                          "exclude-pair", "condaqa-flip"}
    assert made.counts["nevir-train"]["dev"] == 100
    for source, n in made.counts.items():       # ~10% held out per rule (the pair rule needs both sides held)
        if source not in ("nevir-train", "negate-query", "exclude-pair"):
            assert 0.05 < n["dev"] / (n["dev"] + n["train"]) < 0.2, source
    check_no_leakage(made.train, made.dev, shared_data, 100)
    path = tmp_path / "train.jsonl"
    write_groups(path, made.train)
    back = read_groups(path)
    assert back == made.train
    assert all(g.labels[0] == 1 and sum(g.labels) == 1 and len(set(g.docids)) == len(g.docids) for g in back)
    assert all(g.passages[0] != p for g in back for p in g.passages[1:])


def test_groups_as_a_dev_collection_and_top1_per_source(tmp_path: Path) -> None:
    """benchmarks.student's contrast-dev collection: one query per group, top-1 counted per rule, and NevIR's
    paired accuracy for the rules whose groups come in pairs."""
    from benchmarks._common import DevGroup, load_groups, top1_by_source
    from distill.msmarco import Group, write_groups

    path = tmp_path / "dev.jsonl"
    flip = [Group(f"condaqa-7-q1-{a}-{e}", f"q? answer {a}", ("p", "n"), (f"{a} text", "other"), (1, 0),
                  "condaqa-flip") for a, e in (("yes", 0), ("no", 3))]
    write_groups(path, [Group("a", "q a", ("p", "n"), ("pos a", "neg a"), (1, 0), "negate-answer"),
                        Group("b", "q b", ("p", "n", "m"), ("pos b", "neg b", "other b"), (1, 0, 0), "exclude"),
                        *flip, Group("9_q1", "q1", ("p", "n"), ("x", "y"), (1, 0), "nevir-train"),
                        Group("9_q2", "q2", ("p", "n"), ("y", "x"), (1, 0), "nevir-train")])
    run, corpus, topics, groups = load_groups(path)
    assert list(run) == [f"g{i}" for i in range(6)] and len(corpus) == 13 and topics["g1"].text == "q b"
    assert groups["g0"] == DevGroup("negate-answer", "g0_0", "") and groups["g1"] == ("exclude", "g1_0", "")
    assert [groups[q].pair for q in ("g2", "g3", "g4", "g5")] == ["condaqa-7-q1"] * 2 + ["9"] * 2
    scores = {"g0": {"g0_0": 0.9, "g0_1": 0.2}, "g1": {"g1_0": 0.5, "g1_1": 0.5, "g1_2": 0.1},  # a tie is a miss
              "g2": {"g2_0": 0.9, "g2_1": 0.1}, "g3": {"g3_0": 0.8, "g3_1": 0.7},  # the flip pair: both won
              "g4": {"g4_0": 0.9, "g4_1": 0.1}, "g5": {"g5_0": 0.1, "g5_1": 0.9}}  # NevIR pair: one of two
    assert top1_by_source(scores, groups) == {
        "all": {"groups": 6, "top1": 0.6667}, "exclude": {"groups": 1, "top1": 0.0},
        "negate-answer": {"groups": 1, "top1": 1.0},
        "condaqa-flip": {"groups": 2, "top1": 1.0, "pairs": 1, "paired": 1.0},
        "nevir-train": {"groups": 2, "top1": 0.5, "pairs": 1, "paired": 0.0},
        "paired": {"pairs": 2, "paired": 0.5}}


def test_train_labels_mix_takes_the_files_in_turn(tmp_path: Path) -> None:
    from distill.cli import _groups_after
    from distill.msmarco import Group, write_groups

    def groups(prefix: str, n: int) -> list[Group]:
        return [Group(f"{prefix}{i}", "q", ("p", "n"), ("x", "y"), (1, 0), prefix) for i in range(n)]

    write_groups(tmp_path / "a.jsonl", groups("a", 3))
    write_groups(tmp_path / "b.jsonl", groups("b", 1))
    mixed = _groups_after(tmp_path / "a.jsonl", 1, [tmp_path / "b.jsonl"])
    assert [g.qid for g in mixed] == ["a1", "b0", "a2"]


def test_statement_queries_mirror_the_passages() -> None:
    from distill.statement import statement, statement_groups

    a = ("d1", "The town grew fast. In 1900 gambling was legal in the town, and the casino opened.")
    b = ("d1#neg", "The town grew fast. In 1900 gambling was not legal in the town, and the casino opened.")
    assert statement(a[1], b[1]) == "In 1900 gambling was legal in the town"     # no dangling "and the"
    assert statement(a[1], a[1]) is None
    sa, sb = statement_groups("q7", a, b, [("n1", "Other text.")], "negate-statement")
    assert (sa.qid, sb.qid) == ("q7-sa", "q7-sb") and sa.docids == ("d1", "d1#neg", "n1")
    assert sb.docids == ("d1#neg", "d1", "n1") and sa.labels == sb.labels == (1, 0, 0)
    assert sb.query.replace("was not legal", "was legal") == sa.query    # one template for both
    assert statement_groups("q7", a, b, [], "negate-statement") == statement_groups("q7", a, b, [], "negate-statement")
    assert statement_groups("q8", a, ("x", a[1]), [], "negate-statement") == []          # no change: no groups
