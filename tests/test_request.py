"""One request check for every door: the CLI, the job server (and the web app, which submits to it) and
the Python API give the same message for the same bad value, and check the cheap rules before loading."""

import math
import re
import time

import pytest
from typer.testing import CliRunner

from t2v.cli import app
from t2v.models.defaults import ModelDefaults
from t2v.pipelines.text_to_video import load_pipeline
from t2v.request import GenerateRequest, RequestError
from t2v.server.jobs import JobError, Limits, check_params


PROMPT = "a red circle moving right"
# (field, value, CLI arguments, what the message says)
BAD = [
    (
        "height",
        33,
        ["--height", "33"],
        "height must be a positive multiple of 2 (the VAE's downsampling factor), got 33",
    ),
    ("num_frames", 0, ["--frames", "0"], "num_frames must be an integer in [1, 4096], got 0"),
    ("num_inference_steps", 0, ["--steps", "0"], "num_inference_steps must be an integer >= 1, got 0"),
    ("guidance_scale", math.nan, ["--guidance", "nan"], "guidance_scale must be a finite number, got nan"),
    ("scheduler", "magic", ["--scheduler", "magic"], "unknown scheduler 'magic'"),
    ("fps", 0.0, ["--fps", "0"], "fps must be a number in (0, 240], got 0.0"),
    ("fps", 1000.0, ["--fps", "1000"], "fps must be a number in (0, 240], got 1000.0"),
    ("seed", -1, ["--seed", "-1"], "seed must be an integer in [0, 2**63), got -1"),
    ("prompt", "  ", [], "prompt must be a non-empty string, got '  '"),
    ("regions", True, ["--regions"], "regions need one prompt naming two objects"),
    ("guidance_scale", 1e308, ["--guidance", "1e308"], "guidance_scale must be in [0, 100], got 1e+308"),
    ("guidance_scale", -1.0, ["--guidance", "-1"], "guidance_scale must be in [0, 100], got -1.0"),
    ("num_inference_steps", 10_001, ["--steps", "10001"], "num_inference_steps must be at most 10000, got 10001"),
    ("width", 10_000, ["--width", "10000"], "width must be at most 8192, got 10000"),
    ("prompt", "a\x00b", [], "prompt has a control character ('\\x00') at character 2"),
    ("prompt", "a \ud800", [], "prompt has a lone surrogate ('\\ud800') at character 3"),
    ("negative_prompt", "\udfff", ["--negative", "\udfff"], "negative_prompt has a lone surrogate ('\\udfff')"),
]


@pytest.fixture
def shapes_model(model_dir):
    """The tiny model, with the Shapes region planner as its default (as the embedded model has)."""
    import json

    (model_dir / "t2v_model.json").write_text(json.dumps({"defaults": {"regions": "shapes"}}))
    return model_dir


@pytest.mark.parametrize("field,value,cli,message", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_every_door_gives_the_same_message(shapes_model, tmp_path, field, value, cli, message):
    pipe = load_pipeline(shapes_model, device="cpu")
    with pytest.raises(RequestError) as api:
        GenerateRequest(**{"prompt": PROMPT, field: value}).resolve(pipe)
    with pytest.raises(JobError) as server:
        check_params({"prompt": PROMPT, field: value}, pipe, Limits())
    assert api.value.field == server.value.field == field
    assert message in str(api.value) and str(api.value) == str(server.value)
    out = tmp_path / "out.mp4"
    prompt = value if field == "prompt" else PROMPT
    r = CliRunner().invoke(
        app, ["generate", prompt, "-o", str(out), "--model", str(shapes_model), "--device", "cpu", "-q", *cli]
    )
    assert r.exit_code == 2 and f"error: {api.value}" in r.output and not out.exists(), r.output


def test_cheap_checks_come_before_the_model():
    """A bad request fails in check(), with no model loaded (the CLI says so before loading anything)."""
    for kwargs, field in [
        ({"prompt": "x", "storyboard": "scenes: []"}, "storyboard"),
        ({}, "prompt"),
        ({"prompt": "x", "fps": -1}, "fps"),
        ({"prompt": "x", "scene_motion": "fast"}, "scene_motion"),
        ({"storyboard": "scenes: [{prompt: a, frames: 2}]", "num_frames": 3}, "num_frames"),
        ({"storyboard": "scenes: [oops"}, "storyboard"),
        ({"prompt": "x", "seed": 2**63}, "seed"),
    ]:
        with pytest.raises(RequestError) as e:
            GenerateRequest(**kwargs).check()
        assert e.value.field == field, (kwargs, e.value)


def test_resolve_fills_the_models_defaults(pipe):
    pipe.defaults = ModelDefaults(num_frames=4, num_inference_steps=7, guidance_scale=2.5)
    req = GenerateRequest(prompt=PROMPT).resolve(pipe)
    assert (req.num_frames, req.num_inference_steps, req.guidance_scale, req.fps) == (4, 7, 2.5, 8.0)
    assert (req.height, req.width) == (pipe.default_size,) * 2 and 0 <= req.seed < 2**31 and req.regions is False
    board = GenerateRequest(storyboard="fps: 5\nscenes: [{prompt: a, frames: 3}, {prompt: b, frames: 2}]").resolve(
        pipe
    )
    assert board.num_frames == 5 and board.fps == 5.0 and board.storyboard.scenes[1].prompt == "b"
    with pytest.raises(RequestError, match="no region planner"):
        GenerateRequest(prompt="a red box and a blue ball", regions=True).resolve(pipe)


HUGE = [
    {"prompt": "x" * 100_000 + "\x00"},
    {"prompt": ["x" * 1000] * 1000},
    {"prompt": "x", "num_frames": 10**400},
    {"prompt": "x", "fps": 10**400},
    {"prompt": "x", "fps": 10**5000},
    {"prompt": "x", "guidance_scale": 10**400},
    {"prompt": "x", "seed": -(10**400)},
    {"prompt": "x", "scheduler": "s" * 100_000},
    {"prompt": "x", "negative_prompt": {"k": ["v" * 10_000] * 100}},
    {"storyboard": {"scenes": [{"prompt": "a", "frames": 2}], "fps": [["x" * 10_000] * 100] * 100}},
    {"storyboard": {"scenes": [{"prompt": "a", "frames": 10**400}]}},
    {"storyboard": {"scenes": [{"prompt": "a", "frames": 2}], "transition_frames": 10**400}},
    {"storyboard": {"scenes": [{"prompt": "a", "frames": 2}], ("k" * 10_000): 1, None: 2, 3: 4}},
    {"storyboard": {"scenes": ["s" * 100_000]}},
    {"storyboard": "scenes: [{prompt: a, frames: 2}]\nfps: " + "9" * 400},
]


@pytest.mark.parametrize("kwargs", HUGE, ids=range(len(HUGE)))
def test_messages_quote_a_short_excerpt(kwargs):
    """A rejected value is quoted in a few dozen characters, never whole (a reply must not grow with its input)."""
    with pytest.raises(RequestError) as e:
        GenerateRequest(**kwargs).check()
    assert len(str(e.value)) < 200 and "\n" not in str(e.value), str(e.value)[:300]


def laughs(depth: int) -> str:
    parts = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    parts += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, depth + 1)]
    return f"fps: [{', '.join(parts)}]\nscenes: [{{prompt: a, frames: 2}}]\n"


@pytest.mark.parametrize(
    "text, message",
    [
        (laughs(8), "more than 10000 values"),  # 420 bytes that would expand to 387 million strings
        ("[" * 100_000, "nest"),
        ("a:\n" + "".join(" " * (i + 1) + "a:\n" for i in range(40)), "more than 16 deep"),
        ("fps: &a [*a]\nscenes: [{prompt: a, frames: 2}]", "alias inside what it names"),
        ("scenes: [{prompt: a, frames: 2}]\nfps: " + "9" * 5000, "more digits"),
        ("scenes: [{prompt: 'a\ud800', frames: 2}]", "lone surrogate"),
        ("x" * 1_000_001, "at most 1000000"),
    ],
    ids=["laughs-8", "deep-flow", "deep-block", "recursive", "digits", "surrogate", "size"],
)
def test_yaml_storyboards_are_bounded_before_they_are_built(text, message):
    t0 = time.perf_counter()
    with pytest.raises(RequestError) as e:
        GenerateRequest(storyboard=text).check()
    assert e.value.field == "storyboard" and message in str(e.value), str(e.value)
    assert time.perf_counter() - t0 < 0.5 and len(str(e.value)) < 200


def test_yaml_aliases_within_the_bounds_still_work():
    req = GenerateRequest(storyboard="scenes: [&s {prompt: a red circle, frames: 3}, *s, *s]").check()
    assert [s.prompt for s in req.storyboard.scenes] == ["a red circle"] * 3


def test_storyboard_text_fields_are_checked_like_a_prompt():
    for board, message in [
        ({"scenes": [{"prompt": "a\x00", "frames": 2}]}, "scene 1: 'prompt' has a control character"),
        ({"scenes": [{"prompt": "a", "frames": 2}], "negative_prompt": "\ud800"}, "'negative_prompt' has a lone"),
        ({"scenes": [{"prompt": "a", "frames": 2}], 1: 2, None: 3}, "unknown storyboard keys: 1, None"),
    ]:
        with pytest.raises(RequestError, match=re.escape(message)):
            GenerateRequest(storyboard=board).check()
