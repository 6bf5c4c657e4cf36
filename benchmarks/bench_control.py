"""Controlled video speed: t2v's ControlVideoPipeline against diffusers' StableDiffusionControlNetPipeline run on
every frame with cross-frame attention, same weights.

    python benchmarks/bench_control.py --controlnet DIR     # on the embedded t2v-shapes-image, 16 frames 64x64
    python benchmarks/bench_control.py --model SD_DIR --controlnet DIR --size 512

Both pipelines share the UNet, ControlNet, VAE and text encoder objects, run the same scheduler, steps,
guidance and start noise (one draw shared by every frame, as Text2Video-Zero), and diffusers' UNet and
ControlNet get t2v's `CrossFrameAttnProcessor` (every frame's self-attention reads frame 0 of its branch).
The control maps are the Canny edges of a Shapes-world clip. Runs alternate in one process (ours, theirs,
...). Prints the median seconds of each, their ratio (target <= 1.0) and the largest frame difference.
"""

from __future__ import annotations

import argparse
import statistics
import time


PROMPT = "a small blue circle on a white background"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="text-to-image model (default: the embedded one)")
    p.add_argument("--controlnet", required=True, help="a diffusers ControlNetModel folder for that model")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    import numpy as np
    import torch
    from diffusers import StableDiffusionControlNetPipeline

    from t2v.eval.controls import control_cases
    from t2v.pipelines.cross_frame import CrossFrameAttnProcessor
    from t2v.video_jobs import get_control_pipeline, resize_frames

    torch.set_num_threads(args.threads)
    ours = get_control_pipeline(args.model, args.controlnet, "cpu", None)
    parts = {k: getattr(ours, k) for k in ("vae", "text_encoder", "tokenizer", "unet", "controlnet", "scheduler")}
    theirs = StableDiffusionControlNetPipeline(
        **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    case = control_cases(1, "edges")[0]
    source, _ = case.clip()
    maps = resize_frames(case.maps(source)[: args.frames], args.size, args.size)
    f, size, factor = len(maps), args.size, ours.vae_scale_factor
    latents = torch.randn((1, ours.unet.config.in_channels, size // factor, size // factor))
    images = torch.from_numpy(maps).permute(0, 3, 1, 2).float() / 255
    call = {"guidance_scale": 7.5, "output_type": "np"}

    def run_theirs():
        saved = [m.attn_processors for m in (theirs.unet, theirs.controlnet)]
        for m in (theirs.unet, theirs.controlnet):
            m.set_attn_processor(CrossFrameAttnProcessor(num_frames=f))
        try:
            start = latents.repeat(f, 1, 1, 1)
            return theirs([PROMPT] * f, images, size, size, args.steps, latents=start, **call).images
        finally:
            for m, processors in zip((theirs.unet, theirs.controlnet), saved):
                m.set_attn_processor(processors)

    fns = {
        "t2v": lambda: ours(PROMPT, maps, size, size, args.steps, latents=latents.clone(), **call).frames,
        "diffusers": run_theirs,
    }
    for pipe in (ours, theirs):
        pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        out = {name: fn() for name, fn in fns.items()}  # warm-up, and the frames to compare
        times = {name: [] for name in fns}
        for _ in range(args.runs):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(t) for name, t in times.items()}
    what = f"{args.model or 't2v-shapes-image (embedded)'} + {args.controlnet}"
    print(f"{what}: {f} frames {size}x{size}, {args.steps} steps")
    print(f"  {type(ours.scheduler).__name__}, {args.runs} runs, {args.threads} threads")
    for name, t in times.items():
        print(f"  {name:<10} median {med[name]:.3f} s  (runs: {', '.join(f'{x:.3f}' for x in t)})")
    print(f"  ratio t2v / diffusers: {med['t2v'] / med['diffusers']:.3f}")
    print(f"  largest frame difference: {np.abs(out['t2v'] - out['diffusers']).max():.2e}")


if __name__ == "__main__":
    main()
