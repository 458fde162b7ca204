"""Plugins: an installed distribution's entry points add backend and task kinds (docs/plugins.md).

Each test puts a throwaway distribution (a ``.dist-info`` folder with ``entry_points.txt``) on
``sys.path``, which is all ``importlib.metadata`` needs to find a plugin.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import fnlabel
from fnlabel.backends import BACKENDS
from fnlabel.errors import ConfigError, RecipeError
from fnlabel.recipes import dump_recipe, loads_recipe
from fnlabel.tasks import TASKS
from tests.plugin_example import ShoutConfig, shout_task
from tests.recipe_helpers import ROOT, make_dist

SHOUT = '[task]\nkind = "shout-task"\nprefix = "hey "\n[backend]\nkind = "shout"\nvolume = 2\n'


@pytest.fixture
def shout(plugin: Any) -> None:
    plugin("fnlabel.backends", "shout", "tests.plugin_example:ShoutConfig")
    plugin("fnlabel.tasks", "shout-task", "tests.plugin_example:shout_task")


def test_a_plugin_backend_and_task_work_in_recipes_like_built_in_kinds(shout: None) -> None:
    assert "shout" in BACKENDS and BACKENDS["shout"] is ShoutConfig
    assert "shout-task" in TASKS and TASKS["shout-task"] is shout_task
    assert list(BACKENDS)[: len(BACKENDS.builtins)] == list(BACKENDS.builtins)  # built-ins first
    assert BACKENDS.origin("shout") == "plugin from fnlabel-test-shout 0.1"
    recipe = loads_recipe(SHOUT)
    assert recipe.backend == ShoutConfig(volume=2)
    out = recipe.build()([{"text": "hello"}], num_generations=2)
    assert [o["raw_output"] for o in out[0]] == ["HEY HELLO!! 0", "HEY HELLO!! 1"]
    assert out[0][0]["model_name"] == "shout" and out[0][1]["parsed_output"] == {"shout": "HEY HELLO!! 1"}
    assert loads_recipe(dump_recipe(recipe)) == recipe  # dump writes the plugin kind back


def test_plugin_kinds_get_the_same_errors_as_built_in_ones(shout: None) -> None:
    with pytest.raises(
        RecipeError, match=r"backend: unknown key 'volme' for backend kind 'shout' \(did you mean 'volume'\?\)"
    ):
        loads_recipe(SHOUT.replace("volume", "volme"))
    with pytest.raises(
        RecipeError, match=r"backend\.volume: expected int >= 1|ShoutConfig\.volume must be an integer >= 1"
    ):
        loads_recipe(SHOUT.replace("volume = 2", "volume = 0"))
    with pytest.raises(
        RecipeError, match=r"task: unknown key 'prefx' for task kind 'shout-task' \(did you mean 'prefix'\?\)"
    ):
        loads_recipe(SHOUT.replace("prefix", "prefx"))
    with pytest.raises(RecipeError, match=r"unknown backend kind 'shoot'; known kinds: echo, .*, shout"):
        loads_recipe(SHOUT.replace('kind = "shout"', 'kind = "shoot"'))


def test_without_the_plugin_its_kinds_are_unknown() -> None:
    assert "shout" not in BACKENDS and "shout-task" not in TASKS
    with pytest.raises(RecipeError, match="unknown task kind 'shout-task'"):
        loads_recipe(SHOUT)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.plugin_example:NotAConfig", "not an attrs config class with build()"),
        ("tests.plugin_example:WrongKindConfig", "whose kind ClassVar is 'something-else'; set kind"),
        ("no_such_package.backend:Config", "not available in this installation .*plugin from fnlabel-test-broken 0.1"),
        ("tests.plugin_example:NoSuchName", "names 'tests.plugin_example:NoSuchName'"),
    ],
)
def test_a_broken_plugin_is_refused_naming_it(plugin: Any, target: str, message: str) -> None:
    plugin("fnlabel.backends", "broken", target)
    with pytest.raises(ConfigError, match=message):
        fnlabel.backends.config_class("broken")
    with pytest.raises(RecipeError, match="backend.kind: .*" + message):
        loads_recipe('[task]\nkind = "text-generation"\n[backend]\nkind = "broken"\n')


def test_a_plugin_cannot_replace_a_built_in_kind(plugin: Any, caplog: pytest.LogCaptureFixture) -> None:
    plugin("fnlabel.backends", "echo", "tests.plugin_example:ShoutConfig")
    assert list(BACKENDS).count("echo") == 1  # listing the kinds (as `fnlabel list` does) says why
    assert BACKENDS["echo"].__name__ == "EchoConfig" and BACKENDS.origin("echo") == "built-in"
    assert "backend kind 'echo' of fnlabel-test-echo 0.1 is built in: the plugin is ignored" in caplog.text


def test_fnlabel_list_and_run_show_and_use_plugins(tmp_path: Path) -> None:
    site = make_dist(
        tmp_path / "site",
        "fnlabel-shout",
        {
            "fnlabel.backends": {"shout": "tests.plugin_example:ShoutConfig"},
            "fnlabel.tasks": {"shout-task": "tests.plugin_example:shout_task"},
        },
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)]), "FNLABEL_CACHE_DIR": str(tmp_path)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fnlabel", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)  # fmt: skip

    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "shout-task               Shout each ``text``. (plugin from fnlabel-shout 0.1)" in listed.stdout
    assert (
        "shout                    keys: model_name='shout', volume=1 (plugin from fnlabel-shout 0.1)" in listed.stdout
    )
    (tmp_path / "in.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n')
    recipe = tmp_path / "r.toml"
    recipe.write_text(SHOUT + f'[run]\ninput = "{(tmp_path / "in.jsonl").as_posix()}"\n')
    ran = cli("run", str(recipe), "--output", str(tmp_path / "out.jsonl"))
    assert ran.returncode == 0, ran.stderr
    assert '"raw_output": "HEY A!! 0"' in (tmp_path / "out.jsonl").read_text()
    assert cli("validate", str(recipe)).stdout.strip().endswith("backend shout")
