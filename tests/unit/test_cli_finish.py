"""The finish a daily user expects: examples in every --help, --version, shell completion."""

import os
import subprocess
import sys

import pytest
import typer

from hpcjupyter import __version__
from typing import Any

from hpcjupyter.cli import app


def all_commands() -> list[tuple[str, Any]]:
    """Every leaf command of the CLI, with its full name (groups have ``commands``)."""
    found = []

    def walk(prefix: str, command: Any) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(f"{prefix} {name}".strip(), sub)
        else:
            found.append((prefix, command))

    walk("", typer.main.get_command(app))
    return found


def test_every_command_is_listed() -> None:
    names = {name for name, _ in all_commands()}
    assert {"submit", "connect", "ls", "status", "cancel", "logs", "doctor", "sites list", "sites show",
            "sites check", "sites init", "sites add", "sites update", "sites remove"} <= names


@pytest.mark.parametrize("name,command", all_commands(), ids=[n for n, _ in all_commands()])
def test_every_help_has_an_example(name: str, command: Any) -> None:
    assert "Example: hpcjupyter " + name in (command.help or ""), f"'{name} --help' has no example"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpcjupyter", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"hpcjupyter {__version__}"


def test_shell_completion_script_and_completions() -> None:
    script = run("--show-completion", "bash")
    assert script.returncode == 0 and "_HPCJUPYTER_COMPLETE" in script.stdout
    completed = run(env={"_HPCJUPYTER_COMPLETE": "complete_bash", "COMP_WORDS": "hpcjupyter su", "COMP_CWORD": "1"})
    assert "submit" in completed.stdout.split()
    sites = run(env={"_HPCJUPYTER_COMPLETE": "complete_bash", "COMP_WORDS": "hpcjupyter sites ", "COMP_CWORD": "2"})
    assert {"list", "show", "check", "add"} <= set(sites.stdout.split())


def test_errors_are_one_paragraph_without_traceback() -> None:
    result = run("submit", "--site", "no-such-site", "--dry-run")
    assert result.returncode == 1
    assert result.stderr.startswith("error: no site profile named 'no-such-site'")
    assert "Traceback" not in result.stderr
