"""`t2v image` and `t2v zero` end to end on a tiny SD-layout model: files, clear errors, nothing half-written."""

import json

import numpy as np
import pytest
from diffusers import DDIMScheduler
from PIL import Image
from typer.testing import CliRunner

from t2v.cli import app
from t2v.video_io import read_video
from t2v.zero_shot import ImageRequest, ZeroShotRequest, zero_shot_steps


runner = CliRunner()


@pytest.fixture
def image_model(tmp_path):
    """A tiny random text-to-image model (16x16 latents -> 32x32 pictures), saved in SD layout."""
    from tiny2d import save_tiny_sd

    return save_tiny_sd(tmp_path / "tiny-sd")


def run(*args):
    return runner.invoke(app, [*map(str, args), "--device", "cpu", "-q"])


def test_image_writes_a_png_and_says_its_seed(tmp_path, image_model):
    out = tmp_path / "pic.png"
    r = run("image", "a red circle", "-o", out, "-m", image_model, "--steps", "2", "--seed", "3")
    assert r.exit_code == 0, r.output
    assert "seed 3" in r.output and "32x32" in r.output
    assert np.asarray(Image.open(out)).shape == (32, 32, 3)
    again = tmp_path / "again.png"
    assert run("image", "a red circle", "-o", again, "-m", image_model, "--steps", "2", "--seed", "3").exit_code == 0
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(again)))  # the seed reproduces


@pytest.mark.parametrize(
    "args, message",
    [
        (["image", "", "-o", "{d}/a.png"], "prompt must be a non-empty string"),
        (["image", "x", "-o", "{d}/a.gif"], "unsupported image format '.gif'"),
        (["image", "x", "-o", "{d}/no/a.png"], "does not exist"),
        (["image", "x", "-o", "{d}/a.png", "--height", "30"], "height must be a positive multiple of 8"),
        (["image", "x", "-o", "{d}/a.png", "--steps", "0"], "num_inference_steps must be an integer >= 1"),
        (["image", "x", "-o", "{d}/a.png", "--scheduler", "nope"], "unknown scheduler"),
        (["zero", "x", "-o", "{d}/a.mp4", "--zoom", "0"], "zoom must be a scale per frame"),
        (["zero", "x", "-o", "{d}/a.mp4", "--motion-x", "1e9"], "motion_x must be a number of pixels per frame"),
        (["zero", "x", "-o", "{d}/a.mp4", "--motion", "sideways"], "unknown motion 'sideways'"),
        (["zero", "x", "-o", "{d}/a.mp4", "--warp", "bend"], "warp must be one of latent, pixel"),
        (["zero", "x", "-o", "{d}/a.mp4", "--chunk-size", "1"], "chunk_size must be at least 2"),
        (["zero", "x", "-o", "{d}/a.mp4", "--t0", "9", "--t1", "5", "--steps", "10"], "need 0 <= t0 < t1 < steps"),
        (["zero", "x", "-o", "{d}/a.png"], "unsupported"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, image_model, args, message):
    r = run(*[a.format(d=tmp_path) for a in args], "-m", image_model)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output, r.output
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-sd"]


def test_a_video_model_is_not_a_picture_model(tmp_path, model_dir):
    r = run("image", "x", "-o", tmp_path / "a.png", "-m", model_dir)
    assert r.exit_code == 2 and "is not a text-to-image model" in r.output


def test_zero_writes_a_video_of_the_asked_frames(tmp_path, image_model):
    out = tmp_path / "z.mp4"
    r = run("zero", "a red circle", "-o", out, "-m", image_model, "--frames", "5", "--steps", "4", "--motion-x", "2",
            "--seed", "1")  # fmt: skip
    assert r.exit_code == 0, r.output
    frames, fps = read_video(out)
    assert frames.shape == (5, 32, 32, 3) and fps == 8 and "5 frames" in r.output


def test_zero_shot_steps_scale_the_models_t0_t1():
    from t2v.models.defaults import ImageModelDefaults

    d = ImageModelDefaults()  # t0 44, t1 47 of 50
    assert zero_shot_steps(d, 50, None, None) == (44, 47)
    assert zero_shot_steps(d, 25, None, None) == (22, 24)
    assert zero_shot_steps(d, 4, None, None) == (2, 3)
    assert zero_shot_steps(d, 10, 3, None) == (3, 9)


def test_requests_check_before_loading():
    with pytest.raises(ValueError, match="seed must be an integer"):
        ImageRequest("x", seed=-1).check()
    with pytest.raises(ValueError, match="not both"):
        ZeroShotRequest("x", motion="original", motion_x=1.0).check()
    assert json.dumps(ZeroShotRequest("x", motion_x=1.5).check().motion_x) == "1.5"


def test_picture_pipelines_load_checked(tmp_path, image_model):
    from t2v.models.loading import ModelError
    from t2v.pipelines.text_to_image import TextToImagePipeline
    from t2v.pipelines.text_to_video_zero import TextToVideoZeroPipeline

    for cls in (TextToImagePipeline, TextToVideoZeroPipeline):
        pipe = cls.from_pretrained(image_model)
        assert type(pipe) is cls and pipe.safety_checker is None and pipe.defaults.t0 == 44
    weights = image_model / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(ModelError, match="only pickle-based weights"):
        TextToVideoZeroPipeline.from_pretrained(image_model)


def test_zero_progress_counts_every_step_once(tmp_path, image_model, monkeypatch):
    from t2v.zero_shot import run_zero_shot

    seen = []
    req = ZeroShotRequest("a red circle", tmp_path / "z.gif", str(image_model), num_frames=3, num_inference_steps=6,
                          device="cpu", progress=False, t0=2, t1=4)  # fmt: skip
    run_zero_shot(req, on_step=lambda step, total: seen.append((step, total)))
    assert seen == [(i, 8) for i in range(1, 9)]  # 6 steps + steps t1..t0 again for the first frame


@pytest.mark.parametrize(
    "args, message",
    [
        (["zero", "x", "--scheduler", "euler"], "zero-shot video needs a scheduler with one model call per step"),
        (["image", "x", "--steps", "1000"], "num_inference_steps must be at most 999 for this model"),
        (["zero", "x", "--t0", "1" + "0" * 400], "t0 must be an integer in [0, 10000]"),
    ],
)
def test_what_the_model_cannot_run_is_refused_before_it_runs(tmp_path, image_model, args, message):
    pipe_out = tmp_path / ("a.png" if args[0] == "image" else "a.mp4")
    r = run(*args, "-o", pipe_out, "-m", image_model)
    assert r.exit_code == 2 and message in r.output and len(r.output) < 400, r.output
    assert not pipe_out.exists()


def test_ddim_from_another_schedulers_config_does_not_clip_latents():
    from diffusers import DPMSolverMultistepScheduler

    from t2v.pipelines.schedulers import make_scheduler

    assert make_scheduler("ddim", DPMSolverMultistepScheduler().config).config.clip_sample is False
    assert make_scheduler("ddpm", DPMSolverMultistepScheduler().config).config.clip_sample is False
    assert make_scheduler("ddim", DDIMScheduler(clip_sample=True).config).config.clip_sample is True  # as it says
