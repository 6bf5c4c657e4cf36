"""What every `t2v` command shares: one-line errors (exit 2) and warnings."""

from __future__ import annotations

import typer


def fail(message: str, code: int = 2):
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def warn(messages) -> None:
    for message in messages:
        typer.echo(f"warning: {message}", err=True)


def transition_option(value: str) -> int | str:
    """--transition-frames: an integer >= 0 or 'auto'."""
    if value != "auto" and not (value.isdigit() and value.isascii()):
        raise ValueError(f"--transition-frames must be an integer >= 0 or 'auto', got {value!r}")
    return value if value == "auto" else int(value)
