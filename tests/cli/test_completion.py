"""`rogerctl completion bash|zsh`: the script is generated from the parsers and
really completes in bash (run here, with COMP_WORDS set as bash sets them)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BASH = shutil.which("bash")


def completion_script(shell: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "roger_cluster.cli.ctl", "completion", shell],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stderr == ""
    return done.stdout


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "rogerctl.bash"
    path.write_text(completion_script("bash"))
    return path


def complete(script: Path, *words: str) -> list[str]:
    """What bash offers for TAB after `words` (the last one is the word being typed)."""
    assert BASH is not None, "bash is needed to test the completion script"
    program = (
        f"source {shlex.quote(str(script))}\n"
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_roger_cluster_complete\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run([BASH, "--norc", "-c", program], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return [line for line in done.stdout.splitlines() if line]


def test_the_bash_script_registers_both_commands(bash_script: Path) -> None:
    assert BASH is not None
    done = subprocess.run(
        [BASH, "--norc", "-c", f"source {shlex.quote(str(bash_script))} && complete -p rogerctl roger-node"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "complete -F _roger_cluster_complete rogerctl",
        "complete -F _roger_cluster_complete roger-node",
    ]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["rogerctl", "part"], ["partition"]),
        (["rogerctl", "--json", "partition", "s"], ["start", "stop", "show"]),
        (["rogerctl", "--etcd", "localhost", "job", "retry"], ["retry-buried"]),
        (["rogerctl", "partition", "stop", "myapp", "--d"], ["--drain"]),
        (["rogerctl", "--color", ""], ["auto", "always", "never"]),
        (["rogerctl", "--color", "=", "n"], ["never"]),
        (["rogerctl", "completion", "z"], ["zsh"]),
        (["/usr/local/bin/rogerctl", "queue", "pu"], ["purge"]),
        (["roger-node", "--log-f"], ["--log-format"]),
        (["roger-node", "--queue-type", ""], ["quorum", "classic"]),
        (["roger-node", "--jobs", "myapp.jobs", "--log-level", "w"], ["warning"]),
        (["rogerctl", "--namespace", ""], []),  # a free value: nothing to offer
    ],
)
def test_bash_completes_commands_flags_and_choices(
    bash_script: Path, words: list[str], expected: list[str]
) -> None:
    assert complete(bash_script, *words) == expected


def test_an_empty_word_offers_the_subcommands_then_the_flags(bash_script: Path) -> None:
    offered = complete(bash_script, "rogerctl", "")
    assert offered[:5] == ["nodes", "partition", "queue", "job", "completion"]
    assert {"--json", "--color", "--etcd", "--amqp-url"} <= set(offered[5:])
    assert all(w.startswith("-") for w in offered[5:])


def test_zsh_gets_the_bash_script_through_bashcompinit() -> None:
    zsh = completion_script("zsh")
    assert zsh.startswith("#compdef rogerctl roger-node\n")
    assert "autoload -U +X bashcompinit && bashcompinit" in zsh
    assert completion_script("bash") in zsh
    if (shell := shutil.which("zsh")) is not None:
        done = subprocess.run([shell, "-f", "-c", zsh], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
