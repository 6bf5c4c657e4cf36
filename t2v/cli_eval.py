"""`t2v eval`: how well the models follow prompts, instructions and controls, judged from their frames."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from t2v.cli_image import image_eval
from t2v.cli_util import fail, transition_option


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
        None, "--image-model", help="Text-to-image model for --images / --zero-shot / --controls (default: embedded)."
    ),
    edits: int = typer.Option(0, "--edits", help="Also judge N video edits per set (seen, novel, held-out)."),
    edit_model: Optional[str] = typer.Option(None, "--edit-model", help="Edit model (default: the embedded one)."),
    controls: int = typer.Option(0, "--controls", help="Also judge N controlled videos per --controlnet."),
    controlnet: list[str] = typer.Option(
        [], "--controlnet", help="KIND=DIR: a ControlNet to judge (edges or depth; default: the embedded ones)."
    ),
    tunes: int = typer.Option(0, "--tunes", help="Also judge N one-shot tunings (t2v tune) of --image-model."),
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

    if min(prompts, storyboards, long, images, zero_shot, edits, controls, tunes) < 0 or seeds < 1 or batch_size < 1:
        fail(
            "--prompts/--storyboards/--long/--images/--zero-shot/--edits/--controls/--tunes must be >= 0, "
            f"--seeds/--batch-size >= 1; got {prompts}, {storyboards}, {long}, {images}, {zero_shot}, {edits}, "
            f"{controls}, {seeds}, {batch_size}"
        )
    nets = controlnets(controlnet) if controls else {}
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
    report.update(video_eval(edit_model, edits, image_model, nets, controls, seeds, device))
    if tunes:
        from t2v.eval.tune import evaluate_tuning

        report["tuning"], report["tuning_md"] = evaluate_tuning(tunes, tuple(range(seeds)), model=image_model)
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


def controlnets(given: list[str]) -> dict:
    """--controlnet KIND=DIR options (none: the embedded ControlNets that are installed) -> {kind: dir}."""
    from t2v.eval.controls import CONTROL_KINDS
    from t2v.models.loading import embedded_controlnet

    nets = {}
    for item in given:
        kind, _, path = item.partition("=")
        if kind not in CONTROL_KINDS or not path:
            fail(f"--controlnet must be KIND=DIR with KIND one of {', '.join(CONTROL_KINDS)}, got {item!r}")
        nets[kind] = path
    nets = nets or {k: p for k in CONTROL_KINDS if (p := embedded_controlnet(k)) is not None}
    if not nets:
        fail("--controls needs a ControlNet: pass --controlnet KIND=DIR (no embedded ControlNet is installed)")
    return nets


def video_eval(edit_model, edits: int, image_model, nets: dict, controls: int, seeds: int, device: str) -> dict:
    """`t2v eval --edits N --controls N`: edits by instruction, and videos that follow control maps."""
    from t2v.eval.controls import control_eval
    from t2v.eval.edits import edit_eval
    from t2v.models.loading import pick_device

    report, device = {}, pick_device(device)
    try:
        if edits:
            report["edits"] = edit_eval(edit_model, edits, seeds, device)
        if controls:
            report["controls"] = {k: control_eval(image_model, p, k, controls, seeds, device) for k, p in nets.items()}
    except ValueError as e:
        fail(str(e))
    return report
