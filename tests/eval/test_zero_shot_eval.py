"""The zero-shot and picture judges on exactly drawn frames: right answers pass, wrong ones fail."""

import numpy as np
import pytest

from t2v.eval.images import image_prompts, judge_image
from t2v.eval.zero_shot import MOTIONS, judge_motion, zero_shot_prompts
from t2v.world import render
from t2v.world.shapes import BACKGROUNDS, COLORS, LARGE_FRAC, SMALL_FRAC, shape_mask


def draw(scene, motion, frames=8, size=64, start=(32.0, 32.0)):
    """Frames of the scene's one object moved by MOTIONS[motion] per frame (exact, no anti-aliasing)."""
    obj = scene.objects[0]
    mx, my, zoom = MOTIONS[motion]
    d = (SMALL_FRAC if obj.size == "small" else LARGE_FRAC) * size
    out = np.empty((frames, size, size, 3), np.uint8)
    for k in range(frames):
        out[k] = BACKGROUNDS[scene.background]
        mask = shape_mask(obj.shape, start[0] + mx * k, start[1] + my * k, d * zoom**k, size, size)
        out[k][mask] = COLORS[obj.color]
    return out


@pytest.mark.parametrize("motion", list(MOTIONS))
def test_judge_motion_passes_the_requested_motion_and_fails_the_opposite(motion):
    prompt, _ = zero_shot_prompts(6)[0]
    good = judge_motion(prompt.scene, draw(prompt.scene, motion), motion)
    assert good["direction"] and good["speed"] and good["first_all_correct"] and good["kept"] == 1.0, good
    wrong = {"right": "left", "left": "right", "up": "down", "down": "up", "zoom": "right"}[motion]
    bad = judge_motion(prompt.scene, draw(prompt.scene, wrong), motion)
    assert not (bad["direction"] and bad["speed"]), bad


def test_judge_motion_fails_a_too_fast_motion():
    prompt, _ = zero_shot_prompts(6)[0]
    frames = draw(prompt.scene, "right")[::2]  # twice the speed per frame
    verdict = judge_motion(prompt.scene, frames, "right")
    assert verdict["direction"] and not verdict["speed"]


def test_judge_image_on_rendered_frames_and_a_wrong_colour():
    prompts = image_prompts(24, splits=("seen", "held_out", "novel", "validation"))
    rng = np.random.default_rng(0)
    assert all(judge_image(p.scene, render(p.scene, 16, 64, 64, rng)[3])["all_correct"] for p in prompts)
    p = prompts[0]
    frame = render(p.scene, 16, 64, 64, rng)[3]
    assert not judge_image(p.scene, np.full_like(frame, BACKGROUNDS[p.scene.background]))["all_correct"]
