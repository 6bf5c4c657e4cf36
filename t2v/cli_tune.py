"""`t2v tune`: one-shot video tuning (Tune-A-Video) of a text-to-image model on one clip (t2v.cli registers it)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from t2v.cli_util import fail


def tune(
    source: Path = typer.Argument(..., help="The clip to tune on (.mp4 .webm .gif .npy, or a folder of PNG frames)."),
    caption: str = typer.Argument(..., help="What the clip shows, e.g. 'a red circle moving right'."),
    output: Path = typer.Option(..., "-o", "--output", help="The tuned model folder to write."),
    model: Optional[str] = typer.Option(
        None,
        "--model",
        "-m",
        help="Text-to-image model: an SD-layout folder or Hub id (default: the embedded t2v-shapes-image).",
    ),
    frames: Optional[int] = typer.Option(
        None, "--frames", help="Frames taken from the start of the clip (default: 16, or all when fewer)."
    ),
    steps: Optional[int] = typer.Option(None, "--steps", help="Tuning steps (default: 100)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default: 0.001)."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the tuning."),
    height: Optional[int] = typer.Option(None, "--height", help="Height in pixels (default: the model's)."),
    width: Optional[int] = typer.Option(None, "--width", help="Width in pixels (default: the model's)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    dtype: Optional[str] = typer.Option(
        None, "--dtype", help="float32, or float16 / bfloat16 autocast (default: float16 on CUDA, else float32)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output folder if it holds a model."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Tune a text-to-image model on one clip (Tune-A-Video); `t2v generate --model DIR` then edits it."""
    from t2v.tuning import TuneRequest, run_tune

    request = TuneRequest(
        source, caption, output, model, frames, steps, lr, seed, height, width, device, dtype, overwrite, not quiet
    )
    try:
        result = run_tune(request)
    except ValueError as e:  # bad input, unknown model, a model that cannot inflate: one line, no traceback
        fail(str(e))
    resumed = f", resumed at step {result.resumed_step}" if result.resumed_step else ""
    typer.echo(
        f"wrote {result.path} (tuned {result.steps} steps on {result.num_frames} frames in "
        f"{result.minutes:.1f} min{resumed})"
    )
