"""End to end with the embedded text-to-image model: offline, from the CLI, prompt-following pictures and
zero-shot videos (judged from the pixels)."""

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from t2v.cli import app
from t2v.eval.images import judge_image
from t2v.eval.zero_shot import judge_motion
from t2v.pipelines.schedulers import make_scheduler
from t2v.pipelines.text_to_image import TextToImagePipeline
from t2v.pipelines.text_to_video_zero import TextToVideoZeroPipeline
from t2v.video_io import read_video
from t2v.world import ObjectSpec, SceneSpec
from t2v.world.stills import canonical_still_caption


pytestmark = pytest.mark.slow

SCENES = [
    SceneSpec("black", (ObjectSpec("circle", "red", "large", "still"),)),
    SceneSpec("white", (ObjectSpec("square", "blue", "large", "still"),)),
    SceneSpec("gray", (ObjectSpec("triangle", "yellow", "large", "still"),)),
    SceneSpec("black", (ObjectSpec("square", "green", "small", "still"),)),
    SceneSpec("white", (ObjectSpec("circle", "purple", "large", "still"),)),
    SceneSpec("gray", (ObjectSpec("triangle", "cyan", "large", "still"),)),
]


@pytest.fixture(scope="module")
def image_pipe():
    pipe = TextToImagePipeline.from_pretrained()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_readme_zero_shot_example_offline(tmp_path):
    """The issue's example: `t2v zero "a red circle on a black background" --motion-x 1 -o z.mp4`."""
    out = tmp_path / "z.mp4"
    r = CliRunner().invoke(
        app, ["zero", "a red circle on a black background", "--motion-x", "1", "-o", str(out), "-q"]
    )
    assert r.exit_code == 0, r.output
    frames, _ = read_video(out)
    assert frames.shape[1:] == (64, 64, 3) and len(frames) == 8
    r = CliRunner().invoke(app, ["image", "a small red circle on a black background", "-o", str(tmp_path / "p.png")])
    assert r.exit_code == 0 and np.asarray(Image.open(tmp_path / "p.png")).shape == (64, 64, 3)


def test_pictures_follow_their_prompts(image_pipe):
    """Six still prompts x 2 seeds at the model's defaults, judged by image analysis; the threshold sits
    below what the shipped model scores and far above a UNet with random weights."""
    prompts = [canonical_still_caption(s) for s in SCENES]
    verdicts = []
    for seed in (0, 1):
        images = image_pipe(prompts, seed=seed, output_type="np").images
        verdicts += [judge_image(s, (im * 255).round().astype(np.uint8)) for s, im in zip(SCENES, images)]
    assert np.mean([v["color"] for v in verdicts]) >= 10 / 12
    assert np.mean([v["all_correct"] for v in verdicts]) >= 10 / 12  # the shipped model: 11 of 12


def test_zero_shot_moves_the_way_it_is_asked(image_pipe):
    zero = TextToVideoZeroPipeline(**image_pipe.components)
    zero.scheduler = make_scheduler("ddim", image_pipe.scheduler.config)  # as `t2v zero`
    zero.set_progress_bar_config(disable=True)
    d = image_pipe.defaults
    scene = SceneSpec("black", (ObjectSpec("circle", "red", "large", "still"),))
    right = 0
    for seed in (0, 1):
        kw = {"num_inference_steps": d.zero_shot_steps, "t0": d.t0, "t1": d.t1, "warp": d.warp}
        video = zero(canonical_still_caption(scene), motion_x=1.5, seed=seed, **kw).images
        verdict = judge_motion(scene, (np.asarray(video) * 255).round().astype(np.uint8), "right")
        right += verdict["direction"]
    assert right == 2
