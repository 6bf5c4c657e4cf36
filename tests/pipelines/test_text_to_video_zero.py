"""TextToVideoZeroPipeline and cross-frame attention on tiny random SD components (tests/tiny2d.py):
the same frames as diffusers' deprecated pipeline, the motion conventions, the pixel warp, chunking,
checks, outputs and callbacks."""

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler, StableDiffusionPipeline
from diffusers import TextToVideoZeroPipeline as DeprecatedPipeline  # the reference
from diffusers.models.attention_processor import Attention, AttnProcessor2_0, SlicedAttnProcessor
from diffusers.pipelines.deprecated.text_to_video_synthesis import pipeline_text_to_video_zero as deprecated
from tiny2d import tiny_sd_components, tiny_zero_pipeline
from transformers import CLIPImageProcessor

import t2v.pipelines.text_to_video_zero as zero_module
from t2v.pipelines.cross_frame import (
    CrossFrameAttnProcessor,
    cross_frame_attention,
    cross_frame_processors,
    strength_to_motion,
    warp_latents,
    warp_pixels,
)
from t2v.pipelines.text_to_video_zero import (
    MOTION_PRESETS,
    TextToVideoZeroPipeline,
    TextToVideoZeroPipelineOutput,
    foreground_mask,
    resolve_motion,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Frame-for-frame equalities (chunked vs one pass, identical frames) compare batches of different
    shapes; with several threads their float sums differ by up to 1e-4, with one they do not."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


pytestmark = pytest.mark.filterwarnings(  # from diffusers' deprecated pipeline, run here for comparison
    "ignore:Default grid_sample:UserWarning", "ignore:torch.meshgrid:UserWarning"
)
# 5 DDIM steps: frame 0 alone for steps 0-2 (t1=3 -> index 1, t0=1 -> index 3), all frames for steps 1-4
FAST = {"video_length": 4, "num_inference_steps": 5, "t0": 1, "t1": 3}


@pytest.fixture
def zero():
    return tiny_zero_pipeline()


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def centroid(image: torch.Tensor) -> tuple[float, float]:
    """(x, y) of the brightness of a [H, W] image."""
    ys, xs = torch.meshgrid(torch.arange(image.shape[0]), torch.arange(image.shape[1]), indexing="ij")
    w = image.clamp(min=0)
    return float((w * xs).sum() / w.sum()), float((w * ys).sum() / w.sum())


def blob(h: int, w: int, cx: float, cy: float, sigma: float) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    return torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))


# ---------------------------------------------------------------- diffusers' deprecated pipeline
@pytest.mark.parametrize("strengths", [(12, 12), (-40, 30), (100, -7)])
def test_same_frames_as_diffusers_deprecated_pipeline(strengths):
    sx, sy = strengths
    comps = tiny_sd_components()
    old = DeprecatedPipeline(**comps, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    old.set_progress_bar_config(disable=True)
    new = TextToVideoZeroPipeline(**comps)
    new.set_progress_bar_config(disable=True)
    kw = {**FAST, "guidance_scale": 7.5, "motion_field_strength_x": sx, "motion_field_strength_y": sy}
    ref = old("a red circle", generator=gen(), **kw).images  # its default output_type "tensor": np [F, H, W, 3]
    out = new("a red circle", generator=gen(), **kw).images
    assert out.shape == ref.shape == (4, 32, 32, 3)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    ref_lat = old("a red circle", generator=gen(), output_type="latent", **kw).images
    out_lat = new("a red circle", generator=gen(), output_type="latent", **kw).images
    torch.testing.assert_close(out_lat, ref_lat, atol=1e-6, rtol=0)


def test_no_guidance_works_where_diffusers_deprecated_raises():
    comps = tiny_sd_components()
    old = DeprecatedPipeline(**comps, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    old.set_progress_bar_config(disable=True)
    with pytest.raises(TypeError):  # it concatenates a None negative embedding
        old("a red circle", generator=gen(), guidance_scale=1.0, **FAST)
    new = TextToVideoZeroPipeline(**comps)
    new.set_progress_bar_config(disable=True)
    off = new("a red circle", generator=gen(), guidance_scale=1.0, **FAST).images
    on = new("a red circle", generator=gen(), guidance_scale=7.5, **FAST).images
    assert off.shape == (4, 32, 32, 3) and np.isfinite(off).all() and np.abs(off - on).mean() > 1e-4
    # without guidance the negative prompt is not used
    neg = new("a red circle", negative_prompt="blue", generator=gen(), guidance_scale=1.0, **FAST).images
    np.testing.assert_array_equal(neg, off)


@pytest.mark.parametrize("size", [(16, 16), (12, 20), (64, 48)])
@pytest.mark.parametrize("strengths", [(12, 12), (-40, 30), (7, -100), (0, 0)])
def test_latent_warp_is_the_originals(size, strengths):
    h, w = size
    latents = torch.randn(5, 4, h, w, generator=gen(1))
    ids = [1, 2, 3, 7, 40]
    ref = deprecated.create_motion_field_and_warp_latents(*strengths, frame_ids=ids, latents=latents)
    f = 8  # any first-stage factor: the original's motion is relative to the frame size
    motion = resolve_motion(h * f, w * f, *strengths)
    shift = (motion.shift[0] / f, motion.shift[1] / f)
    out = warp_latents(latents, ids, shift, motion.zoom, (motion.offset[0] / f, motion.offset[1] / f))
    torch.testing.assert_close(out, ref, atol=0, rtol=0)


# ---------------------------------------------------------------- motion conventions
def test_strength_and_pixel_motion_convert():
    assert strength_to_motion(12, 512) == -12.0  # on a 512-pixel frame a strength is a pixel, with the sign flipped
    assert strength_to_motion(12, 64) == -1.5 and strength_to_motion(-32, 32) == 2.0
    motion = resolve_motion(64, 128, 12, -24)
    assert motion.shift == (-3.0, 3.0) and motion.zoom == 1.0
    assert resolve_motion(64, 64, 12, 12, motion_x=2.0).shift == (2.0, 0.0)  # the axis not given does not move
    assert resolve_motion(64, 64, 99, 99, preset="original") == resolve_motion(64, 64, 12, 12)
    assert resolve_motion(64, 64, 12, 12, preset="zoom-in").zoom == MOTION_PRESETS["zoom-in"]["zoom"]
    assert resolve_motion(64, 64, 12, 12, zoom=1.5, preset="zoom-in").zoom == 1.5


def test_pixel_motion_gives_the_strengths_frames(zero):
    # 32-pixel frames, 16x16 latents: strength 32 = -2 pixels = -1 cell per frame (no rounding ties)
    kw = {**FAST, "output_type": "latent"}
    by_strength = zero("x", generator=gen(), motion_field_strength_x=32, motion_field_strength_y=0, **kw).images
    by_pixels = zero("x", generator=gen(), motion_x=-2.0, motion_y=0.0, **kw).images
    torch.testing.assert_close(by_pixels, by_strength, atol=0, rtol=0)
    assert (by_pixels[1:] - by_pixels[0]).abs().mean() > 1e-3  # it did move
    original = zero("x", generator=gen(), output_type="latent", **FAST, motion="original").images
    default = zero("x", generator=gen(), output_type="latent", **FAST).images
    torch.testing.assert_close(original, default, atol=0, rtol=0)


@pytest.mark.parametrize("warp", ["latent", "pixel"])
def test_direction_convention(warp):
    """A bright blob moves right for +x, down for +y, and grows with zoom > 1; the original's positive
    strengths move it left and up."""
    image = blob(32, 32, 15.5, 15.5, 2.0)[None, None]

    def moved(shift, zoom=1.0, offset=(0.0, 0.0)):
        if warp == "latent":
            return warp_latents(image, [2], shift, zoom, offset)[0, 0]
        return warp_pixels(image.expand(1, 3, 32, 32), [2], shift, zoom)[0, 0]

    x0, y0 = centroid(image[0, 0])
    x, y = centroid(moved((3.0, 0.0)))
    assert x == pytest.approx(x0 + 6, abs=0.01) and y == pytest.approx(y0, abs=0.01)
    x, y = centroid(moved((0.0, 2.0)))
    assert x == pytest.approx(x0, abs=0.01) and y == pytest.approx(y0 + 4, abs=0.01)
    area = lambda im: float((im[8:24, 8:24] > 0.5).sum())  # noqa: E731  (the centre: mirrored copies aside)
    assert area(moved((0.0, 0.0), zoom=1.5)) > 1.8 * area(image[0, 0])
    assert area(moved((0.0, 0.0), zoom=1 / 1.5)) < 0.6 * area(image[0, 0])
    x, y = centroid(moved((strength_to_motion(64, 32), strength_to_motion(64, 32))))  # strength 64 on 32 cells
    assert x < x0 - 7 and y < y0 - 7


@torch.no_grad()
def test_pixel_warp_moves_content_smoothly_by_sub_cell_steps():
    """With 8x8 patch latents, 1 pixel per frame moves the decoded content 1 pixel per frame under pixel
    warp; latent warp moves it in whole 8-pixel jumps."""
    pipe = tiny_zero_pipeline(vae="patch")
    image = (blob(64, 64, 24.0, 30.0, 4.0) * 2 - 1)[None].expand(1, 3, 64, 64)
    x0 = pipe.encode_images(image)
    assert x0.shape == (1, 192, 8, 8)
    torch.testing.assert_close(pipe.decode_latents(x0), image, atol=1e-5, rtol=0)  # an exact codec
    ids = list(range(9))
    motion = resolve_motion(64, 64, 12, 12, motion_x=1.0, motion_y=0.0)
    clean = (x0, torch.zeros_like(x0), torch.tensor(1.0))  # no noise: the moved latents are the moved frame
    xs = {}
    for warp in ("pixel", "latent"):
        frames = pipe.decode_latents(pipe._moved_frames(x0, ids, motion, warp, clean)[0])
        xs[warp] = np.array([centroid(frame[0] + 1)[0] for frame in frames])
    steps = np.diff(xs["pixel"])
    assert np.allclose(steps, 1.0, atol=0.05), steps
    jumps = np.diff(xs["latent"])
    assert set(np.round(jumps).astype(int)) <= {0, 8} and 8 in np.round(jumps), jumps


def test_pixel_warp_pipeline_with_a_patch_first_stage():
    pipe = tiny_zero_pipeline(vae="patch")
    kw = {**FAST, "motion_x": 1.0, "motion_y": -0.5, "zoom": 1.05}
    pixel = pipe("a red circle", generator=gen(), warp="pixel", height=32, width=32, **kw).images
    latent = pipe("a red circle", generator=gen(), warp="latent", height=32, width=32, **kw).images
    assert pixel.shape == (4, 32, 32, 3) and np.isfinite(pixel).all()
    np.testing.assert_allclose(pixel[0], latent[0], atol=1e-6)  # frame 0 does not depend on the warp
    assert np.abs(pixel[1:] - latent[1:]).mean() > 1e-4


# ---------------------------------------------------------------- cross-frame attention
def attention_layer(cross_dim=None):
    torch.manual_seed(0)
    return Attention(query_dim=8, cross_attention_dim=cross_dim, heads=2, dim_head=4).eval()


@pytest.mark.parametrize("groups", [1, 2, 3])  # guidance branches x videos: none, text CFG, Instruct-Pix2Pix
def test_cross_frame_self_attention_reads_frame_0(groups):
    attn, frames, tokens = attention_layer(), 4, 6
    hidden = torch.randn(groups * frames, tokens, 8, generator=gen(2))
    attn.set_processor(CrossFrameAttnProcessor(num_frames=frames))
    out = attn(hidden)
    # reference: ordinary attention whose keys and values are each group's frame 0
    anchors = hidden.view(groups, frames, tokens, 8)[:, :1].expand(-1, frames, -1, -1).reshape_as(hidden)
    attn.set_processor(AttnProcessor2_0())
    torch.testing.assert_close(out, attn(hidden, encoder_hidden_states=anchors), atol=1e-6, rtol=1e-5)
    # frame 0 attends to itself: plain self-attention
    plain = attn(hidden).view(groups, frames, tokens, 8)[:, 0]
    torch.testing.assert_close(out.view(groups, frames, tokens, 8)[:, 0], plain, atol=1e-6, rtol=1e-5)
    # an attention mask per frame, over the anchor's tokens
    mask = torch.zeros(groups * frames, 1, tokens)
    mask[torch.arange(groups * frames), 0, torch.arange(groups * frames) % tokens] = -1e4
    ref = attn(hidden, encoder_hidden_states=anchors, attention_mask=mask)
    attn.set_processor(CrossFrameAttnProcessor(num_frames=frames))
    torch.testing.assert_close(attn(hidden, attention_mask=mask), ref, atol=1e-6, rtol=1e-5)
    if groups > 1:  # diffusers' processor, told the number of groups, agrees
        attn.set_processor(deprecated.CrossFrameAttnProcessor2_0(batch_size=groups))
        torch.testing.assert_close(out, attn(hidden), atol=1e-6, rtol=1e-5)


def test_cross_frame_attention_leaves_cross_attention_alone_and_needs_whole_videos():
    attn = attention_layer(cross_dim=16)
    hidden, text = torch.randn(6, 5, 8, generator=gen(3)), torch.randn(6, 7, 16, generator=gen(4))
    ref = attn(hidden, encoder_hidden_states=text)
    attn.set_processor(CrossFrameAttnProcessor(num_frames=3))
    torch.testing.assert_close(attn(hidden, encoder_hidden_states=text), ref, atol=1e-6, rtol=1e-5)
    attn = attention_layer()
    attn.set_processor(CrossFrameAttnProcessor(num_frames=4))
    with pytest.raises(ValueError, match="batch of 6 images is not a whole number of videos of 4 frames"):
        attn(hidden)
    # diffusers' processor counts guidance branches: one prompt, no guidance, one frame divides by zero
    attn.set_processor(deprecated.CrossFrameAttnProcessor(batch_size=2))
    with pytest.raises(ZeroDivisionError):
        attn(hidden[:1])
    attn.set_processor(CrossFrameAttnProcessor(num_frames=1))
    assert attn(hidden[:1]).shape == (1, 5, 8)


def test_cross_frame_processors_shared_and_restored(zero):
    unet = zero.unet
    before = unet.attn_processors
    procs = cross_frame_processors(unet, 3)
    assert procs.keys() == before.keys() and len({id(p) for p in procs.values()}) == 1
    with pytest.raises(RuntimeError):
        with cross_frame_attention(unet, num_frames=2) as proc:
            assert all(p is proc for p in unet.attn_processors.values()) and proc.num_frames == 2
            raise RuntimeError
    assert all(unet.attn_processors[k] is v for k, v in before.items())


def test_call_installs_cross_frame_attention_and_restores_sliced_processors(zero):
    zero.enable_attention_slicing(1)
    before = zero.unet.attn_processors
    assert all(isinstance(p, SlicedAttnProcessor) for p in before.values())
    seen = []

    def look(pipe, i, t, kw):
        seen.append({type(p) for p in pipe.unet.attn_processors.values()})
        return {}

    zero("x", generator=gen(), callback_on_step_end=look, **FAST)
    assert seen and all(s == {CrossFrameAttnProcessor} for s in seen)
    assert all(zero.unet.attn_processors[k] is v for k, v in before.items())

    def fail(pipe, i, t, kw):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        zero("x", generator=gen(), callback_on_step_end=fail, **FAST)
    assert all(zero.unet.attn_processors[k] is v for k, v in before.items())


# ---------------------------------------------------------------- chunks, outputs, callbacks
@pytest.mark.parametrize("warp", ["latent", "pixel"])
def test_chunks_give_the_same_frames(zero, warp):
    kw = {**FAST, "video_length": 6, "output_type": "latent", "warp": warp, "motion_field_strength_x": -40}
    whole = zero("a red circle", generator=gen(), **kw).images
    anchors = []

    def last_step(pipe, i, t, values):
        if i == pipe.num_timesteps - 1 and values["latents"].shape[0] > 1:
            anchors.append(values["latents"][0].clone())
        return {}

    chunked = zero("a red circle", generator=gen(), chunk_size=3, callback_on_step_end=last_step, **kw).images
    assert chunked.shape == whole.shape == (6, 4, 16, 16)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)
    assert len(anchors) == 3  # 5 later frames in chunks of 2, each with frame 0 prepended
    for anchor in anchors[1:]:
        torch.testing.assert_close(anchor, anchors[0], atol=1e-6, rtol=0)
    pairs = zero("a red circle", generator=gen(), chunk_size=2, **kw).images
    torch.testing.assert_close(pairs, whole, atol=1e-5, rtol=1e-5)


def test_output_types_and_shapes(zero):
    out = zero("a red circle", generator=gen(), **FAST)
    assert isinstance(out, TextToVideoZeroPipelineOutput) and out.frames is out.images
    assert out.images.shape == (4, 32, 32, 3) and out.images.dtype == np.float32
    assert 0 <= out.images.min() and out.images.max() <= 1 and out.nsfw_content_detected is None
    pt = zero("a red circle", generator=gen(), output_type="pt", **FAST).images
    assert isinstance(pt, torch.Tensor) and pt.shape == (4, 3, 32, 32)
    np.testing.assert_allclose(pt.permute(0, 2, 3, 1).numpy(), out.images, atol=1e-6)
    pil = zero("a red circle", generator=gen(), output_type="pil", **FAST).images
    assert len(pil) == 4 and pil[0].size == (32, 32)
    lat = zero("a red circle", generator=gen(), output_type="latent", **FAST).images
    assert lat.shape == (4, 4, 16, 16)
    tensor = zero("a red circle", generator=gen(), output_type="tensor", **FAST).images  # diffusers' default
    np.testing.assert_array_equal(tensor, out.images)
    images, nsfw = zero("a red circle", generator=gen(), return_dict=False, **FAST)
    np.testing.assert_array_equal(images, out.images)
    assert nsfw is None
    assert zero("x", generator=gen(), **{**FAST, "video_length": 1}).images.shape == (1, 32, 32, 3)
    assert zero("x", generator=gen(), height=16, width=48, **FAST).images.shape == (4, 16, 48, 3)


def test_videos_per_prompt_and_batches(zero):
    lat = torch.randn(2, 4, 16, 16, generator=gen(5))
    kw = {**FAST, "output_type": "latent"}
    both = zero(["a red circle", "a blue square"], latents=lat, generator=[gen(1), gen(2)], **kw).images
    first = zero("a red circle", latents=lat[:1], generator=[gen(1)], **kw).images
    second = zero("a blue square", latents=lat[1:], generator=gen(2), **kw).images
    assert both.shape == (8, 4, 16, 16)  # video after video
    torch.testing.assert_close(both[:4], first, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[4:], second, atol=1e-5, rtol=1e-5)
    many = zero(["a", "b"], negative_prompt=["c", "d"], num_videos_per_prompt=2, seed=0, **FAST).images
    assert many.shape == (16, 32, 32, 3) and np.abs(many[:4] - many[4:8]).mean() > 1e-4


def test_seed_generator_and_stochastic_steps(zero):
    a = zero("a red circle", seed=3, **FAST).images
    np.testing.assert_array_equal(zero("a red circle", generator=gen(3), **FAST).images, a)
    assert np.abs(zero("a red circle", seed=4, **FAST).images - a).mean() > 1e-4
    # eta > 0: DDIM draws step noise; one generator per video, each video's from its own
    kw = {**FAST, "eta": 1.0, "output_type": "latent"}
    both = zero(["a", "b"], generator=[gen(1), gen(2)], **kw).images
    torch.testing.assert_close(both[:4], zero("a", generator=[gen(1)], **kw).images, atol=1e-5, rtol=1e-5)


def test_callbacks_see_every_step(zero):
    zero.scheduler.set_timesteps(5)
    timesteps = zero.scheduler.timesteps.tolist()
    seen, legacy = [], []

    def record(pipe, i, t, values):
        assert pipe is zero and set(values) == {"latents", "prompt_embeds"}
        seen.append((i, int(t), values["latents"].shape[0], values["prompt_embeds"].shape))
        return {}

    zero(
        "x", generator=gen(), callback_on_step_end=record,
        callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"],
        callback=lambda i, t, latents: legacy.append(i), callback_steps=2, **FAST,
    )  # fmt: skip
    # frame 0 alone from step 0 to t0 (index 3), then all four frames from t1 (index 1)
    assert [s[0] for s in seen] == [0, 1, 2, 1, 2, 3, 4]
    assert all(t == timesteps[i] for i, t, _, _ in seen)
    assert [s[2] for s in seen] == [1, 1, 1, 4, 4, 4, 4] and seen[0][3] == (1, 24, 16)
    assert legacy == [0, 2, 2, 4]

    def zero_out(pipe, i, t, values):
        return {"latents": torch.zeros_like(values["latents"])} if i == 4 else {}

    out = zero("x", generator=gen(), callback_on_step_end=zero_out, output_type="latent", **FAST).images
    assert out.abs().max() == 0  # what the callback returns replaces the pipeline's latents


def test_foreground_mask_marks_what_differs_from_the_border():
    mask = foreground_mask((blob(32, 32, 10, 20, 2.0) * 1.5 - 1)[None, None].expand(1, 3, 32, 32), factor=2)
    assert mask.shape == (1, 1, 16, 16) and mask[0, 0, 10, 5] == 1 and mask[0, 0, 2, 14] == 0
    assert 16 < mask.sum() < 64  # the few cells the blob reaches (of 256), grown by a cell
    assert foreground_mask(torch.full((2, 3, 16, 16), 0.3), factor=8).sum() == 0


def test_background_smoothing(zero, monkeypatch):
    kw = {**FAST, "output_type": "latent", "motion_field_strength_x": -40}
    plain = zero("x", generator=gen(), **kw).images
    none = zero("x", generator=gen(), background_smoothing=True, smoothing_strength=0.0, **kw).images
    torch.testing.assert_close(none, plain, atol=0, rtol=0)
    # all background: at strength 1 each later frame becomes frame 0 moved; frame 0 is the reference
    monkeypatch.setattr(zero_module, "foreground_mask", lambda images, factor: torch.zeros(1, 1, 16, 16))
    full = zero("x", generator=gen(), background_smoothing=True, smoothing_strength=1.0, **kw).images
    torch.testing.assert_close(full[0], plain[0], atol=0, rtol=0)
    motion = resolve_motion(32, 32, -40, 12)
    torch.testing.assert_close(full[1:], zero._move(full[:1], [1, 2, 3], motion), atol=0, rtol=0)
    # half background: the foreground half keeps its own latents
    monkeypatch.setattr(zero_module, "foreground_mask", lambda images, factor: torch.ones(1, 1, 16, 16).tril())
    half = zero("x", generator=gen(), background_smoothing=True, smoothing_strength=1.0, **kw).images
    assert 0 < (half[1:] != full[1:]).float().mean() < 1 and (half[1:] - plain[1:]).abs().mean() > 1e-3


def test_bert_text_encoder_and_schedulers():
    pipe = tiny_zero_pipeline(encoder="bert")
    assert pipe("a red circle", generator=gen(), **FAST).images.shape == (4, 32, 32, 3)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    assert np.isfinite(pipe("a red circle", generator=gen(), **FAST).images).all()
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    with pytest.raises(ValueError, match="variance-preserving latents.*EulerDiscreteScheduler"):
        pipe("a red circle", **FAST)


def test_safety_checker_runs_only_when_given(zero):
    class Checker(torch.nn.Module):  # flags every other image
        device = torch.device("cpu")

        def forward(self, images, clip_input):
            assert clip_input.shape == (len(images), 3, 8, 8)
            flags = [i % 2 == 1 for i in range(len(images))]
            images[torch.tensor(flags)] = 0
            return images, flags

    extractor = CLIPImageProcessor(size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8})
    zero.register_modules(safety_checker=Checker(), feature_extractor=extractor)
    out = zero("x", seed=0, **FAST)
    assert out.nsfw_content_detected == [False, True, False, True]
    assert out.images[1].max() == 0 and out.images[3].max() == 0 and out.images[0].max() > 0  # black, not grey


def test_fused_projections_keep_frames_and_processors(zero):
    ref = zero("x", seed=0, **FAST).images
    zero.fuse_qkv_projections()
    fused = zero.unet.attn_processors
    np.testing.assert_allclose(zero("x", seed=0, **FAST).images, ref, atol=1e-6)
    assert all(zero.unet.attn_processors[k] is v for k, v in fused.items())


def test_model_cpu_offload_same_frames(zero):
    kw = {**FAST, "seed": 0, "warp": "pixel", "background_smoothing": True}  # the VAE runs between UNet calls
    ref = zero("x", **kw).images
    zero.enable_model_cpu_offload(device="cpu")  # the hooks run; on a GPU machine the device is cuda
    np.testing.assert_allclose(zero("x", **kw).images, ref, atol=1e-6)


def test_loads_a_stable_diffusion_folder(tmp_path):
    sd = StableDiffusionPipeline(
        **tiny_sd_components(), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    sd.save_pretrained(tmp_path / "sd")
    loaded = TextToVideoZeroPipeline.from_pretrained(tmp_path / "sd")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.safety_checker is None and loaded.feature_extractor is None
    out = loaded("a red circle", generator=gen(), **FAST).images
    direct = TextToVideoZeroPipeline(**{k: v for k, v in sd.components.items() if k != "image_encoder"})
    direct.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(out, direct("a red circle", generator=gen(), **FAST).images, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"prompt": None}, "exactly one of prompt"),
        ({"prompt": ""}, "prompt must be a non-empty string"),
        ({"prompt": ["a", 3]}, "prompt must be a non-empty string or a non-empty list of them, got \\['a', 3\\]"),
        ({"prompt_embeds": torch.zeros(1, 24, 16)}, "exactly one of prompt"),
        ({"video_length": 0}, "video_length must be an integer >= 1, got 0"),
        ({"height": 33}, "height must be a positive multiple of 2"),
        ({"width": 0}, "width must be a positive multiple of 2"),
        ({"num_inference_steps": 1}, "num_inference_steps must be an integer >= 2"),
        ({"t0": 3, "t1": 3}, r"0 <= t0 < t1 < num_inference_steps \(5\), got t0=3, t1=3"),
        ({"t1": 5}, "t1 < num_inference_steps"),
        ({"t0": -1}, "0 <= t0"),
        ({"guidance_scale": float("nan")}, "guidance_scale must be a finite number"),
        ({"num_videos_per_prompt": 0}, "num_videos_per_prompt must be an integer >= 1"),
        ({"output_type": "mp4"}, "output_type must be one of"),
        ({"callback_steps": 0}, "callback_steps must be an integer >= 1"),
        ({"callback_on_step_end_tensor_inputs": ["noise"]}, r"callback_on_step_end_tensor_inputs.*\['noise'\]"),
        ({"frame_ids": [0, 1]}, "frame_ids must be 4 .video_length. integers"),
        ({"latents": torch.zeros(1, 4, 8, 8)}, r"latents .*shape \(1, 4, 16, 16\), got \(1, 4, 8, 8\)"),
        ({"negative_prompt": ["a", "b"]}, "negative_prompt has 2 entries but prompt has 1"),
        ({"motion": "sideways"}, "motion must be one of .*'original'.*got 'sideways'"),
        ({"motion_x": float("inf")}, "motion_x must be a finite number"),
        ({"motion_field_strength_y": None}, "motion_field_strength_y must be a finite number"),
        ({"zoom": 0}, "zoom must be a number > 0"),
        ({"warp": "flow"}, r"warp must be one of \('latent', 'pixel'\), got 'flow'"),
        ({"chunk_size": 1}, "chunk_size must be None or an integer >= 2"),
        ({"smoothing_strength": 2}, r"smoothing_strength must be a number in \[0, 1\]"),
    ],
)
def test_check_inputs(zero, kwargs, match):
    kw = {"prompt": "x", **FAST, **kwargs}
    with pytest.raises(ValueError, match=match):
        zero(**kw)
