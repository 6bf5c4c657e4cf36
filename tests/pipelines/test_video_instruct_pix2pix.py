"""VideoInstructPix2PixPipeline on tiny random SD components with an Instruct-Pix2Pix UNet (tests/tiny_edit.py):
diffusers' StableDiffusionInstructPix2PixPipeline's images, the original's recipe (the stock pipeline over the
frames with cross-frame attention), shared noise, chunks, processors put back, loading, inputs, outputs, checks."""

import numpy as np
import pytest
import torch
from diffusers import (
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    StableDiffusionInstructPix2PixPipeline,
)
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from tiny2d import tiny_sd_components
from tiny_edit import tiny_edit_components

from t2v.models.loading import PIPELINE_KINDS, save_model
from t2v.pipelines.cross_frame import CrossFrameAttnProcessor, cross_frame_attention
from t2v.pipelines.text_to_video_zero import TextToVideoZeroPipeline
from t2v.pipelines.video_instruct_pix2pix import (
    VideoInstructPix2PixPipeline,
    VideoInstructPix2PixPipelineOutput,
    guide,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Frame-for-frame equalities (chunked vs one pass, identical frames) compare batches of different
    shapes; with several threads their float sums differ by up to 1e-4, with one they do not."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


FAST = {"num_inference_steps": 3}
EDIT = "make the bar red"


@pytest.fixture(scope="module")
def components():
    return tiny_edit_components()


@pytest.fixture
def pipe(components):
    pipe = VideoInstructPix2PixPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def source(frames: int = 4, size: int = 32) -> np.ndarray:
    """A white bar moving down on a dark blue background, uint8 [F, H, W, 3]."""
    video = np.zeros((frames, size, size, 3), np.uint8)
    video[..., 2] = 80
    for k in range(frames):
        video[k, 4 + 3 * k : 10 + 3 * k, 6:26] = 255
    return video


def stock(components) -> StableDiffusionInstructPix2PixPipeline:
    pipe = StableDiffusionInstructPix2PixPipeline(
        **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


SETTINGS = [
    {"guidance_scale": 7.5, "image_guidance_scale": 1.5},  # diffusers' defaults: three branches
    {"guidance_scale": 7.5, "image_guidance_scale": 1.0},  # the original's: two (the third cancels out)
    {"guidance_scale": 1.0, "image_guidance_scale": 1.0},  # no guidance: one
    {"guidance_scale": 5.0, "image_guidance_scale": 2.0, "negative_prompt": "a blue bar"},
    {"guidance_scale": 7.5, "image_guidance_scale": 0.5},  # diffusers: no guidance below image guidance 1
]


# ---------------------------------------------------------------- diffusers' StableDiffusionInstructPix2PixPipeline
@pytest.mark.parametrize("scheduler", ["ddim", "euler"])
@pytest.mark.parametrize("settings", SETTINGS)
def test_one_frame_is_diffusers_instruct_pix2pix_image(components, pipe, settings, scheduler):
    """A one-frame video is the stock pipeline's image for the same noise (drawn from the same generator)."""
    ref_pipe = stock(components)
    if scheduler == "euler":  # init_noise_sigma != 1 and scaled model inputs
        pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
        ref_pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    video, kw = source(1), {**FAST, **settings}
    noise = randn_tensor((1, 4, 16, 16), generator=gen())
    for output_type, atol in (("np", 1e-5), ("latent", 1e-5)):
        ref = ref_pipe(EDIT, Image.fromarray(video[0]), latents=noise, output_type=output_type, **kw).images
        out = pipe(EDIT, video, generator=gen(), output_type=output_type, **kw).images
        assert out.shape == ref.shape
        np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=atol, rtol=0)


@pytest.mark.parametrize("settings", SETTINGS[:3])
def test_frames_are_the_originals_recipe(components, pipe, settings):
    """Text2Video-Zero's recipe: the stock pipeline on all frames as one batch (a noise per frame from the
    generator), cross-frame attention over its branches; the frames are the video's."""
    video, kw = source(4), {**FAST, **settings}
    noise = randn_tensor((4, 4, 16, 16), generator=gen())
    sd = stock(components)
    with cross_frame_attention(sd.unet, num_frames=4):
        ref = sd([EDIT] * 4, [Image.fromarray(f) for f in video], latents=noise, output_type="np", **kw).images
    out = pipe(EDIT, video, seed=0, **kw).images
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)
    assert np.abs(out[0] - out[3]).max() > 1e-3  # the sources differ, so do the frames


def test_guidance_runs_the_branches_it_needs(pipe):
    sizes = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    try:
        for g, ig, branches in ((7.5, 1.5, 3), (7.5, 1.0, 2), (1.0, 1.0, 1), (1.0, 2.0, 1), (7.5, 0.9, 1)):
            sizes.clear()
            pipe(EDIT, source(3), guidance_scale=g, image_guidance_scale=ig, num_inference_steps=1, seed=0)
            assert sizes == [3 * branches] and pipe.guidance_branches == branches
    finally:
        hook.remove()
    noise = torch.randn(3, 2, 4)
    text, image, uncond = noise.chunk(3)
    torch.testing.assert_close(guide(noise, 3, 7.5, 1.0), guide(noise[:2], 2, 7.5, 1.0))
    torch.testing.assert_close(guide(noise, 3, 2.0, 1.5), uncond + 2.0 * (text - image) + 1.5 * (image - uncond))


def test_several_instructions_edit_the_same_video_apart(pipe):
    """Two prompts: video b is frames [b * F, (b + 1) * F), each with its own frame 0 as the anchor."""
    video = source(3)
    both = pipe([EDIT, "make it snow"], video, generator=gen(), output_type="latent", **FAST).images
    one = pipe(EDIT, video, generator=gen(), output_type="latent", **FAST).images
    assert both.shape == (6, 4, 16, 16)
    torch.testing.assert_close(both[:3], one, atol=1e-5, rtol=0)
    per_video = pipe(EDIT, video, num_videos_per_prompt=2, generator=[gen(0), gen(1)], output_type="latent", **FAST)
    torch.testing.assert_close(per_video.images[:3], one, atol=1e-5, rtol=0)
    assert (per_video.images[3:] - one).abs().max() > 1e-2


# ---------------------------------------------------------------- shared noise
def test_identical_source_frames_give_identical_frames_with_shared_noise(pipe):
    video = np.repeat(source(1), 5, axis=0)
    for settings in SETTINGS[:3]:
        frames = pipe(EDIT, video, shared_noise=True, seed=3, output_type="latent", **FAST, **settings).images
        for k in range(1, 5):
            torch.testing.assert_close(frames[k], frames[0], atol=1e-6, rtol=0)
    own_noise = pipe(EDIT, video, seed=3, output_type="latent", **FAST).images  # the original: a noise per frame
    assert (own_noise[4] - own_noise[0]).abs().max() > 1e-3
    noise = randn_tensor((1, 4, 16, 16), generator=gen())
    given = pipe(EDIT, video, shared_noise=True, latents=noise, output_type="latent", **FAST).images
    drawn = pipe(EDIT, video, shared_noise=True, generator=gen(), output_type="latent", **FAST).images
    torch.testing.assert_close(given, drawn, atol=0, rtol=0)


# ---------------------------------------------------------------- chunks
@pytest.mark.parametrize("scheduler", ["ddim", "euler_ancestral", "dpm"])
@pytest.mark.parametrize("shared_noise", [False, True])
def test_chunks_give_the_same_frames_and_frame_0_in_every_chunk(pipe, scheduler, shared_noise):
    if scheduler == "euler_ancestral":  # the original's: draws noise at every step, from each frame's seed
        pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    elif scheduler == "dpm":  # multistep: its state starts afresh in every chunk
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    video, kw = source(6), {"shared_noise": shared_noise, "seed": 0, "output_type": "latent", **FAST}
    full = pipe(EDIT, video, **kw).images
    finals = []

    def last_step(p, i, t, kwargs):
        if i == FAST["num_inference_steps"] - 1:
            finals.append(kwargs["latents"].clone())
        return kwargs

    chunked = pipe(EDIT, video, chunk_size=3, callback_on_step_end=last_step, **kw).images
    assert [f.shape[0] for f in finals] == [3, 3, 2]  # [0, 1, 2], [0, 3, 4], [0, 5]
    for f in finals[1:]:
        torch.testing.assert_close(f[0], finals[0][0], atol=1e-6, rtol=0)  # the anchor is the same in every chunk
    torch.testing.assert_close(chunked[:3], full[:3], atol=1e-6, rtol=0)  # the first chunk is the one pass's
    torch.testing.assert_close(chunked, full, atol=1e-5, rtol=0)  # and so is every frame


def test_chunked_images_match(pipe):
    full = pipe(EDIT, source(5), seed=1, **FAST).images
    chunked = pipe(EDIT, source(5), seed=1, chunk_size=2, **FAST).images
    assert chunked.shape == full.shape == (5, 32, 32, 3)
    np.testing.assert_allclose(chunked, full, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- attention processors
def test_processors_restored_after_a_call_and_after_an_error(pipe):
    pipe.unet.set_attn_processor(AttnProcessor())
    seen = []

    def check(p, i, t, kwargs):
        seen.append({type(x) for x in p.unet.attn_processors.values()})
        assert kwargs["image_latents"].shape == (3, 4, 16, 16)  # the chunk's source latents
        return kwargs

    try:
        pipe(EDIT, source(3), seed=0, callback_on_step_end=check, callback_on_step_end_tensor_inputs=["image_latents"],
             **FAST)  # fmt: skip
        assert seen and all(s == {CrossFrameAttnProcessor} for s in seen)  # cross-frame attention during the call
        assert {type(x) for x in pipe.unet.attn_processors.values()} == {AttnProcessor}

        def fail(p, i, t, kwargs):
            raise RuntimeError("stop")

        with pytest.raises(RuntimeError, match="stop"):
            pipe(EDIT, source(3), seed=0, callback_on_step_end=fail, **FAST)
        assert {type(x) for x in pipe.unet.attn_processors.values()} == {AttnProcessor}
    finally:
        pipe.unet.set_attn_processor(AttnProcessor2_0())


# ---------------------------------------------------------------- models
def test_a_text_to_image_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="needs an Instruct-Pix2Pix model"):
        VideoInstructPix2PixPipeline(**tiny_sd_components())
    sd = TextToVideoZeroPipeline(**tiny_sd_components())
    path = save_model(sd, tmp_path / "sd", class_name="StableDiffusionPipeline")
    with pytest.raises(ValueError, match="is not an image-edit model"):
        VideoInstructPix2PixPipeline.from_pretrained(path)


def test_an_instruct_pix2pix_checkpoint_loads(tmp_path, pipe):
    path = save_model(pipe, tmp_path / "ip2p", class_name="StableDiffusionInstructPix2PixPipeline")
    loaded = VideoInstructPix2PixPipeline.from_pretrained(path)
    assert PIPELINE_KINDS["StableDiffusionInstructPix2PixPipeline"] == "image-edit"
    loaded.set_progress_bar_config(disable=True)
    kw = {"seed": 0, "output_type": "latent", **FAST}
    torch.testing.assert_close(loaded(EDIT, source(2), **kw).images, pipe(EDIT, source(2), **kw).images)


def test_a_patch_first_stage_works():
    """t2v's PatchAutoencoder (`.latents`, no posterior) as the VAE: 4x4 latents of 192 channels at 32x32."""
    components = tiny_edit_components(vae="patch")
    pipe = VideoInstructPix2PixPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    noise, kw = randn_tensor((1, 192, 4, 4), generator=gen()), {"image_guidance_scale": 1.5, **FAST}
    ref = stock(components)(EDIT, Image.fromarray(source(1)[0]), latents=noise, output_type="np", **kw).images
    np.testing.assert_allclose(pipe(EDIT, source(1), generator=gen(), **kw).images, ref, atol=1e-5, rtol=0)
    assert pipe(EDIT, source(3), seed=0, **FAST).images.shape == (3, 32, 32, 3)


# ---------------------------------------------------------------- inputs and outputs
def test_video_formats_agree(pipe):
    video = source(3)
    ref = pipe(EDIT, video, seed=0, output_type="latent", **FAST).images
    for same in (video / 255.0, torch.from_numpy(video).permute(0, 3, 1, 2), [Image.fromarray(f) for f in video],
                 torch.from_numpy(video / 255.0).permute(0, 3, 1, 2).float()):  # fmt: skip
        out = pipe(EDIT, same, seed=0, output_type="latent", **FAST).images
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


def test_output_types_and_shapes(pipe):
    video = source(3)
    out = pipe(EDIT, video, seed=0, **FAST)
    assert isinstance(out, VideoInstructPix2PixPipelineOutput) and out.frames is out.images
    assert out.nsfw_content_detected is None
    assert out.images.shape == (3, 32, 32, 3) and out.images.dtype == np.float32
    assert 0 <= out.images.min() and out.images.max() <= 1
    pt = pipe(EDIT, video, seed=0, output_type="pt", **FAST).images
    assert pt.shape == (3, 3, 32, 32) and torch.allclose(pt.permute(0, 2, 3, 1), torch.from_numpy(out.images))
    pil = pipe(EDIT, video, seed=0, output_type="pil", **FAST).images
    assert len(pil) == 3 and pil[0].size == (32, 32)
    assert pipe(EDIT, video, seed=0, output_type="latent", **FAST).images.shape == (3, 4, 16, 16)
    images, nsfw = pipe(EDIT, video, seed=0, return_dict=False, **FAST)
    np.testing.assert_array_equal(images, out.images)
    assert pipe(EDIT, source(2, 36), seed=0, **FAST).images.shape == (2, 36, 36, 3)  # resized like diffusers
    assert pipe(EDIT, video, height=16, width=24, seed=0, **FAST).images.shape == (3, 16, 24, 3)


BAD = [
    ({"prompt": None}, "exactly one of prompt"),
    ({"prompt": ""}, "prompt must be a non-empty string"),
    ({"video": np.zeros((2, 32, 32), np.uint8)}, r"video as an array must be \[F, H, W, 3\]"),
    ({"video": "clip.mp4"}, "video must be an array"),
    ({"video_length": 5}, "video_length is 5 but video has 2 frames"),
    ({"num_inference_steps": 0}, "num_inference_steps must be an integer >= 1"),
    ({"height": 31}, "height must be a positive multiple of 2"),
    ({"guidance_scale": float("nan")}, "guidance_scale must be a finite number"),
    ({"image_guidance_scale": None}, "image_guidance_scale must be a finite number"),
    ({"output_type": "mp4"}, "output_type must be one of"),
    ({"callback_on_step_end_tensor_inputs": ["noise"]}, "callback_on_step_end_tensor_inputs must be in"),
    ({"chunk_size": 1}, "chunk_size must be None or an integer >= 2"),
    ({"shared_noise": 1}, "shared_noise must be True or False"),
    ({"latents": torch.zeros(1, 4, 16, 16)}, r"one per frame, video after video\) must have shape \(2, 4, 16, 16\)"),
    ({"latents": torch.zeros(2, 4, 16, 16), "shared_noise": True}, r"must have shape \(1, 4, 16, 16\)"),
    ({"seed": 0, "generator": torch.Generator()}, "either seed or generator"),
    ({"generator": [torch.Generator()] * 2}, "got 2 generators for a batch of 1 videos"),
    ({"negative_prompt": ["a", "b"]}, "negative_prompt has 2 entries"),
]


@pytest.mark.parametrize("bad, message", BAD)
def test_check_inputs(pipe, bad, message):
    kw = {"prompt": EDIT, "video": source(2), **FAST, **bad}
    with pytest.raises(ValueError, match=message):
        pipe(**kw)
