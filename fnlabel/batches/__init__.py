"""Batch mode: a run's requests through a provider's Batch API, at its batch price (docs/batch.md).

* ``requests``: the :class:`~fnlabel.batches.requests.Collector` that turns the generations the
  per-sample cache is missing into request lines (``custom_id`` = the cache entry), and the files
  they go to, split at the provider's limits;
* ``ledger``: ``OUTPUT.batches.json``, every upload and batch written before and after it is made;
* ``provider``: upload, create, poll and collect through the openai SDK, results into the cache;
* ``mode``: ``fnlabel run --batch`` (:func:`run_batch`), ``fnlabel batch export`` and ``import``.
"""

from fnlabel.batches.mode import BatchRun, export_requests, import_results, run_batch

__all__ = ["BatchRun", "run_batch", "export_requests", "import_results"]
