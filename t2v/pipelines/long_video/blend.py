"""The tensor side of long videos: start noise, keyframe interpolation and crossfades.

- FreeNoise noise rescheduling (`reschedule_scene_noise`): frames past a scene's first window
  reuse the scene's earlier noise, shuffled, so windows share noise statistics and content does
  not drift; every scene starts from its own noise.
- Keyframes (`expand_keyframes`): the frames between a scene's keyframes are interpolated
  linearly in latent space (an object moves well under a latent pixel from one keyframe to the
  next, so nothing ghosts).
- Dissolves (`crossfade`): each blended frame's two decoded versions weighted by each scene's share;
  `choose_transitions` picks the length of the "auto" cuts from the decoded frames.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from t2v.video_io import frame_changes

from .plan import scene_mix
from .storyboard import Scene


AUTO_JUMP_RATIO = 2.5  # "auto" aims at a largest change <= this x the median (the eval's target is 3)


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


def reschedule_scene_noise(
    noise: torch.Tensor, frames: list[int], window: int, stride: int, generator=None
) -> torch.Tensor:
    """`reschedule_noise` within each scene: every scene starts from its own noise (a scene of
    `frames[k]` frames longer than a window reuses its own earlier noise, as one prompt does)."""
    out = noise.clone()
    bounds = np.cumsum([0] + list(frames))
    for a, b in zip(bounds[:-1], bounds[1:]):
        out[:, :, a:b] = reschedule_noise(noise[:, :, a:b], window, stride, generator)
    return out


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


def _changes(video: torch.Tensor) -> torch.Tensor:
    """`frame_changes` of one decoded video [1, C, F, H, W]."""
    return frame_changes(video[0].float().transpose(0, 1))


def choose_transitions(
    video: torch.Tensor,
    scenes: list[Scene],
    auto: list[int],
    extra: list[tuple[int, int]],
    ratio: float = AUTO_JUMP_RATIO,
) -> list[Scene]:
    """transition_frames="auto": for each cut before scenes[k], k in `auto`, the shortest even
    transition (2 up to the planned one, its `auto_cap`) whose crossfade changes no frame by more
    than `ratio` x the median change inside the scenes; if none does, the one with the smallest
    largest change. Chosen after decoding: every frame's own version does not depend on the
    transition length (`plan_dissolve` draws it by its own scene alone), and the other scene's
    versions were drawn for the longest. A cut between similar scenes gets a quick dissolve, one
    between different backgrounds a slow one (no transition of N frames can change a frame by
    less than the whole difference / (N + 1): `t2v.eval.run.dissolve_bound`)."""
    n = sum(s.frames for s in scenes)
    bounds = np.cumsum([0] + [s.frames for s in scenes])
    change = _changes(video[:, :, :n])
    inside = np.ones(n - 1, bool)
    inside[bounds[1:-1] - 1] = False  # the hard cut between two scenes' own versions
    limit = ratio * float(change[torch.from_numpy(inside)].median()) if inside.any() else float("inf")
    scenes = list(scenes)
    for k in auto:
        cap, cut = scenes[k].transition_frames, int(bounds[k])
        if cap < 2:
            continue
        lo, hi = (
            max(0, cut - cap // 2 - 1),
            min(n, cut + cap // 2 + 1),
        )  # the longest zone and an own frame either side
        tried = []
        for t in range(2, cap + 1, 2):
            trial = scenes[:k] + [replace(scenes[k], transition_frames=t)] + scenes[k + 1 :]
            tried.append((float(_changes(crossfade(video, scene_mix(trial, 0), extra, range(lo, hi))).max()), t))
            if tried[-1][0] <= limit:
                break
        scenes[k] = replace(scenes[k], transition_frames=tried[-1][1] if tried[-1][0] <= limit else min(tried)[1])
    return scenes


def interpolate_frames(latents: torch.Tensor, times: np.ndarray, at) -> torch.Tensor:
    """Frames of `latents` [B, C, F, h, w], taken at increasing `times` [F], linearly interpolated
    at the times `at` (held at the first and last frame outside them)."""
    at = np.clip(np.asarray(at, np.float32), times[0], times[-1])
    hi = (
        np.clip(np.searchsorted(times, at, side="right"), 1, len(times) - 1)
        if len(times) > 1
        else np.zeros(len(at), int)
    )
    lo = np.maximum(hi - 1, 0)
    span = np.maximum(times[hi] - times[lo], 1e-6)
    w = torch.from_numpy(np.clip((at - times[lo]) / span, 0, 1)).to(latents).view(1, 1, -1, 1, 1)
    return latents[:, :, lo] * (1 - w) + latents[:, :, hi] * w


def carried_time(times: np.ndarray, drawn_owner: np.ndarray, f: int, k: int) -> float:
    """The video time of scene k's version of keyframe f of another scene. The window that carries
    scene k past its own keyframes draws it on at its own keyframe spacing (the clip's pace), not
    at the other scene's: m keyframes past k's last one is m x k's step later (before k's first, m
    steps earlier)."""
    own = np.nonzero(drawn_owner == k)[0]
    step = (float(times[own[-1]]) - float(times[own[0]])) / (len(own) - 1) if len(own) > 1 else 1.0
    if f > own[-1]:
        return float(times[own[-1]]) + (f - own[-1]) * step
    return float(times[own[0]]) - (own[0] - f) * step


def expand_keyframes(
    latents: torch.Tensor, times: np.ndarray, extra: list[tuple[int, int]], scenes: list[Scene], dissolve: bool
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """From the keyframe storyboard's latents (its frames at `times`, then its extra frames
    `extra`), the video's: every frame of `scenes` interpolated between the keyframes around it,
    then, for a dissolve, each scene's version of the other scenes' blended frames, interpolated
    along that scene's own keyframes and its versions of the other scenes' keyframes (placed at
    the scene's own pace, `carried_time`).
    Returns (latents [B, C, n + len(new extra), h, w], new extra)."""
    n_drawn = len(times)
    n = sum(s.frames for s in scenes)
    parts = [interpolate_frames(latents[:, :, :n_drawn], times, np.arange(n))]
    mix = scene_mix(scenes, 0)
    owner = mix.argmax(1)
    out_extra = (
        [(f, k) for k in range(len(scenes)) for f in range(n) if mix[f, k] > 0 and owner[f] != k] if dissolve else []
    )
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
