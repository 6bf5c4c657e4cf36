"""Tests of the frame analyser used for evaluation."""

import dataclasses

import numpy as np
import pytest

from t2v.eval.analyse import analyse_video, detect_background, flicker, judge, max_jump_ratio
from t2v.world import BACKGROUNDS, COLORS, ObjectSpec, SceneSpec, render, sample_scene


def degrade(frames, rng, sigma=12.0, blur=3):
    """Box blur (blur x blur) then Gaussian noise, like a blurry, noisy generated clip."""
    x = frames.astype(np.float32)
    if blur > 1:
        r = blur // 2
        p = np.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="edge")
        h, w = x.shape[1:3]
        x = sum(p[:, dy : dy + h, dx : dx + w] for dy in range(blur) for dx in range(blur)) / blur**2
    x = x + rng.normal(0.0, sigma, x.shape)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def ground_truth_clips(n=300, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        scene = sample_scene(rng, p_two_objects=0.4)
        out.append((scene, render(scene, 16, 64, 64, rng)))
    return out


@pytest.fixture(scope="module")
def clips():
    return ground_truth_clips()


def accuracy(pairs):
    results = [judge(scene, frames) for scene, frames in pairs]
    return {k: np.mean([r[k] for r in results]) for k in results[0]}


def test_clips_cover_the_world(clips):
    assert {s.background for s, _ in clips} == set(BACKGROUNDS)
    assert {len(s.objects) for s, _ in clips} == {1, 2}


def test_analyser_on_rendered_clips(clips):
    acc = accuracy(clips)
    assert acc["all_correct"] >= 0.99, acc
    assert acc["background"] == 1.0


def test_analyser_on_noisy_blurred_clips(clips):
    rng = np.random.default_rng(1)
    acc = accuracy([(s, degrade(f, rng)) for s, f in clips])
    assert acc["all_correct"] >= 0.95, acc
    assert acc["background"] >= 0.99


def test_analysis_fields():
    scene = SceneSpec(
        "gray", (ObjectSpec("triangle", "green", "large", "left"), ObjectSpec("circle", "blue", None, "growing"))
    )
    frames = render(scene, 16, rng=np.random.default_rng(2))
    a = analyse_video(frames)
    assert a.background == "gray"
    by_colour = {o.color: o for o in a.objects}
    assert set(by_colour) == {"green", "blue"}
    g, b = by_colour["green"], by_colour["blue"]
    assert (g.shape, g.size, g.motion) == ("triangle", "large", "left")
    assert (b.shape, b.size, b.motion) == ("circle", None, "growing")
    assert g.centroids.shape == (16, 2) and g.areas.shape == (16,)
    assert g.centroids[-1, 0] < g.centroids[0, 0] - 25
    assert b.areas[-1] > 3 * b.areas[0]


def test_judge_detects_wrong_attributes():
    rng = np.random.default_rng(3)
    scene = SceneSpec("black", (ObjectSpec("square", "red", "small", "right"),))
    frames = render(scene, 16, rng=rng)
    assert judge(scene, frames)["all_correct"]
    wrong = {
        "color": dataclasses.replace(scene.objects[0], color="yellow"),
        "shape": dataclasses.replace(scene.objects[0], shape="circle"),
        "size": dataclasses.replace(scene.objects[0], size="large"),
        "motion": dataclasses.replace(scene.objects[0], motion="left"),
    }
    for attr, obj in wrong.items():
        r = judge(SceneSpec("black", (obj,)), frames)
        assert not r[attr] and not r["all_correct"], (attr, r)
    # background is reported separately and is not part of all_correct
    r = judge(SceneSpec("gray", scene.objects), frames)
    assert not r["background"] and r["all_correct"]
    # a missing object: count and colour wrong
    two = SceneSpec("black", (scene.objects[0], ObjectSpec("circle", "blue", "large", "still")))
    r = judge(two, frames)
    assert not r["count"] and not r["color"] and not r["all_correct"]
    # an extra object: count wrong
    r = judge(scene, render(two, 16, rng=rng))
    assert r["color"] and not r["count"] and not r["all_correct"]
    # still vs moving, growing vs shrinking measured from frames
    grow = SceneSpec("white", (ObjectSpec("triangle", "blue", None, "growing"),))
    reversed_frames = render(grow, 16, rng=rng)[::-1].copy()
    assert not judge(grow, reversed_frames)["motion"]
    assert judge(SceneSpec("white", (ObjectSpec("triangle", "blue", None, "shrinking"),)), reversed_frames)[
        "all_correct"
    ]
    frozen = np.repeat(frames[:1], 16, axis=0)
    assert not judge(scene, frozen)["motion"]
    assert judge(SceneSpec("black", (dataclasses.replace(scene.objects[0], motion="still"),)), frozen)["all_correct"]


def test_empty_and_bad_input():
    blank = np.zeros((8, 64, 64, 3), np.uint8)
    a = analyse_video(blank)
    assert a.background == "black" and a.objects == ()
    assert not judge(SceneSpec("black", (ObjectSpec("circle", "red", "small", "up"),)), blank)["all_correct"]
    for bad in (blank.astype(np.float32), blank[0], np.zeros((0, 64, 64, 3), np.uint8), blank.tolist()):
        with pytest.raises(ValueError, match="frames"):
            analyse_video(bad)
    with pytest.raises(ValueError, match="background"):
        flicker(blank, background="pink")


def test_colour_bleeding_is_merged():
    """A fringe of a neighbouring palette colour around an object (as in generated frames) is not a second object."""
    scene = SceneSpec("black", (ObjectSpec("square", "orange", "large", "down"),))
    frames = render(scene, 16, rng=np.random.default_rng(4)).copy()
    core = np.all(frames == COLORS["orange"], axis=-1)
    pad = np.pad(core, ((0, 0), (1, 1), (1, 1)))
    ring = np.zeros_like(core)
    for dy in range(3):
        for dx in range(3):
            ring |= pad[:, dy : dy + 64, dx : dx + 64]
    frames[ring & ~core] = COLORS["red"]
    a = analyse_video(frames)
    assert [o.color for o in a.objects] == ["orange"]
    assert judge(scene, frames)["all_correct"]


def test_background_detection():
    rng = np.random.default_rng(5)
    for bg in BACKGROUNDS:
        scene = SceneSpec(bg, (ObjectSpec("square", "blue", "large", "right"),))
        frames = degrade(render(scene, 8, rng=rng), rng, sigma=20)
        assert detect_background(frames) == bg


def test_flicker(clips):
    rng = np.random.default_rng(6)
    for scene, frames in clips[:20]:
        assert flicker(frames) == 0.0
        assert flicker(frames, background=scene.background) == 0.0
        assert flicker(degrade(frames, rng, blur=1)) > 3.0
    assert flicker(clips[0][1][:1]) == 0.0


def test_max_jump_ratio(clips):
    rng = np.random.default_rng(7)
    smooth = [f for s, f in clips[:30] if all(o.motion != "still" for o in s.objects)]
    assert len(smooth) > 10
    for frames in smooth:
        assert max_jump_ratio(frames) < 3.0
        assert max_jump_ratio(degrade(frames, rng)) < 1.5
    for (s1, f1), (s2, f2) in zip(clips[:30], clips[30:60]):
        if s1.background == s2.background:
            continue
        spliced = np.concatenate([f1[:8], f2[8:]])
        assert max_jump_ratio(spliced) > 10.0
        assert max_jump_ratio(degrade(spliced, rng)) > 3.0
    still = render(SceneSpec("black", (ObjectSpec("circle", "red", "small", "still"),)), 16)
    assert max_jump_ratio(still) == 0.0
    cut = still.copy()
    cut[8:] = render(
        SceneSpec("black", (ObjectSpec("circle", "red", "small", "still"),)), 8, rng=np.random.default_rng(99)
    )
    assert max_jump_ratio(cut) > 1.0
    assert max_jump_ratio(still[:1]) == 0.0
