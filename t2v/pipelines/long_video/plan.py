"""Planning a long video or storyboard: which frames each UNet pass draws, with which scene's prompt.

Pure functions over numpy arrays (no model): the pipeline runs the `Plan` they make.

- `windows`: a grid of overlapping windows of the model's native length, every frame covered by
  the same number of windows, so time is linear in length (one prompt).
- `scene_mix`: each frame's share of each scene; linear ramps across the cuts.
- `plan_dissolve`: every frame drawn by its own scene alone, with windows aligned to the scenes;
  a blended frame also gets an extra latent frame, the other scene's version of it, drawn by a
  window that carries that scene on past its own frames. The versions are crossfaded after
  decoding (`t2v.pipelines.long_video.blend.crossfade`).
- `plan_keyframes`: a scene longer than a window drawn as one clip of keyframes spread over it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from t2v.models.defaults import AUTO

from .storyboard import Scene


@dataclass(frozen=True)
class Pass:
    """One UNet pass of a denoising step: a window of latent frames drawn with one scene's prompt.

    frames: indices into the latent frames (the video's n frames, then the plan's extra frames);
    coef: the weight of this pass's prediction on each of its frames (the passes that touch a
    frame sum to 1 there)."""

    frames: np.ndarray
    scene: int
    coef: np.ndarray


@dataclass(frozen=True)
class Plan:
    """The passes of one denoising step. extra[j] = (frame, scene): latent frame n + j is that
    scene's version of that video frame (a dissolve's other version)."""

    passes: list[Pass]
    extra: list[tuple[int, int]]


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


def window_weights(window: int) -> np.ndarray:
    """Weights for fusing a window's frames: highest in the middle, small but > 0 at the edges."""
    x = (np.arange(window, dtype=np.float32) + np.float32(0.5)) / np.float32(window)
    return np.minimum(x, 1 - x) * np.float32(2) + np.float32(1e-3)


def span_starts(first: int, end: int, n: int, window: int, stride: int) -> list[int]:
    """Starts of the windows that cover frames [first, end) of an n-frame video: one window centred
    on them if they fit in one, else windows every `stride` frames aligned with both ends."""
    if end - first <= window:
        return [min(max(0, (first + end - window) // 2), n - window)]
    return list(range(first, end - window, stride)) + [end - window]


def fuse(starts: list[int], masks: list[np.ndarray], n: int) -> list[tuple[int, np.ndarray]]:
    """Each window's weights over the frames it covers divided by the sum of all windows' weights
    there: (start, coef) with the coefficients of every covered frame summing to 1."""
    total = np.zeros(n, np.float32)
    for a, m in zip(starts, masks):
        total[a : a + len(m)] += m
    return [(a, (m / np.maximum(total[a : a + len(m)], 1e-12)).astype(np.float32)) for a, m in zip(starts, masks)]


# ---------------------------------------------------------------- scenes and cuts
def scene_mix(scenes: list[Scene], transition_frames: int) -> np.ndarray:
    """[num_frames, num_scenes] weights of each scene per frame, blended linearly across
    `transition_frames` frames centred on each cut (inside the scenes: no frame is cut); a scene's
    own transition_frames, when set, is used for the cut before it. The N blended frames step the
    weight by 1 / (N + 1) from the last unblended frame to the first after: equal steps, the least
    largest step any N-frame ramp can have."""
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


def cut_zones(mix: np.ndarray) -> list[tuple[int, int, int]]:
    """(scene before the cut, first, end) of the frames blended across each cut."""
    zones = []
    for k in range(1, mix.shape[1]):
        zone = np.nonzero((mix[:, k - 1] > 0) & (mix[:, k] > 0))[0]
        if len(zone):
            zones.append((k - 1, int(zone.min()), int(zone.max()) + 1))
    return zones


# ---------------------------------------------------------------- plans
def plan_windows(num_frames: int, window: int, stride: int) -> Plan:
    """One prompt: the `windows` grid, each window's prediction weighted by `window_weights`."""
    weights = window_weights(window)
    grid = windows(num_frames, window, stride)
    fused = fuse([a for a, _, _ in grid], [weights[off : off + b - a] for a, b, off in grid], num_frames)
    return Plan([Pass(np.arange(a, a + len(coef)), 0, coef) for a, coef in fused], [])


def plan_dissolve(mix: np.ndarray, window: int, stride: int) -> Plan:
    """A storyboard whose scenes are crossfaded across the cuts.

    Every frame is drawn by its own scene alone (`owner`: the scene with the larger share), with
    windows aligned to the scenes (a scene of the native length is exactly one window, the clip
    the model was trained to make). A blended frame also gets an extra latent frame, the other
    scene's version of it, drawn by a window that carries that scene on past its own frames (its
    last own frames and its versions of the next scene's first blended frames, or the mirror at
    the scene's start), so a pass reads only its own scene's versions when scenes are a window
    long; the decoded versions are then crossfaded by `mix`.
    """
    n, num_scenes = mix.shape
    weights = window_weights(window)
    owner = mix.argmax(1)
    extra = [(f, k) for f in range(n) for k in range(num_scenes) if mix[f, k] > 0 and owner[f] != k]
    where = {fk: n + j for j, fk in enumerate(extra)}
    passes = []
    for k in range(num_scenes):
        own = np.nonzero(owner == k)[0]
        if len(own) == 0:
            continue
        starts = span_starts(int(own.min()), int(own.max()) + 1, n, window, stride)
        for a, coef in fuse(starts, [weights * (owner[a : a + window] == k) for a in starts], n):
            passes.append(Pass(np.arange(a, a + window), k, coef))
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
            passes.append(Pass(np.array([where.get((f, j), f) for f in range(a, a + window)]), j, coef))
    return Plan(passes, extra)


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
