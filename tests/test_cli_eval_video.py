"""`t2v eval --edits N --controls N`: edits and controlled videos judged from frames, on tiny random models."""

import json

import pytest
from typer.testing import CliRunner

from t2v.cli import app


runner = CliRunner()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from tiny2d import save_tiny_sd, tiny_sd_components
    from tiny_control import tiny_controlnet
    from tiny_edit import tiny_edit_pipeline

    from t2v.models.loading import save_model

    root = tmp_path_factory.mktemp("models")
    meta = {"defaults": {"num_inference_steps": 2, "guidance_scale": 3.0, "image_guidance_scale": 1.5}}
    save_model(tiny_edit_pipeline(), root / "edit", class_name="StableDiffusionInstructPix2PixPipeline", meta=meta)
    save_tiny_sd(root / "sd", num_inference_steps=2)
    tiny_controlnet(tiny_sd_components()["unet"]).save_pretrained(root / "controlnet")
    return root


def test_eval_judges_edits_and_controls(models, tmp_path):
    out = tmp_path / "eval"
    r = runner.invoke(
        app,
        [
            "eval", "-o", str(out), "--prompts", "0", "--seeds", "1", "--device", "cpu",
            "--edits", "1", "--edit-model", str(models / "edit"),
            "--controls", "1", "--controlnet", f"depth={models / 'controlnet'}", "--image-model", str(models / "sd"),
        ],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads((out / "eval.json").read_text())
    assert set(report["edits"]["summary"]) == {"seen", "novel", "held_out"}
    assert report["edits"]["settings"]["num_inference_steps"] == 2  # the model's defaults
    assert "seen" in report["edits"]["frame_by_frame"]
    depth = report["controls"]["depth"]["summary"]
    assert depth["1 object"]["videos"] == 1 and depth["2 objects"]["videos"] == 1
    md = (out / "eval.md").read_text()
    assert "Edits (" in md and "| seen | 1 |" in md and "Control depth (" in md and "| depth | 2 objects | 1 |" in md


@pytest.mark.parametrize(
    "args,message",
    [
        (["--edits", "-1"], "must be >= 0"),
        (["--controls", "1", "--controlnet", "normals=x"], "--controlnet must be KIND=DIR with KIND one of edges"),
        (["--controls", "1", "--controlnet", "edges"], "--controlnet must be KIND=DIR"),
    ],
)
def test_eval_option_errors(tmp_path, args, message):
    r = runner.invoke(app, ["eval", "-o", str(tmp_path / "e"), "--prompts", "0", *args])
    assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output
