"""One error hierarchy for fnlabel.

Every error fnlabel raises on purpose is a :class:`FnlabelError`; the CLI turns
them into a message on stderr and a non-zero exit code, without a traceback.
"""

from __future__ import annotations

__all__ = [
    "FnlabelError",
    "ConfigError",
    "RecipeError",
    "InputError",
    "OutputError",
    "BackendError",
    "ParseError",
    "BATCH_PENDING",
]


class FnlabelError(Exception):
    """Base class of all fnlabel errors."""


class ConfigError(FnlabelError, ValueError):
    """A config record or a combinator got a value it cannot use."""


class RecipeError(ConfigError):
    """A TOML recipe could not be loaded: the message names the file and key path."""


class InputError(FnlabelError, ValueError):
    """An input file or row is unusable: the message names the file, the row and the key."""


class OutputError(FnlabelError, OSError):
    """An output could not be written (a full disk, a folder in the way, no permission).

    The message names the file; what was written before it is kept, so the fix is to
    free the space (or pass another ``--output``) and rerun the same command.
    """


class BackendError(FnlabelError, RuntimeError):
    """A backend failed, or broke its contract (wrong number of prompts or generations)."""


class ParseError(FnlabelError, ValueError):
    """A task's ``parse`` could not read a raw output; the message says what it expected."""


#: the error of a generation asked of a provider's Batch API and not yet answered (see fnlabel.batches):
#: a row with one is not written, and a two-stage run does not label it
BATCH_PENDING = "pending: waiting for a batch's results"
