"""Long videos and storyboards on tiny random components: windows, fusion, noise, prompts per scene, inputs."""

import json

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from t2v.cli import app
from t2v.models.defaults import ModelDefaults
from t2v.pipelines.long_video.blend import (
    choose_transitions, crossfade, expand_keyframes, interpolate_frames, reschedule_noise, reschedule_scene_noise,
)
from t2v.pipelines.long_video.pipeline import LongVideoPipeline
from t2v.pipelines.long_video.plan import (
    auto_cap, cut_zones, plan_dissolve, plan_keyframes, plan_windows, resolve_transitions, scene_mix, windows,
)
from t2v.pipelines.long_video.storyboard import Scene, load_storyboard, parse_storyboard
from t2v.video_io import read_video

FAST = dict(num_inference_steps=2, height=32, width=32)


@pytest.fixture
def long(pipe):
    lp = LongVideoPipeline(**pipe.components)
    lp.set_progress_bar_config(disable=True)
    lp.defaults = ModelDefaults(num_frames=4)
    return lp


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
    assert sorted(extra) == sorted((f, k) for f in range(n) for k in range(mix.shape[1]) if mix[f, k] > 0 and k != owner[f])
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


def test_dissolve_crossfades_two_versions_of_each_blended_frame(long):
    scenes = [Scene("a red circle", 6), Scene("a blue square", 6)]
    seen = {}
    decode, post = long.decode_latents, long.video_processor.postprocess_video

    def spy_decode(z):
        seen["decoded"] = decode(z)
        return seen["decoded"].clone()

    def spy_post(video, output_type):
        seen["mixed"] = video.clone()
        return post(video=video, output_type=output_type)

    long.decode_latents, long.video_processor.postprocess_video = spy_decode, spy_post
    long(scenes=scenes, transition_frames=4, window_size=4, window_overlap=2, **FAST, seed=0)
    mix = scene_mix(scenes, 4)
    extra = plan_dissolve(mix, 4, 2).extra
    dec, mixed = seen["decoded"], seen["mixed"]
    assert dec.shape[2] == 12 + len(extra) == 16 and mixed.shape[2] == 12
    for j, (f, k) in enumerate(extra):
        want = mix[f].max() * dec[:, :, f] + mix[f, k] * dec[:, :, 12 + j]
        torch.testing.assert_close(mixed[:, :, f], want)
        assert (dec[:, :, f] - dec[:, :, 12 + j]).abs().mean() > 1e-4  # two different versions
    blended = set(f for f, _ in extra)
    for f in set(range(12)) - blended:
        torch.testing.assert_close(mixed[:, :, f], dec[:, :, f])


def test_a_scenes_own_transition_sets_its_cut(long):
    """Scene c's transition_frames=0 makes a hard cut before it; the cut before b keeps the call's 4."""
    scenes = [Scene("a red circle", 6), Scene("a blue square", 6), Scene("a green square", 6, transition_frames=0)]
    seen = {}
    decode = long.decode_latents
    long.decode_latents = lambda z: seen.setdefault("decoded", decode(z))
    long(scenes=scenes, transition_frames=4, window_size=4, window_overlap=2, **FAST, seed=0)
    assert seen["decoded"].shape[2] == 18 + 4  # the other scene's versions of frames 4-7 only


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
    assert (mix[:28, 0] == 1).all() and 0 < mix[28, 1] < mix[35, 1] < 1 and mix[36, 1] == 1  # blended over frames 28-35 only
    assert ((mix > 0).sum(1) > 1).sum() == 8 + 2
    scenes, extra, video = _two_versions([0.0, 1.0], 32, 16, motion=0.01)  # needs t ~ 40: the cap, 16, is the smoothest allowed
    assert [s.transition_frames for s in choose_transitions(video, scenes, [1], extra)] == [None, 16]


def test_auto_caps_and_resolution():
    assert auto_cap(Scene("a", 16), Scene("b", 16)) == 8 and auto_cap(Scene("a", 32), Scene("b", 64)) == 16
    assert auto_cap(Scene("a", 3), Scene("b", 40)) == 0
    planned, auto = resolve_transitions([Scene("a", 32), Scene("b", 32, transition_frames=4), Scene("c", 16)], "auto")
    assert [s.transition_frames for s in planned] == [None, 4, 8] and auto == [2]  # a scene's own length wins
    planned, auto = resolve_transitions([Scene("a", 32), Scene("b", 32, transition_frames="auto"), Scene("c", 16)], 6)
    assert [s.transition_frames for s in planned] == [None, 16, 6] and auto == [1]


def test_auto_transition_in_the_pipeline(long):
    """The other scene's versions are drawn for the longest transition (a quarter of each 8-frame
    scene on each side: 4 frames); the video blends exactly the chosen frames, and every other frame
    is the frame a hard cut gives (its own version does not depend on the transition)."""
    scenes = [Scene("a red circle", 8), Scene("a blue square", 8)]
    seen = {}
    decode = long.decode_latents
    long.decode_latents = lambda z: seen.setdefault("decoded", decode(z))
    kw = dict(window_size=4, window_overlap=2, **FAST, seed=0)
    out = long(scenes=scenes, transition_frames="auto", **kw)
    assert seen["decoded"].shape[2] == 16 + 4
    (t,) = out.transition_frames
    planned, auto = resolve_transitions(scenes, "auto")
    extra = plan_dissolve(scene_mix(planned, 0), 4, 2).extra
    assert t == choose_transitions(seen["decoded"], planned, auto, extra)[1].transition_frames  # chosen from the decoded frames
    long.decode_latents = decode
    hard = long(scenes=scenes, transition_frames=0, **kw)
    assert hard.transition_frames == [0]
    blended = np.arange(8 - t // 2, 8 + t // 2)
    same = np.setdiff1d(np.arange(16), blended)
    np.testing.assert_allclose(out.frames[0][same], hard.frames[0][same], atol=1e-5)
    assert np.abs(out.frames[0][blended] - hard.frames[0][blended]).mean() > 1e-3
    assert long("a red circle", num_frames=8, **kw).transition_frames is None


@pytest.mark.parametrize("frames,transition", [([32, 16, 40], 8), ([64, 64], 16), ([17, 100, 5], 6), ([16, 16], 8), ([40, 40], 0)])
def test_plan_keyframes_spreads_a_clip_over_each_long_scene(frames, transition):
    """A scene longer than the window is drawn as `window` keyframes from its first frame to its
    last, a shorter one frame for frame; each cut's keyframe transition reaches at least as far
    into both scenes as the video's own (so every blended frame has both scenes' versions)."""
    scenes, _ = resolve_transitions([Scene(str(i), f) for i, f in enumerate(frames)], transition)
    drawn, times = plan_keyframes(scenes, 16)
    assert [d.frames for d in drawn] == [min(f, 16) for f in frames] and [d.prompt for d in drawn] == [s.prompt for s in scenes]
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
    values = [position(i, owner[i]) + 100 * owner[i] for i in range(len(times))] + [position(f, k) + 100 * k for f, k in extra]
    lat = torch.tensor(values).view(1, 1, -1, 1, 1).float()
    out, out_extra = expand_keyframes(lat, times, extra, scenes, dissolve=True)
    n, bounds = sum(frames), np.cumsum([0] + frames)
    step = [(f - 1) / 15 if f > 16 else 1.0 for f in frames]
    mix = scene_mix(scenes, 0)
    assert sorted(out_extra) == sorted((f, k) for f in range(n) for k in range(3) if mix[f, k] > 0 and k != mix[f].argmax())
    at = lambda f, k: (f - bounds[k]) / step[k] + 100 * k  # noqa: E731
    want = [at(f, mix[f].argmax()) for f in range(n)] + [at(f, k) for f, k in out_extra]
    torch.testing.assert_close(out[0, 0, :, 0, 0], torch.tensor(want).float(), atol=1e-3, rtol=0)
    plain, none = expand_keyframes(lat, times, extra, scenes, dissolve=False)
    assert none == [] and plain.shape[2] == n


def test_keyframes_draw_one_clip_and_interpolate(pipe, long):
    """A scene longer than the window is one window of keyframes (one UNet pass per step), its
    frames the keyframes linearly interpolated: exactly the plain pipeline's clip, stretched."""
    kw = dict(**FAST, seed=3, window_size=4)
    steps = []
    got = long("a red circle", num_frames=10, scene_motion="keyframes", output_type="latent",
               callback_on_step_end=lambda i, n, lat: steps.append(lat.shape[2]), **kw).frames
    ref = pipe("a red circle", num_frames=4, **FAST, seed=3, output_type="latent").frames
    assert steps == [4, 4] and got.shape[2] == 10
    torch.testing.assert_close(got, interpolate_frames(ref, np.arange(4) * 3.0, np.arange(10)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[:, :, [0, 3, 6, 9]], ref, atol=1e-5, rtol=1e-5)
    windowed = long("a red circle", num_frames=10, scene_motion="windows", output_type="latent", **kw).frames
    assert (windowed - got).abs().mean() > 1e-3
    # scenes no longer than a window: the same video either way
    board = [Scene("a red circle", 4), Scene("a blue square", 3)]
    a, b = (long(scenes=board, scene_motion=m, transition_frames=2, **kw).frames for m in ("keyframes", "windows"))
    np.testing.assert_array_equal(a, b)


def test_transition_frames_default_to_the_models(long):
    """transition_frames not given: the model's t2v_model.json default, else 8; a call's own wins."""
    scenes = [Scene("a red circle", 12), Scene("a blue square", 12)]
    kw = dict(scenes=scenes, window_size=4, window_overlap=2, output_type="latent", **FAST, seed=0)
    assert long(**kw).transition_frames == [8]
    long.defaults = ModelDefaults(num_frames=4, transition_frames=2)
    assert long(**kw).transition_frames == [2] and long(**kw, transition_frames=6).transition_frames == [6]
    long.defaults = ModelDefaults(num_frames=4, transition_frames="auto")
    assert long(**kw).transition_frames == [None]  # "auto" picks after decoding: latents do not say


def test_keyframes_storyboard_dissolves_long_scenes(long):
    scenes = [Scene("a red circle", 9), Scene("a blue square", 4), Scene("a green square", 12)]
    seen = {}
    decode = long.decode_latents
    long.decode_latents = lambda z: seen.setdefault("decoded", decode(z))
    out = long(scenes=scenes, scene_motion="keyframes", transition_frames=4, window_size=4, window_overlap=2, **FAST, seed=0)
    assert out.frames.shape[1] == 25 and out.transition_frames == [4, 4]
    assert seen["decoded"].shape[2] == 25 + 8  # each of the 8 blended frames also has the other scene's version
    long.decode_latents = decode
    auto = long(scenes=scenes, scene_motion="keyframes", transition_frames="auto", window_size=4, window_overlap=2, **FAST, seed=0)
    assert auto.frames.shape[1] == 25 and all(t in (0, 2) for t in auto.transition_frames)  # caps: 2 and 2 (the 4-frame scene)


def test_scene_motion_default_comes_from_the_model(long):
    assert long.defaults.scene_motion == "windows"
    seen = []
    long.defaults = ModelDefaults(num_frames=4, scene_motion="keyframes")
    long("x", num_frames=8, **FAST, seed=0, callback_on_step_end=lambda i, n, lat: seen.append(lat.shape[2]))
    assert seen == [4, 4]  # one window of keyframes


def test_noise_rescheduling_reuses_shuffled_earlier_noise():
    noise = torch.randn(1, 2, 20, 3, 3, generator=torch.Generator().manual_seed(0))
    out = reschedule_noise(noise, window=8, stride=4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out[:, :, :8], noise[:, :, :8])
    for start in (8, 12, 16):
        block = out[:, :, start : start + 4]
        earlier = out[:, :, start - 8 : start - 4]
        # the block is a permutation of the frames one window earlier
        assert sorted(block.sum(dim=(0, 1, 3, 4)).tolist()) == pytest.approx(sorted(earlier.sum(dim=(0, 1, 3, 4)).tolist()))


def test_scene_noise_is_rescheduled_within_each_scene_only():
    noise = torch.randn(1, 2, 28, 3, 3, generator=torch.Generator().manual_seed(0))
    out = reschedule_scene_noise(noise, [8, 20], window=8, stride=4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out[:, :, :16], noise[:, :, :16])  # each scene's first window: its own fresh noise
    sums = lambda x: sorted(x.sum(dim=(0, 1, 3, 4)).tolist())  # noqa: E731
    for start in (16, 20, 24):  # past its first window, the long scene reuses its own earlier noise
        assert sums(out[:, :, start : start + 4]) == pytest.approx(sums(out[:, :, start - 8 : start - 4]))
    whole = reschedule_noise(noise, window=8, stride=4, generator=torch.Generator().manual_seed(1))
    assert sums(whole[:, :, 8:12]) == pytest.approx(sums(noise[:, :, :4]))  # across the video: scene 2 starts from scene 1's noise
    one = reschedule_scene_noise(noise, [28], window=8, stride=4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(one, whole)  # one prompt: exactly FreeNoise


def test_one_window_equals_the_plain_pipeline(pipe, long):
    ref = pipe("a red circle", num_frames=4, **FAST, seed=3).frames
    got = long("a red circle", num_frames=4, **FAST, seed=3).frames
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_long_video_length_determinism_and_no_jumps(long):
    a = long("a red circle", num_frames=22, **FAST, seed=0).frames
    b = long("a red circle", num_frames=22, **FAST, seed=0).frames
    assert a.shape == (1, 22, 32, 32, 3)
    np.testing.assert_array_equal(a, b)
    assert np.abs(long("a red circle", num_frames=22, **FAST, seed=1).frames - a).mean() > 1e-3


def test_storyboard_prompts_reach_their_scenes(long):
    one = long(scenes=[Scene("a red circle", 8), Scene("a red circle", 8)], transition_frames=0, **FAST, seed=0).frames
    two = long(scenes=[Scene("a red circle", 8), Scene("a blue square", 8)], transition_frames=0, **FAST, seed=0).frames
    assert one.shape == two.shape == (1, 16, 32, 32, 3)
    diff = np.abs(one - two).mean(axis=(0, 2, 3, 4))
    assert diff[-4:].mean() > 5 * diff[:2].mean() + 1e-6  # the second scene changed much more than the first


def test_each_scene_is_denoised_with_its_own_prompt(long):
    """A window across a cut is denoised once per scene with that scene's text alone (never the
    window's mean of embeddings), plus the negative text for the unconditional half."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    texts = []

    class Spy(AttnProcessor2_0):
        def __call__(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
            if encoder_hidden_states is not None:
                texts.append(encoder_hidden_states.clone())
            return super().__call__(attn, hidden_states, encoder_hidden_states, *args, **kwargs)

    long.unet.set_attn_processor(Spy())
    scenes = [Scene("a red circle", 4), Scene("a blue square", 4)]
    embeds, negative = long.encode_prompt([s.prompt for s in scenes], "cpu", 1, True, None)
    long(scenes=scenes, transition_frames=0, window_overlap=2, **FAST, seed=0)
    assert texts
    candidates = torch.stack([negative[0], embeds[0], embeds[1]])  # [3, tokens, dim]
    straddling = False
    for t in texts:
        dist = (t[:, None] - candidates[None]).abs().amax(dim=(2, 3))  # [rows, 3]
        assert (dist.min(1).values < 1e-5).all()  # every row is one scene's text (or the negative)
        which = dist.argmin(1)
        straddling |= bool((which == 1).any() and (which == 2).any())
    assert straddling  # some batch held passes of both scenes


def test_callback_and_progress_cover_every_window(long, capsys):
    steps = []
    long("x", num_frames=10, **FAST, seed=0, window_overlap=2, callback_on_step_end=lambda i, n, lat: steps.append((i, n, lat.shape[2])))
    assert steps == [(0, 2, 10), (1, 2, 10)]
    long.set_progress_bar_config(disable=False)
    long("x", num_frames=10, **FAST, seed=0, window_overlap=2)
    assert "12/12" in capsys.readouterr().err  # 6 windows (starts -2, 0, 2, 4, 6, 8) x 2 steps, one bar


@pytest.mark.parametrize("kwargs,message", [
    (dict(prompt="x", scenes=[Scene("y", 4)]), "either prompt .* or scenes"),
    (dict(scenes=[]), "scenes is empty"),
    (dict(scenes=[Scene("a", 4), Scene("b", 0)]), "scene 2: 'frames' must be >= 1, got 0"),
    (dict(scenes=[Scene("a", 4), Scene("b", 4, transition_frames=-1)]), "scene 2: 'transition_frames' must be an integer >= 0 or 'auto', got -1"),
    (dict(scenes=[Scene("a", 4), Scene("b", 4)], transition_frames="slow"), "transition_frames must be an integer >= 0 or 'auto', got 'slow'"),
    (dict(scenes=[Scene("a", 4, transition_frames=2), Scene("b", 4)]), "scene 1: 'transition_frames' blends a scene with the one before it"),
    (dict(scenes=[Scene(" ", 4)]), "scene 1: 'prompt' is empty"),
    (dict(prompt="x", num_frames=8, window_overlap=4), "window_overlap must be an integer in \\[0, window_size - 1\\] = \\[0, 3\\], got 4"),
    (dict(prompt="x", num_frames=0), "num_frames must be an integer in"),
    (dict(prompt="x", num_frames=8, height=31), "height must be a positive multiple"),
    (dict(prompt="x", scene_motion="stretch"), "scene_motion must be one of \\('keyframes', 'windows'\\), got 'stretch'"),
])
def test_bad_long_inputs(long, kwargs, message):
    with pytest.raises(ValueError, match=message):
        long(**{**FAST, **kwargs})


def test_storyboard_file_parsing(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("fps: 8\nscenes:\n  - prompt: a red circle moving right\n    frames: 32\n  - prompt: a blue square moving up\n    frames: 32\n")
    board = load_storyboard(path)
    assert board.num_frames == 64 and board.fps == 8 and board.scenes[1].prompt == "a blue square moving up"
    assert board.transition_frames is None  # not given: the model's default, at generation
    (tmp_path / "s.json").write_text(json.dumps({"scenes": [{"prompt": "x", "frames": 3}], "transition_frames": 0}))
    assert load_storyboard(tmp_path / "s.json").transition_frames == 0
    path.write_text("scenes:\n  - prompt: a\n    frames: 16\n  - prompt: b\n    frames: 16\n    transition_frames: 12\n")
    assert [s.transition_frames for s in load_storyboard(path).scenes] == [None, 12]
    path.write_text("transition_frames: auto\nscenes:\n  - prompt: a\n    frames: 16\n  - prompt: b\n    frames: 16\n    transition_frames: auto\n")
    board = load_storyboard(path)
    assert board.transition_frames == "auto" and board.scenes[1].transition_frames == "auto"


@pytest.mark.parametrize("data,message", [
    ({"scenes": []}, "no scenes"),
    ({}, "no scenes"),
    ([1, 2], "must be a mapping"),
    ({"scenes": [{"prompt": "a", "frames": 0}]}, "scene 1: 'frames' must be >= 1, got 0"),
    ({"scenes": [{"prompt": "a", "frames": 4}, {"prompt": "b", "frames": "ten"}]}, "scene 2: 'frames' must be an integer, got 'ten'"),
    ({"scenes": [{"prompt": "a", "frames": 4, "color": "red"}]}, "scene 1: unknown keys color"),
    ({"scenes": [{"frames": 4}]}, "scene 1: missing 'prompt'"),
    ({"scenes": [{"prompt": 3, "frames": 4}]}, "scene 1: 'prompt' must be a string"),
    ({"scenes": [{"prompt": "a", "frames": 4}], "speed": 2}, "unknown storyboard keys: speed"),
    ({"scenes": [{"prompt": "a", "frames": 4}], "fps": "fast"}, "storyboard: 'fps' must be a number, got 'fast'"),
    ({"scenes": [{"prompt": "a", "frames": 4}], "fps": 0}, "storyboard 'fps' must be a number in \\(0, 240\\], got 0"),
    ({"scenes": [{"prompt": "a", "frames": True}]}, "scene 1: 'frames' must be an integer"),
    ({"scenes": [{"prompt": "a", "frames": 4}, {"prompt": "b", "frames": 4, "transition_frames": -2}]}, "scene 2: 'transition_frames' must be an integer >= 0 or 'auto', got -2"),
    ({"scenes": [{"prompt": "a", "frames": 4}, {"prompt": "b", "frames": 4, "transition_frames": "slow"}]}, "scene 2: 'transition_frames' must be an integer >= 0 or 'auto', got 'slow'"),
    ({"scenes": [{"prompt": "a", "frames": 4}, {"prompt": "b", "frames": 4, "transition_frames": 2.5}]}, "scene 2: 'transition_frames' must be an integer or 'auto', got 2.5"),
    ({"scenes": [{"prompt": "a", "frames": 4}], "transition_frames": "fast"}, "storyboard 'transition_frames' must be an integer >= 0 or 'auto', got 'fast'"),
    ({"scenes": [{"prompt": "a", "frames": 4, "transition_frames": 2}, {"prompt": "b", "frames": 4}]}, "scene 1: 'transition_frames' blends a scene with the one before it"),
])
def test_bad_storyboards(data, message):
    with pytest.raises(ValueError, match=message):
        parse_storyboard(data)


def test_cli_story_and_long_generate(model_dir, tmp_path):
    runner = CliRunner()
    board = tmp_path / "story.yaml"
    board.write_text(yaml.safe_dump({"fps": 4, "transition_frames": 2, "scenes": [{"prompt": "a red circle", "frames": 10}, {"prompt": "a blue square", "frames": 6}]}))
    out = tmp_path / "story.npy"
    r = runner.invoke(app, ["story", str(board), "-o", str(out), "--model", str(model_dir), "--steps", "2", "--height", "32", "--width", "32", "--seed", "0", "-q"])
    assert r.exit_code == 0, r.output
    assert "2 scenes, 16 frames" in r.output and np.load(out).shape == (16, 32, 32, 3)

    out2 = tmp_path / "long.gif"
    r = runner.invoke(app, ["generate", "a red circle", "-o", str(out2), "--model", str(model_dir), "--frames", "40", "--steps", "1", "--height", "32", "--width", "32", "-q"])
    assert r.exit_code == 0, r.output
    assert read_video(out2)[0].shape[0] == 40

    # --transition-frames overrides the file's; a scene's own transition_frames still wins
    captured = {}
    original = LongVideoPipeline.__call__

    def spy(self, *args, **kwargs):
        captured["transition"], captured["own"] = kwargs["transition_frames"], [s.transition_frames for s in kwargs["scenes"]]
        return original(self, *args, **kwargs)

    board.write_text(yaml.safe_dump({"transition_frames": 2, "scenes": [{"prompt": "a", "frames": 4}, {"prompt": "b", "frames": 4},
                                                                       {"prompt": "c", "frames": 4, "transition_frames": 0}]}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LongVideoPipeline, "__call__", spy)
        r = runner.invoke(app, ["story", str(board), "-o", str(tmp_path / "t.npy"), "--model", str(model_dir), "--steps", "1", "--height", "32",
                                "--width", "32", "--transition-frames", "6", "-q"])
    assert r.exit_code == 0, r.output
    assert captured == {"transition": 6, "own": [None, None, 0]}
    r = runner.invoke(app, ["story", str(board), "-o", str(tmp_path / "t2.npy"), "--model", str(model_dir), "--transition-frames", "-1"])
    assert r.exit_code == 2 and "--transition-frames must be an integer >= 0 or 'auto', got '-1'" in r.output
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LongVideoPipeline, "__call__", spy)
        r = runner.invoke(app, ["story", str(board), "-o", str(tmp_path / "t3.npy"), "--model", str(model_dir), "--steps", "1", "--height", "32",
                                "--width", "32", "--transition-frames", "auto", "-q"])
    assert r.exit_code == 0, r.output
    assert captured == {"transition": "auto", "own": [None, None, 0]}

    # --scene-motion reaches the pipeline (None: the model's default); a wrong value is a clear error, nothing written
    def spy_motion(self, *args, **kwargs):
        captured["motion"] = kwargs["scene_motion"]
        return original(self, *args, **kwargs)

    for cmd in (["story", str(board)], ["generate", "a red circle", "--frames", "20"]):
        for motion in ("keyframes", "windows", None):
            captured.clear()
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(LongVideoPipeline, "__call__", spy_motion)
                r = runner.invoke(app, [*cmd, "-o", str(tmp_path / "m.npy"), "--model", str(model_dir), "--steps", "1", "--height", "32",
                                        "--width", "32", "--overwrite", "-q"] + (["--scene-motion", motion] if motion else []))
            assert r.exit_code == 0 and captured["motion"] == motion, r.output
        r = runner.invoke(app, [*cmd, "-o", str(tmp_path / "bad.npy"), "--model", str(model_dir), "--scene-motion", "stretch"])
        assert r.exit_code == 2 and "scene_motion must be one of keyframes, windows, got 'stretch'" in r.output
        assert not (tmp_path / "bad.npy").exists()

    bad = tmp_path / "bad.yaml"
    bad.write_text("scenes:\n  - prompt: x\n    frames: 0\n")
    r = runner.invoke(app, ["story", str(bad), "-o", str(tmp_path / "bad.mp4"), "--model", str(model_dir)])
    assert r.exit_code == 2 and "scene 1: 'frames' must be >= 1, got 0" in r.output and not (tmp_path / "bad.mp4").exists()
