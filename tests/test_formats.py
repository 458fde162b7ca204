"""Prompt formats against exact strings and against each family's official chat template."""

from __future__ import annotations

import pytest

from fnlabel import FORMATS, ConfigError, Prompt, format_prompt

SYS, USER = "You are terse.", "What is 2 + 2?"

EXPECTED = {
    ("default", True): "You are terse.\nWhat is 2 + 2?",
    ("default", False): "What is 2 + 2?",
    ("llama2", True): "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nWhat is 2 + 2? [/INST]",
    ("llama2", False): "<s>[INST] What is 2 + 2? [/INST]",
    ("chatml", True): (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n"
    ),
    ("chatml", False): "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n",
    ("zephyr", True): "<|system|>\nYou are terse.</s>\n<|user|>\nWhat is 2 + 2?</s>\n<|assistant|>\n",
    ("zephyr", False): "<|user|>\nWhat is 2 + 2?</s>\n<|assistant|>\n",
    ("notus", True): "<|system|>\nYou are terse.</s>\n<|user|>\nWhat is 2 + 2?</s>\n<|assistant|>\n",
    ("notus", False): "<|user|>\nWhat is 2 + 2?</s>\n<|assistant|>\n",
    ("openai", True): [{"role": "system", "content": SYS}, {"role": "user", "content": USER}],
    ("openai", False): [{"role": "user", "content": USER}],
}


@pytest.mark.parametrize(("fmt", "with_system"), sorted(EXPECTED))
def test_exact_strings(fmt, with_system):
    prompt = Prompt(SYS if with_system else "", USER)
    assert format_prompt(prompt, fmt) == EXPECTED[(fmt, with_system)]


def test_every_format_is_covered_and_default_is_default():
    assert {fmt for fmt, _ in EXPECTED} == set(FORMATS)
    assert format_prompt(Prompt(SYS, USER)) == EXPECTED[("default", True)]


def test_llama2_keeps_the_newline_before_the_closing_sys_tag():
    # distilabel 0.x wrote "{system}<</SYS>>"; Meta's reference has "\n<</SYS>>\n\n"
    assert f"{SYS}\n<</SYS>>\n\n" in format_prompt(Prompt(SYS, USER), "llama2")


def test_unknown_format_error_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        format_prompt(Prompt(SYS, USER), "vicuna")
    msg = str(err.value)
    assert "'vicuna'" in msg
    for fmt in FORMATS:
        assert fmt in msg


# ---- the official chat templates, rendered the way transformers renders them ----

# HuggingFaceH4/zephyr-7b-beta tokenizer_config.json (argilla/notus-7b-v1 ships the same template)
ZEPHYR_TEMPLATE = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}"
    "\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
)

# meta-llama/Llama-2-7b-chat-hf tokenizer_config.json (Meta's reference dialog format as a template)
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

# ChatML as shipped by ChatML models (e.g. teknium/OpenHermes-2.5-Mistral-7B)
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

OFFICIAL = {"zephyr": ZEPHYR_TEMPLATE, "notus": ZEPHYR_TEMPLATE, "llama2": LLAMA2_TEMPLATE, "chatml": CHATML_TEMPLATE}


def render(template: str, messages: list[dict], **tokens: str) -> str:
    """Render a chat template with transformers' own renderer (its jinja settings and globals)."""
    from transformers.utils.chat_template_utils import render_jinja_template  # tests/install.sh installs it

    rendered, _ = render_jinja_template([messages], chat_template=template, add_generation_prompt=True, **tokens)
    return rendered[0]


PROMPTS = [
    Prompt(SYS, USER),
    Prompt("", USER),
    Prompt("Line one.\nLine two.", "Multi\nline\nquestion?"),
    Prompt("  padded system  ", "  padded question \n"),
    Prompt("Ünïcode ✓ {braces} <tags>", "Quote ' and \" and \\ backslash"),
]


@pytest.mark.parametrize("fmt", sorted(OFFICIAL))
@pytest.mark.parametrize("prompt", PROMPTS, ids=range(len(PROMPTS)))
def test_string_formats_equal_the_rendered_official_template(fmt, prompt):
    messages = format_prompt(prompt, "openai")
    expected = render(OFFICIAL[fmt], messages, bos_token="<s>", eos_token="</s>")
    assert format_prompt(prompt, fmt) == expected


def test_rendered_templates_are_what_the_exact_strings_say():
    # guards the renderer itself: the official templates give the hand-written expectations above
    for fmt in OFFICIAL:
        for with_system in (True, False):
            messages = EXPECTED[("openai", with_system)]
            assert render(OFFICIAL[fmt], messages, bos_token="<s>", eos_token="</s>") == EXPECTED[(fmt, with_system)]
