"""The CLI end to end on a tiny model directory: files written, seeds printed, clear errors, nothing half-written."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import t2v
from t2v.cli import app
from t2v.models import loading
from t2v.pipelines.long_video.pipeline import LongVideoPipeline
from t2v.video_io import read_video


runner = CliRunner()
FAST = ["--frames", "3", "--steps", "2", "--height", "32", "--width", "32", "-q"]


def gen(model_dir, out, *extra):
    return runner.invoke(
        app,
        [
            "generate",
            "a red circle moving right",
            "-o",
            str(out),
            "--model",
            str(model_dir),
            "--device",
            "cpu",
            *FAST,
            *extra,
        ],
    )


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"t2v {t2v.__version__}"


def test_generate_writes_video_and_prints_seed(model_dir, tmp_path):
    out = tmp_path / "out.mp4"
    r = gen(model_dir, out, "--seed", "42", "--fps", "4")
    assert r.exit_code == 0, r.output
    assert f"wrote {out}" in r.output and "seed 42" in r.output and "3 frames, 32x32" in r.output
    frames, fps = read_video(out)
    assert frames.shape == (3, 32, 32, 3) and fps == 4


def test_random_seed_is_drawn_and_reproduces(model_dir, tmp_path):
    r = gen(model_dir, tmp_path / "a.npy")
    assert r.exit_code == 0, r.output
    seed = int(r.output.split("seed ")[1].split(")")[0])
    assert gen(model_dir, tmp_path / "b.npy", "--seed", str(seed)).exit_code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    assert gen(model_dir, tmp_path / "c.npy", "--seed", str(seed + 1)).exit_code == 0
    assert not np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "c.npy"))


@pytest.mark.parametrize("fmt", ["gif", "webm", "npy", ""])
def test_format_follows_extension(model_dir, tmp_path, fmt):
    out = tmp_path / (f"v.{fmt}" if fmt else "frames")
    assert gen(model_dir, out, "--seed", "1").exit_code == 0
    assert read_video(out)[0].shape[0] == 3


BAD = [
    (["--height", "33"], "height must be a positive multiple of 2 (the VAE's downsampling factor), got 33"),
    (["--frames", "0"], "num_frames must be an integer in [1, "),
    (["--steps", "0"], "num_inference_steps must be an integer >= 1"),
    (["--guidance", "nan"], "guidance_scale must be a finite number"),
    (["--scheduler", "magic"], "unknown scheduler 'magic'; choose one of: dpm++"),
    (["--fps", "0"], "fps must be a number in (0, 240], got 0.0"),
    (["--dtype", "int8"], "dtype must be one of"),
    (["--device", "tpu"], "device must be auto, cpu"),
    (["--regions"], "this model has no region planner"),
]


@pytest.mark.parametrize("extra,message", BAD)
def test_bad_input_clear_error_nothing_written(model_dir, tmp_path, extra, message):
    out = tmp_path / "out.mp4"
    r = gen(model_dir, out, *extra)
    assert r.exit_code == 2
    assert message in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_empty_prompt(model_dir, tmp_path):
    r = runner.invoke(app, ["generate", "  ", "-o", str(tmp_path / "o.mp4"), "--model", str(model_dir), *FAST])
    assert r.exit_code == 2 and "prompt must be a non-empty string" in r.output


def test_existing_output_kept_without_overwrite(model_dir, tmp_path):
    out = tmp_path / "out.npy"
    out.write_bytes(b"precious")
    r = gen(model_dir, out)
    assert r.exit_code == 2 and "--overwrite" in r.output and out.read_bytes() == b"precious"
    assert gen(model_dir, out, "--overwrite").exit_code == 0 and np.load(out).shape[0] == 3


def test_unwritable_output_fails_before_loading(tmp_path):
    r = gen(tmp_path / "no-model-here", tmp_path / "missing-dir" / "out.mp4")
    assert r.exit_code == 2 and "does not exist" in r.output and "missing-dir" in r.output


def test_model_errors(tmp_path, model_dir):
    out = tmp_path / "o.mp4"
    r = gen(tmp_path / "nowhere", out)
    assert r.exit_code == 2 and "model directory" in r.output and "does not exist" in r.output

    sd = tmp_path / "sd"
    sd.mkdir()
    (sd / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
            }
        )
    )
    r = gen(sd, out)
    assert (
        r.exit_code == 2
        and "not a text-to-video model: found a StableDiffusionPipeline with a UNet2DConditionModel" in r.output
    )

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "weights.ckpt").write_bytes(b"x")
    r = gen(empty, out)
    assert r.exit_code == 2 and "no model_index.json (found: weights.ckpt)" in r.output

    pickled = tmp_path / "pickled"
    shutil.copytree(model_dir, pickled)
    for f in (pickled / "unet").glob("*.safetensors"):
        f.rename(f.with_name("diffusion_pytorch_model.bin"))
    r = gen(pickled, out)
    assert r.exit_code == 2 and "only pickle-based weights (diffusion_pytorch_model.bin)" in r.output

    remote_code = tmp_path / "remote-code"
    shutil.copytree(model_dir, remote_code)
    (remote_code / "unet" / "my_unet.py").write_text("import os; os.system('echo pwned')\n")
    r = gen(remote_code, out)
    assert r.exit_code == 2 and "contains Python code (unet/my_unet.py)" in r.output
    assert not out.exists()


def test_no_default_model_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "DEFAULT_MODEL_DIR", tmp_path / "absent")
    r = runner.invoke(app, ["generate", "a red circle", "-o", str(tmp_path / "o.mp4"), "-q"])
    assert r.exit_code == 2 and "no default model is installed" in r.output


def test_models_lists_known_models():
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0
    assert "t2v-shapes" in r.output and "damo-vilab/text-to-video-ms-1.7b" in r.output


def test_world_sample(tmp_path):
    r = runner.invoke(app, ["world", "sample", "-n", "3", "-o", str(tmp_path / "s"), "--frames", "4"])
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "s" / "captions.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["caption"] for line in lines)


def test_real_process_prints_no_traceback(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "t2v.cli", "generate", "x", "-o", str(tmp_path / "o.xyz")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and "error:" in r.stderr and ".mp4" in r.stderr


def test_scheduler_choice_does_not_stick_to_the_cached_model(model_dir, tmp_path):
    from t2v.generate import get_pipeline

    assert gen(model_dir, tmp_path / "a.npy", "--scheduler", "euler-a").exit_code == 0
    pipe = get_pipeline(str(model_dir), "cpu", None)
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"  # the tiny model's own solver is back


def test_cli_story_and_long_generate(model_dir, tmp_path):
    runner = CliRunner()
    board = tmp_path / "story.yaml"
    board.write_text(
        yaml.safe_dump(
            {
                "fps": 4,
                "transition_frames": 2,
                "scenes": [{"prompt": "a red circle", "frames": 10}, {"prompt": "a blue square", "frames": 6}],
            }
        )
    )
    out = tmp_path / "story.npy"
    r = runner.invoke(
        app,
        [
            "story",
            str(board),
            "-o",
            str(out),
            "--model",
            str(model_dir),
            "--steps",
            "2",
            "--height",
            "32",
            "--width",
            "32",
            "--seed",
            "0",
            "-q",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "2 scenes, 16 frames" in r.output and np.load(out).shape == (16, 32, 32, 3)

    out2 = tmp_path / "long.gif"
    r = runner.invoke(
        app,
        [
            "generate",
            "a red circle",
            "-o",
            str(out2),
            "--model",
            str(model_dir),
            "--frames",
            "40",
            "--steps",
            "1",
            "--height",
            "32",
            "--width",
            "32",
            "-q",
        ],
    )
    assert r.exit_code == 0, r.output
    assert read_video(out2)[0].shape[0] == 40

    # --transition-frames overrides the file's; a scene's own transition_frames still wins
    captured = {}
    original = LongVideoPipeline.__call__

    def spy(self, *args, **kwargs):
        captured["transition"], captured["own"] = (
            kwargs["transition_frames"],
            [s.transition_frames for s in kwargs["scenes"]],
        )
        return original(self, *args, **kwargs)

    board.write_text(
        yaml.safe_dump(
            {
                "transition_frames": 2,
                "scenes": [
                    {"prompt": "a", "frames": 4},
                    {"prompt": "b", "frames": 4},
                    {"prompt": "c", "frames": 4, "transition_frames": 0},
                ],
            }
        )
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LongVideoPipeline, "__call__", spy)
        r = runner.invoke(
            app,
            [
                "story",
                str(board),
                "-o",
                str(tmp_path / "t.npy"),
                "--model",
                str(model_dir),
                "--steps",
                "1",
                "--height",
                "32",
                "--width",
                "32",
                "--transition-frames",
                "6",
                "-q",
            ],
        )
    assert r.exit_code == 0, r.output
    assert captured == {"transition": 6, "own": [None, None, 0]}
    r = runner.invoke(
        app,
        ["story", str(board), "-o", str(tmp_path / "t2.npy"), "--model", str(model_dir), "--transition-frames", "-1"],
    )
    assert r.exit_code == 2 and "--transition-frames must be an integer >= 0 or 'auto', got '-1'" in r.output
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LongVideoPipeline, "__call__", spy)
        r = runner.invoke(
            app,
            [
                "story",
                str(board),
                "-o",
                str(tmp_path / "t3.npy"),
                "--model",
                str(model_dir),
                "--steps",
                "1",
                "--height",
                "32",
                "--width",
                "32",
                "--transition-frames",
                "auto",
                "-q",
            ],
        )
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
                r = runner.invoke(
                    app,
                    [
                        *cmd,
                        "-o",
                        str(tmp_path / "m.npy"),
                        "--model",
                        str(model_dir),
                        "--steps",
                        "1",
                        "--height",
                        "32",
                        "--width",
                        "32",
                        "--overwrite",
                        "-q",
                    ]
                    + (["--scene-motion", motion] if motion else []),
                )
            assert r.exit_code == 0 and captured["motion"] == motion, r.output
        r = runner.invoke(
            app, [*cmd, "-o", str(tmp_path / "bad.npy"), "--model", str(model_dir), "--scene-motion", "stretch"]
        )
        assert r.exit_code == 2 and "scene_motion must be one of keyframes, windows, got 'stretch'" in r.output
        assert not (tmp_path / "bad.npy").exists()

    bad = tmp_path / "bad.yaml"
    bad.write_text("scenes:\n  - prompt: x\n    frames: 0\n")
    r = runner.invoke(app, ["story", str(bad), "-o", str(tmp_path / "bad.mp4"), "--model", str(model_dir)])
    assert (
        r.exit_code == 2
        and "scene 1: 'frames' must be >= 1, got 0" in r.output
        and not (tmp_path / "bad.mp4").exists()
    )


def test_a_prompt_the_model_cannot_draw_gets_a_warning(tmp_path, bert_pipe):
    from t2v.models.defaults import ModelDefaults

    bert_pipe.defaults = ModelDefaults(regions="shapes")  # the Shapes world's planner knows what it draws
    model = loading.save_model(bert_pipe, tmp_path / "m")
    r = runner.invoke(app, ["generate", "a dog running", "-o", str(tmp_path / "o.mp4"), "--model", str(model), *FAST])
    assert r.exit_code == 0 and "warning: this model draws only coloured circles" in r.stderr
    assert "'a dog running' names none of its shapes" in r.stderr and (tmp_path / "o.mp4").is_file()
    r = runner.invoke(
        app, ["generate", "a teal box rising", "-o", str(tmp_path / "p.mp4"), "--model", str(model), *FAST]
    )
    assert r.exit_code == 0 and "warning" not in r.stderr
