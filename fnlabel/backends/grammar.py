"""GBNF grammars for llama.cpp from a structured output: JSON schema, choices or a regex.

llama-cpp-python converts a JSON schema to a grammar itself (``llama_cpp.llama_grammar``'s
``SchemaConverter``, a port of llama.cpp's converter); fnlabel uses it and adds what it lacks:
integer ``minimum`` / ``maximum`` (as an alternation of the allowed values, up to
:data:`MAX_ENUMERATED` of them; a wider range is checked after decoding by the schema
validation). A regex goes through the same converter's pattern support; choices become an
alternation of literals.
"""

from __future__ import annotations

import json
from typing import Any

from fnlabel.errors import ConfigError
from fnlabel.structured import StructuredOutput

__all__ = ["gbnf", "MAX_ENUMERATED"]

#: the widest integer range written out as an alternation of its values
MAX_ENUMERATED = 1000


def _literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


_CLASSES = {"d": "0-9", "w": "a-zA-Z0-9_", "s": " \\t\\n\\r"}


def expand_classes(pattern: str) -> str:
    r"""``\d``, ``\w``, ``\s`` (and ``\D``, ``\W``, ``\S`` outside brackets) as explicit classes,
    which llama.cpp's grammars have no escape for.

    Examples:
        >>> expand_classes(r"\d{3}-[\w.]+")
        '[0-9]{3}-[a-zA-Z0-9_.]+'
    """
    out, in_class, i = [], False, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt.lower() in _CLASSES and (not in_class or nxt.islower()):
                body = _CLASSES[nxt.lower()]
                out.append(body if in_class else f"[{'^' if nxt.isupper() else ''}{body}]")
            else:
                out.append(ch + nxt)
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
        elif ch == "]" and in_class:
            in_class = False
        out.append(ch)
        i += 1
    return "".join(out)


def _int_range(schema: dict[str, Any]) -> list[int] | None:
    """The values of an integer schema with a small enough range, else None."""
    low, high = schema.get("minimum"), schema.get("maximum")
    if "exclusiveMinimum" in schema:
        low = int(schema["exclusiveMinimum"]) + 1
    if "exclusiveMaximum" in schema:
        high = int(schema["exclusiveMaximum"]) - 1
    if low is None or high is None or high - low > MAX_ENUMERATED:
        return None
    return list(range(int(low), int(high) + 1))


def _converter(raw_pattern: bool) -> Any:
    from llama_cpp.llama_grammar import RESERVED_NAMES, SchemaConverter

    class Converter(SchemaConverter):
        def visit(self, schema: Any, name: str) -> Any:
            if isinstance(schema, dict) and schema.get("type") == "integer" and "enum" not in schema:
                values = _int_range(schema)
                if values is not None:
                    rule = "(" + " | ".join(_literal(str(v)) for v in values) + ") space"
                    return self._add_rule(name + "-" if name in RESERVED_NAMES else name or "root", rule)
            return super().visit(schema, name)

    return Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=raw_pattern)


def gbnf(constraint: StructuredOutput) -> str:
    """The GBNF grammar of a structured output (root rule ``root``); ConfigError for what it cannot express.

    Examples:
        >>> print(gbnf(StructuredOutput(choice=["yes", 'say "no"'])))
        root ::= "yes" | "say \\"no\\""
    """
    if constraint.choice is not None:
        return "root ::= " + " | ".join(_literal(c) for c in constraint.choice)
    try:
        return _convert(constraint)
    except ConfigError:
        raise
    except Exception as exc:  # the converter asserts on what it does not support (lookarounds, $ref URLs...)
        what = f"regex {constraint.regex!r}" if constraint.regex is not None else "JSON schema"
        raise ConfigError(f"llama.cpp grammars cannot express this {what}: {exc}") from None


def _convert(constraint: StructuredOutput) -> str:
    if constraint.regex is not None:
        pattern = expand_classes(constraint.regex)
        pattern = ("" if pattern.startswith("^") else "^") + pattern + ("" if pattern.endswith("$") else "$")
        converter = _converter(raw_pattern=True)
        converter.visit({"type": "string", "pattern": pattern}, "")
        return str(converter.format_grammar())
    converter = _converter(raw_pattern=False)
    schema = converter.resolve_refs(json.loads(json.dumps(constraint.schema())), "schema")
    converter.visit(schema, "")
    return str(converter.format_grammar())
