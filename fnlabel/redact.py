"""The one rule for which config fields and table keys hold secrets.

A secret is never written by ``dump_recipe``, never shown by ``fnlabel list`` and
never part of a cache key. A field is secret when its attrs metadata says
``secret=True``, when it has ``repr=False``, or when its name is a secret name:
``api_key``, ``apikey``, ``token``, ``secret``, ``password``, ``passwd``,
``credential(s)``, alone or as the last word of a name (``hf_token``,
``access_token``, ``client_secret``). Names of variables that *hold* a secret
(``api_key_env``, ``token_env``) and names that only mention one
(``max_tokens_param``) are not secrets. Keys of table values (``extra_body``,
``engine_kwargs``) follow the same name rule.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["is_secret_name", "is_secret_field"]

_SECRET_NAME = re.compile(r"(?:^|_)(?:api_?key|token|secret|password|passwd|credentials?)$", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """Whether a field or key named ``name`` holds a secret.

    Examples:
        >>> [is_secret_name(n) for n in ("api_key", "hf_token", "Password", "api_key_env", "max_tokens_param")]
        [True, True, True, False, False]
    """
    return bool(_SECRET_NAME.search(name))


def is_secret_field(field: Any) -> bool:
    """Whether an attrs field holds a secret (metadata ``secret=True``, ``repr=False`` or a secret name)."""
    return bool(field.metadata.get("secret")) or field.repr is False or is_secret_name(field.name)
