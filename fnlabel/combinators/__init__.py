"""Combinators: functions that take an LLM and return one (the optax ``chain`` habit).

* :func:`with_prompt_format` / :func:`with_prompt_formatting_fn` (``prompting``): the same LLM,
  formatting prompts another way;
* :func:`threaded` (``threads``): calls return a ``concurrent.futures.Future``;
* :func:`pooled` (``pool``): each input's generations (or each call's rows) spread over several LLMs;
* :class:`Chain` (``chain``): a generator feeding a labeller;
* :func:`in_process` (``process``; the two ends of its pipe in ``parent`` and ``child``): the LLM
  built and run in a child process from an :class:`LLMSpec` (``spec``); :func:`in_processes`: an HTTP
  backend's requests spread over several such children;
* :func:`cached` (``cache``, with its SQLite store in ``store``): every generation stored and reused.

Every one of them implements :class:`fnlabel.types.LLMLike`, so they compose in any order.
The modules that load multiprocessing or sqlite are imported on first use.
"""

from fnlabel.combinators.prompting import with_prompt_format, with_prompt_formatting_fn
from fnlabel.combinators.threads import Threaded, threaded
from fnlabel.registry import lazy_exports

__all__ = [
    "Chain",
    "InProcess",
    "LLMSpec",
    "Pooled",
    "SQLiteStore",
    "Threaded",
    "cached",
    "in_process",
    "in_processes",
    "pooled",
    "threaded",
    "with_prompt_format",
    "with_prompt_formatting_fn",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Chain": "fnlabel.combinators.chain",
        "InProcess": "fnlabel.combinators.process",
        "in_process": "fnlabel.combinators.process",
        "in_processes": "fnlabel.combinators.process",
        "LLMSpec": "fnlabel.combinators.spec",
        "Pooled": "fnlabel.combinators.pool",
        "pooled": "fnlabel.combinators.pool",
        "cached": "fnlabel.combinators.cache",
        "SQLiteStore": "fnlabel.combinators.store",
    },
)
