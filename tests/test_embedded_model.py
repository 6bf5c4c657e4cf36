"""End to end with the embedded default model: offline, from the CLI, prompt-following (judged from frames)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from t2v.cli import app
from t2v.eval.analyse import judge
from t2v.models.loading import DEFAULT_MODEL_DIR, inspect_model_dir, load_pipeline
from t2v.pipelines.text_to_video import to_uint8
from t2v.video_io import read_video
from t2v.world import ObjectSpec, SceneSpec, canonical_caption

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_pipe():
    pipe = load_pipeline(None, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_default_model_ships_in_the_package():
    info = inspect_model_dir(DEFAULT_MODEL_DIR)
    assert info.pipeline_class == "TextToVideoSDPipeline" and info.meta["text_encoder"] == "minilm"
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file())
    assert size < 40e6
    assert not [p for p in DEFAULT_MODEL_DIR.rglob("*") if p.suffix in (".bin", ".pt", ".ckpt", ".pkl")]
    assert (DEFAULT_MODEL_DIR / "MODEL_CARD.md").is_file()


def test_readme_main_job_offline(tmp_path):
    """The README's main command: `t2v generate "a red circle moving right" -o out.mp4` (HF_HUB_OFFLINE=1)."""
    out = tmp_path / "out.mp4"
    r = CliRunner().invoke(app, ["generate", "a red circle moving right", "-o", str(out), "--seed", "0", "-q"])
    assert r.exit_code == 0, r.output
    frames, fps = read_video(out)
    assert frames.shape == (16, 64, 64, 3) and fps == 8


SCENES = [
    SceneSpec("black", (ObjectSpec("circle", "red", "large", "right"),)),
    SceneSpec("white", (ObjectSpec("square", "blue", "small", "still"),)),
    SceneSpec("gray", (ObjectSpec("triangle", "yellow", "large", "left"),)),
    SceneSpec("black", (ObjectSpec("square", "green", None, "growing"),)),
    SceneSpec("white", (ObjectSpec("circle", "purple", "large", "down"),)),
    SceneSpec("gray", (ObjectSpec("triangle", "cyan", "small", "up"),)),
]


def test_videos_follow_their_prompts(default_pipe):
    """Judged by image analysis over 6 prompts x 2 seeds; deterministic for the shipped weights.

    Measured for the shipped model (stage 7 with the decoder's refiner, its default guidance 2.5, see
    MODEL_CARD.md): 12/12 backgrounds, 12/12 colours, 10/12 shapes, 11/12 motions (directions
    included), 10/12 all-correct; at guidance 5 it got 12, 12, 11, 12, 11; stage 6 got 12, 12, 9, 12, 9; stage 5 got 12, 12, 12, 11, 11;
    stage 4 got 4/12 motions; a UNet with random weights (same config and frame
    positions, torch seed 0) gets 4/12 backgrounds and 0/12 of the rest. The thresholds sit one
    verdict below the measured figures, so a broken model or pipeline fails.
    """
    prompts = [canonical_caption(s) for s in SCENES]
    verdicts = []
    for seed in (0, 1):
        frames = default_pipe(prompts, seed=seed).frames  # the model's defaults
        verdicts += [judge(scene, to_uint8(video)) for scene, video in zip(SCENES, frames)]
    background = np.mean([v["background"] for v in verdicts])
    colour = np.mean([v["color"] for v in verdicts])
    shape = np.mean([v["shape"] for v in verdicts])
    motion = np.mean([v["motion"] for v in verdicts])
    all_correct = np.mean([v["all_correct"] for v in verdicts])
    assert background >= 11 / 12 and colour >= 11 / 12 and shape >= 9 / 12, json.dumps(verdicts)
    assert motion >= 10 / 12 and all_correct >= 9 / 12, json.dumps(verdicts)


def test_embedded_model_has_frame_positions(default_pipe):
    from t2v.models.temporal_position import has_frame_positions

    assert has_frame_positions(default_pipe.unet)  # trained with them: without, its motion is worse


def test_different_prompts_different_videos(default_pipe):
    a = default_pipe("a red circle moving right on a black background", seed=0).frames
    b = default_pipe("a blue square moving left on a white background", seed=0).frames
    assert np.abs(a - b).mean() > 0.05


def test_storyboards_dissolve_and_follow_their_scenes(default_pipe):
    """Two 4-scene storyboards of the eval (16 frames a scene, the model's transitions: "auto"), each
    scene judged on its own frames. Measured with the shipped model at its defaults (guidance 2.5,
    transitions auto): 6/8 scenes all-correct, max jump ratio 5.13 and inside scenes at most 1.68
    (the first cut of the first board 2 frames, the others 8). With 8 transition frames: 6/8 scenes
    all-correct (over the eval's 8 boards: 27/32), max jump ratio 4.95 and inside scenes at most 1.62;
    at guidance 5 (stage 7, noise per scene, equal crossfade steps):
    7/8 scenes all-correct (over the eval's 8 boards: 29/32), max jump ratio 4.65 and 2.20 (inside scenes at
    most 1.78; the least any 8-frame transition could have: 3.90 and 1.61); with the ramp through the
    frames' centres (largest step 9/8 of the equal one) 7/8, 5.20 and 2.57; with the
    noise rescheduled across the video 7/8, 5.18 and 2.85; stage 6: 6/8, 5.02 and
    2.65; stage 5: 8/8, 5.34 and
    2.88; stage 5 mixing the scenes' predictions instead of dissolving (scene_blend="prediction"): 7/8,
    37.9 and 21.7 (the background flips within a frame or two)."""
    from t2v.eval.run import evaluate_storyboards

    r = evaluate_storyboards(default_pipe, 2, progress=False)["summary"]  # the model's defaults
    assert r["scene_all_correct"] >= 5 / 8, r
    assert r["max_jump_ratio_max"] <= 8 and r["max_jump_ratio_inside_scenes_max"] <= 3, r


def test_long_scenes_on_one_background_do_not_jump(default_pipe):
    """The issue's own storyboard shape: scenes of 32 frames on one background, drawn as keyframes
    (the model's default), 8 transition frames. Each scene's version of the other scene's blended
    frames is carried on at its own keyframe pace (`carried_time`); placed at the other scene's
    keyframe times, it moved twice as fast across the cut and the largest change sat at the cut:
    measured max jump ratio 2.47 and 3.57 on these two boards (6 of the eval's 8 within 3), now 1.84
    and 2.53 (8 of 8), scenes all-correct 6/8 either way."""
    from t2v.eval.run import evaluate_storyboards

    r = evaluate_storyboards(default_pipe, 2, scene_frames=32, transition_frames=8, backgrounds="shared", progress=False)["summary"]
    assert r["max_jump_ratio_max"] <= 3 and r["boards_within_target"] == 2, r
    assert r["scene_all_correct"] >= 5 / 8, r


def test_two_object_prompts_follow_their_prompts_with_regions(default_pipe):
    """The 18 seen two-object prompts of the eval, seed 0, judged from the frames. Measured with the
    shipped model (stage 7) at its default guidance 2.5: 11/18 all-correct and 16/18 right counts with
    regions (its default), 1/18 and 7/18 without; at guidance 5: 10/18 and 15/18 with regions, 0/18
    and 6/18 without; stage 6 got 12/18 and 16/18 with regions (over both eval seeds stage 7 has 24/36,
    stage 6 26/36); stage 5 got 1/18 plain and 6/18 with regions. The threshold sits well above what
    the model does without regions, so losing the regions (or the layout-trained UNet) fails."""
    from t2v.eval.run import eval_prompts, evaluate

    prompts = [p for p in eval_prompts(48) if p.split == "seen" and len(p.scene.objects) == 2]
    assert len(prompts) == 18
    r = evaluate(default_pipe, prompts, seeds=(0,), progress=False, regions=True)["summary"]["seen"]
    assert r["all_correct"] >= 8 / 18 and r["count"] >= 13 / 18, r


def test_long_scenes_keep_one_motion(default_pipe):
    """The first 8 scenes of the eval's storyboards, each made as one 32-frame video and judged over
    all its frames. The embedded model's default scene_motion is "keyframes" (one clip of 16
    keyframes over the scene, interpolated): measured 8/8 all-correct at seeds 0-7 (16/16 minus the
    9th: 15/16 over the first 16), max jump ratio at most 1.27 (guidance 5; at the default 2.5: 8/8, at most 1.04); overlapping windows ("windows", each
    a clip of its own, so the motion restarts in every window) got 5/8 (10/16): the threshold fails
    it."""
    from t2v.eval.analyse import judge, max_jump_ratio
    from t2v.eval.run import storyboard_scenes
    from t2v.pipelines.long_video import LongVideoPipeline
    from t2v.pipelines.text_to_video import to_uint8
    from t2v.world import canonical_caption

    long = LongVideoPipeline(**default_pipe.components)
    long.t2v_defaults = default_pipe.t2v_defaults
    long.set_progress_bar_config(disable=True)
    assert long.default_scene_motion == "keyframes"
    specs = [s for board in storyboard_scenes(8) for s in board][:8]
    right, jumps = 0, []
    for k, spec in enumerate(specs):
        video = to_uint8(long(canonical_caption(spec), num_frames=32, seed=k).frames[0])
        right += judge(spec, video)["all_correct"]
        jumps.append(max_jump_ratio(video))
    assert right >= 7 and max(jumps) <= 3, (right, jumps)
