"""The tensor side of long videos: automatic transitions, keyframe interpolation, noise rescheduling."""

import numpy as np
import pytest
import torch

from t2v.pipelines.long_video.blend import (
    choose_transitions,
    crossfade,
    expand_keyframes,
    interpolate_frames,
    reschedule_noise,
    reschedule_scene_noise,
)
from t2v.pipelines.long_video.plan import (
    plan_dissolve,
    plan_keyframes,
    resolve_transitions,
    scene_mix,
)
from t2v.pipelines.long_video.storyboard import Scene


def _two_versions(backgrounds: list[float], frames: int, cap: int, motion: float):
    """Decoded versions [1, 1, n + extra, 2, 2] of a storyboard with flat backgrounds and a pixel that
    toggles by 4 x motion every frame (so every change inside a scene is `motion`), planned for the
    cap; each other scene's version of a frame is that frame with the other scene's background."""
    scenes = [Scene(str(i), frames, None if i == 0 else cap) for i in range(len(backgrounds))]
    extra = plan_dissolve(scene_mix(scenes, 0), 4, 2).extra
    n = frames * len(backgrounds)
    owner = np.repeat(np.arange(len(backgrounds)), frames)
    video = torch.zeros(1, 1, n + len(extra), 2, 2)
    for i, (f, k) in enumerate([(f, owner[f]) for f in range(n)] + extra):
        video[0, 0, i] = backgrounds[k]
        video[0, 0, i, 0, 0] += 4 * motion * (f % 2)
    return scenes, extra, video


def test_auto_transitions_take_the_shortest_smooth_dissolve():
    """A cut between backgrounds 0.5 apart with changes of 0.04 inside the scenes: a crossfade over t
    frames changes a frame by 0.5 / (t + 1) + 0.04 here, so <= 2.5 x 0.04 needs t >= 8 (t = 6 gives
    0.111); a cut between backgrounds 0.05 apart is smooth at once (t = 2); a cut too large for the
    longest transition the scenes allow takes that longest one."""
    scenes, extra, video = _two_versions([0.0, 0.5, 0.55], 32, 16, motion=0.04)
    chosen = choose_transitions(video, scenes, [1, 2], extra)
    assert [s.transition_frames for s in chosen] == [None, 8, 2]
    mix = scene_mix(chosen, 0)
    seg = crossfade(video, mix, extra, range(96))[0, 0]
    change = (seg[1:] - seg[:-1]).abs().mean(dim=(1, 2))
    assert change.max() <= 2.5 * 0.04 + 1e-6  # every change within the aim, the cuts included
    assert (
        (mix[:28, 0] == 1).all() and 0 < mix[28, 1] < mix[35, 1] < 1 and mix[36, 1] == 1
    )  # blended over frames 28-35 only
    assert ((mix > 0).sum(1) > 1).sum() == 8 + 2
    scenes, extra, video = _two_versions(
        [0.0, 1.0], 32, 16, motion=0.01
    )  # needs t ~ 40: the cap, 16, is the smoothest allowed
    assert [s.transition_frames for s in choose_transitions(video, scenes, [1], extra)] == [None, 16]


def test_interpolate_frames_is_linear_between_keyframes():
    lat = torch.arange(3.0).view(1, 1, 3, 1, 1) * torch.tensor([1.0, -2.0]).view(1, 2, 1, 1, 1)  # channel 0: 0, 1, 2
    times = np.array([0.0, 2.0, 6.0], np.float32)
    out = interpolate_frames(lat, times, [-1, 0, 1, 2, 4, 6, 9])
    torch.testing.assert_close(out[0, 0, :, 0, 0], torch.tensor([0, 0, 0.5, 1, 1.5, 2, 2]))  # held outside
    torch.testing.assert_close(out[0, 1], -2 * out[0, 0])


def test_expand_keyframes_gives_every_version_of_every_frame():
    """Latents whose value is (clip position + 100 x scene), the clip position being a keyframe's
    place in its scene's track (its own keyframes 0, 1, ..., then the keyframes the carrying window
    draws on after them, or before them at the scene's start): the model draws a scene at its own
    keyframe pace, across the cut too. Interpolation is exact, so every frame of the video and every
    other-scene version of a blended frame comes out at (its time from the scene's first frame) /
    (the scene's keyframe step) + 100 x scene, with nothing held at a track's end. (The other
    scene's keyframe times for the carried keyframes made a 40-frame scene's version move twice as
    fast over the cut.)"""
    frames = [40, 12, 33]
    scenes, _ = resolve_transitions([Scene(str(i), f) for i, f in enumerate(frames)], 8)
    drawn, times = plan_keyframes(scenes, 16)
    extra = plan_dissolve(scene_mix(drawn, 0), 16, 8).extra
    drawn_starts = np.cumsum([0] + [d.frames for d in drawn])
    owner = np.searchsorted(drawn_starts, np.arange(len(times)), side="right") - 1
    position = lambda f, k: f - drawn_starts[k]  # noqa: E731  (negative before the scene's first keyframe)
    values = [position(i, owner[i]) + 100 * owner[i] for i in range(len(times))] + [
        position(f, k) + 100 * k for f, k in extra
    ]
    lat = torch.tensor(values).view(1, 1, -1, 1, 1).float()
    out, out_extra = expand_keyframes(lat, times, extra, scenes, dissolve=True)
    n, bounds = sum(frames), np.cumsum([0] + frames)
    step = [(f - 1) / 15 if f > 16 else 1.0 for f in frames]
    mix = scene_mix(scenes, 0)
    assert sorted(out_extra) == sorted(
        (f, k) for f in range(n) for k in range(3) if mix[f, k] > 0 and k != mix[f].argmax()
    )
    at = lambda f, k: (f - bounds[k]) / step[k] + 100 * k  # noqa: E731
    want = [at(f, mix[f].argmax()) for f in range(n)] + [at(f, k) for f, k in out_extra]
    torch.testing.assert_close(out[0, 0, :, 0, 0], torch.tensor(want).float(), atol=1e-3, rtol=0)
    plain, none = expand_keyframes(lat, times, extra, scenes, dissolve=False)
    assert none == [] and plain.shape[2] == n


def test_noise_rescheduling_reuses_shuffled_earlier_noise():
    noise = torch.randn(1, 2, 20, 3, 3, generator=torch.Generator().manual_seed(0))
    out = reschedule_noise(noise, window=8, stride=4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out[:, :, :8], noise[:, :, :8])
    for start in (8, 12, 16):
        block = out[:, :, start : start + 4]
        earlier = out[:, :, start - 8 : start - 4]
        # the block is a permutation of the frames one window earlier
        assert sorted(block.sum(dim=(0, 1, 3, 4)).tolist()) == pytest.approx(
            sorted(earlier.sum(dim=(0, 1, 3, 4)).tolist())
        )


def test_scene_noise_is_rescheduled_within_each_scene_only():
    noise = torch.randn(1, 2, 28, 3, 3, generator=torch.Generator().manual_seed(0))
    out = reschedule_scene_noise(noise, [8, 20], window=8, stride=4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out[:, :, :16], noise[:, :, :16])  # each scene's first window: its own fresh noise
    sums = lambda x: sorted(x.sum(dim=(0, 1, 3, 4)).tolist())  # noqa: E731
    for start in (16, 20, 24):  # past its first window, the long scene reuses its own earlier noise
        assert sums(out[:, :, start : start + 4]) == pytest.approx(sums(out[:, :, start - 8 : start - 4]))
    whole = reschedule_noise(noise, window=8, stride=4, generator=torch.Generator().manual_seed(1))
    assert sums(whole[:, :, 8:12]) == pytest.approx(
        sums(noise[:, :, :4])
    )  # across the video: scene 2 starts from scene 1's noise
    one = reschedule_scene_noise(noise, [28], window=8, stride=4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(one, whole)  # one prompt: exactly FreeNoise
