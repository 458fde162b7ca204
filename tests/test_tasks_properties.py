"""Property tests of every task parser (hypothesis).

1. On arbitrary text, and on text made of the tokens the parsers look for, a
   parser returns a dict or raises ParseError: nothing else.
2. A value written in the format the task's template asks for parses back unchanged.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fnlabel import tasks
from fnlabel.errors import ParseError
from fnlabel.tasks import critique, deita, evol, feedback, instruct, judges, parsing

PARSERS = {
    "self-instruct": tasks.self_instruct().parse,
    "evol-instruct": tasks.evol_instruct().parse,
    "evol-complexity": tasks.evol_complexity().parse,
    "evol-quality": tasks.evol_quality().parse,
    "ultrafeedback": tasks.ultrafeedback().parse,
    "judgelm": tasks.judgelm().parse,
    "ultrajudge": tasks.ultrajudge().parse,
    "ultracm": tasks.ultracm().parse,
    "prometheus": tasks.prometheus().parse,
    "complexity-scorer": tasks.complexity_scorer().parse,
    "quality-scorer": tasks.quality_scorer().parse,
}

# the tokens the parsers react to, so generated text reaches their deeper branches
FRAGMENTS = [
    "Rating:", "Rationale:", "rating for text 2", "#### Output for Text 1", "Score:", "Overall Score:",
    "[RESULT]", "Feedback:", "Final scores:", "Assistant 1:", "Assistant 2", "Practical Accuracy - ",
    "Clarity & Transparency:", "[1] Score:", "[Response 2] Score:", "1.", "2)", "- ", "* ", "Q1:",
    "#Rewritten Prompt#:", "sorry", "the", "given prompt", "**", "__", "`", '"', "(", ")", "[", "]",
    "/", "/10", " out of ", "four", "ten", "7.5", "5", "0", "11", "-3", "1e9", "nan", "inf", ".", ":",
    "\n", "\r\n", "\n\n", " ", "\t", "é", "٣", "½",
]  # fmt: skip
SOUP = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=40).map("".join)
ANY_TEXT = st.text() | SOUP

# Words that cannot spell a label ("rating", "score", "feedback", ...), a number word,
# a stop word or "sorry": sentences made of them are content, never structure.
_LETTERS = "bcdhklmpuvwxyzBCDHKLMPUVWXYZ"
WORD = st.text(_LETTERS, min_size=3, max_size=8) | st.tuples(
    st.text(_LETTERS, min_size=3, max_size=6), st.sampled_from([",", ".", "!", "?", ";", "7", "'s"])
).map("".join)
SENTENCE = st.lists(WORD, min_size=1, max_size=8).map(" ".join)
PARAGRAPH = st.lists(SENTENCE, min_size=1, max_size=3).map("\n".join)


def score(low: int, high: int):
    return st.integers(2 * low, 2 * high).map(lambda k: k / 2)


@pytest.mark.parametrize("kind", sorted(PARSERS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=ANY_TEXT)
def test_parser_is_total(kind, raw):
    try:
        out = PARSERS[kind](raw)
    except ParseError:
        return
    assert isinstance(out, dict)


@settings(max_examples=200, deadline=None)
@given(raw=ANY_TEXT)
def test_helpers_are_total(raw):
    for helper in (
        lambda t: parsing.parse_score(t, 0, 10),
        lambda t: parsing.find_score(t),
        lambda t: parsing.parse_score_list(t),
        parsing.list_items,
        lambda t: parsing.indexed_scores(t),
    ):
        try:
            helper(raw)
        except ParseError:
            pass


@given(value=score(0, 10), tail=st.sampled_from(["", " (good)", "/10", " out of 10", "**"]))
def test_score_round_trip(value, tail):
    assert parsing.parse_score(parsing.format_score(value) + tail, 0, 10) == value


@given(items=st.lists(SENTENCE, min_size=1, max_size=8), style=st.sampled_from(["numbered", "plain", "bullets"]))
def test_self_instruct_round_trip(items, style):
    out = {"instructions": items}
    if style == "numbered":
        raw = instruct.format_instructions(out)
    elif style == "plain":
        raw = "\n".join(items)
    else:
        raw = "\n".join(f"- {i}" for i in items)
    assert PARSERS["self-instruct"](raw) == out


@pytest.mark.parametrize(
    ("kind", "key"),
    [("evol-instruct", "instructions"), ("evol-complexity", "instructions"), ("evol-quality", "generations")],
)
@given(text=PARAGRAPH)
def test_evol_round_trip(kind, key, text):
    # an evolution made only of function words ("WHY", "and so") says nothing: it is eliminated, by design
    assume(any(w.strip(string.punctuation).lower() not in evol.STOPWORDS for w in text.split()))
    assert PARSERS[kind](text) == {key: text}
    assert PARSERS[kind]("#Rewritten Prompt#:\n" + text + "\n") == {key: text}


@given(pairs=st.lists(st.tuples(score(1, 5), PARAGRAPH | st.just("")), min_size=1, max_size=5))
def test_ultrafeedback_round_trip(pairs):
    out = {"rating": [r for r, _ in pairs], "rationale": [w for _, w in pairs]}
    assert PARSERS["ultrafeedback"](feedback.format_ratings(out)) == out


@given(rating=st.lists(score(0, 10), min_size=1, max_size=5), rationale=PARAGRAPH | st.just(""))
def test_judgelm_round_trip(rating, rationale):
    out = {"rating": rating, "rationale": rationale}
    assert PARSERS["judgelm"](judges.format_judgelm(out)) == out


AREA_DICT = st.lists(
    st.tuples(st.sampled_from(judges.DEFAULT_AREAS), score(0, 10), PARAGRAPH), max_size=4, unique_by=lambda t: t[0]
).map(lambda items: {name: {"rating": r, "rationale": why} for name, r, why in items})


@given(answers=st.lists(st.tuples(score(0, 10), AREA_DICT), min_size=1, max_size=4))
def test_ultrajudge_round_trip(answers):
    out = {"rating": [r for r, _ in answers], "areas": [a for _, a in answers]}
    assert PARSERS["ultrajudge"](judges.format_ultrajudge(out)) == out


@given(value=score(1, 10), text=PARAGRAPH | st.just(""))
def test_ultracm_round_trip(value, text):
    out = {"critique": text, "score": value}
    assert PARSERS["ultracm"](critique.format_ultracm(out)) == out


@given(value=st.integers(1, 5).map(float), text=PARAGRAPH | st.just(""))
def test_prometheus_round_trip(value, text):
    out = {"critique": text, "score": value}
    assert PARSERS["prometheus"](critique.format_prometheus(out)) == out


@given(rating=st.lists(score(0, 10), min_size=1, max_size=8))
def test_scorers_round_trip(rating):
    out = {"rating": rating}
    assert PARSERS["complexity-scorer"](deita.format_complexity_scores(out)) == out
    assert PARSERS["quality-scorer"](deita.format_quality_scores(out)) == out
