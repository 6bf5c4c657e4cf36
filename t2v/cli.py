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
import time
from pathlib import Path
from typing import Optional

import typer

import t2v
from t2v.cli_image import image, image_eval, zero
from t2v.cli_util import fail
from t2v.cli_util import warn as _warn


app = typer.Typer(add_completion=False, no_args_is_help=True, help="Text-to-video with latent video diffusion.")
world_app = typer.Typer(no_args_is_help=True, help="The synthetic Shapes world the default model learns from.")
app.add_typer(world_app, name="world")


def transition_option(value: str) -> int | str:
    """--transition-frames: an integer >= 0 or 'auto'."""
    if value != "auto" and not (value.isdigit() and value.isascii()):
        raise ValueError(f"--transition-frames must be an integer >= 0 or 'auto', got {value!r}")
    return value if value == "auto" else int(value)


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


@app.command("eval")
def eval_(
    output: Path = typer.Option(Path("eval"), "-o", "--output", help="Directory for eval.json and eval.md."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model directory (default: the embedded model)."),
    prompts: int = typer.Option(48, "--prompts", help="Prompts per set (seen, held-out, novel phrasing); 0 skips."),
    split: list[str] = typer.Option(
        [],
        "--split",
        help="A prompt set to run, repeatable: seen, held_out, novel, validation (default: seen, held_out, novel).",
    ),
    seeds: int = typer.Option(2, "--seeds", help="Seeds per prompt."),
    storyboards: int = typer.Option(
        0, "--storyboards", help="Also judge N 4-scene storyboards (16 frames a scene) and their jumps."
    ),
    storyboard_backgrounds: str = typer.Option(
        "both",
        "--storyboard-backgrounds",
        help="Storyboards whose scenes each draw a background ('mixed'), share one ('shared'), or 'both' (N of each).",
    ),
    scene_frames: int = typer.Option(16, "--scene-frames", help="Frames per storyboard scene."),
    transition_frames: Optional[str] = typer.Option(
        None,
        "--transition-frames",
        help="Storyboard transition frames per cut, or 'auto' (default: the model's, else 8).",
    ),
    long: int = typer.Option(
        0, "--long", help="Also judge N single-prompt 64-frame videos (prompt followed over the whole video, jumps)."
    ),
    scene_motion: Optional[str] = typer.Option(
        None,
        "--scene-motion",
        help=(
            "Scenes longer than the model's clip: 'keyframes' (one motion over the scene, interpolated) "
            "or 'windows' (overlapping clips; default: the model's)."
        ),
    ),
    steps: Optional[int] = typer.Option(None, "--steps"),
    guidance: Optional[float] = typer.Option(None, "--guidance"),
    device: str = typer.Option("auto", "--device"),
    batch_size: int = typer.Option(4, "--batch-size"),
    regions: Optional[bool] = typer.Option(
        None,
        "--regions/--no-regions",
        help="Two-object prompts with regional prompting, one band per object (default: the model's).",
    ),
    images: int = typer.Option(0, "--images", help="Also judge the text-to-image model: N still prompts per set."),
    zero_shot: int = typer.Option(0, "--zero-shot", help="Also judge N zero-shot videos (t2v zero), motions cycled."),
    image_model: Optional[str] = typer.Option(
        None, "--image-model", help="Text-to-image model for --images / --zero-shot (default: the embedded one)."
    ),
):
    """Measure prompt adherence of a Shapes-world model by analysing the frames it generates."""
    from t2v.eval.run import (
        DEFAULT_SPLITS,
        SPLITS,
        eval_prompts,
        evaluate,
        evaluate_long,
        evaluate_storyboards,
        write_report,
    )
    from t2v.models.defaults import SCENE_MOTIONS
    from t2v.pipelines.text_to_video import load_pipeline

    if min(prompts, storyboards, long, images, zero_shot) < 0 or seeds < 1 or batch_size < 1:
        fail(
            "--prompts/--storyboards/--long/--images/--zero-shot must be >= 0, --seeds/--batch-size >= 1; "
            f"got {prompts}, {storyboards}, {long}, {images}, {zero_shot}, {seeds}, {batch_size}"
        )
    if not set(split) <= set(SPLITS):
        fail(f"--split must be one of {', '.join(SPLITS)}, got {', '.join(s for s in split if s not in SPLITS)}")
    if storyboard_backgrounds not in ("mixed", "shared", "both"):
        fail(f"--storyboard-backgrounds must be mixed, shared or both, got {storyboard_backgrounds!r}")
    if scene_frames < 1:
        fail(f"--scene-frames must be >= 1, got {scene_frames}")
    if scene_motion not in (None, *SCENE_MOTIONS):
        fail(f"--scene-motion must be one of {', '.join(SCENE_MOTIONS)}, got {scene_motion!r}")
    try:
        board = {
            "scene_frames": scene_frames,
            "transition_frames": None if transition_frames is None else transition_option(transition_frames),
        }
    except ValueError as e:
        fail(str(e))
    start, report, settings = time.time(), {"results": [], "summary": {}}, {"model": model or "t2v-shapes (embedded)"}
    if images or zero_shot:
        report.update(image_eval(image_model, images, zero_shot, seeds, device, batch_size))
    if not (prompts or storyboards or long):
        report["seconds"] = round(time.time() - start, 2)
        json_path, md_path = write_report(report, output, settings)
        typer.echo(md_path.read_text())
        raise typer.Exit(typer.echo(f"wrote {json_path} and {md_path}"))
    try:
        pipe = load_pipeline(model, device=device)
    except ValueError as e:
        fail(str(e))
    defaults = pipe.defaults
    steps = steps or defaults.num_inference_steps
    guidance = defaults.guidance_scale if guidance is None else guidance
    pipe.set_progress_bar_config(disable=True)
    gen = {"num_inference_steps": steps, "guidance_scale": guidance}
    regions = defaults.regions is not None if regions is None else regions
    if prompts:
        report |= evaluate(
            pipe,
            eval_prompts(prompts, splits=tuple(split) or DEFAULT_SPLITS),
            seeds=tuple(range(seeds)),
            batch_size=batch_size,
            regions=regions,
            **gen,
        )
    longer = {**gen, "scene_motion": scene_motion}
    if storyboards and storyboard_backgrounds in ("mixed", "both"):
        report["storyboards"] = evaluate_storyboards(pipe, storyboards, backgrounds="mixed", **board, **longer)
    if storyboards and storyboard_backgrounds in ("shared", "both"):
        report["storyboards_shared"] = evaluate_storyboards(pipe, storyboards, backgrounds="shared", **board, **longer)
    if long:
        report["long"] = evaluate_long(pipe, eval_prompts(long)[:long], regions=regions, **longer)
    report["seconds"] = round(time.time() - start, 2)  # the whole evaluation
    settings |= {
        "prompts": prompts,
        "seeds": seeds,
        "steps": steps,
        "guidance": guidance,
        "regions": regions,
        "scene_motion": scene_motion or defaults.scene_motion,
    }
    json_path, md_path = write_report(report, output, settings)
    typer.echo(md_path.read_text())
    typer.echo(f"wrote {json_path} and {md_path}")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(7860, "--port"),
    data_dir: Path = typer.Option(
        Path("t2v-data"), "--data-dir", readable=False, help="Jobs database (SQLite) and result files."
    ),  # (readable=False: checked by the server, in one line)
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Model directory or Hub id (default: the embedded model)."
    ),
    image_model: Optional[str] = typer.Option(
        None,
        "--image-model",
        help="Text-to-image model of image and zero-shot jobs: an SD-layout directory or Hub id (default: the "
        "embedded t2v-shapes-image; without it those jobs are refused).",
    ),
    token: Optional[str] = typer.Option(
        None, "--token", help="Require this API token on every endpoint (or set T2V_API_TOKEN)."
    ),
    device: str = typer.Option("auto", "--device"),
    dtype: Optional[str] = typer.Option(None, "--dtype"),
    max_frames: int = typer.Option(256, "--max-frames", help="Most frames a job may ask for."),
    max_size: int = typer.Option(1024, "--max-size", help="Largest height or width in pixels."),
    max_steps: int = typer.Option(1000, "--max-steps", help="Most denoising steps."),
    max_queue: int = typer.Option(100, "--max-queue", help="Most queued jobs; more are refused with 429."),
    max_cost: Optional[float] = typer.Option(
        None,
        "--max-cost",
        help="Most megapixel-steps a job may ask for (frames x height x width x steps / 1e6; "
        "default: 100 on cpu, 1000 on mps, 10000 on cuda).",
    ),
    allowed_host: list[str] = typer.Option(
        [],
        "--allowed-host",
        help="Also answer to this Host name (repeatable; .example.com: it and its subdomains; *: any). "
        "Localhost names and the --host address are always allowed.",
    ),
    header_timeout: float = typer.Option(
        10.0, "--header-timeout", help="Seconds a client has to send a request's headers, and then its body."
    ),
    max_client_connections: int = typer.Option(
        32, "--max-client-connections", help="Open connections from one address (idle ones make room)."
    ),
):
    """Serve the REST job API (/v1/jobs, OpenAPI at /openapi.json) and the web app (/) from one process."""
    from t2v.server import Limits, Network
    from t2v.server import serve as run_server

    if min(port, max_frames, max_size, max_steps, max_queue, max_client_connections) < 1 or port > 65535:
        fail("--port must be in 1..65535 and --max-* >= 1")
    if max_cost is not None and not 0 < max_cost < float("inf"):
        fail("--max-cost must be a positive number")
    if not 0 < header_timeout <= 3600:
        fail("--header-timeout must be in (0, 3600] seconds")
    try:
        run_server(
            host,
            port,
            data_dir,
            model,
            token,
            device,
            dtype,
            Limits(
                max_frames=max_frames, max_size=max_size, max_steps=max_steps, max_queue=max_queue, max_cost=max_cost
            ),
            network=Network(
                allowed_hosts=allowed_host,
                header_timeout=header_timeout,
                max_client_connections=max_client_connections,
            ),
            image_model=image_model,
        )
    except (ValueError, OSError) as e:  # a bad model, data directory or address: one line, exit 2
        fail(str(e))


app.command()(image)  # t2v.cli_image: pictures and zero-shot videos from a text-to-image model
app.command()(zero)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
