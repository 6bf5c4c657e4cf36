"""The `t2v` command line.

t2v generate "a red circle moving right" -o out.mp4
t2v image "a red circle on a black background" -o out.png
t2v zero "a red circle on a black background" --motion-x 1 -o out.mp4
t2v models
t2v world sample -n 16 -o samples/
t2v train configs/shapes-unet.yaml
t2v eval -o eval/
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Optional

import typer

import t2v
from t2v.cli_eval import eval_
from t2v.cli_image import image, zero
from t2v.cli_serve import serve
from t2v.cli_tune import tune
from t2v.cli_util import fail, transition_option
from t2v.cli_util import warn as _warn
from t2v.cli_video import control, edit


app = typer.Typer(add_completion=False, no_args_is_help=True, help="Text-to-video with latent video diffusion.")
world_app = typer.Typer(no_args_is_help=True, help="The synthetic Shapes world the default model learns from.")
app.add_typer(world_app, name="world")


def _version(value: bool):
    if value:
        typer.echo(f"t2v {t2v.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
):
    pass


@app.command()
def generate(
    prompt: str = typer.Argument(..., help="What the video shows."),
    output: Path = typer.Option(
        ...,
        "-o",
        "--output",
        help="Output file; the format follows the extension (.mp4 .webm .gif .npy, or a folder for PNG frames).",
    ),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Model directory or Hub id (default: the embedded t2v-shapes model)."
    ),
    frames: Optional[int] = typer.Option(
        None, "--frames", help="Number of frames (default: the model's; more are made in overlapping windows)."
    ),
    height: Optional[int] = typer.Option(
        None, "--height", help="Height in pixels, a multiple of the VAE factor (default: the model's)."
    ),
    width: Optional[int] = typer.Option(None, "--width", help="Width in pixels (default: the model's)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Denoising steps (default: the model's, 25)."),
    guidance: Optional[float] = typer.Option(
        None, "--guidance", help="Classifier-free guidance scale (default: the model's)."
    ),
    negative: Optional[str] = typer.Option(None, "--negative", help="Negative prompt."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (drawn and printed when not given)."),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", help="Solver: dpm++ (default), ddim, euler, euler-a, unipc, ..."
    ),
    fps: Optional[float] = typer.Option(None, "--fps", help="Frames per second of the output file (default: 8)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    dtype: Optional[str] = typer.Option(
        None, "--dtype", help="float32, float16 or bfloat16 (default: float16 on CUDA, else float32)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output file if it exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    regions: Optional[bool] = typer.Option(
        None,
        "--regions/--no-regions",
        help="A two-object prompt: each object's words heard only in its own band (default: the model's).",
    ),
    scene_motion: Optional[str] = typer.Option(
        None,
        "--scene-motion",
        help=(
            "Scenes longer than the model's clip: 'keyframes' (one motion over the scene, interpolated) "
            "or 'windows' (overlapping clips; default: the model's)."
        ),
    ),
    invert: Optional[bool] = typer.Option(
        None, "--invert/--no-invert", help="A tuned model (t2v tune): start from its clip's inversion (default)."
    ),
):
    """Generate a video from a text prompt."""
    from t2v.generate import run_generate  # here, not at the top: `t2v --version` and `--help` need no torch
    from t2v.request import GenerateRequest

    request = GenerateRequest(
        prompt=prompt,
        output=output,
        model=model,
        num_frames=frames,
        height=height,
        width=width,
        num_inference_steps=steps,
        guidance_scale=guidance,
        negative_prompt=negative,
        seed=seed,
        scheduler=scheduler,
        fps=fps,
        device=device,
        dtype=dtype,
        overwrite=overwrite,
        progress=not quiet,
        regions=regions,
        scene_motion=scene_motion,
        invert=invert,
    )
    try:
        result = run_generate(request)
    except ValueError as e:  # bad input, unknown model, unwritable output: one line, no traceback
        fail(str(e))
    _warn(result.warnings)
    typer.echo(
        f"wrote {result.path} ({result.num_frames} frames, {result.width}x{result.height}, "
        f"{result.fps:g} fps, seed {result.seed})"
    )


@app.command()
def story(
    storyboard: Path = typer.Argument(
        ...,
        help=(
            "A storyboard file (.yaml or .json): fps, transition_frames, scenes with prompt, frames "
            "(and their own transition_frames)."
        ),
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Output file (.mp4 .webm .gif .npy or a folder)."),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Model directory or Hub id (default: the embedded model)."
    ),
    height: Optional[int] = typer.Option(None, "--height"),
    width: Optional[int] = typer.Option(None, "--width"),
    steps: Optional[int] = typer.Option(None, "--steps"),
    guidance: Optional[float] = typer.Option(None, "--guidance"),
    negative: Optional[str] = typer.Option(None, "--negative", help="Negative prompt (overrides the storyboard's)."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler"),
    fps: Optional[float] = typer.Option(None, "--fps", help="Frames per second (default: the storyboard's, else 8)."),
    transition_frames: Optional[str] = typer.Option(
        None,
        "--transition-frames",
        help=(
            "Frames blended across each cut, or 'auto' (the shortest smooth dissolve; default: the storyboard's, "
            "else the model's, else 8; a scene's own transition_frames wins)."
        ),
    ),
    device: str = typer.Option("auto", "--device"),
    dtype: Optional[str] = typer.Option(None, "--dtype"),
    overwrite: bool = typer.Option(False, "--overwrite"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    scene_motion: Optional[str] = typer.Option(
        None,
        "--scene-motion",
        help=(
            "Scenes longer than the model's clip: 'keyframes' (one motion over the scene, interpolated) "
            "or 'windows' (overlapping clips; default: the model's)."
        ),
    ),
):
    """Generate a multi-scene video from a storyboard: one prompt per scene, blended at the cuts."""
    from t2v.generate import run_generate
    from t2v.pipelines.long_video.storyboard import load_storyboard
    from t2v.request import GenerateRequest

    try:
        board = load_storyboard(storyboard)
        if transition_frames is not None:
            board = dataclasses.replace(board, transition_frames=transition_option(transition_frames))
        request = GenerateRequest(
            prompt=None,
            storyboard=board,
            output=output,
            model=model,
            height=height,
            width=width,
            num_inference_steps=steps,
            guidance_scale=guidance,
            negative_prompt=negative,
            seed=seed,
            scheduler=scheduler,
            fps=fps,
            device=device,
            dtype=dtype,
            overwrite=overwrite,
            progress=not quiet,
            scene_motion=scene_motion,
        )
        result = run_generate(request)
    except ValueError as e:
        fail(str(e))
    _warn(result.warnings)
    typer.echo(
        f"wrote {result.path} ({len(board.scenes)} scenes, {result.num_frames} frames, "
        f"{result.width}x{result.height}, {result.fps:g} fps, seed {result.seed})"
    )


@app.command()
def models():
    """List known and installed models."""
    from t2v.models.loading import list_models

    for row in list_models():
        typer.echo(f"{row['name']:<36} {row['status']:<24} {row['about']}")


@world_app.command("sample")
def world_sample(
    n: int = typer.Option(16, "-n", help="Number of clips."),
    output: Path = typer.Option(..., "-o", "--output", help="Directory for the clips and captions.jsonl."),
    seed: int = typer.Option(0, "--seed"),
    frames: int = typer.Option(16, "--frames"),
    size: int = typer.Option(64, "--size", help="Canvas height and width in pixels."),
):
    """Write clips of the Shapes world with their captions, to look at the data."""
    from t2v.world.sample import write_samples

    if n < 1:
        fail(f"-n must be >= 1, got {n}")
    try:
        paths = write_samples(n, output, seed=seed, num_frames=frames, height=size, width=size)
    except ValueError as e:
        fail(str(e))
    typer.echo(f"wrote {len(paths)} clips and captions.jsonl to {output}")


@app.command(
    # the help as one string, not the docstring: a line break in it would show in `t2v --help`
    help=(
        "Train a model (VAE, text-to-video UNet or text-to-image UNet). "
        "For several processes/GPUs: accelerate launch -m t2v.training.train CONFIG."
    )
)
def train(
    config: Path = typer.Argument(..., help="A YAML/JSON training config (see configs/)."),
    set_: list[str] = typer.Option([], "--set", help="Override a setting: --set steps=100 --set output_dir=runs/x"),
):
    from t2v.training.config import load_config
    from t2v.training.train import parse_overrides
    from t2v.training.train import train as run_train

    try:
        cfg = load_config(config, parse_overrides(set_))
    except ValueError as e:
        fail(str(e))
    try:
        path = run_train(cfg)
    except ValueError as e:
        fail(str(e))
    typer.echo(f"model written to {path}")


app.command()(image)  # t2v.cli_image: pictures and zero-shot videos from a text-to-image model
app.command()(zero)
app.command("eval")(eval_)  # t2v.cli_eval: what the models do, judged from frames
app.command()(tune)
app.command()(edit)  # t2v.cli_video: videos made from another video
app.command()(control)
app.command()(serve)  # t2v.cli_serve: the job server and the web app


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
