"""`t2v edit` and `t2v control`: videos made from another video (t2v.cli registers them; t2v.video_jobs runs them)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import typer

from t2v.cli_util import fail, warn


OUTPUT_HELP = "Output video (.mp4 .webm .gif .npy, or a folder)."
FRAMES_HELP = "Use the first N frames of the source (default: all of them, up to 4096)."
CHUNK_HELP = "Frames made at once (each chunk anchored on the first frame; constant memory)."
FPS_HELP = "Frames per second of the output file (default: the source's)."
POSE_FPS_HELP = "Frames per second of the output file (default: the source's; 8 for OpenPose JSON)."


def _report(result) -> None:
    warn(result.warnings)
    typer.echo(
        f"wrote {result.path} ({result.num_frames} frames, {result.width}x{result.height}, "
        f"{result.fps:g} fps, seed {result.seed})"
    )


def edit(
    source: Path = typer.Argument(..., help="The video to edit (.mp4 .webm .gif .npy, or a folder of PNG frames)."),
    instruction: str = typer.Argument(..., help="What to change, e.g. 'make the ball blue'."),
    output: Path = typer.Option(..., "-o", "--output", help=OUTPUT_HELP),
    model: Optional[str] = typer.Option(
        None,
        "--model",
        "-m",
        help="Instruct-Pix2Pix model: a directory or Hub id (default: the embedded t2v-shapes-edit).",
    ),
    image_guidance: Optional[float] = typer.Option(
        None, "--image-guidance", help="How close to stay to the source frames (default: the model's)."
    ),
    guidance: Optional[float] = typer.Option(
        None, "--guidance", help="How far to follow the instruction (default: the model's)."
    ),
    steps: Optional[int] = typer.Option(None, "--steps", help="Denoising steps (default: the model's)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (drawn and printed when not given)."),
    frames: Optional[int] = typer.Option(None, "--frames", help=FRAMES_HELP),
    height: Optional[int] = typer.Option(None, "--height", help="Height in pixels (default: the model's)."),
    width: Optional[int] = typer.Option(None, "--width", help="Width in pixels (default: the model's)."),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", help=CHUNK_HELP),
    shared_noise: Optional[bool] = typer.Option(
        None, "--shared-noise/--no-shared-noise", help="One start noise for all frames (default: the model's)."
    ),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Solver (default: the model's)."),
    negative: Optional[str] = typer.Option(None, "--negative", help="Negative prompt."),
    fps: Optional[float] = typer.Option(None, "--fps", help=FPS_HELP),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, float16 or bfloat16."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output file if it exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Edit a video by a written instruction (Video Instruct-Pix2Pix)."""
    from t2v.video_jobs import EditRequest, run_edit

    request = EditRequest(
        instruction, output, model, height, width, steps, guidance, negative, seed, scheduler, device, dtype,
        overwrite, not quiet, source=source, image_guidance_scale=image_guidance, num_frames=frames,
        chunk_size=chunk_size, shared_noise=shared_noise, fps=fps,
    )  # fmt: skip
    try:
        result = run_edit(request)
    except ValueError as e:
        fail(str(e))
    _report(result)


def control(
    kind: str = typer.Argument(..., help="What the video follows: edges, depth or pose."),
    source: Path = typer.Argument(
        ..., help="A video (edges, depth, or maps with --as-map), or OpenPose JSON (a .json file or folder) for pose."
    ),
    prompt: str = typer.Argument(..., help="What the video shows."),
    output: Path = typer.Option(..., "-o", "--output", help=OUTPUT_HELP),
    model: Optional[str] = typer.Option(
        None,
        "--model",
        "-m",
        help="Text-to-image model: an SD-layout directory or Hub id (default: t2v-shapes-image).",
    ),
    controlnet: Optional[Path] = typer.Option(
        None, "--controlnet", help="A diffusers ControlNetModel folder made for the model (safetensors)."
    ),
    conditioning_scale: Optional[float] = typer.Option(
        None, "--conditioning-scale", help="How strongly the control maps steer (default: 1)."
    ),
    as_map: bool = typer.Option(False, "--as-map", help="SOURCE already is a video of control maps: use it as it is."),
    save_control: Optional[Path] = typer.Option(
        None, "--save-control", help="Also write the control maps the model followed to this video file."
    ),
    depth_model: Optional[Path] = typer.Option(
        None, "--depth-model", help="A transformers depth-estimation model folder (depth from a normal video)."
    ),
    pose_size: Optional[Tuple[int, int]] = typer.Option(
        None, "--pose-size", help="W H: the pixel size the OpenPose JSON was made in (default: the output's)."
    ),
    frames: Optional[int] = typer.Option(None, "--frames", help=FRAMES_HELP),
    height: Optional[int] = typer.Option(None, "--height", help="Height in pixels (default: the model's)."),
    width: Optional[int] = typer.Option(None, "--width", help="Width in pixels (default: the model's)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Denoising steps (default: the model's)."),
    guidance: Optional[float] = typer.Option(None, "--guidance", help="Guidance scale (default: the model's)."),
    negative: Optional[str] = typer.Option(None, "--negative", help="Negative prompt."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (drawn and printed when not given)."),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", help=CHUNK_HELP),
    fps: Optional[float] = typer.Option(None, "--fps", help=POSE_FPS_HELP),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Solver (default: the model's)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, float16 or bfloat16."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output files if they exist."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Make a video that follows the edges, depth or pose of another video (ControlNet, Text2Video-Zero)."""
    from t2v.video_jobs import ControlRequest, run_control

    request = ControlRequest(
        prompt, output, model, height, width, steps, guidance, negative, seed, scheduler, device, dtype, overwrite,
        not quiet, kind=kind, source=source, controlnet=controlnet, conditioning_scale=conditioning_scale,
        as_map=as_map, save_control=save_control, depth_model=depth_model, pose_size=pose_size, num_frames=frames,
        chunk_size=chunk_size, fps=fps,
    )  # fmt: skip
    try:
        result = run_control(request)
    except ValueError as e:
        fail(str(e))
    _report(result)
    if result.control_path is not None:
        typer.echo(f"wrote {result.control_path} (the control maps)")
