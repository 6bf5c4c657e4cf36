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
import re
import reprlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from t2v.models.defaults import AUTO
from t2v.video_io import MAX_FPS, check_fps


MAX_LONG_FRAMES = 4096
MAX_STORYBOARD_CHARS = 1_000_000  # a storyboard's text (a file or a request), read before anything is parsed
MAX_DEPTH = 16  # nested lists and mappings in a storyboard (the format itself needs 3)
MAX_VALUES = 10_000  # values in a storyboard, every YAML alias counted as a copy of what it names
EXCERPT_CHARS = 60

_excerpt = reprlib.Repr()
_excerpt.maxstring = _excerpt.maxother = 40
_excerpt.maxlevel, _excerpt.maxlist, _excerpt.maxtuple, _excerpt.maxdict, _excerpt.maxset = 2, 4, 4, 4, 4
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where installed: 100x faster on hostile text
_BAD_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def excerpt(value) -> str:
    """A short repr of a rejected value for an error message: never the whole of a long string, a deep
    structure or a huge integer (a message echoes what it was sent, so it must not grow with it)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {len(str(value)) if value.bit_length() < 4000 else 'over 1200'} digits"
    try:
        text = _excerpt.repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is still named
        text = f"a {type(value).__name__}"
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 3] + "..."


def check_text(name: str, value: str) -> None:
    """Text a model reads (prompts): valid Unicode, so no lone surrogates, and no control characters
    but tab and line breaks (no NUL)."""
    bad = _BAD_CHARACTER.search(value)
    if bad:
        what = "a lone surrogate" if "\ud800" <= bad.group() <= "\udfff" else "a control character"
        raise ValueError(f"{name} has {what} ({excerpt(bad.group())}) at character {bad.start() + 1}")


def fps_value(fps, name: str = "fps") -> float:
    """`check_fps`, with any number (a 400-digit integer too) answered by a short ValueError."""
    try:
        return check_fps(fps, name)
    except (ValueError, OverflowError):
        raise ValueError(f"{name} must be a number in (0, {MAX_FPS}], got {excerpt(fps)}") from None


def load_yaml(text: str, what: str = "the storyboard"):
    """YAML (or JSON) text -> data, its size bounded before anything is built: at most
    MAX_STORYBOARD_CHARS characters, MAX_DEPTH levels and MAX_VALUES values with every alias expanded
    (a "billion laughs" of nested aliases is refused, not expanded). Raises ValueError, one line."""
    if len(text) > MAX_STORYBOARD_CHARS:
        raise ValueError(f"{what} is {len(text)} characters long; at most {MAX_STORYBOARD_CHARS}")
    check_text(what, text)
    try:
        _check_yaml_size(text, what)
        return yaml.load(text, Loader=_LOADER)  # (safe: SafeLoader's constructors)
    except yaml.YAMLError as e:
        raise ValueError(f"{what} is not valid YAML or JSON: {yaml_problem(e)}") from None
    except (ValueError, RecursionError) as e:  # e.g. an integer of more digits than Python converts
        if str(e).startswith(what):
            raise
        if "integer string conversion" in str(e):
            raise ValueError(f"{what} has an integer of more digits than can be read") from None
        raise ValueError(f"{what} has a value that cannot be read: {excerpt(str(e))}") from None


def yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error in one line: the problem and where."""
    if isinstance(e, yaml.MarkedYAMLError) and e.problem:
        mark = e.problem_mark
        return e.problem + (f" (line {mark.line + 1}, column {mark.column + 1})" if mark else "")
    return str(e).splitlines()[0]


def _check_yaml_size(text: str, what: str) -> None:
    """Walk the YAML events (nothing is built) counting nesting and values, aliases expanded."""
    sizes: dict[str, int] = {}  # an anchor -> the values it stands for
    stack: list[list] = []  # the open lists and mappings: [anchor, values so far]
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) >= MAX_DEPTH:
                raise ValueError(f"{what} nests lists and mappings more than {MAX_DEPTH} deep")
            stack.append([event.anchor, 1])
            continue
        if isinstance(event, yaml.ScalarEvent):
            anchor, n = event.anchor, 1
        elif isinstance(event, yaml.AliasEvent):
            if any(open_anchor == event.anchor for open_anchor, _ in stack):
                raise ValueError(f"{what} has an alias inside what it names (*{excerpt(event.anchor)[1:-1]})")
            anchor, n = None, sizes.get(event.anchor, 1)
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, n = stack.pop()
        else:
            continue
        if anchor is not None:
            sizes[anchor] = n
        if stack:
            stack[-1][1] += n
        if n > MAX_VALUES or (stack and stack[-1][1] > MAX_VALUES):
            raise ValueError(f"{what} has more than {MAX_VALUES} values (YAML aliases counted as copies)")


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
    """A transition length is an integer in [0, MAX_LONG_FRAMES] or "auto"."""
    if value != AUTO and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise ValueError(f"{name} must be an integer >= 0 or {AUTO!r}, got {excerpt(value)}")
    if value != AUTO and value > MAX_LONG_FRAMES:
        raise ValueError(f"{name} must be at most {MAX_LONG_FRAMES} (or {AUTO!r}), got {excerpt(value)}")


def check_scene(i: int, scene: Scene) -> None:
    """Errors name the scene (1-based) and the key."""
    if not isinstance(scene.prompt, str) or not scene.prompt.strip():
        raise ValueError(f"scene {i}: 'prompt' is empty")
    check_text(f"scene {i}: 'prompt'", scene.prompt)
    if not isinstance(scene.frames, int) or isinstance(scene.frames, bool):
        raise ValueError(f"scene {i}: 'frames' must be an integer, got {excerpt(scene.frames)}")
    if scene.frames < 1:
        raise ValueError(f"scene {i}: 'frames' must be >= 1, got {scene.frames}")
    if scene.frames > MAX_LONG_FRAMES:
        raise ValueError(f"scene {i}: 'frames' must be at most {MAX_LONG_FRAMES}, got {excerpt(scene.frames)}")
    t = scene.transition_frames
    if t is not None:
        check_transition(f"scene {i}: 'transition_frames'", t)
        if i == 1:
            raise ValueError(
                "scene 1: 'transition_frames' blends a scene with the one before it; the first scene has none"
            )


def scenes_from_prompt_dict(prompts: dict, num_frames: int | None) -> list[Scene]:
    """{first_frame: prompt} (diffusers' FreeNoise prompt dict) as scenes: each runs to the next key, the
    last to num_frames. The first key must be 0."""
    keys = sorted(prompts) if all(isinstance(k, int) and not isinstance(k, bool) for k in prompts) else None
    if not keys or keys[0] != 0:
        raise ValueError(f"a prompt dict maps first frames (integers from 0) to prompts, got keys {list(prompts)}")
    if not isinstance(num_frames, int) or num_frames <= keys[-1]:
        raise ValueError(f"a prompt dict needs num_frames > its last key ({keys[-1]}), got {num_frames!r}")
    ends = keys[1:] + [num_frames]
    return [Scene(prompts[k], end - k) for k, end in zip(keys, ends)]


def _check_keys(where: str, raw: dict, types: dict, required=()) -> None:
    for key, kind in types.items():
        if key not in raw:
            if key in required:
                raise ValueError(f"{where}: missing {key!r}")
            continue
        if not isinstance(raw[key], kind) or isinstance(raw[key], bool):
            what = {str: "a string", int: "an integer", list: "a list"}.get(kind, f"an integer or {AUTO!r}")
            what = "a number" if kind == (int, float) else what
            raise ValueError(f"{where}: {key!r} must be {what}, got {excerpt(raw[key])}")


def _unknown(keys, allowed) -> str:
    """Unknown keys, a few of them, each short (keys may be of any type: a number, null)."""
    unknown = sorted(
        k if isinstance(k, str) and len(k) <= 40 and k.isprintable() else excerpt(k) for k in keys if k not in allowed
    )
    return ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")


def parse_storyboard(data) -> Storyboard:
    """A Storyboard from a mapping (a parsed YAML/JSON file); errors name the scene and the key."""
    if not isinstance(data, dict):
        raise ValueError(f"a storyboard must be a mapping with 'scenes', got {type(data).__name__}")
    if set(data) - set(STORYBOARD_KEYS):
        raise ValueError(
            f"unknown storyboard keys: {_unknown(data, STORYBOARD_KEYS)}; allowed: {', '.join(STORYBOARD_KEYS)}"
        )
    _check_keys("storyboard", data, STORYBOARD_KEYS)
    if not data.get("scenes"):
        raise ValueError("the storyboard has no scenes: give a non-empty list under 'scenes'")
    if len(data["scenes"]) > MAX_LONG_FRAMES:
        raise ValueError(f"the storyboard has {len(data['scenes'])} scenes; at most {MAX_LONG_FRAMES}")
    scenes = []
    for i, raw in enumerate(data["scenes"], 1):
        if not isinstance(raw, dict):
            raise ValueError(f"scene {i}: must be a mapping with 'prompt' and 'frames', got {excerpt(raw)}")
        allowed = {**SCENE_KEYS, **SCENE_OPTIONAL_KEYS}
        if set(raw) - set(allowed):
            raise ValueError(
                f"scene {i}: unknown keys {_unknown(raw, allowed)}; allowed: prompt, frames, transition_frames"
            )
        _check_keys(f"scene {i}", raw, allowed, required=SCENE_KEYS)
        scene = Scene(raw["prompt"], raw["frames"], raw.get("transition_frames"))
        check_scene(i, scene)
        scenes.append(scene)
    fps = fps_value(data.get("fps", 8.0), "storyboard 'fps'")
    transition = data.get("transition_frames")  # absent: the model's default
    if transition is not None:
        check_transition("storyboard 'transition_frames'", transition)
    negative = data.get("negative_prompt")
    if negative is not None:
        check_text("storyboard 'negative_prompt'", negative)
    board = Storyboard(tuple(scenes), fps, transition, negative)
    if board.num_frames > MAX_LONG_FRAMES:
        raise ValueError(f"the storyboard has {board.num_frames} frames in all; at most {MAX_LONG_FRAMES}")
    return board


def load_storyboard(path: str | Path) -> Storyboard:
    """Read a storyboard from a .yaml/.yml or .json file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"storyboard file {path} does not exist")
    if path.stat().st_size > 4 * MAX_STORYBOARD_CHARS:
        raise ValueError(
            f"storyboard file {path} is {path.stat().st_size} bytes; at most {MAX_STORYBOARD_CHARS} characters"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"storyboard file {path} is not UTF-8 text (byte {e.start + 1})") from None
    if path.suffix != ".json":
        return parse_storyboard(load_yaml(text, f"storyboard file {path}"))
    if len(text) > MAX_STORYBOARD_CHARS:
        raise ValueError(f"storyboard file {path} is {len(text)} characters long; at most {MAX_STORYBOARD_CHARS}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    except (ValueError, RecursionError) as e:  # too deep, or an integer of too many digits
        raise ValueError(f"{path} is not valid JSON: {excerpt(str(e) or 'nested too deeply')}") from None
    return parse_storyboard(data)
