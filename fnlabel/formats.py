"""Prompt formats: turn a :class:`~fnlabel.types.Prompt` into what a backend consumes.

Each string template follows its model family's official chat template:

* ``default``: the system prompt, a newline, then the prompt (just the prompt when
  the system prompt is empty).
* ``openai``: a list of chat messages; a backend applies the model's own chat template.
* ``llama2``: Meta's ``[INST] <<SYS>>\\n...\\n<</SYS>>\\n\\n... [/INST]`` with the BOS token.
* ``chatml``: ``<|im_start|>role\\n...<|im_end|>`` turns, ending on an open assistant turn.
* ``zephyr`` and ``notus`` (a Zephyr fine-tune with the same template):
  ``<|system|>\\n...</s>`` turns, ending on ``<|assistant|>\\n``.

An empty system prompt writes no system turn (no ``<<SYS>>`` block, no system message).
"""

from __future__ import annotations

from collections.abc import Callable

from fnlabel.errors import ConfigError
from fnlabel.types import ChatMessage, FormattedPrompt, Prompt

__all__ = ["FORMATS", "format_prompt", "check_format"]


def as_default(p: Prompt) -> str:
    return f"{p.system_prompt}\n{p.formatted_prompt}" if p.system_prompt else p.formatted_prompt


def as_openai(p: Prompt) -> list[ChatMessage]:
    user: ChatMessage = {"role": "user", "content": p.formatted_prompt}
    if not p.system_prompt:
        return [user]
    return [{"role": "system", "content": p.system_prompt}, user]


def as_llama2(p: Prompt) -> str:
    # Meta's reference (and Llama-2-chat's HF template): B_SYS = "<<SYS>>\n", E_SYS = "\n<</SYS>>\n\n",
    # prepended to the first user message, and only that whole content is stripped
    content = p.formatted_prompt
    if p.system_prompt:
        content = f"<<SYS>>\n{p.system_prompt}\n<</SYS>>\n\n{content}"
    return f"<s>[INST] {content.strip()} [/INST]"


def as_chatml(p: Prompt) -> str:
    system = f"<|im_start|>system\n{p.system_prompt}<|im_end|>\n" if p.system_prompt else ""
    return f"{system}<|im_start|>user\n{p.formatted_prompt}<|im_end|>\n<|im_start|>assistant\n"


def as_zephyr(p: Prompt) -> str:
    # HuggingFaceH4/zephyr-7b-beta's template: one turn per message, each closed by </s>
    system = f"<|system|>\n{p.system_prompt}</s>\n" if p.system_prompt else ""
    return f"{system}<|user|>\n{p.formatted_prompt}</s>\n<|assistant|>\n"


FORMATS: dict[str, Callable[[Prompt], FormattedPrompt]] = {
    "default": as_default,
    "openai": as_openai,
    "llama2": as_llama2,
    "chatml": as_chatml,
    "zephyr": as_zephyr,
    "notus": as_zephyr,
}


def check_format(fmt: str) -> str:
    """Return ``fmt`` if it is a known format, else raise a :class:`ConfigError` listing them."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown prompt format {fmt!r}; known formats: {', '.join(FORMATS)}")
    return fmt


def format_prompt(prompt: Prompt, fmt: str = "default") -> FormattedPrompt:
    """Format ``prompt`` as ``fmt``.

    Examples:
        >>> format_prompt(Prompt("Be brief.", "Hi"), "chatml")
        '<|im_start|>system\\nBe brief.<|im_end|>\\n<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'
        >>> format_prompt(Prompt("", "Hi"), "openai")
        [{'role': 'user', 'content': 'Hi'}]
    """
    return FORMATS[check_format(fmt)](prompt)
