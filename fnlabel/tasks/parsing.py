"""Shared, pure helpers that read scores and lists out of what models really write.

Every helper either returns a value or raises :class:`~fnlabel.errors.ParseError`
saying what it expected; none raises anything else on any string. They tolerate
markdown emphasis (``**4**``), extra whitespace, ``\\r\\n`` line ends, any letter
case, and scores written as ``"5.0 (Excellent)"``, ``"7.5/10"``, ``"4 out of 5"``,
``"[4]"`` or ``"four"``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from fnlabel.errors import ParseError

__all__ = [
    "excerpt",
    "normalize",
    "parse_score",
    "starts_with_score",
    "find_score",
    "parse_score_list",
    "list_items",
    "strip_label",
    "strip_quotes",
    "format_score",
    "label_value",
    "indexed_scores",
]

_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}  # fmt: skip
_NUMBER = r"(?:\d+(?:\.\d+)?|\.\d+|" + "|".join(_WORDS) + r")\b"
# what may stand before a score: brackets, quotes, emphasis, separators
_LEAD = r"[\s\[\(\{<\"'*_~`:=\-–—>#]*"
# "/ 10", "out of 10", "of 10"
_DENOMINATOR = r"\s*(?:/|\bout\s+of\b|\bof\b)\s*(\d+(?:\.\d+)?)"
_SCORE_AT_START = re.compile(_LEAD + r"(" + _NUMBER + r")(?:" + _DENOMINATOR + r")?", re.IGNORECASE)


def excerpt(text: str, limit: int = 80) -> str:
    """A short, one-line ``repr`` of ``text`` for error messages."""
    flat = " ".join(str(text).split())
    return repr(flat if len(flat) <= limit else flat[: limit - 3] + "...")


def normalize(text: str) -> str:
    """Unify line ends and drop bold/italic markers (``**x**``, ``__x__``).

    Examples:
        >>> normalize("**Rating:** 4\\r\\n")
        'Rating: 4\\n'
    """
    if not isinstance(text, str):
        raise ParseError(f"expected the model's output as a string, got {type(text).__name__}")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("**", "").replace("__", "")


def _to_number(token: str) -> float:
    word = _WORDS.get(token.lower())
    return float(word) if word is not None else float(token)


def _check_range(value: float, low: float | None, high: float | None, what: str, source: str) -> float:
    if not math.isfinite(value):
        raise ParseError(f"expected a finite {what}, got {excerpt(source)}")
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ParseError(f"expected a {what} between {lo} and {hi}, got {value:g} in {excerpt(source)}")
    return value


def parse_score(text: str, low: float | None = None, high: float | None = None, what: str = "score") -> float:
    """The score a value starts with: ``"5.0 (Excellent)"`` -> 5.0, ``"7.5/10"`` -> 7.5.

    Leading brackets, quotes and markdown are skipped; anything after the number
    (an explanation, a denominator) is ignored. A denominator smaller than the
    score (``"8/5"``) and a score outside ``[low, high]`` are errors.

    Examples:
        >>> parse_score("**4** (Very good)"), parse_score("7.5/10", 1, 10), parse_score("four out of five")
        (4.0, 7.5, 4.0)
    """
    text = normalize(text)
    match = _SCORE_AT_START.match(text)
    if match is None:
        raise ParseError(f"expected a {what} (a number such as 4 or 7.5), got {excerpt(text)}")
    value = _to_number(match.group(1))
    if match.group(2) is not None and value > float(match.group(2)):
        raise ParseError(f"expected a {what} no larger than its scale, got {excerpt(match.group(0))}")
    return _check_range(value, low, high, what, text)


def starts_with_score(text: str) -> bool:
    """Whether ``text`` starts with something :func:`parse_score` reads as a number (in range or not).

    Examples:
        >>> starts_with_score("**4** (good)"), starts_with_score("it lower")
        (True, False)
    """
    return _SCORE_AT_START.match(normalize(text)) is not None


def _label_pattern(labels: Iterable[str]) -> str:
    alts = "|".join(r"\s*".join(re.escape(part) for part in label.split()) for label in labels)
    return r"(?:" + alts + r")"


def find_score(
    text: str,
    labels: Iterable[str] = ("rating", "score"),
    low: float | None = None,
    high: float | None = None,
    what: str = "score",
    line_start: bool = False,
) -> tuple[float, int, int]:
    """The first ``<label>: <score>`` in ``text``, as ``(score, start, end)`` of the match.

    Labels match in any case, with markdown or brackets around them and ``:``,
    ``=``, ``-`` or nothing before the score; with ``line_start``, only at the
    start of a line (so "it would score 9" in a sentence is not a label).

    Examples:
        >>> find_score("Some words.\\nRating: **4** - good")[0]
        4.0
    """
    text = normalize(text)
    lead = r"^[^\S\n]*[#>*_\-•\[(]*[^\S\n]*" if line_start else ""
    pattern = re.compile(
        lead + r"\b" + _label_pattern(labels) + r"\b[^\S\n]*(?:\([^)\n]*\))?[^\S\n]*[:=\-–]?",
        re.IGNORECASE | re.MULTILINE,
    )
    errors = []
    for match in pattern.finditer(text):
        rest = text[match.end() :]
        score_match = _SCORE_AT_START.match(rest)
        if score_match is None:
            errors.append(excerpt(text[match.start() : match.end() + 40]))
            continue
        value = parse_score(rest, low, high, what)
        return value, match.start(), match.end() + score_match.end()
    found = f"; found only {', '.join(errors[:3])}" if errors else ""
    names = "/".join(labels)
    raise ParseError(f"expected '{names}: <number>' in the output{found}; got {excerpt(text)}")


_ITEM_LABEL = re.compile(
    r"(?:assistant|response|answer|text|question|instruction)\s*#?\s*\d+\s*[:=\-–)]?", re.IGNORECASE
)


_LIST_MARKER = re.compile(r"^\s*\(?\d{1,2}[.)]\s+(?=\S)")


def parse_score_list(
    text: str, low: float | None = None, high: float | None = None, what: str = "score"
) -> list[float]:
    """The scores of a line such as ``"8 9"``, ``"8, 9"``, ``"8/10 9/10"`` or
    ``"Assistant 1: 8, Assistant 2: 9"``.

    The line must hold only scores (with labels and separators): words mean it
    is not a score line. A leading list marker (``"1. "``, ``"2) "``) is not a score.

    Examples:
        >>> parse_score_list("Assistant 1: 8/10, Assistant 2: **9**")
        [8.0, 9.0]
    """
    # "1. 8" / "2) Assistant 2: 6": the list marker is not a score
    line = _ITEM_LABEL.sub(" ", _LIST_MARKER.sub("", normalize(text), count=1))
    line = re.sub(r"\b(?:scores?|ratings?|final)\b\s*:?", " ", line, flags=re.IGNORECASE)
    tokens = re.findall(r"\d+(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?|[A-Za-z]+", line)
    scores = []
    for token in tokens:
        if token[0].isalpha() and token.lower() not in _WORDS:
            raise ParseError(f"expected a line of {what}s only, got {excerpt(text)}")
        scores.append(parse_score(token, low, high, what))
    if not scores:
        raise ParseError(f"expected a line of {what}s such as '8 9', got {excerpt(text)}")
    return scores


_NUMBERED = (
    r"(?:\(?\d{1,3}[.):]|\[\d{1,3}\]|#\d{1,3}[.):]?)"  # 1.  1)  (1)  [1]  #1
    r"|(?:q|query|question|instruction|prompt)\s*\d{1,3}\s*[.):]"  # Q1:  Query 2.
)
_MARKER = re.compile(r"^\s*(?:" + _NUMBERED + r"|[-*+•·–—])[^\S\n]*", re.IGNORECASE)  # numbers or bullets
_NUMBER_MARKER = re.compile(r"^\s*(?:" + _NUMBERED + r")", re.IGNORECASE)


def strip_quotes(text: str) -> str:
    """``text`` without one pair of surrounding quotes (``"x"``, ``'x'``, ``“x”``)."""
    text = text.strip()
    for left, right in ('""', "''", "“”", "‘’", "``"):
        if len(text) >= 2 and text[0] == left and text[-1] == right:
            return text[1:-1].strip()
    return text


def list_items(text: str) -> list[str]:
    """The items of a numbered list, a bulleted list or plain lines.

    When some lines carry a list marker (``1.``, ``2)``, ``[3]``, ``-``, ``*``,
    ``Q4:``), only those lines are items, so a preamble such as "Here are five
    queries:" is skipped; when some are numbered, bullets are details of an item
    and are skipped too. Otherwise every non-empty line is an item, except
    headings (``# Output``) and lines ending with ``:``. Items lose their markers,
    surrounding quotes and whitespace.

    Examples:
        >>> list_items("Here you go:\\n1. What is AI?\\n2) **Explain** DNS.")
        ['What is AI?', 'Explain DNS.']
        >>> list_items("What is AI?\\nExplain DNS.")
        ['What is AI?', 'Explain DNS.']
    """
    lines = [line.strip() for line in normalize(text).split("\n")]
    lines = [line for line in lines if line and not re.fullmatch(r"[-=*_`~]{3,}", line)]
    # under a numbered list, bullets are details of an item, not items
    numbered = any(_NUMBER_MARKER.match(line) for line in lines)
    marker = _NUMBER_MARKER if numbered else _MARKER
    marked = [_MARKER.sub("", line, count=1) for line in lines if marker.match(line)]
    if marked:
        items = marked
    else:
        items = [line for line in lines if not line.startswith("#") and not line.endswith(":")]
    return [item for item in (strip_quotes(i) for i in items) if item]


def strip_label(text: str, labels: Iterable[str]) -> str:
    """``text`` without a leading label such as ``#Rewritten Prompt#:`` or ``Feedback:``.

    Examples:
        >>> strip_label("**#Rewritten Prompt#:** Explain DNS.", ["rewritten prompt"])
        'Explain DNS.'
    """
    pattern = re.compile(r"^[\s#*_>]*" + _label_pattern(labels) + r"[\s#*_]*(?::|\n)[\s*_]*", re.IGNORECASE)
    return pattern.sub("", text.strip(), count=1).strip()


def format_score(value: float) -> str:
    """A score as a model would write it: ``4.0`` -> ``"4"``, ``7.5`` -> ``"7.5"``."""
    return f"{value:g}"


def label_value(line: str, labels: Iterable[str]) -> str | None:
    """What follows ``<label>:`` at the start of ``line`` (after bullets, ``#`` and ``>``), else None.

    A parenthesis or ``for text N`` may follow the label (``Rating (1-5): 4``,
    ``Rating for text 2: 4``); the separator (``:``, ``-``, ``=``) is optional.

    Examples:
        >>> label_value("- **Rating for Text 2:** 4", ["rating"])
        '4'
        >>> label_value("Rationale: fine", ["rating"]) is None
        True
    """
    pattern = re.compile(
        r"^[\s#>*_\-•]*"
        + _label_pattern(labels)
        + r"\b(?:\s*\([^)\n]*\)|\s+for\s+(?:text|response|answer)\s*#?\d+)?[^\S\n]*[:=\-–]?[^\S\n]*",
        re.IGNORECASE,
    )
    match = pattern.match(normalize(line))
    return None if match is None else normalize(line)[match.end() :].strip()


_INDEXED = re.compile(
    r"^[\s>*\-•]*(\[)?\s*(?:response|question|instruction|text|answer)?\s*#?(\d{1,3})\s*\]?"
    r"\s*[.):\-–]?\s*(score\b)?\s*[:=\-–]?\s*(.*)$",
    re.IGNORECASE,
)


def indexed_scores(text: str, low: float | None = None, high: float | None = None) -> list[float]:
    """Scores written one per line as ``[1] Score: 3`` / ``[Response 2] Score: 4`` / ``3. Score: 2``,
    returned in index order; the indices must run 1..k without gaps.

    Lines without a ``score`` label count only when no line has one, and only when
    they start with a bracketed index and a number (``[2] 4``); other lines (an
    echoed question such as ``[1] 3 ways to...``) are skipped.

    Examples:
        >>> indexed_scores("[Response 2] Score: **4**\\n[Response 1] Score: 2 (weak)")
        [2.0, 4.0]
    """
    labelled_scores: dict[int, float] = {}
    bare_scores: dict[int, float] = {}
    for line in normalize(text).split("\n"):
        match = _INDEXED.match(line)
        if match is None:
            continue
        bracketed, index, labelled, value = match.groups()
        if labelled:
            labelled_scores.setdefault(int(index), parse_score(value, low, high))
        elif bracketed:
            try:
                bare_scores.setdefault(int(index), parse_score(value, low, high))
            except ParseError:
                continue
    # with any "Score" line written, "[N] <number>" lines are echoed items ("[1] 3 ways to...")
    found = labelled_scores or bare_scores
    if not found:
        raise ParseError(f"expected one '[N] Score: <number>' line per item, got {excerpt(text)}")
    missing = [i for i in range(1, max(found) + 1) if i not in found]
    if missing or 0 in found:
        raise ParseError(
            f"expected scores for items 1..{max(found)} in '[N] Score: <number>' lines, "
            f"missing {missing or [0]} in {excerpt(text)}"
        )
    return [found[i] for i in sorted(found)]
