"""Videos of any length and multi-scene storyboards, with any text-to-video model and no retraining.

Past the model's native length (16 frames for ModelScope and the embedded model) frames are made in
overlapping windows of that length, FreeNoise-style:
  - noise rescheduling: the start noise of each new block of frames is the noise of earlier frames,
    shuffled, so that windows share their noise statistics and content does not drift;
  - window fusion: at every denoising step the UNet predicts the noise of every window, and the
    predictions of overlapping windows are averaged with weights that fall off towards each window's
    edges, so neighbouring windows agree on the frames they share and there are no joins;
  - one prompt per scene (storyboards): each scene is drawn by windows aligned with it (a scene
    of the model's native length is exactly one window, the clip the model was trained to make),
    each with that scene's prompt alone.
  - transitions (`scene_blend="dissolve"`, the default): across a cut, each frame within
    `transition_frames` has two versions, its own scene's and the other scene's, the latter drawn
    by a window that carries the other scene on past its own frames (as extra latent frames,
    denoised alongside); the decoded versions are crossfaded by each frame's share of each scene
    (`scene_mix`, linear). `plan_dissolve` lays this out. A scene's own `transition_frames`
    sets the length of the cut before it (a slow dissolve between very different scenes, a quick
    one between similar scenes).
    A linear crossfade is the smoothest a transition can be: between frames a and b that are N
    changes apart, the largest change is at least mean|b - a| / N (`t2v.eval.run.dissolve_bound`),
    and a crossfade in equal steps changes every frame by exactly that. A black-to-white cut with 8
    transition frames (9 frame steps) thus changes nearly 255 / 9 = 28 levels per frame, whatever
    the method. (Equal steps, stage-7 UNet, the eval's 8 boards: whole-storyboard max jump ratio
    median 3.05, worst 4.65, 4 of 8 boards <= 3; the earlier ramp through the frames' centres, whose
    first and last steps were half the others: 3.28, 5.20, 2 of 8; scenes all-correct 91% both.)
    `transition_frames="auto"` takes, per cut, the shortest dissolve that keeps the largest change
    within 2.5x the median (`choose_transitions`), up to a quarter of each scene on its side.
Measured on the embedded model (its stage-5 UNet; with the stage-6 UNet the dissolve gives 84%,
3.14, worst 5.10 at seed 0, with the stage-7 UNet shipped since 91%, 3.08, worst 5.33) over the 8 storyboards of `t2v.eval.run.evaluate_storyboards`
(guidance 5; seeds 0 / 100): scenes all-correct, max jump ratio over the whole video (median):
  - "dissolve": 91% / 88%, 3.03 / 3.13 (worst 5.34 / 5.67; inside scenes: 1.18 / 1.21, worst 1.84 / 1.88);
  - "prediction" (frames mix the scenes' noise predictions, windows aligned, `plan_passes`):
    84% / 84%, 20.3 / 17.6. Mixing predictions is not a crossfade: the sampler settles each frame
    on one scene, so the background flipped within one or two frames of the transition;
  - "prediction" with `window_layout="grid"` (windows on a regular grid across the cuts, so a
    scene's frames were also drawn as parts of clips that began in the previous scene and the
    windows disagreed on where a moving object is): 44%; 18.0;
  - "embedding" (a grid window conditioned on the mean of its frames' text embeddings: a blend of
    prompts the model never saw, drawn as a scene of its own): 9% (guidance 9, an earlier day).
Start noise: FreeNoise rescheduling keeps one prompt's content consistent; across a cut it made each
scene start from the previous scene's noise, and scenes that grow or shrink came out with less size
change than the same prompt alone (area ratio 1.5 against 3.4). Rescheduling within each scene
(`noise_per_scene=True`, the default), stage-7 UNet, seeds 0 / 100, scenes all-correct and boards with
max jump ratio <= 3: one background per storyboard 87.5% / 87.5%, 8/8 and 6/8 (across the video:
78% / 84%, 5/8 and 7/8); mixed backgrounds 90.6% / 84.4%, 2/8 and 4/8, jump median 3.28 / 3.40
(across the video: 90.6% / 84.4%, 3/8 and 4/8, 3.08 / 3.50).
Memory does not grow with length (the UNet sees one batch of windows at a time, frames are
decoded in chunks); time grows linearly with the number of windows.

Scenes longer than a window (`scene_motion`):
  - "windows": overlapping windows over the scene, fused as above. Each window is a clip of its
    own, so a model whose motion spans its clip (the embedded model: its frame positions tell it
    where in the clip a frame is, and "moving right" means from the left at frame 0 to the right at
    frame 15) draws the motion once per window, and the fused windows disagree on where the object
    is: with 32-frame scenes only 59% / 72% of the eval's storyboard scenes were all-correct (mixed /
    shared backgrounds; 91% / 88% with 16-frame scenes), motion wrong in 18 of the 22 failures; a
    32-frame "moving up" went up, jumped back down and drifted right.
  - "keyframes": the scene is drawn as one clip of `window` keyframes spread evenly over it
    (`plan_keyframes`; the motion of the whole scene, as the model makes it for a native clip), and
    the frames between keyframes are interpolated linearly in latent space (`expand_keyframes`): an
    object moves about 2 px from one keyframe to the next at any scene length (the clip's motion is
    spread over more frames, not made longer), well under a latent pixel (8 px), so the in-between
    frames do not ghost. Storyboards keep their dissolves: the keyframe storyboard's transitions
    reach as far into both scenes as the video's, and each scene's versions of the blended frames
    are interpolated along that scene's own keyframes, at its own keyframe pace (`carried_time`; at
    the other scene's keyframe times, one-background storyboards of 32-frame scenes had their
    largest change at the cuts: 6 of 8 boards within a jump ratio of 3, now 8 of 8). The UNet's
    work no longer grows with the scene's length (one window per scene; decoding still does). The embedded model's default (its
    t2v_model.json "scene_motion"); models without one (ModelScope, whose clips show ongoing motion
    rather than one move) keep "windows". Measured (`t2v eval --prompts 0 --storyboards 8
    --scene-frames 32 --long 8 --scene-motion keyframes`, stage-7 UNet, seed 0): storyboard scenes
    of 32 frames 88% / 91% all-correct (windows: 59% / 72%), with transition_frames="auto" 94% / 84%
    (windows: 34% / 56%); 16-frame scenes are one window either way (identical output). Eight
    64-frame single-prompt videos judged over all their frames (`--long 8`): 7/8 all-correct with
    keyframes in 19.6 s (the two-object prompts with regions, which one keyframe pass allows; max
    jump ratio median 0.92), 6/8 with windows in 135 s (1.33).
    Stretching the frame positions over the scene instead (window frames at fractional clip times,
    so every window agrees on where in the motion a frame is) did not work: given positions 0, 0.5,
    ..., 7.5 the embedded model still moved the object the whole way across in 16 frames, and given
    7.5, ..., 15 it moved it down: the clip's motion is tied to its length, not to the codes alone.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from .regions import check_regions, latent_masks, regional_attention, token_biases
from .text_to_video import OUTPUT_TYPES, TextToVideoPipeline, TextToVideoPipelineOutput

MAX_LONG_FRAMES = 4096
AUTO = "auto"  # transition_frames: the shortest dissolve that keeps every frame change small (choose_transitions)
DEFAULT_TRANSITION_FRAMES = 8  # for models whose t2v_model.json does not say
AUTO_JUMP_RATIO = 2.5  # auto aims at a largest change <= this x the median (the target is 3: margin for the median's shift)
SCENE_BLENDS = ("prediction", "dissolve", "embedding")
WINDOW_LAYOUTS = ("scenes", "grid")
SCENE_MOTIONS = ("keyframes", "windows")


@dataclass(frozen=True)
class Scene:
    """One scene of a storyboard. transition_frames: frames blended across the cut from the scene
    before this one (half on each side of the cut), or "auto" (`choose_transitions`); None takes the
    storyboard's (or the call's)."""

    prompt: str
    frames: int
    transition_frames: int | str | None = None


@dataclass(frozen=True)
class Storyboard:
    scenes: tuple[Scene, ...]
    fps: float = 8.0
    transition_frames: int | str | None = None  # None: the model's default (`LongVideoPipeline.default_transition_frames`)
    negative_prompt: str | None = None

    @property
    def num_frames(self) -> int:
        return sum(s.frames for s in self.scenes)


STORYBOARD_KEYS = {"scenes": list, "fps": (int, float), "transition_frames": (int, str), "negative_prompt": str}
SCENE_KEYS = {"prompt": str, "frames": int}  # required
SCENE_OPTIONAL_KEYS = {"transition_frames": (int, str)}


def parse_storyboard(data) -> Storyboard:
    """A Storyboard from a mapping (a parsed YAML/JSON file); errors name the scene and the key."""
    if not isinstance(data, dict):
        raise ValueError(f"a storyboard must be a mapping with 'scenes', got {type(data).__name__}")
    unknown = sorted(set(data) - set(STORYBOARD_KEYS))
    if unknown:
        raise ValueError(f"unknown storyboard keys: {', '.join(map(str, unknown))}; allowed: {', '.join(STORYBOARD_KEYS)}")
    for key, kind in STORYBOARD_KEYS.items():
        if key in data and (not isinstance(data[key], kind) or isinstance(data[key], bool)):
            raise ValueError(f"storyboard key {key!r} has the wrong type: got {data[key]!r}")
    scenes_raw = data.get("scenes")
    if not scenes_raw:
        raise ValueError("the storyboard has no scenes: give a non-empty list under 'scenes'")
    scenes = []
    for i, raw in enumerate(scenes_raw, 1):
        if not isinstance(raw, dict):
            raise ValueError(f"scene {i}: must be a mapping with 'prompt' and 'frames', got {raw!r}")
        unknown = sorted(set(raw) - set(SCENE_KEYS) - set(SCENE_OPTIONAL_KEYS))
        if unknown:
            raise ValueError(f"scene {i}: unknown keys {', '.join(map(str, unknown))}; allowed: prompt, frames, transition_frames")
        for key, kind in {**SCENE_KEYS, **SCENE_OPTIONAL_KEYS}.items():
            if key not in raw:
                if key in SCENE_KEYS:
                    raise ValueError(f"scene {i}: missing {key!r}")
                continue
            if not isinstance(raw[key], kind) or isinstance(raw[key], bool):
                what = {str: "a string", int: "an integer"}.get(kind, f"an integer or {AUTO!r}")
                raise ValueError(f"scene {i}: {key!r} must be {what}, got {raw[key]!r}")
        scene = Scene(raw["prompt"], raw["frames"], raw.get("transition_frames"))
        check_scene(i, scene)
        scenes.append(scene)
    fps = data.get("fps", 8.0)
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"storyboard 'fps' must be a positive number, got {fps!r}")
    transition = data.get("transition_frames")  # absent: the model's default
    if transition is not None:
        check_transition("storyboard 'transition_frames'", transition)
    board = Storyboard(tuple(scenes), float(fps), transition, data.get("negative_prompt"))
    if board.num_frames > MAX_LONG_FRAMES:
        raise ValueError(f"the storyboard has {board.num_frames} frames in all; at most {MAX_LONG_FRAMES}")
    return board


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
            raise ValueError("scene 1: 'transition_frames' blends a scene with the one before it; the first scene has none")


def check_transition(name: str, value) -> None:
    """A transition length is an integer >= 0 or "auto"."""
    if value != AUTO and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise ValueError(f"{name} must be an integer >= 0 or {AUTO!r}, got {value!r}")


def load_storyboard(path: str | Path) -> Storyboard:
    """Read a storyboard from a .yaml/.yml or .json file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"storyboard file {path} does not exist")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {e}") from e
    return parse_storyboard(data)


# ---------------------------------------------------------------- window geometry and weights
def windows(num_frames: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """Windows as (first frame, end frame, offset of the first frame inside the window).

    The grid of window starts runs from -(window - stride), so windows at the ends are cut short
    and every frame is covered by window / stride windows: the work per frame is the same for any
    length, and time grows linearly. A video no longer than one window is one window.
    """
    if num_frames <= window:
        return [(0, num_frames, 0)]
    out = []
    for start in range(-(window - stride), num_frames, stride):
        a, b = max(0, start), min(num_frames, start + window)
        if b > a:
            out.append((a, b, a - start))
    return out


def window_weights(window: int) -> torch.Tensor:
    """Weights for fusing a window's frames: highest in the middle, small but > 0 at the edges."""
    x = (torch.arange(window, dtype=torch.float32) + 0.5) / window
    return torch.minimum(x, 1 - x) * 2 + 1e-3


def scene_mix(scenes: list[Scene], transition_frames: int) -> np.ndarray:
    """[num_frames, num_scenes] weights of each scene's prompt per frame, blended linearly across
    `transition_frames` frames centred on each cut (inside the scenes: no frame is cut); a scene's
    own transition_frames, when set, is used for the cut before it. The N blended frames step the
    weight by 1 / (N + 1) from the last unblended frame to the first after: the least largest step
    (the earlier ramp through the frames' centres, steps of 0.5 / N at its ends and 1 / N inside,
    made a dissolve's largest change (N + 1) / N larger: 1.125x at 8 frames)."""
    n = sum(s.frames for s in scenes)
    mix = np.zeros((n, len(scenes)), np.float32)
    bounds = np.cumsum([0] + [s.frames for s in scenes])
    for k in range(len(scenes)):
        mix[bounds[k] : bounds[k + 1], k] = 1
    for k in range(1, len(scenes)):
        cut = bounds[k]
        half = (transition_frames if scenes[k].transition_frames is None else scenes[k].transition_frames) / 2
        first, end = math.ceil(cut - half), math.floor(cut + half)
        lo, hi = max(bounds[k - 1], first), min(bounds[k + 1], end)
        for f in range(lo, hi):
            w = (f + 1 - first) / (end - first + 1)  # 0 -> 1 in equal steps, from the frame before to the frame after
            mix[f] = 0
            mix[f, k - 1], mix[f, k] = 1 - w, w
    return mix


def resolve_transitions(scenes: list[Scene], transition_frames: int | str) -> tuple[list[Scene], list[int]]:
    """The scenes with each cut's transition length set on the scene after it (a scene's own, else
    `transition_frames`), "auto" cuts at the longest they may take (`auto_cap`); and the indices
    of the scenes whose cut before them is "auto"."""
    planned, auto = [scenes[0]], []
    for k, scene in enumerate(scenes[1:], 1):
        t = transition_frames if scene.transition_frames is None else scene.transition_frames
        if t == AUTO:
            auto.append(k)
            t = auto_cap(scenes[k - 1], scene)
        planned.append(replace(scene, transition_frames=t))
    return planned, auto


def auto_cap(before: Scene, after: Scene) -> int:
    """The longest transition "auto" may choose for a cut: a quarter of each scene on its side of
    the cut, so at least half of every scene stays its own (8 frames for 16-frame scenes, 16 for 32)."""
    return 2 * min(before.frames // 4, after.frames // 4)


def crossfade(video: torch.Tensor, mix: np.ndarray, extra: list[tuple[int, int]], frames) -> torch.Tensor:
    """Frames `frames` of a dissolve, from decoded versions [B, C, n + len(extra), H, W]: each frame's
    own version times its scene's share, plus each other scene's version of it (extra frame j, at
    n + j, is (frame, scene) = extra[j]) times that scene's share."""
    n = mix.shape[0]
    idx = np.asarray(list(frames))
    own = mix[idx, mix[idx].argmax(1)]
    out = video[:, :, idx] * torch.from_numpy(own).to(video).view(1, 1, -1, 1, 1)
    pos = {int(f): i for i, f in enumerate(idx)}
    for j, (f, k) in enumerate(extra):
        if f in pos and mix[f, k] > 0:
            out[:, :, pos[f]] += float(mix[f, k]) * video[:, :, n + j]
    return out


def _frame_changes(video: torch.Tensor) -> torch.Tensor:
    """Mean absolute change between consecutive frames of [B, C, F, H, W]: [F - 1]."""
    video = video.float()
    return (video[:, :, 1:] - video[:, :, :-1]).abs().mean(dim=(0, 1, 3, 4))


def choose_transitions(video: torch.Tensor, scenes: list[Scene], auto: list[int], extra: list[tuple[int, int]],
                       ratio: float = AUTO_JUMP_RATIO) -> list[Scene]:
    """transition_frames="auto": for each cut before scenes[k], k in `auto`, the shortest even
    transition (2 up to the planned one, its `auto_cap`) whose crossfade changes no frame by more
    than `ratio` x the median change inside the scenes; if none does, the one with the smallest
    largest change. Chosen after decoding: every frame's own version does not depend on the
    transition length (`plan_dissolve` draws it by its own scene alone), and the other scene's
    versions were drawn for the longest. A cut between similar scenes gets a quick dissolve, one
    between different backgrounds a slow one (no transition of N frames can change a frame by less
    than the whole difference / (N + 1): `t2v.eval.run.dissolve_bound`)."""
    n = sum(s.frames for s in scenes)
    bounds = np.cumsum([0] + [s.frames for s in scenes])
    change = _frame_changes(video[:, :, :n])
    inside = np.ones(n - 1, bool)
    inside[bounds[1:-1] - 1] = False  # the hard cut between two scenes' own versions
    limit = ratio * float(change[torch.from_numpy(inside)].median()) if inside.any() else float("inf")
    scenes = list(scenes)
    for k in auto:
        cap, cut = scenes[k].transition_frames, int(bounds[k])
        if cap < 2:
            continue
        lo, hi = max(0, cut - cap // 2 - 1), min(n, cut + cap // 2 + 1)  # the longest zone and an own frame either side
        tried = []
        for t in range(2, cap + 1, 2):
            trial = scenes[:k] + [replace(scenes[k], transition_frames=t)] + scenes[k + 1 :]
            tried.append((float(_frame_changes(crossfade(video, scene_mix(trial, 0), extra, range(lo, hi))).max()), t))
            if tried[-1][0] <= limit:
                break
        scenes[k] = replace(scenes[k], transition_frames=tried[-1][1] if tried[-1][0] <= limit else min(tried)[1])
    return scenes


def span_starts(first: int, end: int, n: int, window: int, stride: int) -> list[int]:
    """Starts of the windows that cover frames [first, end) of an n-frame video: one window centred
    on them if they fit in one, else windows every `stride` frames aligned with both ends."""
    if end - first <= window:
        return [min(max(0, (first + end - window) // 2), n - window)]
    return list(range(first, end - window, stride)) + [end - window]


def cut_zones(mix: np.ndarray) -> list[tuple[int, int, int]]:
    """(scene before the cut, first, end) of the frames blended across each cut."""
    zones = []
    for k in range(1, mix.shape[1]):
        zone = np.nonzero((mix[:, k - 1] > 0) & (mix[:, k] > 0))[0]
        if len(zone):
            zones.append((k - 1, int(zone.min()), int(zone.max()) + 1))
    return zones


def plan_passes(mix: np.ndarray, window: int, stride: int, layout: str = "scenes") -> list[tuple[int, int, list[tuple[int, np.ndarray]]]]:
    """The UNet passes of one denoising step: [(first frame, end frame, [(scene, coef[end - first])])].

    Each scene has its own track of windows, and a frame's prediction is sum over scenes of
    mix[f, scene] x (that scene's track fused at f, each window weighted by window_weights); coef
    folds all of it, so the coefficients of all passes sum to 1 on every frame.
    layout "scenes": a scene's track is windows inside the scene (aligned with its first and last
      frame: a 16-frame scene is exactly one native window, as the model was trained), plus, for
      each blended cut, a window centred on the cut that gives the scene's prediction only on the
      blended frames of the other scene (those its own windows do not reach): a scene's own frames
      come from its own windows alone, so its object is where its own clip puts it.
    layout "grid": every window of the `windows` grid that holds frames of a scene is in its track
      (windows straddle the cuts, so a scene's frames are also drawn as parts of clips that start
      in the previous scene). A single scene always uses the grid: every frame gets the same work,
      so time is linear in length (aligned windows would cost 1.5 window-frames per frame at 32
      frames and 1.94 at 256).
    """
    n, num_scenes = mix.shape
    weights = window_weights(window).numpy()
    track: list[list[tuple[int, int, np.ndarray]]] = [[] for _ in range(num_scenes)]  # (a, b, fusion weight[b - a])
    if layout == "grid" or n <= window or num_scenes == 1:
        for a, b, off in windows(n, window, stride):
            for k in np.nonzero(mix[a:b].sum(0))[0]:
                track[k].append((a, b, weights[off : off + b - a]))
    else:
        owner = mix.argmax(1)
        blended = (mix > 0).sum(1) > 1
        for k in range(num_scenes):
            frames = np.nonzero(mix[:, k] == mix[:, k].max())[0] if not (owner == k).any() else np.nonzero(owner == k)[0]
            for a in span_starts(int(frames.min()), int(frames.max()) + 1, n, window, stride):
                track[k].append((a, a + window, weights.copy()))
        for k, z0, z1 in cut_zones(mix):  # windows on each blended cut, for the two scenes it joins
            for a in span_starts(z0, z1, n, window, stride):
                for j in (k, k + 1):
                    other = blended[a : a + window] & (owner[a : a + window] != j)  # the other scene's frames
                    track[j].append((a, a + window, weights * other))
    passes: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = {}
    for k, spans in enumerate(track):
        total = np.zeros(n, np.float32)
        for a, b, w in spans:
            total[a:b] += w
        for a, b, w in spans:
            coef = mix[a:b, k] * w / np.maximum(total[a:b], 1e-12)
            if coef.any():
                passes.setdefault((a, b), []).append((k, coef.astype(np.float32)))
    return [(a, b, p) for (a, b), p in sorted(passes.items())]


def fuse(starts: list[int], masks: list[np.ndarray], n: int) -> list[tuple[int, np.ndarray]]:
    """Each window's weights over the frames it covers divided by the sum of all windows' weights
    there: (start, coef) with the coefficients of every covered frame summing to 1."""
    total = np.zeros(n, np.float32)
    for a, m in zip(starts, masks):
        total[a : a + len(m)] += m
    return [(a, (m / np.maximum(total[a : a + len(m)], 1e-12)).astype(np.float32)) for a, m in zip(starts, masks)]


def plan_dissolve(mix: np.ndarray, window: int, stride: int) -> tuple[list[tuple[np.ndarray, list[tuple[int, np.ndarray]]]], list[tuple[int, int]]]:
    """The passes of scene_blend="dissolve": (plan, extra frames).

    Every frame is drawn by its own scene alone (`owner`: the scene with the larger share), with
    windows aligned to the scenes as in plan_passes. A blended frame also gets an extra latent
    frame, the other scene's version of it, drawn by a window that carries that scene on past its
    own frames (its last own frames and its versions of the next scene's first blended frames, or
    the mirror at the scene's start), so a pass reads only its own scene's versions when scenes are
    a window long; the decoded versions are then crossfaded by `mix`. (A window centred on the cut,
    reading the other scene's frames too: whole-storyboard max jump ratio median 3.63 / 3.62,
    worst 8.51 / 8.95 at seeds 0 / 100; this way 3.03 / 3.13, worst 5.34 / 5.67; scenes all-correct
    the same, 91% / 88%.) Plan entries are (indices into the frames + extra frames,
    [(scene, coef)]); extra frame j is index n + j, standing for (frame, scene) = extra[j].
    """
    n, num_scenes = mix.shape
    weights = window_weights(window).numpy()
    owner = mix.argmax(1)
    extra = [(f, k) for f in range(n) for k in range(num_scenes) if mix[f, k] > 0 and owner[f] != k]
    where = {fk: n + j for j, fk in enumerate(extra)}
    plan = []
    for k in range(num_scenes):
        own = np.nonzero(owner == k)[0]
        if len(own) == 0:
            continue
        starts = span_starts(int(own.min()), int(own.max()) + 1, n, window, stride)
        for a, coef in fuse(starts, [weights * (owner[a : a + window] == k) for a in starts], n):
            plan.append((np.arange(a, a + window), [(k, coef)]))
    across = [[] for _ in range(num_scenes)]  # per scene, windows that carry it on past its own frames
    for k, z0, z1 in cut_zones(mix):
        cut = z0 + int((owner[z0:z1] == k).sum())  # first frame of scene k + 1
        if cut < z1:  # scene k's versions of frames [cut, z1): windows ending there, over k's own last frames
            across[k] += [max(0, z1 - window)] if z1 - cut <= window else span_starts(cut, z1, n, window, stride)
        if z0 < cut:  # scene k + 1's versions of frames [z0, cut): windows starting there
            across[k + 1] += [min(z0, n - window)] if cut - z0 <= window else span_starts(z0, cut, n, window, stride)
    for j, starts in enumerate(across):  # a scene's versions of other scenes' frames, fused over its windows
        masks = [weights * np.array([(f, j) in where for f in range(a, a + window)]) for a in starts]
        for a, coef in fuse(starts, masks, n):
            plan.append((np.array([where.get((f, j), f) for f in range(a, a + window)]), [(j, coef)]))
    return plan, extra


def one_pass(num_frames: int, window: int, scene_motion: str) -> bool:
    """Whether one prompt of num_frames is drawn by a single window (as regions need): at most a
    window of frames, or any length as keyframes."""
    return num_frames <= window or scene_motion == "keyframes"


def plan_keyframes(scenes: list[Scene], window: int) -> tuple[list[Scene], np.ndarray]:
    """scene_motion="keyframes": the storyboard the UNet draws, and the time of each of its frames
    in frames of the video. A scene longer than `window` is drawn as `window` keyframes spread
    evenly over it (one clip, so one motion over the whole scene), a shorter one frame for frame;
    each cut's transition, in keyframes, reaches at least as far into both scenes as the video's
    own (so `expand_keyframes` has both scenes' versions of every blended frame to interpolate)."""
    step = [(s.frames - 1) / (window - 1) if s.frames > window else 1.0 for s in scenes]
    drawn, times, start = [], [], 0
    for k, scene in enumerate(scenes):
        t = scene.transition_frames
        if k > 0 and t:  # half before the cut (k - 1's frames) and half after it (k's), in each side's keyframes
            t = 2 * max(math.ceil(t / 2 / step[k - 1]), math.ceil((t / 2 - 1) / step[k]) + 1)
        drawn.append(replace(scene, frames=min(scene.frames, window), transition_frames=t))
        times.append(start + np.arange(drawn[-1].frames) * step[k])
        start += scene.frames
    return drawn, np.concatenate(times).astype(np.float32)


def interpolate_frames(latents: torch.Tensor, times: np.ndarray, at) -> torch.Tensor:
    """Frames of `latents` [B, C, F, h, w], taken at increasing `times` [F], linearly interpolated
    at the times `at` (held at the first and last frame outside them)."""
    at = np.clip(np.asarray(at, np.float32), times[0], times[-1])
    hi = np.clip(np.searchsorted(times, at, side="right"), 1, len(times) - 1) if len(times) > 1 else np.zeros(len(at), int)
    lo = np.maximum(hi - 1, 0)
    span = np.maximum(times[hi] - times[lo], 1e-6)
    w = torch.from_numpy(np.clip((at - times[lo]) / span, 0, 1)).to(latents).view(1, 1, -1, 1, 1)
    return latents[:, :, lo] * (1 - w) + latents[:, :, hi] * w


def carried_time(times: np.ndarray, drawn_owner: np.ndarray, f: int, k: int) -> float:
    """The video time of scene k's version of keyframe f of another scene. The window that carries
    scene k past its own keyframes draws it on at its own keyframe spacing (the clip's pace), not
    at the other scene's: m keyframes past k's last one is m x k's step later (before k's first, m
    steps earlier). (Taking the other scene's keyframe time instead put k's first carried keyframe
    one video frame after its last own one, though the model drew it a whole keyframe step on: a
    32-frame scene's version moved twice as fast across the cut.)"""
    own = np.nonzero(drawn_owner == k)[0]
    step = (float(times[own[-1]]) - float(times[own[0]])) / (len(own) - 1) if len(own) > 1 else 1.0
    if f > own[-1]:
        return float(times[own[-1]]) + (f - own[-1]) * step
    return float(times[own[0]]) - (own[0] - f) * step


def expand_keyframes(latents: torch.Tensor, times: np.ndarray, extra: list[tuple[int, int]], scenes: list[Scene],
                     dissolve: bool) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """From the keyframe storyboard's latents (its frames at `times`, then its extra frames
    `extra`), the video's: every frame of `scenes` interpolated between the keyframes around it
    (a moving object moves well under a latent pixel from one keyframe to the next, so linear
    interpolation does not ghost), then, for a dissolve, each scene's version of the other
    scenes' blended frames, interpolated along that scene's own keyframes and its versions of the
    other scenes' keyframes (placed at the scene's own pace, `carried_time`).
    Returns (latents [B, C, n + len(new extra), h, w], new extra)."""
    n_drawn = len(times)
    n = sum(s.frames for s in scenes)
    parts = [interpolate_frames(latents[:, :, :n_drawn], times, np.arange(n))]
    mix = scene_mix(scenes, 0)
    owner = mix.argmax(1)
    out_extra = [(f, k) for k in range(len(scenes)) for f in range(n) if mix[f, k] > 0 and owner[f] != k] if dissolve else []
    bounds = np.cumsum([0] + [s.frames for s in scenes])
    drawn_owner = np.searchsorted(bounds, times, side="right") - 1  # the scene each keyframe belongs to
    for k in sorted({k for _, k in out_extra}):  # out_extra runs scene by scene, as the parts do
        track = [(float(times[i]), i) for i in np.nonzero(drawn_owner == k)[0]]
        track += [(carried_time(times, drawn_owner, f, k), n_drawn + j) for j, (f, kk) in enumerate(extra) if kk == k]
        track.sort()
        idx = torch.tensor([i for _, i in track])
        at = [f for f, kk in out_extra if kk == k]
        parts.append(interpolate_frames(latents[:, :, idx], np.array([t for t, _ in track], np.float32), at))
    return torch.cat(parts, dim=2), out_extra


def reschedule_noise(noise: torch.Tensor, window: int, stride: int, generator=None) -> torch.Tensor:
    """FreeNoise: frames past the first window reuse the noise of the frames one window earlier,
    shuffled within each block of `stride` frames. noise: [B, C, F, h, w]."""
    out = noise.clone()
    n = noise.shape[2]
    g = generator[0] if isinstance(generator, list) else generator
    for start in range(window, n, stride):
        block = min(stride, n - start)
        perm = torch.randperm(block, generator=g) if g is not None else torch.randperm(block)
        src = torch.arange(start - window, start - window + block)[perm]
        out[:, :, start : start + block] = out[:, :, src]
    return out


def reschedule_scene_noise(noise: torch.Tensor, frames: list[int], window: int, stride: int, generator=None) -> torch.Tensor:
    """`reschedule_noise` within each scene: every scene starts from its own noise (a scene of
    `frames[k]` frames longer than a window reuses its own earlier noise, as one prompt does)."""
    out = noise.clone()
    bounds = np.cumsum([0] + list(frames))
    for a, b in zip(bounds[:-1], bounds[1:]):
        out[:, :, a:b] = reschedule_noise(noise[:, :, a:b], window, stride, generator)
    return out


class LongVideoPipeline(TextToVideoPipeline):
    """Long videos and storyboards from a text-to-video model (same components, no retraining).

        >>> long = LongVideoPipeline(**pipe.components)
        >>> frames = long(scenes=[Scene("a red circle moving right", 32), Scene("a blue square moving up", 32)], seed=0).frames[0]
    """

    @property
    def native_frames(self) -> int:
        return int(getattr(self, "t2v_defaults", {}).get("num_frames", 16))

    @property
    def default_transition_frames(self) -> int | str:
        """The model's recommended transition_frames (its t2v_model.json "defaults"), else 8."""
        value = getattr(self, "t2v_defaults", {}).get("transition_frames", DEFAULT_TRANSITION_FRAMES)
        return value if value == AUTO else int(value)

    @property
    def default_scene_motion(self) -> str:
        """The model's recommended scene_motion (its t2v_model.json "defaults"), else "windows"."""
        return str(getattr(self, "t2v_defaults", {}).get("scene_motion", "windows"))

    def check_long_inputs(self, prompt, scenes, num_frames, window_size, window_overlap, transition_frames, output_type,
                          scene_blend="dissolve", window_layout="scenes", scene_motion="windows"):
        if (prompt is None) == (scenes is None):
            raise ValueError("pass either prompt (one scene) or scenes (a storyboard), not both or neither")
        if scenes is not None:
            if not scenes:
                raise ValueError("scenes is empty: give at least one Scene(prompt, frames)")
            for i, s in enumerate(scenes, 1):
                if not isinstance(s, Scene):
                    raise ValueError(f"scene {i}: expected a Scene(prompt, frames), got {s!r}")
                check_scene(i, s)
        elif not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
        if not isinstance(num_frames, int) or not 1 <= num_frames <= MAX_LONG_FRAMES:
            raise ValueError(f"num_frames must be an integer in [1, {MAX_LONG_FRAMES}], got {num_frames!r}")
        if not isinstance(window_size, int) or window_size < 2:
            raise ValueError(f"window_size must be an integer >= 2, got {window_size!r}")
        if not isinstance(window_overlap, int) or not 0 <= window_overlap < window_size:
            raise ValueError(f"window_overlap must be an integer in [0, window_size - 1] = [0, {window_size - 1}], got {window_overlap!r}")
        check_transition("transition_frames", transition_frames)
        if scene_blend != "dissolve" and AUTO in [transition_frames] + [s.transition_frames for s in scenes or []]:
            raise ValueError(f"transition_frames={AUTO!r} chooses the length of a dissolve: it needs scene_blend='dissolve', got {scene_blend!r}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if scene_blend not in SCENE_BLENDS:
            raise ValueError(f"scene_blend must be one of {SCENE_BLENDS}, got {scene_blend!r}")
        if window_layout not in WINDOW_LAYOUTS:
            raise ValueError(f"window_layout must be one of {WINDOW_LAYOUTS}, got {window_layout!r}")
        if scene_motion not in SCENE_MOTIONS:
            raise ValueError(f"scene_motion must be one of {SCENE_MOTIONS}, got {scene_motion!r}")

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | None = None,
        scenes: list[Scene] | None = None,
        negative_prompt: str | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float | None = None,
        window_size: int | None = None,
        window_overlap: int | None = None,
        transition_frames: int | str | None = None,
        windows_per_batch: int = 4,
        scene_blend: str = "dissolve",
        window_layout: str = "scenes",
        noise_per_scene: bool = True,
        scene_motion: str | None = None,
        regions: list | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable[[int, int, torch.Tensor], None] | None = None,
    ):
        """Generate `num_frames` frames for one prompt, or sum(frames) for a list of scenes.

        window_size defaults to the model's native length, window_overlap to half of it (every frame
        is denoised by 2 windows; FreeNoise used 3/4). scene_blend: how scenes blend across a cut,
        "dissolve" (default; crossfade of two versions of each blended frame), "prediction" (mix of
        the scenes' noise predictions) or "embedding" (mean of the text embeddings; earlier, kept to
        compare, see the module docstring for figures). window_layout (for "prediction"):
        "scenes" (default) aligns windows with the scenes, "grid" lays them on a regular grid
        across the cuts. One prompt always uses the grid (`plan_passes`). With
        output_type="latent" a dissolve returns each frame's own version (crossfading happens
        after decoding). noise_per_scene (default): FreeNoise rescheduling within each scene, so
        each scene starts from its own noise; False: across the whole video (a scene then starts
        from the previous scene's noise, shuffled). transition_frames: frames blended across each
        cut, or "auto" (dissolve only): the shortest even length, up to a quarter of each scene on its
        side, whose crossfade changes no frame by more than 2.5x the median change inside the scenes
        (`choose_transitions`, after decoding; the UNet draws the longest); a scene's own transition_frames
        wins; default: the model's (t2v_model.json "defaults"), else 8. scene_motion: how a scene
        longer than a window is drawn, "keyframes" (one clip of window keyframes over the scene,
        interpolated in latent space: one motion per scene) or
        "windows" (overlapping clips); default: the model's (t2v_model.json "defaults"), else
        "windows". With "keyframes", callback_on_step_end sees the keyframes' latents.
        regions (`t2v.pipelines.regions.Region`s, masks over the whole video): one prompt drawn in one
        pass only, i.e. with "keyframes" or at most window_size frames.
        Returns the same output as TextToVideoPipeline, with `transition_frames` per cut.
        """
        # 1. Inputs
        guidance_scale = self.default_guidance if guidance_scale is None else guidance_scale
        window_size = window_size or self.native_frames
        window_overlap = window_size // 2 if window_overlap is None else window_overlap
        if scenes is not None:
            scenes = list(scenes)
            num_frames = sum(getattr(s, "frames", 0) for s in scenes)
        elif num_frames is None:
            num_frames = 4 * window_size
        scene_motion = self.default_scene_motion if scene_motion is None else scene_motion
        transition_frames = self.default_transition_frames if transition_frames is None else transition_frames
        self.check_long_inputs(prompt, scenes, num_frames, window_size, window_overlap, transition_frames, output_type, scene_blend,
                               window_layout, scene_motion)
        if regions is not None and (scenes is not None or not one_pass(num_frames, window_size or self.native_frames, scene_motion)):
            raise ValueError("regions work in one pass: one prompt, with scene_motion='keyframes' or at most "
                             f"window_size frames; got {'a storyboard' if scenes is not None else f'{num_frames} frames, scene_motion={scene_motion!r}'}")
        scenes = scenes or [Scene(prompt, num_frames)]
        height = self.default_size if height is None else height
        width = self.default_size if width is None else width
        window = min(window_size, num_frames)
        self.check_inputs(scenes[0].prompt, negative_prompt, window, height, width, num_inference_steps,
                          guidance_scale, 1, output_type)
        if regions is not None:
            check_regions(regions, prompt, num_frames, height, width)
        if generator is None and seed is not None:
            generator = torch.Generator("cpu").manual_seed(seed)
        device = self._execution_device
        do_cfg = guidance_scale > 1.0

        # 2. Text: one embedding per scene; each frame's share of each scene (blends at the cuts)
        prompts = [s.prompt for s in scenes]
        embeds, negative = self.encode_prompt(prompts, device, 1, do_cfg, negative_prompt)
        scenes, auto = resolve_transitions(scenes, transition_frames)  # "auto" cuts planned at their longest
        video_scenes, video_frames = scenes, num_frames
        if scene_motion == "keyframes":  # scenes longer than a window: keyframes, interpolated after denoising
            scenes, times = plan_keyframes(scenes, window)
            num_frames = sum(sc.frames for sc in scenes)
        mix = scene_mix(scenes, 0)
        stride = window - window_overlap if num_frames > window else window
        extra = []  # extra latent frames: (frame, scene), another scene's version of a blended frame
        if scene_blend == "embedding":  # one pass per window, on the mean of its frames' embeddings
            weights = window_weights(window).numpy()
            total = np.zeros(num_frames, np.float32)
            for a, b, off in windows(num_frames, window, stride):
                total[a:b] += weights[off : off + b - a]
            plan = [(np.arange(a, b), [(torch.einsum("s,std->td", torch.from_numpy(mix[a:b].mean(0)).to(embeds), embeds), weights[off : off + b - a] / total[a:b])])
                    for a, b, off in windows(num_frames, window, stride)]
        elif scene_blend == "dissolve" and len(scenes) > 1:  # own frames + other scenes' versions, crossfaded (plan_dissolve)
            plan, extra = plan_dissolve(mix, window, stride)
            plan = [(idx, [(embeds[k], coef) for k, coef in passes]) for idx, passes in plan]
        else:  # one pass per scene and window of its track (plan_passes)
            plan = [(np.arange(a, b), [(embeds[k], coef) for k, coef in passes])
                    for a, b, passes in plan_passes(mix, window, stride, window_layout)]
        plan = [(torch.from_numpy(idx).to(device), [(text, torch.from_numpy(coef).to(device=device, dtype=embeds.dtype)) for text, coef in passes])
                for idx, passes in plan]
        # windows of the same length run together, a few at a time
        groups = []
        for length in sorted({len(idx) for idx, _ in plan}, reverse=True):
            same = [k for k, (idx, _) in enumerate(plan) if len(idx) == length]
            groups += [same[i : i + windows_per_batch] for i in range(0, len(same), windows_per_batch)]

        # 3. Timesteps and start noise (FreeNoise rescheduling)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        f = self.vae_scale_factor
        shape = (1, self.unet.config.in_channels, num_frames, height // f, width // f)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=embeds.dtype)
        if noise_per_scene:
            latents = reschedule_scene_noise(latents, [sc.frames for sc in scenes], window, stride, generator)
        else:
            latents = reschedule_noise(latents, window, stride, generator)
        latents = latents * self.scheduler.init_noise_sigma
        if extra:  # another scene's version of a frame starts from that frame's noise
            latents = torch.cat([latents, latents[:, :, [f for f, _ in extra]]], dim=2)
        step_kwargs = self._step_kwargs(generator, 0.0, latents.shape[2])

        # 4. Denoising: every window each step, fused, then one solver step on the whole video
        regional = contextlib.nullcontext()
        if regions is not None:  # one window: the keyframes (or the whole video), each region's phrase heard in its mask only
            masks = latent_masks(regions, video_frames, latents.shape[-2:])
            if num_frames != video_frames:
                masks = masks[:, np.round(times).astype(int)]
            bias = token_biases(self.tokenizer, prompt, regions, self.tokenizer.model_max_length)
            regional = regional_attention(self.unet, bias.to(device), masks.to(device), do_cfg)
        with regional, self.progress_bar(total=len(timesteps) * len(plan)) as bar:
            for i, t in enumerate(timesteps):
                noise_pred = torch.zeros_like(latents)
                for group in groups:
                    x = self.scheduler.scale_model_input(torch.cat([latents[:, :, plan[k][0]] for k in group]), t)
                    jobs = [(j, text, coef) for j, k in enumerate(group) for text, coef in plan[k][1]]
                    x_in, text = x[[j for j, _, _ in jobs]], torch.stack([text for _, text, _ in jobs])
                    if do_cfg:  # one unconditional pass per window, shared by its scenes' passes
                        x_in, text = torch.cat([x, x_in]), torch.cat([negative[:1].expand(len(group), -1, -1), text])
                    out = self.unet(x_in, t, encoder_hidden_states=text.to(self.unet.dtype), return_dict=False)[0]
                    for row, (j, _, coef) in enumerate(jobs, start=len(group) if do_cfg else 0):
                        pred = out[j] + guidance_scale * (out[row] - out[j]) if do_cfg else out[row]
                        noise_pred[0, :, plan[group[j]][0]] += pred * coef.view(1, -1, 1, 1)
                    bar.update(len(group))
                b_, c, n, h, w = latents.shape
                as_images = lambda z: z.permute(0, 2, 1, 3, 4).reshape(b_ * n, c, h, w)  # noqa: E731
                latents = self.scheduler.step(as_images(noise_pred), t, as_images(latents), **step_kwargs).prev_sample
                latents = latents.reshape(b_, n, c, h, w).permute(0, 2, 1, 3, 4)
                if callback_on_step_end is not None:
                    callback_on_step_end(i, len(timesteps), latents[:, :, :num_frames])

        # 5. Keyframes: the video's frames (and a dissolve's other versions) between them
        if num_frames != video_frames:
            latents, extra = expand_keyframes(latents, times, extra, video_scenes, scene_blend == "dissolve" and len(scenes) > 1)
            scenes, num_frames, mix = video_scenes, video_frames, scene_mix(video_scenes, 0)

        # 6. Decode in chunks of frames (memory independent of length)
        if output_type == "latent":
            frames = latents[:, :, :num_frames]  # a dissolve's other versions are mixed after decoding
        else:
            chunk = self.vae_decode_chunk_size
            self.vae_decode_chunk_size = chunk or window
            try:
                video = self.decode_latents(latents)
            finally:
                self.vae_decode_chunk_size = chunk
            if extra:  # dissolve: crossfade each blended frame with the other scene's version of it
                if auto:
                    scenes = choose_transitions(video, scenes, auto, extra)
                    mix = scene_mix(scenes, 0)
                video = crossfade(video, mix, extra, range(num_frames))
            frames = self.video_processor.postprocess_video(video=video, output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        transitions = [None if output_type == "latent" and k in auto else s.transition_frames for k, s in enumerate(scenes)][1:]
        return TextToVideoPipelineOutput(frames=frames, seed=seed, transition_frames=transitions if len(scenes) > 1 else None)
