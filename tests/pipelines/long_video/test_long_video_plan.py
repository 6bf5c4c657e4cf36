"""Planning long videos and storyboards (pure functions, no model): windows, scene mix, dissolve and keyframe plans."""

import numpy as np
import pytest

from t2v.pipelines.long_video.plan import (
    auto_cap,
    cut_zones,
    plan_dissolve,
    plan_keyframes,
    plan_windows,
    resolve_transitions,
    scene_mix,
    windows,
)
from t2v.pipelines.long_video.storyboard import Scene


def test_windows_cover_every_frame_equally():
    for n, w, s in [(17, 16, 4), (40, 16, 4), (40, 16, 8), (100, 8, 2), (256, 16, 8)]:
        count = np.zeros(n, int)
        for a, b, off in windows(n, w, s):
            assert 0 <= a < b <= n and b - a <= w and 0 <= off <= w - (b - a)
            count[a:b] += 1
        assert (count == w // s).all()  # the same work for every frame: time linear in length
    assert windows(5, 16, 4) == [(0, 5, 0)] and windows(16, 16, 4) == [(0, 16, 0)]


def test_scene_mix_blends_inside_transitions():
    mix = scene_mix([Scene("a", 8), Scene("b", 8)], transition_frames=4)
    np.testing.assert_allclose(mix.sum(1), 1, atol=1e-6)
    assert (mix[:6, 0] == 1).all() and (mix[10:, 1] == 1).all()  # outside the transition: pure
    assert 0 < mix[7, 1] < mix[8, 1] < 1  # a gradual blend across the cut at frame 8
    assert np.diff(mix[:, 1]).min() >= 0
    hard = scene_mix([Scene("a", 3), Scene("b", 2)], transition_frames=0)
    np.testing.assert_array_equal(hard, [[1, 0], [1, 0], [1, 0], [0, 1], [0, 1]])
    # a scene's own transition_frames sets the cut before it; the others keep the call's
    mixed = scene_mix([Scene("a", 16), Scene("b", 16, transition_frames=16), Scene("c", 16)], transition_frames=4)
    blended = ((mixed > 0).sum(1) > 1).nonzero()[0].tolist()
    assert blended == list(range(8, 24)) + list(range(30, 34))
    # a linear ramp: the same step every frame, from the last frame of a alone to the first of b alone
    np.testing.assert_allclose(np.diff(mixed[7:25, 1]), 1 / 17, atol=1e-6)
    np.testing.assert_allclose(np.diff(mix[5:11, 1]), 1 / 5, atol=1e-6)


@pytest.mark.parametrize("frames", [64, 17, 10, 16])
def test_plan_windows_weights_sum_to_one_per_frame(frames):
    window = min(16, frames)
    plan = plan_windows(frames, window, 8 if frames > window else window)
    total = np.zeros(frames)
    for p in plan.passes:
        assert p.scene == 0 and 0 <= p.frames[0] and p.frames[-1] < frames and len(p.frames) <= window
        assert (p.coef > 0).all()
        total[p.frames] += p.coef
    np.testing.assert_allclose(total, 1, atol=1e-5)
    assert plan.extra == [] and len(plan.passes) == len(windows(frames, window, 8 if frames > window else window))


def test_dissolve_draws_each_scene_as_one_native_clip():
    """16-frame scenes with 16-frame windows: a frame's own scene is drawn only by the window aligned
    with that scene (the clip the model was trained to make); with hard cuts there is nothing else."""
    for transition in (8, 0):
        plan = plan_dissolve(scene_mix([Scene(str(i), 16) for i in range(4)], transition), 16, 8)
        own = [(int(p.frames[0]), p.scene) for p in plan.passes if (p.frames < 64).all()]
        assert own == [(0, 0), (16, 1), (32, 2), (48, 3)]
        assert len(plan.passes) == (4 if transition == 0 else 10) and len(plan.extra) == 3 * transition


@pytest.mark.parametrize("frames,transition", [([16] * 4, 8), ([5, 3, 30], 8), ([16] * 4, 0), ([20, 20], 30)])
def test_plan_dissolve_draws_each_version_once(frames, transition):
    """Every frame is drawn by its own scene's windows alone; each blended frame also has the other
    scene's version (an extra frame), drawn only by windows across the cut; weights sum to 1."""
    mix = scene_mix([Scene(str(i), f) for i, f in enumerate(frames)], transition)
    n = len(mix)
    plan = plan_dissolve(mix, 16, 8)
    extra = plan.extra
    owner = mix.argmax(1)
    assert sorted(extra) == sorted(
        (f, k) for f in range(n) for k in range(mix.shape[1]) if mix[f, k] > 0 and k != owner[f]
    )
    total = np.zeros(n + len(extra))
    for p in plan.passes:
        idx, k = p.frames, p.scene
        assert len(idx) == 16 and len(set(idx.tolist())) == 16
        total[idx] += p.coef
        for i, c in zip(idx, p.coef):
            if c > 0:  # writes only its own scene's version of a frame
                assert (i < n and owner[i] == k) or (i >= n and extra[i - n][1] == k)
    np.testing.assert_allclose(total, 1, atol=1e-5)
    if transition == 0:
        assert extra == []
    if min(frames) >= 16:  # scenes at least a window long: a pass reads only its own scene's versions
        for p in plan.passes:
            assert all((i < n and owner[i] == p.scene) or (i >= n and extra[i - n][1] == p.scene) for i in p.frames)


def test_auto_caps_and_resolution():
    assert auto_cap(Scene("a", 16), Scene("b", 16)) == 8 and auto_cap(Scene("a", 32), Scene("b", 64)) == 16
    assert auto_cap(Scene("a", 3), Scene("b", 40)) == 0
    planned, auto = resolve_transitions([Scene("a", 32), Scene("b", 32, transition_frames=4), Scene("c", 16)], "auto")
    assert [s.transition_frames for s in planned] == [None, 4, 8] and auto == [2]  # a scene's own length wins
    planned, auto = resolve_transitions([Scene("a", 32), Scene("b", 32, transition_frames="auto"), Scene("c", 16)], 6)
    assert [s.transition_frames for s in planned] == [None, 16, 6] and auto == [1]


@pytest.mark.parametrize(
    "frames,transition", [([32, 16, 40], 8), ([64, 64], 16), ([17, 100, 5], 6), ([16, 16], 8), ([40, 40], 0)]
)
def test_plan_keyframes_spreads_a_clip_over_each_long_scene(frames, transition):
    """A scene longer than the window is drawn as `window` keyframes from its first frame to its
    last, a shorter one frame for frame; each cut's keyframe transition reaches at least as far
    into both scenes as the video's own (so every blended frame has both scenes' versions)."""
    scenes, _ = resolve_transitions([Scene(str(i), f) for i, f in enumerate(frames)], transition)
    drawn, times = plan_keyframes(scenes, 16)
    assert [d.frames for d in drawn] == [min(f, 16) for f in frames] and [d.prompt for d in drawn] == [
        s.prompt for s in scenes
    ]
    bounds = np.cumsum([0] + frames)
    starts = np.cumsum([0] + [d.frames for d in drawn])
    for k, f in enumerate(frames):
        t = times[starts[k] : starts[k + 1]]
        assert t[0] == bounds[k] and abs(t[-1] - (bounds[k + 1] - 1)) < 1e-4 and (np.diff(t) > 0).all()
        np.testing.assert_allclose(np.diff(t), np.diff(t)[0], rtol=1e-5)  # evenly spread
    fine, coarse = scene_mix(scenes, 0), scene_mix(drawn, 0)
    for k, z0, z1 in [(k, a, b) for k, a, b in _zones(fine)]:
        c = [z for z in _zones(coarse) if z[0] == k][0]
        assert times[c[1]] <= z0 and times[c[2] - 1] >= z1 - 1  # the keyframes' blend spans the video's
    if max(frames) <= 16:
        assert drawn == scenes and (times == np.arange(sum(frames))).all()  # nothing changes


def _zones(mix):

    return cut_zones(mix)
