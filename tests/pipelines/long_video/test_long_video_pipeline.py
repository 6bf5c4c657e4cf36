"""LongVideoPipeline on tiny random components: windows, dissolves, keyframes, prompts per scene, defaults, inputs."""

import numpy as np
import pytest
import torch

from t2v.models.defaults import ModelDefaults
from t2v.pipelines.long_video.blend import (
    choose_transitions,
    interpolate_frames,
)
from t2v.pipelines.long_video.pipeline import LongVideoPipeline
from t2v.pipelines.long_video.plan import (
    plan_dissolve,
    resolve_transitions,
    scene_mix,
)
from t2v.pipelines.long_video.storyboard import Scene


FAST = {"num_inference_steps": 2, "height": 32, "width": 32}


@pytest.fixture
def long(pipe):
    lp = LongVideoPipeline(**pipe.components)
    lp.set_progress_bar_config(disable=True)
    lp.defaults = ModelDefaults(num_frames=4)
    return lp


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
    blended = {f for f, _ in extra}
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
    assert (
        t == choose_transitions(seen["decoded"], planned, auto, extra)[1].transition_frames
    )  # chosen from the decoded frames
    long.decode_latents = decode
    hard = long(scenes=scenes, transition_frames=0, **kw)
    assert hard.transition_frames == [0]
    blended = np.arange(8 - t // 2, 8 + t // 2)
    same = np.setdiff1d(np.arange(16), blended)
    np.testing.assert_allclose(out.frames[0][same], hard.frames[0][same], atol=1e-5)
    assert np.abs(out.frames[0][blended] - hard.frames[0][blended]).mean() > 1e-3
    assert long("a red circle", num_frames=8, **kw).transition_frames is None


def test_keyframes_draw_one_clip_and_interpolate(pipe, long):
    """A scene longer than the window is one window of keyframes (one UNet pass per step), its
    frames the keyframes linearly interpolated: exactly the plain pipeline's clip, stretched."""
    kw = dict(**FAST, seed=3, window_size=4)
    steps = []
    got = long(
        "a red circle",
        num_frames=10,
        scene_motion="keyframes",
        output_type="latent",
        callback_on_step_end=lambda p, i, t, kw: steps.append(kw["latents"].shape[2]),
        **kw,
    ).frames
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
    out = long(
        scenes=scenes, scene_motion="keyframes", transition_frames=4, window_size=4, window_overlap=2, **FAST, seed=0
    )
    assert out.frames.shape[1] == 25 and out.transition_frames == [4, 4]
    assert seen["decoded"].shape[2] == 25 + 8  # each of the 8 blended frames also has the other scene's version
    long.decode_latents = decode
    auto = long(
        scenes=scenes,
        scene_motion="keyframes",
        transition_frames="auto",
        window_size=4,
        window_overlap=2,
        **FAST,
        seed=0,
    )
    assert auto.frames.shape[1] == 25 and all(
        t in (0, 2) for t in auto.transition_frames
    )  # caps: 2 and 2 (the 4-frame scene)


def test_scene_motion_default_comes_from_the_model(long):
    assert long.defaults.scene_motion == "windows"
    seen = []
    long.defaults = ModelDefaults(num_frames=4, scene_motion="keyframes")
    long(
        "x", num_frames=8, **FAST, seed=0, callback_on_step_end=lambda p, i, t, kw: seen.append(kw["latents"].shape[2])
    )
    assert seen == [4, 4]  # one window of keyframes


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
    two = long(
        scenes=[Scene("a red circle", 8), Scene("a blue square", 8)], transition_frames=0, **FAST, seed=0
    ).frames
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
    long(
        "x",
        num_frames=10,
        **FAST,
        seed=0,
        window_overlap=2,
        callback_on_step_end=lambda p, i, t, kw: steps.append((i, p.num_timesteps, kw["latents"].shape[2])),
    )
    assert steps == [(0, 2, 10), (1, 2, 10)]
    long.set_progress_bar_config(disable=False)
    long("x", num_frames=10, **FAST, seed=0, window_overlap=2)
    assert "12/12" in capsys.readouterr().err  # 6 windows (starts -2, 0, 2, 4, 6, 8) x 2 steps, one bar


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"prompt": "x", "scenes": [Scene("y", 4)]}, "either prompt .* or scenes"),
        ({"scenes": []}, "scenes is empty"),
        ({"scenes": [Scene("a", 4), Scene("b", 0)]}, "scene 2: 'frames' must be >= 1, got 0"),
        (
            {"scenes": [Scene("a", 4), Scene("b", 4, transition_frames=-1)]},
            "scene 2: 'transition_frames' must be an integer >= 0 or 'auto', got -1",
        ),
        (
            {"scenes": [Scene("a", 4), Scene("b", 4)], "transition_frames": "slow"},
            "transition_frames must be an integer >= 0 or 'auto', got 'slow'",
        ),
        (
            {"scenes": [Scene("a", 4, transition_frames=2), Scene("b", 4)]},
            "scene 1: 'transition_frames' blends a scene with the one before it",
        ),
        ({"scenes": [Scene(" ", 4)]}, "scene 1: 'prompt' is empty"),
        (
            {"prompt": "x", "num_frames": 8, "window_overlap": 4},
            "window_overlap must be an integer in \\[0, window_size - 1\\] = \\[0, 3\\], got 4",
        ),
        ({"prompt": "x", "num_frames": 0}, "num_frames must be an integer in"),
        ({"prompt": "x", "num_frames": 8, "height": 31}, "height must be a positive multiple"),
        (
            {"prompt": "x", "scene_motion": "stretch"},
            "scene_motion must be one of \\('keyframes', 'windows'\\), got 'stretch'",
        ),
    ],
)
def test_bad_long_inputs(long, kwargs, message):
    with pytest.raises(ValueError, match=message):
        long(**{**FAST, **kwargs})
