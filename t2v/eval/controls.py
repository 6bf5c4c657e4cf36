"""Judge controlled videos (edges, depth) on Shapes-world clips the ControlNets never saw.

A case is a rendered source clip, its control maps (Canny edges of the frames, or the world's exact depth,
t2v.world.depth) and a prompt that re-dresses it: the same shapes, sizes and motions with new colours and
background ("a small blue circle on a white background" for a clip of a red circle on black). The output
should take its layout from the control and its look from the prompt:
- "iou": per frame, the IoU of the output's foreground (pixels unlike its background colour) with the
  source's; "iou_ok" the share of frames with IoU >= IOU_OK (target: >= 0.8 per frame);
- "look": the prompt's background and every prompt colour detected, and no other object (overlapping
  objects: by palette pixel counts, `colours_present`);
- depth, two overlapping objects ("front"): where the source objects overlap, the output shows the colour
  the prompt gives the object in front (the later one, nearer in the depth map);
- flicker (t2v.eval.analyse.flicker), beside the same model run frame by frame without cross-frame attention.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from t2v.controls import canny_maps
from t2v.eval.analyse import BG_DIST, analyse_video, flicker
from t2v.eval.edits import to_uint8
from t2v.world.depth import render_with_masks, world_depth_maps
from t2v.world.shapes import BACKGROUNDS, COLORS, SceneSpec, color_allowed, sample_scene
from t2v.world.stills import canonical_still_caption


CONTROL_KINDS = ("edges", "depth")
IOU_OK = 0.8
NUM_FRAMES, SIZE = 16, 64


@dataclass(frozen=True)
class ControlCase:
    kind: str
    scene: SceneSpec  # the source clip's
    look: SceneSpec  # the prompt's: the same objects with new colours and background
    render_seed: int
    overlap: bool = False  # two objects, the second moved onto the first (t2v.world.depth)

    @property
    def prompt(self) -> str:
        return canonical_still_caption(self.look)

    def clip(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """The source frames uint8 [F, H, W, 3] and each object's masks [F, H, W] (drawn alone)."""
        rng = np.random.default_rng(self.render_seed)
        return render_with_masks(self.scene, NUM_FRAMES, SIZE, SIZE, rng, self.overlap)

    def maps(self, frames: np.ndarray) -> np.ndarray:
        return canny_maps(frames) if self.kind == "edges" else world_depth_maps(frames, self.scene)


def _redress(scene: SceneSpec, rng: np.random.Generator) -> SceneSpec:
    """New distinct colours and a new background for the same objects (valid: every colour contrasts)."""
    while True:
        background = str(rng.choice([b for b in BACKGROUNDS if b != scene.background]))
        colours = rng.choice(list(COLORS), len(scene.objects), replace=False)
        if all(color_allowed(c, background) for c in colours):
            objects = tuple(dataclasses.replace(o, color=str(c)) for o, c in zip(scene.objects, colours))
            return SceneSpec(background, objects)


def control_cases(n: int = 24, kind: str = "edges", seed: int = 2468, two_objects: bool = False) -> list:
    """n cases of `kind`; two_objects: two objects that overlap (the second in front) in at least 3 frames, the
    one behind showing at least a quarter of itself in every frame."""
    if kind not in CONTROL_KINDS:
        raise ValueError(f"control kinds are {', '.join(CONTROL_KINDS)}, got {kind!r}")
    rng = np.random.default_rng([seed, CONTROL_KINDS.index(kind), int(two_objects)])
    cases = []
    while len(cases) < n:
        scene = sample_scene(rng, p_two_objects=1.0 if two_objects else 0.0)
        case = ControlCase(kind, scene, _redress(scene, rng), int(rng.integers(2**31)), two_objects)
        if two_objects:
            back, front = case.clip()[1]
            shown = (back & ~front).sum((1, 2)) >= 0.25 * back.sum((1, 2))  # the one behind shows
            if (back & front).any((1, 2)).sum() < 3 or not shown.all():
                continue
        cases.append(case)
    return cases


def foreground(frames: np.ndarray, background: str) -> np.ndarray:
    """[F, H, W] pixels farther than BG_DIST from the background colour."""
    bg = np.array(BACKGROUNDS[background], np.float32)
    return np.linalg.norm(frames.astype(np.float32) - bg, axis=-1) >= BG_DIST


def colours_present(frames: np.ndarray, background: str, min_frac: float = 0.003) -> set[str]:
    """Palette colours that are the nearest colour of >= min_frac of the canvas (foreground pixels) in at least
    half the frames: for overlapping objects, which `analyse_video` would merge as colour bleeding."""
    fg = foreground(frames, background)
    palette = np.array(list(COLORS.values()), np.float32)
    nearest = np.linalg.norm(frames[..., None, :].astype(np.float32) - palette, axis=-1).argmin(-1)
    area = np.stack([((nearest == i) & fg).mean((1, 2)) for i in range(len(palette))], 1)  # [F, colours]
    return {name for name, present in zip(COLORS, (area >= min_frac).mean(0) >= 0.5) if present}


def judge_control(case: ControlCase, frames: np.ndarray, source: np.ndarray, masks: list[np.ndarray]) -> dict:
    analysis = analyse_video(frames)
    found = {o.color for o in analysis.objects}
    if case.overlap:
        found = colours_present(frames, analysis.background)
    out_fg = foreground(frames, analysis.background)
    src_fg = foreground(source, case.scene.background)
    union = (out_fg | src_fg).sum((1, 2))
    iou = np.where(union > 0, (out_fg & src_fg).sum((1, 2)) / np.maximum(union, 1), 1.0)
    want = {o.color for o in case.look.objects}
    verdict = {
        "iou": float(iou.mean()), "iou_ok": float((iou >= IOU_OK).mean()),
        "background": analysis.background == case.look.background, "colors": found == want,
    }  # fmt: skip
    verdict["look"] = verdict["background"] and verdict["colors"]
    if len(masks) == 2:  # the later object is in front where they overlap
        overlap = masks[0] & masks[1]
        front = np.array(COLORS[case.look.objects[1].color], np.float32)
        back = np.array(COLORS[case.look.objects[0].color], np.float32)
        px = frames[overlap].astype(np.float32)
        nearer = np.linalg.norm(px - front, axis=-1) < np.linalg.norm(px - back, axis=-1)
        verdict["front"] = bool(overlap.any()) and bool(nearer.mean() > 0.5)
    verdict["flicker"] = flicker(frames)
    return verdict


def evaluate_controls(control_fn, cases: list[ControlCase], seeds=(0, 1), progress: bool = True) -> dict:
    """`control_fn(prompt, maps uint8 [F, H, W, 3], seed) -> frames [F, H, W, 3] in [0, 1]` on every case and
    seed; {"results": [...], "summary": {...}, "seconds": s}."""
    results, start = [], time.time()
    for case in tqdm(cases, desc=f"eval {cases[0].kind if cases else ''}", disable=not progress):
        source, masks = case.clip()
        maps = case.maps(source)
        for seed in seeds:
            verdict = judge_control(case, to_uint8(control_fn(case.prompt, maps, seed)), source, masks)
            results.append({"kind": case.kind, "objects": len(masks), "prompt": case.prompt, "seed": seed, **verdict})
    return {"results": results, "summary": summarise_controls(results), "seconds": round(time.time() - start, 1)}


def pipeline_control_fn(pipe, cross_frame: bool = True, **kw):
    """A `control_fn` of a ControlVideoPipeline (kw: its call's settings). cross_frame=False runs each frame on
    its own with diffusers' StableDiffusionControlNetPipeline on the same components (same start noise)."""
    if cross_frame:
        return lambda prompt, maps, seed: pipe(prompt, maps, seed=seed, output_type="np", **kw).frames
    from diffusers import StableDiffusionControlNetPipeline

    parts = {k: getattr(pipe, k) for k in ("vae", "text_encoder", "tokenizer", "unet", "controlnet", "scheduler")}
    per_frame = StableDiffusionControlNetPipeline(
        **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    per_frame.set_progress_bar_config(disable=True)
    steps = kw.pop("num_inference_steps", 20)
    kw.pop("height", None), kw.pop("width", None)

    def run(prompt, maps, seed):
        f, h, w = maps.shape[:3]
        shape = (1, pipe.unet.config.in_channels, h // pipe.vae_scale_factor, w // pipe.vae_scale_factor)
        latents = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).repeat(f, 1, 1, 1)
        images = torch.from_numpy(maps).permute(0, 3, 1, 2).float() / 255
        out = per_frame([prompt] * f, images, h, w, steps, latents=latents, output_type="np", **kw)
        return out.images

    return run


def summarise_controls(results: list[dict]) -> dict:
    summary = {}
    for objects in (1, 2):
        rows = [r for r in results if r["objects"] == objects]
        if rows:
            s = {k: float(np.mean([r[k] for r in rows])) for k in ("iou", "iou_ok", "look", "background", "colors")}
            s["flicker"] = float(np.mean([r["flicker"] for r in rows]))
            if objects == 2:
                s["front"] = float(np.mean([r["front"] for r in rows]))
            s["videos"] = len(rows)
            summary[f"{objects} object{'s' if objects > 1 else ''}"] = s
    return summary


def controls_markdown(kind: str, summary: dict, baseline: dict | None = None) -> str:
    lines = [
        "| control | set | videos | mean IoU | frames IoU >= 0.8 | look right | front right "
        "| flicker (frame by frame) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        front = f"{100 * s['front']:.0f}%" if "front" in s else "-"
        base = (baseline or {}).get(name, {}).get("flicker")
        lines.append(
            f"| {kind} | {name} | {s['videos']} | {s['iou']:.2f} | {100 * s['iou_ok']:.0f}% | {100 * s['look']:.0f}% "
            f"| {front} | {s['flicker']:.2f} ({'-' if base is None else f'{base:.2f}'}) |"
        )
    return "\n".join(lines) + "\n"


def control_eval(model, controlnet, kind: str, n: int, seeds: int, device: str = "cpu", baseline=True, **settings):
    """`t2v eval --controls N`: the ControlNet of `kind` (a folder) on the text-to-image model (None: the
    embedded one) at its defaults (or `settings`) on n one-object cases, and for depth n two-object
    overlapping ones; flicker of the frame-by-frame baseline (no cross-frame attention) beside it."""
    from t2v.video_jobs import get_control_pipeline

    pipe = get_control_pipeline(model, controlnet, device, None)
    pipe.set_progress_bar_config(disable=True)
    d = pipe.defaults
    kw = {"num_inference_steps": d.num_inference_steps, "guidance_scale": d.guidance_scale, **settings}
    cases = control_cases(n, kind) + (control_cases(n, kind, two_objects=True) if kind == "depth" else [])
    report = evaluate_controls(pipeline_control_fn(pipe, **kw), cases, tuple(range(seeds)))
    if baseline:
        base = evaluate_controls(pipeline_control_fn(pipe, cross_frame=False, **kw), cases, (0,))
        report["frame_by_frame"] = base["summary"]
    report["settings"] = {"model": model or "t2v-shapes-image (embedded)", "controlnet": str(controlnet), **kw}
    report["settings"].update(kind=kind, cases=n, seeds=seeds)
    return report
