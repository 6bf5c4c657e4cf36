"""`t2v edit` and `t2v control` end to end on tiny models: files, the models' defaults, clear errors, nothing
half-written."""

import json
import shutil

import numpy as np
import pytest
import torch
from server.sources import pose_frame, square_video  # the server tests' source videos
from typer.testing import CliRunner

from t2v.cli import app
from t2v.controls import POSE_COLORS, canny_maps
from t2v.video_io import write_video
from t2v.video_jobs import ControlRequest, EditRequest, resize_frames, run_control, run_edit


runner = CliRunner()
EDIT_DEFAULTS = {"num_inference_steps": 3, "guidance_scale": 3.0, "image_guidance_scale": 1.5}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny random models (32x32 frames): an Instruct-Pix2Pix model with its own defaults, an SD-layout model,
    a ControlNet for it and one for another model, a DPT depth model; and the sources."""
    from tiny2d import save_tiny_sd, tiny_sd_components, tiny_unet2d
    from tiny_control import tiny_controlnet
    from tiny_edit import tiny_edit_pipeline
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    from t2v.models.loading import save_model

    root = tmp_path_factory.mktemp("models")
    meta = {"defaults": EDIT_DEFAULTS}
    save_model(tiny_edit_pipeline(), root / "edit", class_name="StableDiffusionInstructPix2PixPipeline", meta=meta)
    save_tiny_sd(root / "sd", num_inference_steps=2)
    tiny_controlnet(tiny_sd_components()["unet"]).save_pretrained(root / "controlnet")
    tiny_controlnet(tiny_unet2d(cross_attention_dim=8)).save_pretrained(root / "other-controlnet")
    torch.manual_seed(0)
    dpt = DPTForDepthEstimation(
        DPTConfig(
            hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32, image_size=32,
            patch_size=8, neck_hidden_sizes=[8, 8, 8, 8], fusion_hidden_size=8, backbone_out_indices=[0, 1, 2, 3],
            reassemble_factors=[4, 2, 1, 0.5], head_hidden_size=8,
        )
    )  # fmt: skip
    dpt.save_pretrained(root / "dpt")
    DPTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "dpt")
    write_video(root / "src.mp4", square_video(), fps=12)
    np.save(root / "src.npy", square_video())
    np.save(root / "other.npy", square_video(color=(0, 128, 255), step=-2)[:, :, ::-1])
    np.save(root / "maps.npy", canny_maps(square_video(height=32, width=32)))
    points = {0: (320, 100), 1: (320, 200), 2: (240, 200), 5: (400, 200), 8: (280, 400), 11: (360, 400)}
    (root / "pose.json").write_text(json.dumps([pose_frame(points)] * 3))
    return root


@pytest.fixture
def out(tmp_path):
    """An empty output folder (errors must leave it empty)."""
    path = tmp_path / "out"
    path.mkdir()
    return path


def run(*args):
    return runner.invoke(app, [*map(str, args), "--device", "cpu", "-q"])


def edit(models, out, *args, name="e.npy"):
    return run("edit", models / "src.npy", "make the square blue", "-o", out / name, "-m", models / "edit", *args)


def control(models, out, kind, source, *args, name="c.npy"):
    net = ("--controlnet", models / "controlnet")
    return run("control", kind, models / source, "a red square", "-o", out / name, "-m", models / "sd", *net, *args)


# ---------------------------------------------------------------- edit
def test_edit_writes_the_edited_video_at_the_sources_fps(models, out):
    r = run("edit", models / "src.mp4", "make it blue", "-o", out / "e.gif", "-m", models / "edit", "--seed", "1")
    assert r.exit_code == 0, r.output
    assert r.output.strip() == f"wrote {out / 'e.gif'} (5 frames, 32x32, 12 fps, seed 1)"
    r = edit(models, out, "--frames", "3", "--height", "16", "--width", "24", "--chunk-size", "2", "--fps", "5")
    assert r.exit_code == 0 and "(3 frames, 24x16, 5 fps" in r.output, r.output
    assert np.load(out / "e.npy").shape == (3, 16, 24, 3)


def test_edit_takes_all_frames_up_to_the_cap(models, out, monkeypatch):
    import t2v.video_jobs

    monkeypatch.setattr(t2v.video_jobs, "MAX_SOURCE_FRAMES", 3)
    r = edit(models, out)
    assert r.exit_code == 0 and "(3 frames, 32x32, 8 fps" in r.output, r.output
    assert f"warning: {models / 'src.npy'} has 5 frames; using the first 3" in r.output


def test_edit_follows_the_instruction_and_the_source(models, out):
    def video(name, *args):
        assert edit(models, out, "--seed", "4", *args, name=name).exit_code == 0
        return np.load(out / name)

    first, again = video("a.npy"), video("b.npy")
    np.testing.assert_array_equal(first, again)  # the seed reproduces
    r = run("edit", models / "other.npy", "make the square blue", "-o", out / "c.npy", "-m", models / "edit",
            "--seed", "4")  # fmt: skip
    assert r.exit_code == 0 and np.abs(np.load(out / "c.npy").astype(int) - first).mean() > 1  # another source
    r = run("edit", models / "src.npy", "turn it into a triangle", "-o", out / "d.npy", "-m", models / "edit",
            "--seed", "4")  # fmt: skip
    assert r.exit_code == 0 and not np.array_equal(np.load(out / "d.npy"), first)  # another instruction


def test_edit_takes_the_models_defaults(models, out):
    """Steps, guidance and image guidance from the model's t2v_model.json when not given."""
    seen = []
    req = EditRequest("make the square blue", out / "a.npy", str(models / "edit"), seed=2, device="cpu",
                      progress=False, source=models / "src.npy", num_frames=2)  # fmt: skip
    result = run_edit(req, on_step=lambda step, total: seen.append((step, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)] and (result.num_frames, result.fps, result.seed) == (2, 8.0, 2)
    given = ["--frames", "2", "--seed", "2", "--steps", "3"]
    assert edit(models, out, *given, "--guidance", "3", "--image-guidance", "1.5", name="b.npy").exit_code == 0
    assert edit(models, out, *given, "--guidance", "3", "--image-guidance", "1", name="c.npy").exit_code == 0
    np.testing.assert_array_equal(np.load(out / "a.npy"), np.load(out / "b.npy"))
    assert not np.array_equal(np.load(out / "a.npy"), np.load(out / "c.npy"))


# ---------------------------------------------------------------- control
def test_control_edges_follow_the_source_and_save_their_maps(models, out):
    r = control(models, out, "edges", "src.mp4", "--seed", "3", "--save-control", out / "maps.npy")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == [
        f"wrote {out / 'c.npy'} (5 frames, 32x32, 12 fps, seed 3)",
        f"wrote {out / 'maps.npy'} (the control maps)",
    ]
    maps = np.load(out / "maps.npy")
    assert maps.shape == (5, 32, 32, 3) and set(np.unique(maps)) == {0, 255}  # edges of the resized frames
    assert np.load(out / "c.npy").shape == (5, 32, 32, 3)
    r = control(models, out, "edges", "other.npy", "--seed", "3", name="d.npy")
    assert r.exit_code == 0 and not np.array_equal(np.load(out / "c.npy"), np.load(out / "d.npy"))


def test_control_as_map_uses_the_maps_as_they_are(models, out):
    r = control(models, out, "edges", "maps.npy", "--as-map", "--seed", "1", "--save-control", out / "m.npy",
                "--frames", "4", "--conditioning-scale", "0.5")  # fmt: skip
    assert r.exit_code == 0 and "(4 frames, 32x32, 8 fps, seed 1)" in r.output, r.output
    np.testing.assert_array_equal(np.load(out / "m.npy"), np.load(models / "maps.npy")[:4])


def test_control_depth_from_a_video_and_as_maps(models, out):
    r = control(models, out, "depth", "src.npy", "--depth-model", models / "dpt", "--save-control", out / "m.npy")
    assert r.exit_code == 0, r.output
    maps = np.load(out / "m.npy")
    assert maps.shape == (5, 32, 32, 3) and maps.min() == 0 and maps.max() == 255  # one scale over the video
    r = control(models, out, "depth", "src.npy", "--as-map", "--frames", "2", name="d.npy")
    assert r.exit_code == 0 and np.load(out / "d.npy").shape == (2, 32, 32, 3), r.output


def test_control_pose_from_openpose_json(models, out):
    r = control(models, out, "pose", "pose.json", "--pose-size", "640", "480", "--save-control", out / "m.npy")
    assert r.exit_code == 0 and "(3 frames, 32x32, 8 fps" in r.output and "warning" not in r.output, r.output
    maps = np.load(out / "m.npy")
    assert tuple(maps[0, 5, 16]) == POSE_COLORS[0]  # the nose (320, 100) of 640x480 at (16, 6.7) of 32x32
    r = control(models, out, "pose", "pose.json", "--overwrite")  # the JSON's pixels taken as the output's
    assert r.exit_code == 0 and "warning: the poses in" in r.output and "pass --pose-size W H" in r.output
    assert control(models, out, "pose", "maps.npy", "--as-map", name="p.npy").exit_code == 0


def test_control_progress_counts_every_step_of_every_chunk(models, out):
    seen = []
    req = ControlRequest("a red square", out / "a.npy", str(models / "sd"), num_inference_steps=2, device="cpu",
                         progress=False, kind="edges", source=models / "src.npy", controlnet=models / "controlnet",
                         num_frames=5, chunk_size=3)  # fmt: skip
    result = run_control(req, on_step=lambda step, total: seen.append((step, total)))
    assert seen == [(i, 4) for i in range(1, 5)]  # 2 chunks of frame 0 and 2 new ones, 2 steps each
    np.testing.assert_array_equal(result.controls, canny_maps(resize_frames(np.load(models / "src.npy"), 32, 32)))
    assert result.control_path is None


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "args, message",
    [
        (["edit", "{m}/none.mp4", "x"], "video not found"),
        (["edit", "{m}/pose.json", "x"], "unsupported extension '.json'"),
        (["edit", "{m}/fake.mp4", "x"], "could not read {m}/fake.mp4"),
        (["edit", "{m}/src.npy", " "], "instruction must be a non-empty string"),
        (["edit", "{m}/src.npy", "x", "--frames", "9"], "num_frames is 9 but {m}/src.npy has 5 frames"),
        (["edit", "{m}/src.npy", "x", "--image-guidance", "-1"], "image_guidance_scale must be a number in [0, 100]"),
        (["edit", "{m}/src.npy", "x", "--chunk-size", "1"], "chunk_size must be an integer in [2, 4096]"),
        (["edit", "{m}/src.npy", "x", "--height", "30"], "height must be a positive multiple of 8"),
        (["edit", "{m}/src.npy", "x", "--scheduler", "nope"], "unknown scheduler 'nope'"),
        (["edit", "{m}/src.npy", "x", "--dtype", "float16"], "dtype float16 is not supported on the CPU"),
        (["edit", "{m}/src.npy", "x", "-o", "{o}/a.png"], "unsupported extension '.png'"),
        (["edit", "{m}/src.npy", "x", "-o", "{m}/src.npy"], "already exists; pass --overwrite"),
        (["edit", "{m}/src.npy", "x", "-m", "{m}/sd"], "is not an image-edit model"),
        (["control", "normals", "{m}/src.npy", "x"], "unknown control kind 'normals'; choose one of: edges"),
        (["control", "edges", "{m}/src.npy", "x", "--no-net"], "no edges ControlNet to use (the model is not"),
        (["control", "depth", "{m}/src.npy", "x"], "depth from a normal video needs --depth-model DIR"),
        (["control", "depth", "{m}/src.npy", "x", "--depth-model", "{m}/no"], "depth model folder {m}/no does not"),
        (["control", "pose", "{m}/src.mp4", "x"], "src.mp4: pose needs OpenPose JSON"),
        (["control", "pose", "{m}/bad-pose.json", "x"], "bad-pose.json: poses must be a list of frames"),
        (["control", "pose", "{m}/body25.json", "x"], "body25.json: pose frame 0, person 0: pose_keypoints_2d must"),
        (["control", "pose", "{m}/broken.json", "x"], "broken.json is not valid JSON"),
        (["control", "pose", "{m}/src.npy", "x", "--as-map", "--pose-size", "4", "4"], "pose_size is for poses"),
        (["control", "edges", "{m}/src.npy", "x", "--depth-model", "{m}/dpt"], "depth_model is for depth"),
        (["control", "edges", "{m}/src.npy", "x", "--conditioning-scale", "nan"], "conditioning_scale must be a"),
        (["control", "edges", "{m}/src.npy", "x", "--save-control", "{o}/c.npy"], "need a file of their own"),
        (["control", "edges", "{m}/src.npy", "x", "--save-control", "{o}/m.txt"], "unsupported extension '.txt'"),
        (["control", "edges", "{m}/src.npy", "x", "--controlnet", "{m}/no"], "ControlNet folder {m}/no does not"),
        (["control", "edges", "{m}/src.npy", "x", "--controlnet", "{m}/sd"], "is not a diffusers ControlNetModel"),
        (["control", "edges", "{m}/src.npy", "x", "--controlnet", "{m}/pickled"], "only pickle-based weights"),
        (["control", "edges", "{m}/src.npy", "x", "--controlnet", "{m}/other-controlnet"], "is not for this model"),
        (["control", "edges", "{m}/src.npy", "x", "--frames", "0"], "num_frames must be an integer in [1, 4096]"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(models, out, args, message):
    (models / "fake.mp4").write_text("not a video")
    (models / "bad-pose.json").write_text(json.dumps({"people": []}))
    (models / "body25.json").write_text(json.dumps([{"people": [{"pose_keypoints_2d": [0] * 75}]}]))
    (models / "broken.json").write_text("[{")
    if not (models / "pickled").exists():
        (models / "pickled").mkdir()
        shutil.copy(models / "controlnet" / "config.json", models / "pickled")
        (models / "pickled" / "diffusion_pytorch_model.bin").write_bytes(b"")
    args = [a.format(m=models, o=out) for a in args]
    if "-o" not in args:
        args += ["-o", str(out / "c.npy")]
    if args[0] == "edit" and "-m" not in args:
        args += ["-m", str(models / "edit")]
    if args[0] == "control":
        args += ["-m", str(models / "sd")]
        if "--controlnet" not in args and "--no-net" not in args:
            args += ["--controlnet", str(models / "controlnet")]
    r = run(*[a for a in args if a != "--no-net"])
    assert r.exit_code == 2, r.output
    assert message.format(m=models) in r.output and "Traceback" not in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    assert list(out.iterdir()) == []


def test_edit_without_the_embedded_model_is_one_line(models, out, monkeypatch, tmp_path):
    import t2v.models.loading as loading

    monkeypatch.setattr(loading, "DEFAULT_EDIT_MODEL_DIR", tmp_path / "not-installed")
    r = run("edit", models / "src.npy", "make it blue", "-o", out / "e.npy")
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert "no default model is installed (t2v-shapes-edit" in r.output and "pass --model" in r.output
    assert list(out.iterdir()) == []


def test_control_takes_the_embedded_models_own_controlnet(models, out, monkeypatch, tmp_path):
    """No --model and no --controlnet: the embedded text-to-image model with its ControlNet of that kind."""
    import shutil

    import t2v.models.loading as loading
    import t2v.zero_shot

    embedded = tmp_path / "default-image"
    shutil.copytree(models / "sd", embedded)
    monkeypatch.setattr(loading, "DEFAULT_IMAGE_MODEL_DIR", embedded)
    t2v.zero_shot._cache.clear(), t2v.video_jobs._cache.clear()  # no embedded model loaded before, nor kept after
    r = run("control", "edges", models / "src.npy", "a red square", "-o", out / "c.npy")
    assert r.exit_code == 2 and "no edges ControlNet to use (the embedded model has none installed)" in r.output
    shutil.copytree(models / "controlnet", embedded / "controlnet-edges")
    r = run("control", "edges", models / "src.npy", "a red square", "-o", out / "c.npy", "--seed", "0")
    assert r.exit_code == 0, r.output
    given = control(models, out, "edges", "src.npy", "--seed", "0", name="given.npy")
    assert given.exit_code == 0 and np.array_equal(np.load(out / "c.npy"), np.load(out / "given.npy"))
    t2v.zero_shot._cache.clear(), t2v.video_jobs._cache.clear()


def test_requests_check_before_loading(tmp_path):
    with pytest.raises(ValueError, match="a source video is required"):
        EditRequest("make it blue", tmp_path / "a.mp4").check()
    with pytest.raises(ValueError, match="shared_noise must be true or false"):
        EditRequest("x", source="a.mp4", shared_noise="yes").check()
    with pytest.raises(ValueError, match="pose_size must be two integers"):
        ControlRequest("x", kind="pose", source="p.json", controlnet="c", pose_size=(0, 5)).check()
    assert ControlRequest("x", kind="depth", source="d.mp4", controlnet="c", as_map=True).check().as_map
