"""The storyboard format: files, keys and clear errors."""

import json

import pytest

from t2v.pipelines.long_video.storyboard import load_storyboard, parse_storyboard


def test_storyboard_file_parsing(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "fps: 8\nscenes:\n  - prompt: a red circle moving right\n    frames: 32\n"
        "  - prompt: a blue square moving up\n    frames: 32\n"
    )
    board = load_storyboard(path)
    assert board.num_frames == 64 and board.fps == 8 and board.scenes[1].prompt == "a blue square moving up"
    assert board.transition_frames is None  # not given: the model's default, at generation
    (tmp_path / "s.json").write_text(json.dumps({"scenes": [{"prompt": "x", "frames": 3}], "transition_frames": 0}))
    assert load_storyboard(tmp_path / "s.json").transition_frames == 0
    path.write_text(
        "scenes:\n  - prompt: a\n    frames: 16\n  - prompt: b\n    frames: 16\n    transition_frames: 12\n"
    )
    assert [s.transition_frames for s in load_storyboard(path).scenes] == [None, 12]
    path.write_text(
        "transition_frames: auto\nscenes:\n  - prompt: a\n    frames: 16\n"
        "  - prompt: b\n    frames: 16\n    transition_frames: auto\n"
    )
    board = load_storyboard(path)
    assert board.transition_frames == "auto" and board.scenes[1].transition_frames == "auto"


@pytest.mark.parametrize(
    "data,message",
    [
        ({"scenes": []}, "no scenes"),
        ({}, "no scenes"),
        ([1, 2], "must be a mapping"),
        ({"scenes": [{"prompt": "a", "frames": 0}]}, "scene 1: 'frames' must be >= 1, got 0"),
        (
            {"scenes": [{"prompt": "a", "frames": 4}, {"prompt": "b", "frames": "ten"}]},
            "scene 2: 'frames' must be an integer, got 'ten'",
        ),
        ({"scenes": [{"prompt": "a", "frames": 4, "color": "red"}]}, "scene 1: unknown keys color"),
        ({"scenes": [{"frames": 4}]}, "scene 1: missing 'prompt'"),
        ({"scenes": [{"prompt": 3, "frames": 4}]}, "scene 1: 'prompt' must be a string"),
        ({"scenes": [{"prompt": "a", "frames": 4}], "speed": 2}, "unknown storyboard keys: speed"),
        ({"scenes": [{"prompt": "a", "frames": 4}], "fps": "fast"}, "storyboard: 'fps' must be a number, got 'fast'"),
        (
            {"scenes": [{"prompt": "a", "frames": 4}], "fps": 0},
            "storyboard 'fps' must be a number in \\(0, 240\\], got 0",
        ),
        ({"scenes": [{"prompt": "a", "frames": True}]}, "scene 1: 'frames' must be an integer"),
        (
            {"scenes": [{"prompt": "a", "frames": 4}, {"prompt": "b", "frames": 4, "transition_frames": -2}]},
            "scene 2: 'transition_frames' must be an integer >= 0 or 'auto', got -2",
        ),
        (
            {"scenes": [{"prompt": "a", "frames": 4}, {"prompt": "b", "frames": 4, "transition_frames": "slow"}]},
            "scene 2: 'transition_frames' must be an integer >= 0 or 'auto', got 'slow'",
        ),
        (
            {"scenes": [{"prompt": "a", "frames": 4}, {"prompt": "b", "frames": 4, "transition_frames": 2.5}]},
            "scene 2: 'transition_frames' must be an integer or 'auto', got 2.5",
        ),
        (
            {"scenes": [{"prompt": "a", "frames": 4}], "transition_frames": "fast"},
            "storyboard 'transition_frames' must be an integer >= 0 or 'auto', got 'fast'",
        ),
        (
            {"scenes": [{"prompt": "a", "frames": 4, "transition_frames": 2}, {"prompt": "b", "frames": 4}]},
            "scene 1: 'transition_frames' blends a scene with the one before it",
        ),
    ],
)
def test_bad_storyboards(data, message):
    with pytest.raises(ValueError, match=message):
        parse_storyboard(data)
