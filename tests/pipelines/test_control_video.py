"""ControlVideoPipeline on tiny random SD components and a tiny random ControlNet (tests/tiny_control.py):
diffusers' StableDiffusionControlNetPipeline's images, the shared noise and cross-frame attention,
chunks, processors put back, inputs, outputs and checks."""

import numpy as np
import pytest
import torch
from diffusers import (
    ControlNetModel,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    StableDiffusionControlNetPipeline,
    StableDiffusionPipeline,
)
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from tiny2d import tiny_sd_components
from tiny_control import tiny_control_components, tiny_control_pipeline, tiny_controlnet

from t2v.pipelines.control_video import (
    ControlVideoPipeline,
    ControlVideoPipelineOutput,
    as_control_frames,
    chunks,
    controlnet_keep,
)
from t2v.pipelines.cross_frame import CrossFrameAttnProcessor, cross_frame_attention


FAST = {"num_inference_steps": 3}


@pytest.fixture(scope="module")
def components():
    return tiny_control_components()


@pytest.fixture
def pipe(components):
    pipe = ControlVideoPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def controls(frames: int = 4, size: int = 32) -> np.ndarray:
    """A white bar moving down, one control image per frame, uint8 [F, H, W, 3]."""
    video = np.zeros((frames, size, size, 3), np.uint8)
    for k in range(frames):
        video[k, 4 + 3 * k : 10 + 3 * k, 6:26] = 255
    return video


def stock(components) -> StableDiffusionControlNetPipeline:
    pipe = StableDiffusionControlNetPipeline(
        **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


SETTINGS = [
    {"guidance_scale": 7.5},
    {"guidance_scale": 1.0},
    {"guidance_scale": 5.0, "negative_prompt": "a blue square", "guess_mode": True},
    {"controlnet_conditioning_scale": 0.5, "control_guidance_start": 0.3, "control_guidance_end": 0.7},
]


# ---------------------------------------------------------------- diffusers' StableDiffusionControlNetPipeline
@pytest.mark.parametrize("settings", SETTINGS)
def test_one_frame_is_diffusers_controlnet_image(components, pipe, settings):
    """A one-frame video is the stock pipeline's image (its own processors: no cross-frame attention)."""
    control = controls(1)
    noise = randn_tensor((1, 4, 16, 16), generator=gen())
    kw = {**FAST, **settings}
    ref = stock(components)("a red circle", Image.fromarray(control[0]), latents=noise, output_type="np", **kw)
    out = pipe("a red circle", control, generator=gen(), **kw)  # the same draw
    assert out.images.shape == ref.images.shape == (1, 32, 32, 3)
    np.testing.assert_allclose(out.images, ref.images, atol=1e-5)
    ref_lat = stock(components)("a red circle", Image.fromarray(control[0]), latents=noise, output_type="latent", **kw)
    torch.testing.assert_close(pipe("a red circle", control, latents=noise, output_type="latent", **kw).images,
                               ref_lat.images, atol=1e-5, rtol=0)  # fmt: skip


@pytest.mark.parametrize("settings", SETTINGS[:3])
def test_frames_are_diffusers_with_shared_noise_and_cross_frame_attention(components, pipe, settings):
    """Text2Video-Zero's recipe on the stock pipeline: a prompt and control image per frame, one noise
    repeated, cross-frame attention in UNet and ControlNet; the frames are the video's."""
    control, kw = controls(4), {**FAST, **settings}
    noise = randn_tensor((1, 4, 16, 16), generator=gen())
    sd, per_frame = stock(components), {k: [v] * 4 if k == "negative_prompt" else v for k, v in kw.items()}
    with cross_frame_attention(sd.unet, sd.controlnet, num_frames=4):
        ref = sd(["a red circle"] * 4, [Image.fromarray(c) for c in control], latents=noise.repeat(4, 1, 1, 1),
                 output_type="np", **per_frame).images  # fmt: skip
    out = pipe("a red circle", control, seed=0, **kw).images
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert np.abs(out[0] - out[3]).max() > 1e-3  # the controls differ, so do the frames


def test_identical_controls_give_identical_frames(pipe):
    """The same noise, the same control and cross-frame attention: every frame is frame 0."""
    control = np.repeat(controls(1), 5, axis=0)
    for guidance in (7.5, 1.0):
        frames = pipe("a red circle", control, guidance_scale=guidance, seed=3, output_type="latent", **FAST).images
        for k in range(1, 5):
            torch.testing.assert_close(frames[k], frames[0], atol=1e-6, rtol=0)
    moving = pipe("a red circle", controls(5), seed=3, output_type="latent", **FAST).images
    assert (moving[4] - moving[0]).abs().max() > 1e-2


# ---------------------------------------------------------------- chunks
def test_chunk_ids():
    assert chunks(5, None) == [[0, 1, 2, 3, 4]]
    assert chunks(5, 3) == [[0, 1, 2], [0, 3, 4]]
    assert chunks(6, 3) == [[0, 1, 2], [0, 3, 4], [0, 5]]
    assert chunks(1, None) == chunks(1, 4) == [[0]]
    assert chunks(3, 2) == [[0, 1], [0, 2]]


@pytest.mark.parametrize("scheduler", ["ddim", "dpm", "ddpm"])
def test_chunks_give_the_same_frames_and_frame_0_in_every_chunk(pipe, scheduler):
    if scheduler == "dpm":
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)  # multistep: state per chunk
    elif scheduler == "ddpm":
        pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)  # draws noise at every step
    control = controls(6)
    full = pipe("a red circle", control, seed=0, output_type="latent", **FAST).images
    finals = []

    def last_step(p, i, t, kwargs):
        if i == FAST["num_inference_steps"] - 1:
            finals.append(kwargs["latents"].clone())
        return kwargs

    chunked = pipe("a red circle", control, seed=0, output_type="latent", chunk_size=3, callback_on_step_end=last_step,
                   **FAST).images  # fmt: skip
    assert [f.shape[0] for f in finals] == [3, 3, 2]  # [0, 1, 2], [0, 3, 4], [0, 5]
    for f in finals[1:]:
        torch.testing.assert_close(f[0], finals[0][0], atol=1e-6, rtol=0)  # the anchor is the same in every chunk
    torch.testing.assert_close(chunked[:3], full[:3], atol=1e-6, rtol=0)  # the first chunk is the one pass's
    torch.testing.assert_close(chunked, full, atol=1e-5, rtol=0)  # and so is every frame (DDPM: noise per frame)


def test_chunked_images_match_and_frame_0_decodes_once(pipe):
    full = pipe("a red circle", controls(5), seed=1, **FAST).images
    chunked = pipe("a red circle", controls(5), seed=1, chunk_size=2, **FAST).images
    assert chunked.shape == full.shape == (5, 32, 32, 3)
    np.testing.assert_allclose(chunked, full, atol=1e-5)


# ---------------------------------------------------------------- attention processors
def test_processors_restored_after_a_call_and_after_an_error(pipe):
    pipe.unet.set_attn_processor(AttnProcessor())
    pipe.controlnet.set_attn_processor(AttnProcessor())
    seen = []

    def check(p, i, t, kwargs):
        seen.append({type(x) for m in (p.unet, p.controlnet) for x in m.attn_processors.values()})
        return kwargs

    pipe("a red circle", controls(3), seed=0, callback_on_step_end=check, **FAST)
    assert seen and all(s == {CrossFrameAttnProcessor} for s in seen)  # cross-frame attention during the call
    for model in (pipe.unet, pipe.controlnet):
        assert {type(x) for x in model.attn_processors.values()} == {AttnProcessor}

    def fail(p, i, t, kwargs):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        pipe("a red circle", controls(3), seed=0, callback_on_step_end=fail, **FAST)
    for model in (pipe.unet, pipe.controlnet):
        assert {type(x) for x in model.attn_processors.values()} == {AttnProcessor}
    pipe.unet.set_attn_processor(AttnProcessor2_0())
    pipe.controlnet.set_attn_processor(AttnProcessor2_0())


# ---------------------------------------------------------------- inputs and outputs
def test_control_frame_formats_agree(pipe):
    control = controls(3)
    ref = pipe("a red circle", control, seed=0, output_type="latent", **FAST).images
    for same in (control / 255.0, torch.from_numpy(control).permute(0, 3, 1, 2), [Image.fromarray(c) for c in control],
                 torch.from_numpy(control / 255.0).permute(0, 3, 1, 2).float()):  # fmt: skip
        out = pipe("a red circle", same, seed=0, output_type="latent", **FAST).images
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    assert as_control_frames(control).shape == (3, 3, 32, 32)


def test_output_types_and_shapes(pipe):
    control = controls(3)
    out = pipe("a red circle", control, seed=0, **FAST)
    assert isinstance(out, ControlVideoPipelineOutput) and out.frames is out.images
    assert out.nsfw_content_detected is None
    assert out.images.shape == (3, 32, 32, 3) and out.images.dtype == np.float32
    assert 0 <= out.images.min() and out.images.max() <= 1
    pt = pipe("a red circle", control, seed=0, output_type="pt", **FAST).images
    assert pt.shape == (3, 3, 32, 32)
    np.testing.assert_allclose(pt.permute(0, 2, 3, 1).numpy(), out.images, atol=1e-6)
    pil = pipe("a red circle", control, seed=0, output_type="pil", **FAST).images
    assert len(pil) == 3 and pil[0].size == (32, 32)
    latents = pipe("a red circle", control, seed=0, output_type="latent", **FAST).images
    assert latents.shape == (3, 4, 16, 16)
    images, nsfw = pipe("a red circle", control, seed=0, return_dict=False, **FAST)
    np.testing.assert_allclose(images, out.images, atol=1e-6)
    assert nsfw is None


def test_videos_per_prompt_batches_and_sizes(pipe):
    control = controls(3)
    out = pipe(["a red circle", "a blue square"], control, num_videos_per_prompt=2, seed=0, **FAST).images
    assert out.shape == (12, 32, 32, 3)  # 2 prompts x 2 videos x 3 frames, video after video
    first = pipe("a red circle", control, seed=0, **FAST).images
    np.testing.assert_allclose(out[:3], first, atol=1e-5)  # video 0: the same first draw
    assert np.abs(out[3:6] - out[:3]).max() > 1e-3  # video 1: its own noise
    resized = pipe("a red circle", controls(2, 40), height=24, width=48, seed=0, **FAST).images
    assert resized.shape == (2, 24, 48, 3)  # control images resized as diffusers resizes `image`
    assert pipe("a red circle", controls(2, 33), seed=0, **FAST).images.shape == (2, 32, 32, 3)  # down to a multiple


def test_seed_generator_and_schedulers(pipe):
    a = pipe("a red circle", controls(2), seed=5, **FAST).images
    np.testing.assert_array_equal(a, pipe("a red circle", controls(2), generator=gen(5), **FAST).images)
    assert np.abs(a - pipe("a red circle", controls(2), seed=6, **FAST).images).max() > 1e-3
    with pytest.raises(ValueError, match="either seed or generator"):
        pipe("a red circle", controls(2), seed=5, generator=gen(), **FAST)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)  # any scheduler: no re-noising
    assert np.isfinite(pipe("a red circle", controls(2), seed=0, **FAST).images).all()


def test_model_cpu_offload_same_frames(pipe):
    ref = pipe("a red circle", controls(3), seed=0, chunk_size=2, **FAST).images
    pipe.enable_model_cpu_offload(device="cpu")  # the hooks run; on a GPU machine the device is cuda
    np.testing.assert_allclose(pipe("a red circle", controls(3), seed=0, chunk_size=2, **FAST).images, ref, atol=1e-6)
    pipe.remove_all_hooks()


def test_callbacks_see_every_step_of_every_chunk(pipe):
    calls = []

    def record(p, i, t, kwargs):
        calls.append((i, int(t), kwargs["latents"].shape[0], kwargs["prompt_embeds"].shape[0]))
        return {"latents": kwargs["latents"] * 0}  # replaces the pipeline's latents

    out = pipe("a red circle", controls(4), seed=0, chunk_size=3, output_type="latent", callback_on_step_end=record,
               callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"], **FAST)  # fmt: skip
    assert [c[0] for c in calls] == [0, 1, 2, 0, 1, 2] and pipe.num_timesteps == 3
    assert [c[2] for c in calls] == [3, 3, 3, 2, 2, 2] and {c[3] for c in calls} == {1}
    assert not out.images.any()


def test_loads_a_stable_diffusion_folder_with_a_controlnet(tmp_path):
    components = tiny_sd_components()
    sd = StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None,
                                 requires_safety_checker=False)  # fmt: skip
    sd.save_pretrained(tmp_path / "sd")
    tiny_controlnet(components["unet"]).save_pretrained(tmp_path / "controlnet")
    controlnet = ControlNetModel.from_pretrained(tmp_path / "controlnet", use_safetensors=True)
    loaded = ControlVideoPipeline.from_pretrained(tmp_path / "sd", controlnet=controlnet)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.safety_checker is None and loaded.controlnet is controlnet
    direct = ControlVideoPipeline(**sd.components, controlnet=tiny_controlnet(components["unet"]))
    direct.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(loaded("x", controls(2), seed=0, **FAST).images,
                               direct("x", controls(2), seed=0, **FAST).images, atol=1e-6)  # fmt: skip
    with pytest.raises(ValueError, match="pass controlnet=ControlNetModel.from_pretrained"):
        ControlVideoPipeline.from_pretrained(tmp_path / "sd")


def test_controlnet_must_fit_the_model():
    components = tiny_sd_components()
    with pytest.raises(ValueError, match="controlnet must be one diffusers ControlNetModel, got list"):
        ControlVideoPipeline(**components, controlnet=[tiny_controlnet(components["unet"])])
    wrong = ControlNetModel.from_unet(components["unet"], conditioning_embedding_out_channels=(4, 4, 8))
    with pytest.raises(ValueError, match="downsamples control images 4x but the VAE 2x"):
        ControlVideoPipeline(**components, controlnet=wrong)


def test_controlnet_keep_is_diffusers():
    assert controlnet_keep(4, 0.0, 1.0) == [1.0] * 4
    assert controlnet_keep(10, 0.3, 0.7) == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"prompt": None}, "exactly one of prompt"),
        ({"prompt": ""}, "prompt must be a non-empty string"),
        ({"prompt_embeds": torch.zeros(1, 24, 16)}, "exactly one of prompt"),
        ({"control_frames": None}, "control_frames must be an array .* got NoneType"),
        ({"control_frames": []}, "control_frames must be an array .*non-empty list of PIL images, got list"),
        ({"control_frames": [np.zeros((32, 32, 3))]}, "control_frames as a list must hold only PIL images"),
        ({"control_frames": [Image.new("RGB", (32, 32)), Image.new("RGB", (16, 32))]}, "must all have one size"),
        ({"control_frames": np.zeros((32, 32, 3), np.uint8)}, r"must be \[F, H, W, 3\], got shape \(32, 32, 3\)"),
        ({"control_frames": np.zeros((2, 3, 32, 32), np.uint8)}, r"must be \[F, H, W, 3\], got .*\(2, 3, 32, 32\)"),
        ({"control_frames": torch.zeros(2, 32, 32, 3)}, r"as a tensor must be \[F, 3, H, W\] .*\(2, 32, 32, 3\)"),
        ({"control_frames": np.zeros((0, 32, 32, 3), np.uint8)}, "must not be empty"),
        ({"control_frames": np.full((2, 32, 32, 3), 2.0)}, r"as floats must be finite and in \[0, 1\]"),
        ({"control_frames": np.zeros((2, 32, 32, 3), np.int64)}, "must be uint8 or floats in .0, 1., got dtype"),
        ({"video_length": 3}, "video_length is 3 but control_frames has 2 frames"),
        ({"height": 33}, "height must be a positive multiple of 2"),
        ({"control_frames": np.zeros((2, 1, 32, 3), np.uint8)}, "height must be a positive multiple of 2 .*, got 0"),
        ({"num_inference_steps": 0}, "num_inference_steps must be an integer >= 1, got 0"),
        ({"num_videos_per_prompt": 0}, "num_videos_per_prompt must be an integer >= 1"),
        ({"guidance_scale": float("nan")}, "guidance_scale must be a finite number"),
        ({"controlnet_conditioning_scale": [1.0]}, r"controlnet_conditioning_scale must be a finite .*got \[1.0\]"),
        ({"control_guidance_start": 0.8, "control_guidance_end": 0.2}, "0 <= start < end <= 1, got 0.8, 0.2"),
        ({"control_guidance_end": 1.5}, "0 <= start < end <= 1"),
        ({"output_type": "mp4"}, "output_type must be one of"),
        ({"callback_on_step_end_tensor_inputs": ["image"]}, r"callback_on_step_end_tensor_inputs.*\['image'\]"),
        ({"chunk_size": 1}, "chunk_size must be None or an integer >= 2"),
        ({"latents": torch.zeros(2, 4, 16, 16)}, r"latents .*shape \(1, 4, 16, 16\), got \(2, 4, 16, 16\)"),
        ({"negative_prompt": ["a", "b"]}, "negative_prompt has 2 entries but prompt has 1"),
        ({"generator": [gen(), gen()]}, "got 2 generators for a batch of 1 videos"),
    ],
)
def test_check_inputs(pipe, kwargs, match):
    kw = {"prompt": "x", "control_frames": controls(2), **FAST, **kwargs}
    with pytest.raises(ValueError, match=match):
        pipe(**kw)


def test_tiny_control_pipeline_builds():
    pipe = tiny_control_pipeline()
    assert isinstance(pipe.controlnet, ControlNetModel) and pipe.vae_scale_factor == 2
