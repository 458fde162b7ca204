"""Backends: pure ``generate(prompts, params)`` functions made from config records.

Each module holds one backend; heavy libraries are imported inside its factory,
so importing :mod:`fnlabel.backends` stays cheap.
"""

from fnlabel.backends.echo import Echo, EchoConfig, echo

__all__ = ["Echo", "EchoConfig", "echo"]
