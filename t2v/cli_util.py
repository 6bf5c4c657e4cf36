"""What every `t2v` command shares: one-line errors (exit 2) and warnings."""

from __future__ import annotations

import typer


def fail(message: str, code: int = 2):
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def warn(messages) -> None:
    for message in messages:
        typer.echo(f"warning: {message}", err=True)
