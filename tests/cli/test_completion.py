"""`rogerctl completion bash|zsh`: the script is generated from the parsers and
really completes in bash (run here, with COMP_WORDS set as bash sets them)."""

from __future__ import annotations

import os
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
        (["rogerctl", "partition", "stop", "myapp", "--dr"], ["--drain"]),
        (["rogerctl", "partition", "stop", "myapp", "--d"], ["--drain", "--delivery-limit"]),
        (["rogerctl", "nodes", "--js"], ["--json"]),
        (["rogerctl", "nodes", "--color", "n"], ["never"]),
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
    commands = ["nodes", "partition", "queue", "job", "schedule", "doctor", "dashboard", "completion"]
    assert offered[: len(commands)] == commands
    assert {"--json", "--color", "--etcd", "--amqp-url"} <= set(offered[len(commands) :])
    assert all(w.startswith("-") for w in offered[len(commands) :])


def test_zsh_gets_the_bash_script_through_bashcompinit() -> None:
    zsh = completion_script("zsh")
    assert zsh.startswith("# zsh completion for rogerctl roger-node")
    assert "autoload -U +X bashcompinit && bashcompinit" in zsh
    assert completion_script("bash") in zsh


def test_zsh_registers_both_commands_and_offers_the_right_level(tmp_path: Path) -> None:
    script = tmp_path / "_rogerctl"
    script.write_text(completion_script("zsh"))
    # zsh's compgen emulation leaves matching the typed prefix to zsh itself, so
    # the candidates are the whole level; bashcompinit calls the function with
    # ksharrays set (0-based COMP_WORDS), as done here.
    program = (
        f"source {shlex.quote(str(script))}\n"
        "print -r -- $_comps[rogerctl] $_comps[roger-node]\n"
        "setopt ksharrays\n"
        "COMP_WORDS=(rogerctl job re); COMP_CWORD=2\n"
        "_roger_cluster_complete\n"
        'print -r -- "${COMPREPLY[*]}"\n'
        "COMP_WORDS=(rogerctl --color ''); COMP_CWORD=2\n"
        "_roger_cluster_complete\n"
        'print -r -- "${COMPREPLY[*]}"\n'
    )
    zsh = shutil.which("zsh")
    assert zsh is not None
    done = subprocess.run(
        [zsh, "-f", "-c", program],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    registered, job_level, colors = done.stdout.splitlines()
    assert registered.split() == ["_bash_complete", "-F", "_roger_cluster_complete"] * 2
    assert job_level.split()[:8] == [
        "enqueue",
        "cancel",
        "scheduled",
        "buried",
        "retry-buried",
        "purge-buried",
        "running",
        "queued",
    ]
    assert colors.split() == ["auto", "always", "never"]
