"""The storyboard format: scenes with a prompt and a length, read from YAML or JSON.

No torch here: the CLI and the job server check storyboards before any model is loaded.

    fps: 8
    transition_frames: 8        # or auto; absent: the model's default
    negative_prompt: blurry     # optional
    scenes:
      - prompt: a red circle moving right on a black background
        frames: 32
      - prompt: a blue square moving up on a black background
        frames: 32
        transition_frames: 16   # optional: the cut before this scene
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from t2v.models.defaults import AUTO
from t2v.video_io import MAX_FPS, check_fps  # noqa: F401  (MAX_FPS: part of the format)


MAX_LONG_FRAMES = 4096


@dataclass(frozen=True)
class Scene:
    """One scene of a storyboard. transition_frames: frames blended across the cut from the scene
    before this one (half on each side of the cut), or "auto"; None takes the storyboard's (or the
    call's)."""

    prompt: str
    frames: int
    transition_frames: int | str | None = None


@dataclass(frozen=True)
class Storyboard:
    scenes: tuple[Scene, ...]
    fps: float = 8.0
    transition_frames: int | str | None = None  # None: the model's default (`ModelDefaults.transition_frames`)
    negative_prompt: str | None = None

    @property
    def num_frames(self) -> int:
        return sum(s.frames for s in self.scenes)


STORYBOARD_KEYS = {"scenes": list, "fps": (int, float), "transition_frames": (int, str), "negative_prompt": str}
SCENE_KEYS = {"prompt": str, "frames": int}  # required
SCENE_OPTIONAL_KEYS = {"transition_frames": (int, str)}


def check_transition(name: str, value) -> None:
    """A transition length is an integer >= 0 or "auto"."""
    if value != AUTO and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise ValueError(f"{name} must be an integer >= 0 or {AUTO!r}, got {value!r}")


def check_scene(i: int, scene: Scene) -> None:
    """Errors name the scene (1-based) and the key."""
    if not isinstance(scene.prompt, str) or not scene.prompt.strip():
        raise ValueError(f"scene {i}: 'prompt' is empty")
    if not isinstance(scene.frames, int) or isinstance(scene.frames, bool):
        raise ValueError(f"scene {i}: 'frames' must be an integer, got {scene.frames!r}")
    if scene.frames < 1:
        raise ValueError(f"scene {i}: 'frames' must be >= 1, got {scene.frames}")
    t = scene.transition_frames
    if t is not None:
        check_transition(f"scene {i}: 'transition_frames'", t)
        if i == 1:
            raise ValueError(
                "scene 1: 'transition_frames' blends a scene with the one before it; the first scene has none"
            )


def _check_keys(where: str, raw: dict, types: dict, required=()) -> None:
    for key, kind in types.items():
        if key not in raw:
            if key in required:
                raise ValueError(f"{where}: missing {key!r}")
            continue
        if not isinstance(raw[key], kind) or isinstance(raw[key], bool):
            what = {str: "a string", int: "an integer", list: "a list"}.get(kind, f"an integer or {AUTO!r}")
            what = "a number" if kind == (int, float) else what
            raise ValueError(f"{where}: {key!r} must be {what}, got {raw[key]!r}")


def parse_storyboard(data) -> Storyboard:
    """A Storyboard from a mapping (a parsed YAML/JSON file); errors name the scene and the key."""
    if not isinstance(data, dict):
        raise ValueError(f"a storyboard must be a mapping with 'scenes', got {type(data).__name__}")
    unknown = sorted(set(data) - set(STORYBOARD_KEYS))
    if unknown:
        raise ValueError(
            f"unknown storyboard keys: {', '.join(map(str, unknown))}; allowed: {', '.join(STORYBOARD_KEYS)}"
        )
    _check_keys("storyboard", data, STORYBOARD_KEYS)
    if not data.get("scenes"):
        raise ValueError("the storyboard has no scenes: give a non-empty list under 'scenes'")
    scenes = []
    for i, raw in enumerate(data["scenes"], 1):
        if not isinstance(raw, dict):
            raise ValueError(f"scene {i}: must be a mapping with 'prompt' and 'frames', got {raw!r}")
        unknown = sorted(set(raw) - set(SCENE_KEYS) - set(SCENE_OPTIONAL_KEYS))
        if unknown:
            raise ValueError(
                f"scene {i}: unknown keys {', '.join(map(str, unknown))}; allowed: prompt, frames, transition_frames"
            )
        _check_keys(f"scene {i}", raw, {**SCENE_KEYS, **SCENE_OPTIONAL_KEYS}, required=SCENE_KEYS)
        scene = Scene(raw["prompt"], raw["frames"], raw.get("transition_frames"))
        check_scene(i, scene)
        scenes.append(scene)
    fps = data.get("fps", 8.0)
    check_fps(fps, "storyboard 'fps'")
    transition = data.get("transition_frames")  # absent: the model's default
    if transition is not None:
        check_transition("storyboard 'transition_frames'", transition)
    board = Storyboard(tuple(scenes), float(fps), transition, data.get("negative_prompt"))
    if board.num_frames > MAX_LONG_FRAMES:
        raise ValueError(f"the storyboard has {board.num_frames} frames in all; at most {MAX_LONG_FRAMES}")
    return board


def load_storyboard(path: str | Path) -> Storyboard:
    """Read a storyboard from a .yaml/.yml or .json file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"storyboard file {path} does not exist")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {e}") from e
    return parse_storyboard(data)
