"""Judge video edits by instruction on Shapes-world clips the edit model never saw.

A case is a rendered source clip, one edit of it (t2v.world.edits: colour, background, shape or size) and an
instruction for it; the exactly rendered edited clip is the reference. Sets:
- "seen": training compositions, instructions in the training phrasings;
- "validation" / "novel": the same, in the validation / novel phrasings (words training never used);
- "held_out": the edit makes a held-out composition ("make the triangle purple"), training phrasings.

An edited video is judged from its frames (t2v.eval.analyse): "changed" (the asked attribute has its new
value: the new colour present and the old one gone, the new background, shape or size), "kept" (everything
else as in the edited scene: every colour, shape, size, motion, the object count and the background),
"correct" (both), "centroid" (every object's centroid within CENTROID_PX of the reference's in every frame),
PSNR against the reference, and flicker (t2v.eval.analyse.flicker) beside the source's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from t2v.eval.analyse import analyse_video, flicker
from t2v.world.edits import Edit, apply_edit, edit_instruction, edit_to_dict, render_edit_pair, sample_edit
from t2v.world.shapes import SceneSpec


EDIT_SETS = ("seen", "validation", "novel", "held_out")
EDIT_METRICS = ("correct", "changed", "kept", "centroid")
CENTROID_PX = 2.0
NUM_FRAMES, SIZE = 16, 64


@dataclass(frozen=True)
class EditCase:
    split: str
    instruction: str
    scene: SceneSpec
    edit: Edit
    render_seed: int  # the clip's trajectories

    def clips(self, num_frames: int = NUM_FRAMES, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
        """(source, reference) uint8 frames [F, H, W, 3]: the clip before and after the edit."""
        rng = np.random.default_rng(self.render_seed)
        return render_edit_pair(self.scene, self.edit, num_frames, size, size, rng)


def edit_cases(n: int = 48, seed: int = 4321, sets=("seen", "novel", "held_out"), p_two_objects=0.25) -> list:
    """`n` cases per set, kinds drawn as training draws them (t2v.world.edits.sample_edit)."""
    cases = []
    for s in sets:
        if s not in EDIT_SETS:
            raise ValueError(f"edit sets are {', '.join(EDIT_SETS)}, got {s!r}")
        rng = np.random.default_rng([seed, EDIT_SETS.index(s)])
        for _ in range(n):
            scene, edit = sample_edit(rng, "held_out" if s == "held_out" else "train", p_two_objects=p_two_objects)
            phrasing = s if s in ("validation", "novel") else "train"
            instruction = edit_instruction(scene, edit, rng, phrasing)
            cases.append(EditCase(s, instruction, scene, edit, int(rng.integers(2**31))))
    return cases


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _changed(edit: Edit, old, found: dict, background: str, target_color: str | None) -> bool:
    """The asked attribute has its new value (a colour edit: the new colour present, the old one gone)."""
    if edit.kind == "background":
        return background == edit.value
    if edit.kind == "color":
        return edit.value in found and old not in found
    track = found.get(target_color)
    return track is not None and getattr(track, edit.kind) == edit.value


def judge_edit(case: EditCase, frames: np.ndarray, reference: np.ndarray) -> dict:
    """The verdicts of one edited video (uint8 [F, H, W, 3]) against its exactly rendered reference."""
    edited = apply_edit(case.scene, case.edit)
    old = getattr(case.scene.objects[case.edit.target], case.edit.kind) if case.edit.target is not None else None
    analysis = analyse_video(frames)
    found = {o.color: o for o in analysis.objects}
    expected = [(o, found.get(o.color)) for o in edited.objects]
    target = case.edit.target
    checks = {  # every attribute of the edited scene except the asked one
        "color": all(t is not None for _, t in expected),
        "count": len(analysis.objects) == len(edited.objects),
        "background": case.edit.kind == "background" or analysis.background == edited.background,
    }
    for attr in ("shape", "size", "motion"):
        checks[attr] = all(
            t is not None and t_attr_ok(o, t, attr) for i, (o, t) in enumerate(expected)
            if not (i == target and attr == case.edit.kind)
        )  # fmt: skip
    if case.edit.kind in ("shape", "size"):  # the edited object must be there, with its new value
        checks["color"] = checks["color"] and found.get(edited.objects[target].color) is not None
    target_color = None if target is None else edited.objects[target].color
    changed = _changed(case.edit, old, found, analysis.background, target_color)
    ref = {o.color: o for o in analyse_video(reference).objects}
    errors = [
        np.nanmax(np.hypot(*(found[c].centroids - ref[c].centroids).T)) if c in found else np.inf
        for c in ref
    ]  # fmt: skip
    centroid = bool(errors) and all(np.isfinite(e) and e <= CENTROID_PX for e in errors)
    # a frame where the object went missing gives NaN centroids there: it fails
    centroid = centroid and all(not np.isnan(found[c].centroids).any() for c in ref if c in found)
    kept = all(checks.values())
    return {
        "correct": changed and kept, "changed": changed, "kept": kept, "centroid": bool(centroid),
        "centroid_error": float(max(errors)) if errors else float("inf"), "psnr": psnr(frames, reference),
        "flicker": flicker(frames), **{f"kept_{k}": v for k, v in checks.items()},
    }  # fmt: skip


def t_attr_ok(obj, track, attr: str) -> bool:
    """A detected track matches a scene object's attribute (objects without a size match any)."""
    want = getattr(obj, attr)
    return True if want is None else getattr(track, attr) == want


def to_uint8(frames) -> np.ndarray:
    return (np.clip(np.asarray(frames, np.float32), 0, 1) * 255).round().astype(np.uint8)


def evaluate_edits(edit_fn, cases: list[EditCase], seeds=(0, 1), progress: bool = True) -> dict:
    """`edit_fn(instruction, source uint8 [F, H, W, 3], seed) -> frames [F, H, W, 3] in [0, 1]` on every case
    and seed, judged; {"results": [...], "summary": {...}, "seconds": s}."""
    results, start = [], time.time()
    for case in tqdm(cases, desc="eval edits", disable=not progress):
        source, reference = case.clips()
        source_flicker = flicker(source)
        for seed in seeds:
            frames = to_uint8(edit_fn(case.instruction, source, seed))
            verdict = judge_edit(case, frames, reference)
            results.append({
                "split": case.split, "instruction": case.instruction, "seed": seed, "kind": case.edit.kind,
                "edit": edit_to_dict(case.scene, case.edit), "source_flicker": source_flicker, **verdict,
            })  # fmt: skip
    return {"results": results, "summary": summarise_edits(results), "seconds": round(time.time() - start, 1)}


def pipeline_edit_fn(pipe, cross_frame: bool = True, **kw):
    """An `edit_fn` of a VideoInstructPix2PixPipeline (kw: its call's settings). cross_frame=False edits each
    frame on its own with diffusers' StableDiffusionInstructPix2PixPipeline on the same components (the
    frame-by-frame baseline; the same settings, each frame its own seed)."""
    if cross_frame:
        return lambda instruction, source, seed: pipe(instruction, source, seed=seed, output_type="np", **kw).frames
    from diffusers import StableDiffusionInstructPix2PixPipeline

    parts = {k: getattr(pipe, k) for k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
    per_frame = StableDiffusionInstructPix2PixPipeline(
        **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    per_frame.set_progress_bar_config(disable=True)
    steps = kw.pop("num_inference_steps", 50)
    kw.pop("shared_noise", None)  # each frame its own noise

    def edit(instruction, source, seed):
        images = [torch.from_numpy(f).permute(2, 0, 1).float()[None] / 255 for f in source]
        gens = [torch.Generator().manual_seed(seed * 1000 + i) for i in range(len(images))]
        out = per_frame([instruction] * len(images), torch.cat(images), steps, generator=gens, output_type="np", **kw)
        return out.images

    return edit


def summarise_edits(results: list[dict]) -> dict:
    summary = {}
    for split in EDIT_SETS:
        rows = [r for r in results if r["split"] == split]
        if rows:
            s = {m: float(np.mean([r[m] for r in rows])) for m in EDIT_METRICS}
            s["psnr"] = float(np.median([r["psnr"] for r in rows]))
            s["flicker"] = float(np.mean([r["flicker"] for r in rows]))
            s["source_flicker"] = float(np.mean([r["source_flicker"] for r in rows]))
            s["by_kind"] = {
                k: float(np.mean([r["correct"] for r in rows if r["kind"] == k]))
                for k in sorted({r["kind"] for r in rows})
            }
            s["edits"] = len(rows)
            summary[split] = s
    return summary


def edits_markdown(summary: dict) -> str:
    head = (
        "| set | edits | correct | changed | kept | centroid <= 2 px | PSNR (median) | flicker (source) "
        "| correct by kind |"
    )
    lines = [head, "|" + "---|" * 9]
    for split, s in summary.items():
        kinds = ", ".join(f"{k} {100 * v:.0f}%" for k, v in s["by_kind"].items())
        lines.append(
            f"| {split} | {s['edits']} | {100 * s['correct']:.0f}% | {100 * s['changed']:.0f}% | "
            f"{100 * s['kept']:.0f}% | {100 * s['centroid']:.0f}% | {s['psnr']:.1f} dB | "
            f"{s['flicker']:.2f} ({s['source_flicker']:.2f}) | {kinds} |"
        )
    return "\n".join(lines) + "\n"


def edit_eval(model: str | None, edits: int, seeds: int, device: str = "cpu", baseline: bool = True, **settings):
    """`t2v eval --edits N`: the edit model (default: the embedded t2v-shapes-edit) at its defaults (or
    `settings`: num_inference_steps, guidance_scale, image_guidance_scale) on N cases per set, and flicker
    of the frame-by-frame baseline (no cross-frame attention) on the seen set."""
    from t2v.pipelines.video_instruct_pix2pix import VideoInstructPix2PixPipeline

    pipe = VideoInstructPix2PixPipeline.from_pretrained(model).to(device)
    pipe.set_progress_bar_config(disable=True)
    d = pipe.defaults
    kw = {"num_inference_steps": d.num_inference_steps, "guidance_scale": d.guidance_scale}
    kw.update(image_guidance_scale=d.image_guidance_scale, shared_noise=d.shared_noise, **settings)
    cases = edit_cases(edits)
    report = evaluate_edits(pipeline_edit_fn(pipe, **kw), cases, tuple(range(seeds)))
    if baseline:
        seen = [c for c in cases if c.split == "seen"]
        base = evaluate_edits(pipeline_edit_fn(pipe, cross_frame=False, **kw), seen, tuple(range(seeds)))
        report["frame_by_frame"] = base["summary"]
    report["settings"] = {"model": model or "t2v-shapes-edit (embedded)", "edits": edits, "seeds": seeds, **kw}
    return report
