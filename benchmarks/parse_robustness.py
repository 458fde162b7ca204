"""Task parsers side by side with distilabel 0.6.0's: how many realistic outputs each reads
correctly, and how fast.

The corpus holds outputs in the format each distilabel 0.x template asked for (so the
comparison is fair to it) and the messy variants models really write (markdown, "7.5/10",
"Rating: **4**", no trailing newline, other letter case, plain lines). For each, the value a
reader would take from it is known. A parser scores a point when it returns that value;
returning something else, or crashing, scores none. (For outputs that must be rejected, fnlabel
must raise ParseError.)

Run: python benchmarks/parse_robustness.py  -> prints ratios, writes benchmarks/results/parse_robustness.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fnlabel import tasks
from fnlabel.errors import ParseError

UF = "#### Output for Text 1\nRating: {a}\nRationale: {x}\n\n#### Output for Text 2\nRating: {b}\nRationale: {y}\n"

# (task kind, raw output, expected value in fnlabel's shape)
CORPUS: list[tuple[str, str, dict]] = [
    # self-instruct: distilabel's template asked for plain lines, its parser wanted "N. ...\n"
    ("self-instruct", "What is DNS?\nExplain TCP.\n", {"instructions": ["What is DNS?", "Explain TCP."]}),
    ("self-instruct", "1. What is DNS?\n2. Explain TCP.\n", {"instructions": ["What is DNS?", "Explain TCP."]}),
    ("self-instruct", "1. What is DNS?\n2. Explain TCP.", {"instructions": ["What is DNS?", "Explain TCP."]}),
    ("self-instruct", "- What is DNS?\n- Explain TCP.\n", {"instructions": ["What is DNS?", "Explain TCP."]}),
    (
        "self-instruct",
        "Here are the queries:\n1. **What** is DNS?\n2. Explain TCP.",
        {"instructions": ["What is DNS?", "Explain TCP."]},
    ),
    # evol-instruct
    (
        "evol-instruct",
        "Name three primes above 100 and prove each is prime.",
        {"instructions": "Name three primes above 100 and prove each is prime."},
    ),
    (
        "evol-instruct",
        "#Rewritten Prompt#:\nName three primes above 100.",
        {"instructions": "Name three primes above 100."},
    ),
    ("evol-instruct", "Sorry, I cannot do that.", {"instructions": None}),
    ("evol-instruct", "Rewrite the given prompt with more steps.", {"instructions": None}),
    # ultrafeedback
    (
        "ultrafeedback",
        UF.format(a=4, b=2, x="Accurate.", y="Wrong."),
        {"rating": [4.0, 2.0], "rationale": ["Accurate.", "Wrong."]},
    ),
    (
        "ultrafeedback",
        UF.format(a="4/5", b="2/5", x="Accurate.", y="Wrong."),
        {"rating": [4.0, 2.0], "rationale": ["Accurate.", "Wrong."]},
    ),
    (
        "ultrafeedback",
        UF.format(a="**4**", b="**2**", x="Accurate.", y="Wrong."),
        {"rating": [4.0, 2.0], "rationale": ["Accurate.", "Wrong."]},
    ),
    (
        "ultrafeedback",
        UF.format(a="5.0 (Excellent)", b="2.0 (Poor)", x="Accurate.", y="Wrong."),
        {"rating": [5.0, 2.0], "rationale": ["Accurate.", "Wrong."]},
    ),
    (
        "ultrafeedback",
        UF.replace("Rating:", "**Rating:**")
        .replace("Rationale:", "**Rationale:**")
        .format(a=4, b=2, x="Accurate.", y="Wrong."),
        {"rating": [4.0, 2.0], "rationale": ["Accurate.", "Wrong."]},
    ),
    (
        "ultrafeedback",
        UF.lower().format(a=4, b=2, x="Accurate.", y="Wrong."),
        {"rating": [4.0, 2.0], "rationale": ["Accurate.", "Wrong."]},
    ),
    (
        "ultrafeedback",
        "#### Output for Text 1\n\nRating: 4\nRationale: Accurate.",
        {"rating": [4.0], "rationale": ["Accurate."]},
    ),
    # judgelm
    (
        "judgelm",
        "8 9\nThe second is more detailed.",
        {"rating": [8.0, 9.0], "rationale": "The second is more detailed."},
    ),
    (
        "judgelm",
        "8, 9\nThe second is more detailed.",
        {"rating": [8.0, 9.0], "rationale": "The second is more detailed."},
    ),
    (
        "judgelm",
        "8/10 9/10\nThe second is more detailed.",
        {"rating": [8.0, 9.0], "rationale": "The second is more detailed."},
    ),
    (
        "judgelm",
        "8  9 \nThe second is more detailed.",
        {"rating": [8.0, 9.0], "rationale": "The second is more detailed."},
    ),
    (
        "judgelm",
        "Assistant 1: 8\nAssistant 2: 9\nThe second is more detailed.",
        {"rating": [8.0, 9.0], "rationale": "The second is more detailed."},
    ),
    # ultracm (distilabel's prompt ended on "Overall Score: ", so a reply may start with the score)
    ("ultracm", "7\nCite a source.", {"critique": "Cite a source.", "score": 7.0}),
    ("ultracm", "### Feedback\nOverall Score: 7\nCite a source.", {"critique": "Cite a source.", "score": 7.0}),
    ("ultracm", "Overall Score: 7/10\nCite a source.", {"critique": "Cite a source.", "score": 7.0}),
    ("ultracm", "**Overall Score:** 7\nCite a source.", {"critique": "Cite a source.", "score": 7.0}),
    # prometheus
    ("prometheus", "Feedback: Accurate but brief. [RESULT] 4", {"critique": "Accurate but brief.", "score": 4.0}),
    ("prometheus", "Accurate but brief.\n[RESULT] 4", {"critique": "Accurate but brief.", "score": 4.0}),
    ("prometheus", "Feedback: Accurate but brief. [RESULT] **4**", {"critique": "Accurate but brief.", "score": 4.0}),
    ("prometheus", "Feedback: Accurate but brief [RESULT] 4", {"critique": "Accurate but brief", "score": 4.0}),
    # complexity / quality scorers
    ("complexity-scorer", "[1] Score: 1\n[2] Score: 3", {"rating": [1.0, 3.0]}),
    ("complexity-scorer", "[1] Score: 1\n[2] Score: 3\n", {"rating": [1.0, 3.0]}),
    ("complexity-scorer", "Scores:\n[1] Score: 1\n[2] Score: 3", {"rating": [1.0, 3.0]}),
    ("complexity-scorer", "[1] Score: **1**\n[2] Score: 3 (hard)", {"rating": [1.0, 3.0]}),
    ("quality-scorer", "[Response 1] Score: 2\n[Response 2] Score: 3", {"rating": [2.0, 3.0]}),
    ("quality-scorer", "[Response 1] Score: 2\n\n[Response 2] Score: 3\n", {"rating": [2.0, 3.0]}),
    ("quality-scorer", "[Response 1] Score: 2/3\n[Response 2] Score: 3/3", {"rating": [2.0, 3.0]}),
]

# distilabel's Prometheus parser keeps "Feedback:" and drops the final period of the critique
# by design; compare the score only there, so only real misreadings count against it
COMPARE_ONLY = {"prometheus": ("score",)}


def same(kind: str, got: object, expected: dict) -> bool:
    keys = COMPARE_ONLY.get(kind)
    if keys is None or not isinstance(got, dict):
        return got == expected
    return all(got.get(k) == expected[k] for k in keys)


FNLABEL_PARSERS = {kind: tasks.TASKS[kind]().parse for kind in {k for k, _, _ in CORPUS}}

PEER = r"""
import json, sys, time
from distilabel.tasks import (SelfInstructTask, EvolInstructTask, UltraFeedbackTask, JudgeLMTask,
    UltraCMTask, PrometheusTask, ComplexityScorerTask, QualityScorerTask)
corpus = json.loads(sys.stdin.read())
parsers = {
    "self-instruct": SelfInstructTask(), "evol-instruct": EvolInstructTask(),
    "ultrafeedback": UltraFeedbackTask.for_overall_quality(), "judgelm": JudgeLMTask(),
    "ultracm": UltraCMTask(),
    "prometheus": PrometheusTask(scoring_criteria="c", score_descriptions={1: "a", 2: "b", 3: "c", 4: "d", 5: "e"}),
    "complexity-scorer": ComplexityScorerTask(), "quality-scorer": QualityScorerTask(),
}
def shape(kind, out):
    # distilabel's pipeline turned a list of per-text dicts into columns: do the same
    if kind == "ultrafeedback" and isinstance(out, list):
        return {"rating": [o["rating"] for o in out], "rationale": [o["rationale"] for o in out]}
    return out
results = []
for kind, raw, _ in corpus:
    try:
        results.append(shape(kind, parsers[kind].parse_output(raw)))
    except Exception as exc:
        results.append({"error": type(exc).__name__})
start, n = time.perf_counter(), 0
while time.perf_counter() - start < 1.0:
    for kind, raw, _ in corpus:
        try:
            parsers[kind].parse_output(raw)
        except Exception:
            pass
        n += 1
print(json.dumps({"results": results, "parses_per_s": n / (time.perf_counter() - start)}))
"""


def fnlabel_results() -> tuple[list, float]:
    results = []
    for kind, raw, _ in CORPUS:
        try:
            results.append(FNLABEL_PARSERS[kind](raw))
        except ParseError as exc:
            results.append({"error": f"ParseError: {exc}"})
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < 1.0:
        for kind, raw, _ in CORPUS:
            try:
                FNLABEL_PARSERS[kind](raw)
            except ParseError:
                pass
            n += 1
    return results, n / (time.perf_counter() - start)


def run_distilabel(corpus: list) -> dict:
    import subprocess

    from benchmarks.peers import distilabel_python

    proc = subprocess.run(
        [distilabel_python(), "-c", PEER], input=json.dumps(corpus), capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ratios(report: dict) -> dict:
    """The common ``"ratios"`` block read by benchmarks/plot.py, from the figures above."""
    return {
        "fnlabel / distilabel 0.6.0, outputs read correctly": {
            "value": report["read_correctly_ratio_fnlabel_over_distilabel"],
            "better": "higher",
        },
        "fnlabel / distilabel 0.6.0, parses/s": {
            "value": report["speed_ratio_fnlabel_over_distilabel"],
            "better": "higher",
        },
    }


def main() -> None:
    ours, our_rate = fnlabel_results()
    peer = run_distilabel(CORPUS)
    per_kind: dict[str, dict[str, int]] = {}
    for (kind, _raw, expected), mine, theirs in zip(CORPUS, ours, peer["results"]):
        row = per_kind.setdefault(kind, {"cases": 0, "fnlabel": 0, "distilabel": 0})
        row["cases"] += 1
        row["fnlabel"] += same(kind, mine, expected)
        row["distilabel"] += same(kind, theirs, expected)
    total = {k: sum(r[k] for r in per_kind.values()) for k in ("cases", "fnlabel", "distilabel")}
    report = {
        "corpus_size": total["cases"],
        "read_correctly": {"fnlabel": total["fnlabel"], "distilabel_0_6_0": total["distilabel"]},
        "read_correctly_ratio_fnlabel_over_distilabel": round(total["fnlabel"] / max(total["distilabel"], 1), 2),
        "per_task": per_kind,
        "parses_per_s": {"fnlabel": round(our_rate), "distilabel_0_6_0": round(peer["parses_per_s"])},
        "speed_ratio_fnlabel_over_distilabel": round(our_rate / peer["parses_per_s"], 2),
    }
    report["ratios"] = ratios(report)  # the common shape read by benchmarks/plot.py
    for kind, row in sorted(per_kind.items()):
        print(
            f"{kind:18s} {row['fnlabel']:2d}/{row['cases']} fnlabel   {row['distilabel']:2d}/{row['cases']} distilabel 0.6.0"
        )
    print(
        f"read correctly: fnlabel {total['fnlabel']}/{total['cases']}, distilabel {total['distilabel']}/{total['cases']}"
    )
    print(f"parse speed ratio fnlabel/distilabel: {report['speed_ratio_fnlabel_over_distilabel']}x")
    out = Path(__file__).resolve().parent / "results" / "parse_robustness.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
