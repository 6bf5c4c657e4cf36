"""`t2v image` and `t2v zero`: pictures and zero-shot videos from a text-to-image model (t2v.cli registers them)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from t2v.cli_util import fail, warn


MODEL_HELP = "Text-to-image model: an SD-layout directory or Hub id (default: the embedded t2v-shapes-image)."


def image(
    prompt: str = typer.Argument(..., help="What the picture shows."),
    output: Path = typer.Option(..., "-o", "--output", help="Output file: .png, .jpg or .webp."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    height: Optional[int] = typer.Option(None, "--height", help="Height in pixels (default: the model's)."),
    width: Optional[int] = typer.Option(None, "--width", help="Width in pixels (default: the model's)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Denoising steps (default: the model's)."),
    guidance: Optional[float] = typer.Option(None, "--guidance", help="Guidance scale (default: the model's)."),
    negative: Optional[str] = typer.Option(None, "--negative", help="Negative prompt."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (drawn and printed when not given)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Solver: dpm++, ddim, euler, euler-a, ..."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, float16 or bfloat16."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output file if it exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Make a picture from a text prompt."""
    from t2v.zero_shot import ImageRequest, run_image

    request = ImageRequest(
        prompt,
        output,
        model,
        height,
        width,
        steps,
        guidance,
        negative,
        seed,
        scheduler,
        device,
        dtype,
        overwrite,
        not quiet,
    )
    try:
        result = run_image(request)
    except ValueError as e:
        fail(str(e))
    warn(result.warnings)
    typer.echo(f"wrote {result.path} ({result.width}x{result.height}, seed {result.seed})")


def zero(
    prompt: str = typer.Argument(..., help="What the video shows."),
    output: Path = typer.Option(..., "-o", "--output", help="Output video (.mp4 .webm .gif .npy, or a folder)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    frames: Optional[int] = typer.Option(None, "--frames", help="Number of frames (default: the model's, 8)."),
    motion_x: Optional[float] = typer.Option(None, "--motion-x", help="Motion in pixels per frame, + = right."),
    motion_y: Optional[float] = typer.Option(None, "--motion-y", help="Motion in pixels per frame, + = down."),
    zoom: Optional[float] = typer.Option(None, "--zoom", help="Scale per frame (> 1 grows, < 1 shrinks)."),
    motion: Optional[str] = typer.Option(
        None, "--motion", help="A named motion instead of --motion-x/-y ('original': Text2Video-Zero's default)."
    ),
    t0: Optional[int] = typer.Option(None, "--t0", help="Step index where the first frame is warped (see docs)."),
    t1: Optional[int] = typer.Option(None, "--t1", help="Step index the warped frames are re-noised to."),
    warp: Optional[str] = typer.Option(None, "--warp", help="'latent' (the original's) or 'pixel' (smooth)."),
    height: Optional[int] = typer.Option(None, "--height", help="Height in pixels (default: the model's)."),
    width: Optional[int] = typer.Option(None, "--width", help="Width in pixels (default: the model's)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Denoising steps (default: the model's)."),
    guidance: Optional[float] = typer.Option(None, "--guidance", help="Guidance scale (default: the model's)."),
    negative: Optional[str] = typer.Option(None, "--negative", help="Negative prompt."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (drawn and printed when not given)."),
    chunk_size: Optional[int] = typer.Option(
        None, "--chunk-size", help="Frames made at once (each chunk anchored on the first frame; constant memory)."
    ),
    fps: Optional[float] = typer.Option(None, "--fps", help="Frames per second of the output file (default: 8)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Solver (default: ddim, as the method)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, float16 or bfloat16."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output file if it exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Make a video from a text-to-image model, zero-shot (Text2Video-Zero)."""
    from t2v.zero_shot import ZeroShotRequest, run_zero_shot

    request = ZeroShotRequest(
        prompt, output, model, height, width, steps, guidance, negative, seed, scheduler, device, dtype, overwrite,
        not quiet, frames, motion_x, motion_y, zoom, motion, t0, t1, warp, chunk_size, fps,
    )  # fmt: skip
    try:
        result = run_zero_shot(request)
    except ValueError as e:
        fail(str(e))
    warn(result.warnings)
    typer.echo(
        f"wrote {result.path} ({result.num_frames} frames, {result.width}x{result.height}, "
        f"{result.fps:g} fps, seed {result.seed})"
    )


def image_eval(model: str | None, images: int, zero_shot: int, seeds: int, device: str, batch_size: int) -> dict:
    """`t2v eval --images N --zero-shot N`: the text-to-image model on stills, and zero-shot videos from it."""
    from t2v.eval.images import evaluate_images, image_prompts
    from t2v.eval.zero_shot import evaluate_zero_shot, zero_shot_prompts
    from t2v.models.loading import pick_device
    from t2v.pipelines.schedulers import make_scheduler
    from t2v.pipelines.text_to_video_zero import TextToVideoZeroPipeline
    from t2v.zero_shot import get_image_pipeline, zero_shot_steps

    try:
        pipe = get_image_pipeline(model, pick_device(device), None)
    except ValueError as e:
        fail(str(e))
    pipe.set_progress_bar_config(disable=True)
    d, name, report = pipe.defaults, model or "t2v-shapes-image (embedded)", {}
    if images:
        prompts = image_prompts(images, splits=("seen", "held_out", "novel", "validation"))
        gen = {"num_inference_steps": d.num_inference_steps, "guidance_scale": d.guidance_scale}
        report["images"] = evaluate_images(pipe, prompts, tuple(range(seeds)), 4 * batch_size, **gen)
        settings = {
            "prompts": images,
            "seeds": seeds,
            "steps": gen["num_inference_steps"],
            "guidance": d.guidance_scale,
        }
        report["images"]["settings"] = {"model": name, **settings}
    if zero_shot:
        zero = TextToVideoZeroPipeline(**pipe.components)
        zero.scheduler = make_scheduler("ddim", pipe.scheduler.config)  # as `t2v zero`
        zero.set_progress_bar_config(disable=True)
        t0, t1 = zero_shot_steps(d, d.zero_shot_steps, None, None)
        gen = {"video_length": d.video_length, "num_inference_steps": d.zero_shot_steps, "t0": t0, "t1": t1}
        gen.update(guidance_scale=d.guidance_scale, warp=d.warp)
        report["zero_shot"] = evaluate_zero_shot(zero, zero_shot_prompts(zero_shot), tuple(range(seeds)), **gen)
        report["zero_shot"]["settings"] = {
            "model": name, "frames": d.video_length, "steps": d.zero_shot_steps, "t0": t0, "t1": t1,
            "warp": d.warp, "guidance": d.guidance_scale, "prompts": zero_shot, "seeds": seeds,
        }  # fmt: skip
    return report
