"""Secrets never reach a file or a terminal: which fields hold them, and scrubbing them out of text.

**Fields.** A field is secret when its attrs metadata says ``secret=True``, when it has
``repr=False``, or when its name is a secret name: ``api_key``, ``apikey``, ``token``,
``secret``, ``password``, ``passwd``, ``credential(s)``, ``authorization``, alone or as the last
word of a name (``hf_token``, ``access_token``, ``client_secret``), in any case and with ``-``
or ``_`` between words (``api-key``, ``X-Api-Key``). Names of variables that *hold* a secret
(``api_key_env``, ``token_env``) and names that only mention one (``max_tokens_param``) are not
secrets. A secret field is never written by ``dump_recipe``, never shown by ``fnlabel list``
and never part of a cache key; keys of table values (``extra_body``, ``engine_kwargs``) follow
the same rule.

**Values.** Every secret fnlabel reads (an API key from its environment variable) is
registered with :func:`register`; :func:`scrub` replaces each registered value in a text, and
the credentials of URLs (``user:password@``, ``?key=...``), with ``***``. fnlabel scrubs
everything it writes: failure records, error messages, its log, what the CLI prints (with
``--debug`` tracebacks).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

import attrs

__all__ = ["is_secret_name", "is_secret_field", "register", "register_config", "scrub", "MASK"]

MASK = "***"

_WORDS = r"api_?key|token|secret|password|passwd|credentials?|authorization"
_SECRET_NAME = re.compile(rf"(?:^|_)(?:{_WORDS})$", re.IGNORECASE)
#: ``scheme://user:password@`` in a URL
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<user>[^/@\s:]+):(?P<pw>[^/@\s]+)@", re.IGNORECASE)
#: ``?key=...`` / ``&access_token=...`` query parameters
_URL_QUERY = re.compile(
    rf"(?P<name>[?&](?:[a-z_-]*(?:{_WORDS}|key|sig|signature)))=(?P<value>[^&\s#'\"]+)", re.IGNORECASE
)
#: a registered value shorter than this is not a secret worth masking (it would mask ordinary words)
_MIN_LENGTH = 8

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()


def is_secret_name(name: str) -> bool:
    """Whether a field or key named ``name`` holds a secret.

    Examples:
        >>> [is_secret_name(n) for n in ("api_key", "hf_token", "Password", "api-key", "X-Api-Key")]
        [True, True, True, True, True]
        >>> [is_secret_name(n) for n in ("api_key_env", "max_tokens_param", "model")]
        [False, False, False]
    """
    return bool(_SECRET_NAME.search(name.replace("-", "_")))


def is_secret_field(field: Any) -> bool:
    """Whether an attrs field holds a secret (metadata ``secret=True``, ``repr=False`` or a secret name)."""
    return bool(field.metadata.get("secret")) or field.repr is False or is_secret_name(field.name)


def register(value: str | None) -> None:
    """Remember a secret fnlabel has read, so that :func:`scrub` masks it wherever it appears."""
    global _secrets
    if isinstance(value, str) and len(value) >= _MIN_LENGTH and value not in _secrets:
        with _lock:
            _secrets = _secrets | {value}


def register_config(config: Any) -> None:
    """Register the secrets a config record names: the values of the environment variables of its ``*_env`` fields.

    A process that never builds a backend itself (an ``in_process`` parent, a Ray driver) still
    scrubs the key out of what its children report.
    """
    if config is None or not attrs.has(type(config)):
        return
    for field in attrs.fields(type(config)):
        name = getattr(config, field.name)
        if field.name.endswith("_env") and isinstance(name, str):
            register(os.environ.get(name))


def scrub(text: str) -> str:
    """``text`` with every registered secret and every URL credential replaced by ``***``.

    Examples:
        >>> scrub("GET http://me:hunter22@host/v1?api_key=abc123&n=2")
        'GET http://me:***@host/v1?api_key=***&n=2'
    """
    if not isinstance(text, str):
        return text
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    if "://" in text:
        text = _URL_USERINFO.sub(rf"\g<scheme>\g<user>:{MASK}@", text)
    if "=" in text:
        text = _URL_QUERY.sub(rf"\g<name>={MASK}", text)
    return text


def url_credentials(url: str) -> str | None:
    """What credential ``url`` carries (``"user:password@"`` or ``"?name="``), or None."""
    if _URL_USERINFO.search(url):
        return "user:password@"
    match = _URL_QUERY.search(url)
    return f"{match['name'][1:]}=" if match else None


class _ScrubFilter(logging.Filter):
    """Masks secrets in every record of fnlabel's log (its message is formatted once, here)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


logging.getLogger("fnlabel").addFilter(_ScrubFilter())
