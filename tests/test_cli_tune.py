"""`t2v tune` and `t2v generate` on a tuned model, end to end on a tiny SD-layout model: the model folder and
its record, generation from the inversion and from noise, resume, clear errors, nothing half-written."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from t2v.cli import app
from t2v.pipelines.inversion import INVERSION_FILE, encode_video, load_tuned
from t2v.request import RequestError
from t2v.training.tune import TUNE_LR, TUNE_STEPS
from t2v.tuning import INVERSION_STEPS, TuneRequest, clip_tensor, run_tune
from t2v.video_io import read_video, write_video


runner = CliRunner()
CAPTION = "a red square moves right"
FRAMES = 6  # fewer than the default 16: all are taken


def run(*args):
    return runner.invoke(app, [*map(str, args), "--device", "cpu", "-q"])


def one_line_error(r, message):
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1, r.output


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny picture model in SD layout (head dimension 4 everywhere: it inflates; 16x16 pictures) and a clip."""
    from diffusers import StableDiffusionPipeline
    from tiny_tune import tiny_clip, tiny_parts, tiny_unet2d

    root = tmp_path_factory.mktemp("tune")
    unet = tiny_unet2d()
    with torch.no_grad():  # a smooth noise predictor, as trained models are (DDIM inversion assumes it)
        unet.conv_out.weight.mul_(0.1)
        unet.conv_out.bias.mul_(0.1)
    sd = StableDiffusionPipeline(**tiny_parts(), unet=unet, safety_checker=None, feature_extractor=None,
                                 requires_safety_checker=False)  # fmt: skip
    sd.save_pretrained(root / "tiny-sd", safe_serialization=True)
    clip = ((tiny_clip(FRAMES) + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    write_video(root / "clip.npy", clip)
    return root / "tiny-sd", root / "clip.npy"


@pytest.fixture(scope="module")
def tuned(files):
    model, clip = files
    out = model.parent / "tuned"
    r = run("tune", clip, CAPTION, "-o", out, "-m", model, "--steps", "40", "--lr", "3e-3", "--seed", "5")
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"wrote {out} (tuned 40 steps on {FRAMES} frames in ") and " min)" in r.output
    return out


def test_tune_writes_a_model_folder_with_its_inversion_and_a_record(tuned, files):
    meta = json.loads((tuned / "t2v_model.json").read_text())
    record = meta["tuned"]
    assert record["caption"] == CAPTION and record["steps"] == 40 and record["lr"] == 3e-3 and record["seed"] == 5
    assert record["frames"] == FRAMES and record["source"] == str(files[1]) and record["source_frames"] == FRAMES
    assert record["minutes"] >= 0 and record["resumed_at_step"] == 0 and record["height"] == 16
    assert meta["spatial_attention"] == "sparse-causal"
    assert meta["inversion"]["num_inference_steps"] == INVERSION_STEPS and (tuned / INVERSION_FILE).is_file()
    assert meta["defaults"]["guidance_scale"] > 1
    assert not list(tuned.parent.glob(".tuned*"))  # the work folder is gone


def test_generate_starts_from_the_inversion_by_default_and_from_noise_with_no_invert(tmp_path, tuned, files):
    out, noise = tmp_path / "inv.npy", tmp_path / "noise.npy"
    r = run("generate", CAPTION, "-m", tuned, "-o", out, "--guidance", "1")
    assert r.exit_code == 0, r.output
    assert f"{FRAMES} frames, 16x16" in r.output  # the tuned clip's frames and size
    assert (
        run("generate", CAPTION, "-m", tuned, "-o", noise, "--guidance", "1", "--no-invert", "--seed", "1").exit_code
        == 0
    )
    inverted, from_noise = read_video(out)[0].astype(float), read_video(noise)[0].astype(float)
    assert inverted.shape == from_noise.shape == (FRAMES, 16, 16, 3)
    # the source through the (random, lossy) tiny VAE: what a perfect reconstruction would give
    pipe, _ = load_tuned(tuned)
    with torch.no_grad():
        latents = encode_video(pipe.vae, clip_tensor(read_video(files[1])[0], 16, 16))
        reference = (pipe.decode_latents(latents)[0].permute(1, 2, 3, 0).clamp(-1, 1).numpy() + 1) * 127.5
    error, baseline = np.abs(inverted - reference).mean(), np.abs(from_noise - reference).mean()
    assert error < 0.5 * baseline, (error, baseline)  # measured: 14 vs 41 (0..255)
    again = tmp_path / "again.npy"
    assert run("generate", CAPTION, "-m", tuned, "-o", again, "--guidance", "1", "--seed", "9").exit_code == 0
    assert np.array_equal(read_video(again)[0], read_video(out)[0])  # from the inversion: no noise is drawn


@pytest.mark.parametrize(
    "args, message",
    [
        (["--frames", "4"], "num_frames must be the inversion's 6 to start from this tuned model's clip, got 4"),
        (["--steps", "7"], f"num_inference_steps must be the inversion's {INVERSION_STEPS}"),
        (["--height", "32"], "height must be the inversion's 16"),
        (["--scheduler", "euler"], "starting from the inversion needs the ddim scheduler"),
    ],
)
def test_generate_refuses_what_the_inversion_cannot_give(tmp_path, tuned, args, message):
    one_line_error(run("generate", "a blue square", "-m", tuned, "-o", tmp_path / "a.npy", *args), message)
    assert not (tmp_path / "a.npy").exists()
    no_invert = run("generate", "a blue square", "-m", tuned, "-o", tmp_path / "b.npy", *args, "--no-invert")
    assert no_invert.exit_code == 0, no_invert.output  # from noise, anything goes


def test_invert_on_a_model_without_an_inversion_is_refused_and_no_invert_is_ignored(tmp_path, model_dir):
    one_line_error(run("generate", "x", "-m", model_dir, "-o", tmp_path / "a.npy", "--invert"), "has no inversion")
    assert (
        run("generate", "x", "-m", model_dir, "-o", tmp_path / "b.npy", "--no-invert", "--steps", "2").exit_code == 0
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["{clip}", ""], "caption must be a non-empty string"),
        (["{d}/nope.mp4", CAPTION], "video not found"),
        (["{one}", CAPTION], "has 1 frame(s); tuning needs at least 2"),
        (["{clip}", CAPTION, "--frames", "1"], "num_frames must be an integer in [2, 128], got 1"),
        (["{clip}", CAPTION, "--frames", "20"], "has 6 frames, fewer than the 20 asked for"),
        (["{clip}", CAPTION, "--steps", "0"], "steps must be an integer in [1, 10000], got 0"),
        (["{clip}", CAPTION, "--lr", "0"], "lr must be a number in (0, 1], got 0.0"),
        (["{clip}", CAPTION, "--lr", "nan"], "lr must be a number in (0, 1]"),
        (["{clip}", CAPTION, "--height", "15"], "height must be a positive multiple of 2"),
        (["{clip}", CAPTION, "--seed", "-1"], "seed must be an integer in [0, 2**63)"),
        (["{clip}", CAPTION, "--dtype", "float16"], "float16 is not supported on the CPU"),
        (["{clip}", CAPTION, "--dtype", "int8"], "dtype must be one of"),
        (["{clip}", CAPTION, "-o", "{d}/no/such/dir"], "output directory {d}/no/such does not exist"),
        (["{clip}", CAPTION, "-o", "{d}/full"], "is not empty; pass --overwrite to replace it"),
        (
            ["{clip}", CAPTION, "-o", "{d}/full", "--overwrite"],
            "refusing to replace {d}/full: it is not a model folder",
        ),
        (["{clip}", CAPTION, "-m", "{sd1}"], "cannot inflate: the attention head dimension"),
        (["{clip}", CAPTION, "-m", "{d}/missing-model"], "does not exist"),
    ],
)
def test_bad_tune_input_is_one_line_exit_2_and_writes_nothing(tmp_path, files, args, message):
    from tiny2d import save_tiny_sd

    model, clip = files
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    write_video(tmp_path / "one.npy", np.zeros((1, 16, 16, 3), np.uint8))
    names = {"d": tmp_path, "clip": clip, "one": tmp_path / "one.npy"}
    if "{sd1}" in args:
        names["sd1"] = save_tiny_sd(tmp_path / "sd1")  # 4 heads at 8 and 16 channels: head dimensions 2 and 4
    args = [a.format(**names) for a in args]
    out = [] if "-o" in args else ["-o", tmp_path / "out"]
    extra = ([] if "-m" in args else ["-m", model]) + ([] if "--steps" in args else ["--steps", "2"])
    before = sorted(p.name for p in tmp_path.iterdir())
    one_line_error(run("tune", *args, *out, *extra), message.format(**names))
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output folder, no work folder
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"


def test_an_interrupted_tune_resumes_and_overwrite_replaces_a_model(tmp_path, files):
    model, clip = files
    out = tmp_path / "m"
    request = TuneRequest(clip, CAPTION, out, str(model), steps=60, lr=1e-3, device="cpu", progress=False)

    def stop(step, steps):
        if step == 55:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_tune(request, on_step=stop)
    assert not out.exists() and (tmp_path / ".m.tune" / "checkpoint" / "state.json").is_file()
    resumed = run_tune(request)  # checkpoints every 50 steps
    assert resumed.resumed_step == 50 and resumed.steps == 60 and not (tmp_path / ".m.tune").exists()
    straight = run_tune(TuneRequest(clip, CAPTION, tmp_path / "s", str(model), steps=60, lr=1e-3, device="cpu",
                                    progress=False))  # fmt: skip
    assert straight.resumed_step == 0
    a, b = load_tuned(out)[0].unet.state_dict(), load_tuned(tmp_path / "s")[0].unet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # as an uninterrupted tune

    r = run("tune", clip, "a blue square", "-o", out, "-m", model, "--steps", "2", "--overwrite")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "t2v_model.json").read_text())["tuned"]["caption"] == "a blue square"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "s"]


def test_the_request_is_checked_before_anything_loads():
    with pytest.raises(RequestError, match="a source video is required"):
        TuneRequest(None, CAPTION, "out").check()
    with pytest.raises(RequestError, match="an output folder is required"):
        TuneRequest("a.mp4", CAPTION).check()
    with pytest.raises(RequestError, match="caption has a control character"):
        TuneRequest("a.mp4", "a\x00b", "out").check()
    with pytest.raises(RequestError, match="num_frames must be an integer in"):
        TuneRequest("a.mp4", CAPTION, "out", num_frames=True).check()


def test_the_options_name_the_defaults():
    import inspect

    from t2v.cli_tune import tune

    options = inspect.signature(tune).parameters
    assert f"(default: {TUNE_STEPS})" in options["steps"].default.help
    assert f"(default: {TUNE_LR:g})" in options["lr"].default.help
