"""Every command answers --help, laid out for an 80-column terminal without cut-off text or source line breaks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from pipeline.cli import app, reflow


def command_paths() -> Iterator[list[str]]:
    def walk(group: typer.Typer, prefix: list[str]) -> Iterator[list[str]]:
        yield prefix
        for command in group.registered_commands:
            yield [*prefix, command.name or (command.callback.__name__ if command.callback else "")]
        for sub in group.registered_groups:
            if sub.typer_instance is not None:
                yield from walk(sub.typer_instance, [*prefix, sub.name or ""])

    return walk(app, [])


@pytest.mark.parametrize("path", list(command_paths()), ids=lambda p: " ".join(p) or "omnistream")
def test_help_is_complete_at_80_columns(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "…" not in result.output, result.output


def test_docstrings_become_paragraphs_without_source_line_breaks() -> None:
    doc = """First line
    continues here.

        Second paragraph
        on two lines."""
    assert reflow(doc) == "First line continues here.\n\nSecond paragraph on two lines."
    command = get_command(app)
    assert isinstance(command, typer.core.TyperGroup)
    demo = command.commands["demo"]
    assert demo.help is not None and "\n" not in demo.help.split("\n\n")[0]
