"""Running a recipe over an input file, losing nothing (what ``fnlabel run`` does).

Where data enters, is computed and leaves:

* ``options``: :class:`RunOptions`, a recipe's ``[run]`` with the command line's overrides;
* ``inputs``: :func:`read_input` (JSONL, JSON, CSV, Parquet, Hugging Face datasets);
* ``batch``: one batch's rows through the LLM into output lines (:class:`~fnlabel.run.batch.BatchResult`);
* ``engines``: what computes the batches, by name: ``local`` (threads, :mod:`fnlabel.run.local`)
  or ``ray`` (Ray actors, :mod:`fnlabel.run.ray`);
* ``journal``: the crash-safe output and failures files, the output lock, Parquet;
* ``state``: the input scanned, the output it resumes checked, the rows left to run;
* ``retry``: ``--retry-failed``'s side journal, merged into the output once;
* ``runner``: :func:`run_recipe`, the loop that writes each batch in order, its :class:`Summary`
  (with the run's :class:`Usage`: tokens, cut generations, cost) and the :class:`Progress` it reports.
"""

from fnlabel.run.batch import Usage
from fnlabel.run.inputs import InputData, InputSource, open_input, read_input
from fnlabel.run.options import RunOptions, resolve_options
from fnlabel.run.runner import Progress, Summary, run_recipe

__all__ = [
    "InputData",
    "InputSource",
    "Progress",
    "RunOptions",
    "Summary",
    "Usage",
    "open_input",
    "read_input",
    "resolve_options",
    "run_recipe",
]
