"""Each task parser against a table of realistic outputs: good, messy and invalid."""

from __future__ import annotations

import pytest

from fnlabel import tasks
from fnlabel.errors import ParseError
from fnlabel.tasks import parsing

# ---------------------------------------------------------------- shared helpers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4", 4.0),
        ("5.0 (Excellent)", 5.0),
        ("7.5/10", 7.5),
        ("7.5 / 10 - solid", 7.5),
        ("**4**", 4.0),
        ("  [3]  ", 3.0),
        ("(2) weak", 2.0),
        ("four out of five", 4.0),
        ("4 out of 5", 4.0),
        ("Four.", 4.0),
        ("`3`", 3.0),
        ("'5'", 5.0),
    ],
)
def test_parse_score_reads_what_models_write(text, expected):
    assert parsing.parse_score(text, 0, 10) == expected


@pytest.mark.parametrize("text", ["", "N/A", "[Rating for text 1]", "about 4", "8/5", "eleven", "11"])
def test_parse_score_rejects_non_scores(text):
    with pytest.raises(ParseError, match="expected"):
        parsing.parse_score(text, 0, 10)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Rating: **4**", 4.0),
        ("**Rating:** 4", 4.0),
        ("rating (1-5): 3", 3.0),
        ("blah\nSCORE = 9/10", 9.0),
        ("Score - 2 (poor)", 2.0),
    ],
)
def test_find_score(text, expected):
    assert parsing.find_score(text, low=0, high=10)[0] == expected


def test_find_score_names_the_label_it_wanted():
    with pytest.raises(ParseError, match="rating/score"):
        parsing.find_score("no number here")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8 9", [8.0, 9.0]),
        ("8, 9", [8.0, 9.0]),
        ("8/10 9/10", [8.0, 9.0]),
        ("Assistant 1: 8, Assistant 2: 9", [8.0, 9.0]),
        ("**Scores:** 7.5 6", [7.5, 6.0]),
        ("seven eight", [7.0, 8.0]),
    ],
)
def test_parse_score_list(text, expected):
    assert parsing.parse_score_list(text, 0, 10) == expected


@pytest.mark.parametrize("text", ["", "Assistant 1 is better", "8 and 9", "Scores:", "1. Assistant 1:"])
def test_parse_score_list_rejects_prose(text):
    with pytest.raises(ParseError):
        parsing.parse_score_list(text, 0, 10)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1. a\n2. b", ["a", "b"]),
        ("1) a\n2) b\n", ["a", "b"]),
        ("(1) a\n(2) b", ["a", "b"]),
        ("- a\n* b\n• c", ["a", "b", "c"]),
        ("a\nb", ["a", "b"]),
        ("a\n\n\nb  \n", ["a", "b"]),
        ("Here are 2 queries:\n1. a\n2. b\nHope this helps", ["a", "b"]),
        ("# Output\na\nb", ["a", "b"]),
        ('1. "Quoted?"\n2. **Bold** one', ["Quoted?", "Bold one"]),
        ("Q1: a\nQuery 2. b", ["a", "b"]),
        ("1.a\r\n2.b", ["a", "b"]),
        ("---\n", []),
    ],
)
def test_list_items(text, expected):
    assert parsing.list_items(text) == expected


# ---------------------------------------------------------------- self-instruct

SELF_INSTRUCT = tasks.self_instruct().parse


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1. What is DNS?\n2. Explain TCP.", ["What is DNS?", "Explain TCP."]),
        ("What is DNS?\nExplain TCP.", ["What is DNS?", "Explain TCP."]),  # distilabel 0.x parsed this to []
        ("What is DNS?\nExplain TCP.\n", ["What is DNS?", "Explain TCP."]),
        ("1. What is DNS?", ["What is DNS?"]),  # no trailing newline (distilabel 0.x lost it)
        (
            "Sure! Here are the queries:\n\n1. **What** is DNS?\n2. Explain TCP.\n\nLet me know!",
            ["What is DNS?", "Explain TCP."],
        ),
        ("- What is DNS?\n- Explain TCP.", ["What is DNS?", "Explain TCP."]),
        ("  1.   What is DNS?  \n  2.Explain TCP.", ["What is DNS?", "Explain TCP."]),
    ],
)
def test_self_instruct_parser(raw, expected):
    assert SELF_INSTRUCT(raw) == {"instructions": expected}


def test_self_instruct_bullets_under_numbered_queries_are_not_queries():
    raw = "1. How do I boil pasta?\n   - mention salt\n2. Suggest a sauce.\n   * vegetarian"
    assert SELF_INSTRUCT(raw) == {"instructions": ["How do I boil pasta?", "Suggest a sauce."]}


@pytest.mark.parametrize("raw", ["", "   \n\n", "Here are the queries:", "---"])
def test_self_instruct_parser_invalid(raw):
    with pytest.raises(ParseError, match="list of queries"):
        SELF_INSTRUCT(raw)


# ---------------------------------------------------------------- evol-*

EVOL = tasks.evol_instruct().parse
EVOL_QUALITY = tasks.evol_quality().parse


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "List three primes above 100 and prove each is prime.",
            "List three primes above 100 and prove each is prime.",
        ),
        ("  List three primes.\n", "List three primes."),
        ("#Rewritten Prompt#:\nList three primes.", "List three primes."),
        ("**Rewritten Prompt:** List three primes.", "List three primes."),
        ("#Created Prompt#: Name a rare bird.", "Name a rare bird."),
        ('"List three primes."', "List three primes."),
        # eliminated: empty, apology, stop words only, copied template wording
        ("", None),
        ("   ", None),
        ("I'm sorry, but I can't rewrite this prompt.", None),
        ("Is it that?", None),
        ("...!?", None),
        ("Rewrite the given prompt to be harder.", None),
        ("List primes (see #Given Prompt#).", None),
        ("The rewritten_prompt asks for primes.", None),
    ],
)
def test_evol_instruct_parser(raw, expected):
    assert EVOL(raw) == {"instructions": expected}


def test_evol_instruct_keeps_long_answers_that_mention_sorry():
    text = "Write a story in which a character says sorry " + "and then walks far away " * 20
    assert EVOL(text) == {"instructions": text.strip()}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Water boils at 100 °C at sea level.", "Water boils at 100 °C at sea level."),
        ("#Rewritten Response#: Water boils at 100 °C.", "Water boils at 100 °C."),
        ("Sorry, I cannot improve this.", None),
        ("The given response is fine.", None),
        ("", None),
    ],
)
def test_evol_quality_parser(raw, expected):
    assert EVOL_QUALITY(raw) == {"generations": expected}


# ---------------------------------------------------------------- ultrafeedback

ULTRAFEEDBACK = tasks.ultrafeedback().parse


@pytest.mark.parametrize(
    ("raw", "rating", "rationale"),
    [
        (
            "#### Output for Text 1\nRating: 4\nRationale: Accurate.\n\n#### Output for Text 2\nRating: 2\nRationale: Wrong.",
            [4.0, 2.0],
            ["Accurate.", "Wrong."],
        ),
        (  # markdown, scores with labels, multi-line rationale, no trailing newline
            "### Output\n\n#### Output for Text 1\n**Rating:** 5.0 (Excellent)\n**Rationale:** Correct.\nAlso concise."
            "\n\n#### Output for Text 2\n**Rating**: 3/5\n**Rationale**: Partly right.",
            [5.0, 3.0],
            ["Correct.\nAlso concise.", "Partly right."],
        ),
        ("rating: four\nrationale: fine", [4.0], ["fine"]),
        (
            "Text 1:\n- Rating: 2\n- Rationale: vague\nText 2:\n- Rating: 5\n- Rationale: precise",
            [2.0, 5.0],
            ["vague", "precise"],
        ),
        ("Rating: 3 Rationale: inline", [3.0], ["inline"]),
        ("Rating: 4", [4.0], [""]),
        ("RATING FOR TEXT 1: 1\nRATIONALE: OFF TOPIC", [1.0], ["OFF TOPIC"]),
    ],
)
def test_ultrafeedback_parser(raw, rating, rationale):
    assert ULTRAFEEDBACK(raw) == {"rating": rating, "rationale": rationale}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "Rating: <1-5>"),
        ("Text 1 is better than text 2.", "Rating: <1-5>"),
        ("Rating: [Rating for text 1]\nRationale: [Rationale]", "expected a rating"),
        ("Rating: 9\nRationale: great", "between 1 and 5"),
        ("Rating: N/A", "expected a rating"),
    ],
)
def test_ultrafeedback_parser_invalid(raw, message):
    with pytest.raises(ParseError, match=message.replace("[", r"\[")):
        ULTRAFEEDBACK(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "#### Output for Text 1\nRationale: Accurate.\nRating: 4\n\n#### Output for Text 2\nRationale: Wrong.\nRating: 2",
        "Rationale: Accurate.\nRating: 4\nRationale: Wrong.\nRating: 2",  # no headers
        "#### Output for Text 1\nRating: 4\nRationale: Accurate.\n#### Output for Text 2\nRationale: Wrong.\nRating: 2",
    ],
)
def test_ultrafeedback_rationale_before_rating_stays_with_its_text(raw):
    # a rationale written before its rating belongs to that text, not to the text before it
    assert ULTRAFEEDBACK(raw) == {"rating": [4.0, 2.0], "rationale": ["Accurate.", "Wrong."]}


def test_ultrafeedback_text_without_rating_is_a_parse_error():
    # dropping it would shift every later rating onto the wrong text
    raw = "Rating: 4\nRationale: ok\n#### Output for Text 2\nRationale: empty text\n#### Output for Text 3\nRating: 2\nRationale: bad"
    with pytest.raises(ParseError, match="Rating"):
        ULTRAFEEDBACK(raw)


def test_ultrafeedback_closing_remark_does_not_replace_the_last_rationale():
    raw = "Rating: 4\nRationale: Accurate.\n#### Output for Text 2\nRating: 2\nRationale: Wrong.\n\nExplanation: Text 1 wins."
    assert ULTRAFEEDBACK(raw) == {"rating": [4.0, 2.0], "rationale": ["Accurate.", "Wrong."]}


@pytest.mark.parametrize(
    "raw",
    [
        "**Text 1**: Rating: 4\nRationale: Accurate.\n**Text 2**: Rating: 2\nRationale: Wrong.",
        "Text 1 - Rating: 4 Rationale: Accurate.\nText 2 - Rating: 2 Rationale: Wrong.",
        "#### Output for Text 1: Rating: 4\nRationale: Accurate.\nText 2 is worse.\n#### Output for Text 2: Rating: 2\nRationale: Wrong.",
    ],
)
def test_ultrafeedback_text_header_on_the_rating_line(raw):
    out = ULTRAFEEDBACK(raw)
    assert out["rating"] == [4.0, 2.0]
    assert out["rationale"][1] == "Wrong."
    assert out["rationale"][0].startswith("Accurate.")


def test_ultrafeedback_rationale_line_starting_with_the_word_rating():
    raw = "Rating: 4\nRationale: Good.\nRating it lower would be unfair."
    assert ULTRAFEEDBACK(raw) == {"rating": [4.0], "rationale": ["Good.\nRating it lower would be unfair."]}


def test_ultrafeedback_scale_follows_custom_ratings():
    parse = tasks.ultrafeedback(ratings=["bad", "ok", "good", "great", "superb", "perfect", "divine"]).parse
    assert parse("Rating: 7") == {"rating": [7.0], "rationale": [""]}
    with pytest.raises(ParseError, match="between 1 and 7"):
        parse("Rating: 8")


# ---------------------------------------------------------------- judgelm

JUDGELM = tasks.judgelm().parse


@pytest.mark.parametrize(
    ("raw", "rating", "rationale"),
    [
        ("8 9\nAssistant 2 is more detailed.", [8.0, 9.0], "Assistant 2 is more detailed."),
        ("8 9", [8.0, 9.0], ""),
        ("8, 6.5\n\nBoth are fine.\nThe first is clearer.", [8.0, 6.5], "Both are fine.\nThe first is clearer."),
        (
            "**Scores:** 7/10 4/10\nExplanation: the second is off topic.",
            [7.0, 4.0],
            "Explanation: the second is off topic.",
        ),
        ("Assistant 1: 8\nAssistant 2: 3\nThe second is wrong.", [8.0, 3.0], "The second is wrong."),
        ("Here are my scores:\n\n9 2\n\nReason: the second is wrong.", [9.0, 2.0], "Reason: the second is wrong."),
        (
            "Both answers are right, the first is shorter.\n\n7 8",
            [7.0, 8.0],
            "Both answers are right, the first is shorter.",
        ),
    ],
)
def test_judgelm_parser(raw, rating, rationale):
    assert JUDGELM(raw) == {"rating": rating, "rationale": rationale}


@pytest.mark.parametrize(
    ("raw", "rating", "rationale"),
    [
        # the "1." of a numbered explanation is a list marker, not a third score
        (
            "8 9\n1. Assistant 1:\nAccurate.\n2. Assistant 2:\nDetailed.",
            [8.0, 9.0],
            "1. Assistant 1:\nAccurate.\n2. Assistant 2:\nDetailed.",
        ),
        ("1. 8\n2. 6\nThe first is better.", [8.0, 6.0], "The first is better."),
    ],
)
def test_judgelm_parser_numbered_lines(raw, rating, rationale):
    assert JUDGELM(raw) == {"rating": rating, "rationale": rationale}


@pytest.mark.parametrize("raw", ["", "Assistant 1 is better.", "Scores: 12 3", "\n\n"])
def test_judgelm_parser_invalid(raw):
    with pytest.raises(ParseError):
        JUDGELM(raw)


# ---------------------------------------------------------------- ultrajudge

ULTRAJUDGE = tasks.ultrajudge().parse

ULTRAJUDGE_GOOD = """\
Assistant 1:
Practical Accuracy - 8
The steps are correct.
Clarity & Transparency - 7
Mostly clear.
Authenticity & Reliability - 9
Reliable.
Compliance with Intent - 8
Does what was asked.

Assistant 2:
Practical Accuracy - 4
Step 3 is wrong.
Clarity & Transparency - 6
Readable.
Authenticity & Reliability - 5
Some doubts.
Compliance with Intent - 5
Half of the task.

Final scores: 8 5"""


def test_ultrajudge_parser_good():
    out = ULTRAJUDGE(ULTRAJUDGE_GOOD)
    assert out["rating"] == [8.0, 5.0]
    assert out["areas"][0]["Practical Accuracy"] == {"rating": 8.0, "rationale": "The steps are correct."}
    assert out["areas"][1]["Compliance with Intent"] == {"rating": 5.0, "rationale": "Half of the task."}
    assert [list(a) for a in out["areas"]] == [list(tasks.judges.DEFAULT_AREAS)] * 2


def test_ultrajudge_parser_messy():
    raw = (
        "### Assistant 1\n"
        "**Practical Accuracy**: 8/10 - correct steps\n"
        "- clarity and transparency - 7\nclear enough\n\n"
        "### Assistant 2\n"
        "**Practical Accuracy**: 3\nwrong\n\n"
        "**Final Scores:**\n8, 3\n"
    )
    out = ULTRAJUDGE(raw)
    assert out["rating"] == [8.0, 3.0]
    assert out["areas"][0] == {
        "Practical Accuracy": {"rating": 8.0, "rationale": "correct steps"},
        "Clarity & Transparency": {"rating": 7.0, "rationale": "clear enough"},
    }
    assert out["areas"][1] == {"Practical Accuracy": {"rating": 3.0, "rationale": "wrong"}}


def test_ultrajudge_parser_without_headers_splits_on_repeated_areas():
    parse = tasks.ultrajudge(areas=["Accuracy"]).parse
    out = parse("Accuracy - 9\ngood\nAccuracy - 2\nbad\nFinal scores: 9 2")
    assert out["areas"] == [
        {"Accuracy": {"rating": 9.0, "rationale": "good"}},
        {"Accuracy": {"rating": 2.0, "rationale": "bad"}},
    ]


@pytest.mark.parametrize(
    "final",
    [
        "Final Scores:\nAssistant 1: 8\nAssistant 2: 6",
        "**Final Scores:**\n\n- Assistant 1: 8/10\n- Assistant 2: 6/10\n\nAssistant 1 is better.",
        "Final scores: Assistant 1: 8\nAssistant 2: 6",
        "Final scores:\n8\n6",
    ],
)
def test_ultrajudge_final_scores_one_per_line(final):
    # every answer's final score, not only the first line's
    raw = "Assistant 1:\nPractical Accuracy - 8\ngood\n\nAssistant 2:\nPractical Accuracy - 6\nok\n\n" + final
    out = ULTRAJUDGE(raw)
    assert out["rating"] == [8.0, 6.0]
    assert out["areas"][1] == {"Practical Accuracy": {"rating": 6.0, "rationale": "ok"}}


def test_ultrajudge_parser_only_final_scores():
    assert ULTRAJUDGE("Final scores: 6 7") == {"rating": [6.0, 7.0], "areas": [{}, {}]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "Final scores"),
        ("Assistant 1:\nPractical Accuracy - 8\ngood", "Final scores"),
        ("Final scores: [score of Assistant 1] [score of Assistant 2]", "final score"),
        ("Practical Accuracy - great\nFinal scores: 8", "Practical Accuracy"),
        ("Final scores: 11 3", "between 0 and 10"),
    ],
)
def test_ultrajudge_parser_invalid(raw, message):
    with pytest.raises(ParseError, match=message):
        ULTRAJUDGE(raw)


# ---------------------------------------------------------------- ultracm

ULTRACM = tasks.ultracm().parse


@pytest.mark.parametrize(
    ("raw", "critique", "score"),
    [
        ("### Feedback\nOverall Score: 7\nCorrect, but cite a source.", "Correct, but cite a source.", 7.0),
        ("Overall Score: 7/10\nCorrect.", "Correct.", 7.0),
        ("**Overall Score:** 8.5 (very good)\n\nClear and complete.", "Clear and complete.", 8.5),
        ("7\nThe answer is right but terse.", "The answer is right but terse.", 7.0),  # prefilled prompt
        ("7. The answer is right.", "The answer is right.", 7.0),
        ("The answer misses the second part.\n\nOverall Score: 4", "The answer misses the second part.", 4.0),
        ("### feedback\nSCORE: 2\nOff topic.", "Off topic.", 2.0),
        ("Overall Score: 10", "", 10.0),
    ],
)
def test_ultracm_parser(raw, critique, score):
    assert ULTRACM(raw) == {"critique": critique, "score": score}


@pytest.mark.parametrize(
    ("raw", "critique", "score"),
    [
        (
            "1. The answer is incomplete.\n2. It lacks sources.\n\nOverall Score: 6",
            "1. The answer is incomplete.\n2. It lacks sources.",
            6.0,
        ),
        ("2 + 2 is indeed 4, but explain why.\nOverall Score: 6", "2 + 2 is indeed 4, but explain why.", 6.0),
        ("3 points are missing.\nScore: 5/10", "3 points are missing.", 5.0),
        # a score mentioned in the prose is not the labelled one
        ("With sources it would score 9.\nOverall Score: 6", "With sources it would score 9.", 6.0),
        ("With sources it would score 9.\nScore: 6", "With sources it would score 9.", 6.0),
        ("7\nWith sources it would score 9.", "With sources it would score 9.", 7.0),
    ],
)
def test_ultracm_critique_starting_with_a_number_is_not_the_score(raw, critique, score):
    # a bare leading number is the score only when no labelled score is written
    assert ULTRACM(raw) == {"critique": critique, "score": score}


def test_ultracm_labelled_score_out_of_range_is_an_error_even_after_a_leading_number():
    with pytest.raises(ParseError, match="between 1 and 10"):
        ULTRACM("1. Too short.\nOverall Score: 15")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "expected"),
        ("Great answer!", "overall score"),
        ("Overall Score: [score from 1 to 10]", "overall score"),
        ("Overall Score: 0", "between 1 and 10"),
        ("Overall Score: 15", "between 1 and 10"),
    ],
)
def test_ultracm_parser_invalid(raw, message):
    with pytest.raises(ParseError, match=message):
        ULTRACM(raw)


# ---------------------------------------------------------------- prometheus

PROMETHEUS = tasks.prometheus().parse


@pytest.mark.parametrize(
    ("raw", "critique", "score"),
    [
        ("Feedback: Accurate but brief. [RESULT] 4", "Accurate but brief.", 4.0),
        ("Accurate but brief. [RESULT] 4", "Accurate but brief.", 4.0),
        ("###Feedback: The response is vague.\n[RESULT] 2", "The response is vague.", 2.0),
        ("Feedback: Good.\n\n**[RESULT]** **5**", "Good.", 5.0),
        ("Feedback: ok [result]: 3 (partly correct)", "ok", 3.0),
        ("Feedback: Misses the point.\nScore: 1", "Misses the point.", 1.0),
        ("Feedback: see rubric, Score 1: irrelevant.\nFinal score: 3", "see rubric, Score 1: irrelevant.", 3.0),
        ("[RESULT] 5", "", 5.0),
    ],
)
def test_prometheus_parser(raw, critique, score):
    assert PROMETHEUS(raw) == {"critique": critique, "score": score}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", r"\[RESULT\]"),
        ("Feedback: good response.", r"\[RESULT\]"),
        ("Feedback: x [RESULT] (an integer from 1 to 5)", "expected a score"),
        ("Feedback: x [RESULT] 6", "between 1 and 5"),
    ],
)
def test_prometheus_parser_invalid(raw, message):
    with pytest.raises(ParseError, match=message):
        PROMETHEUS(raw)


def test_prometheus_scale_follows_the_rubric():
    parse = tasks.prometheus(score_descriptions=["no", "partly", "yes"]).parse
    assert parse("Feedback: fine [RESULT] 3")["score"] == 3.0
    with pytest.raises(ParseError, match="between 1 and 3"):
        parse("Feedback: fine [RESULT] 4")


# ---------------------------------------------------------------- complexity / quality scorers

COMPLEXITY = tasks.complexity_scorer().parse
QUALITY = tasks.quality_scorer().parse


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("[1] Score: 1\n[2] Score: 3", [1.0, 3.0]),
        ("[1] Score: 1\n[2] Score: 3\n", [1.0, 3.0]),
        ("[2] Score: 3\n[1] Score: 1", [1.0, 3.0]),
        ("Here are the scores:\n[1] score: **2**\n[2] SCORE - 1 (simple)", [2.0, 1.0]),
        ("1. Score: 2\n2. Score: 4", [2.0, 4.0]),
        ("[1] What is 2+2?\n[2] Prove it.\n[1] 1\n[2] 3", [1.0, 3.0]),
        ("[1] Score: 2\n[1] Score: 5\n[2] Score: 1", [2.0, 1.0]),
    ],
)
def test_complexity_scorer_parser(raw, expected):
    assert COMPLEXITY(raw) == {"rating": expected}


def test_complexity_scorer_echoed_items_starting_with_a_number_are_not_scores():
    # the echoed questions "[1] 3 ways..." / "[2] 2+2?" must not beat the "[N] Score:" lines
    raw = "[1] 3 ways to cook rice\n[2] 2+2?\n\n[1] Score: 2\n[2] Score: 1"
    assert COMPLEXITY(raw) == {"rating": [2.0, 1.0]}
    with pytest.raises(ParseError, match=r"missing \[2\]"):  # [2]'s only number is in its echo
        COMPLEXITY("[1] 3 ways to cook rice\n[2] 2+2?\n\n[1] Score: 2\n[3] Score: 1")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("[Response 1] Score: 2\n[Response 2] Score: 3", [2.0, 3.0]),
        ("**[Response 1] Score:** 2.5\n**[Response 2] Score:** 3/3", [2.5, 3.0]),
        ("Response 1 Score: 1\nResponse 2 Score: 2", [1.0, 2.0]),
        ("[response 2] score: 1\n[response 1] score: 4", [4.0, 1.0]),
    ],
)
def test_quality_scorer_parser(raw, expected):
    assert QUALITY(raw) == {"rating": expected}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "Score: <number>"),
        ("Question 1 is harder.", "Score: <number>"),
        ("[1] Score: [score of question 1]", "expected a score"),
        ("[1] Score: 2\n[3] Score: 1", r"missing \[2\]"),
        ("[Response 1] Score: excellent", "expected a score"),
    ],
)
def test_scorers_parser_invalid(raw, message):
    with pytest.raises(ParseError, match=message):
        COMPLEXITY(raw)
    with pytest.raises(ParseError, match=message):
        QUALITY(raw)
