"""Video editing speed: t2v's VideoInstructPix2PixPipeline against diffusers' StableDiffusionInstructPix2PixPipeline
run on every frame with cross-frame attention, same weights.

    python benchmarks/bench_edit.py                  # the embedded t2v-shapes-edit model, 16 frames 64x64
    python benchmarks/bench_edit.py --model DIR      # any Instruct-Pix2Pix folder

Both pipelines share the same UNet, VAE and text encoder objects, run the same scheduler, steps, guidance
scales and start noise (one latent per frame), and diffusers' UNet gets t2v's `CrossFrameAttnProcessor`
(every frame's self-attention reads frame 0 of its branch: the Text2Video-Zero recipe, which diffusers
documents but does not ship for this pipeline). Runs alternate in one process (ours, theirs, ours, ...).
Prints the median seconds of each, their ratio (target <= 1.0) and the largest difference of their frames.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


INSTRUCTION = "make the background white"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="Instruct-Pix2Pix model directory (default: the embedded one)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--steps", type=int, default=None, help="default: the model's")
    p.add_argument("--image-guidance", type=float, default=None, help="default: the model's")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    import numpy as np
    import torch
    from diffusers import StableDiffusionInstructPix2PixPipeline

    from t2v.pipelines.cross_frame import CrossFrameAttnProcessor
    from t2v.pipelines.video_instruct_pix2pix import VideoInstructPix2PixPipeline

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1]))
    from t2v.eval.edits import edit_cases

    torch.set_num_threads(args.threads)
    ours = VideoInstructPix2PixPipeline.from_pretrained(args.model)
    d = ours.defaults
    steps = args.steps or d.num_inference_steps
    image_guidance = d.image_guidance_scale if args.image_guidance is None else args.image_guidance
    parts = {k: getattr(ours, k) for k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
    theirs = StableDiffusionInstructPix2PixPipeline(
        **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    source, _ = edit_cases(1, sets=("seen",))[0].clips(args.frames)
    f, size = len(source), source.shape[1]
    factor = ours.vae_scale_factor
    shape = (f, ours.unet.config.out_channels, size // factor, size // factor)
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    images = torch.from_numpy(source).permute(0, 3, 1, 2).float() / 255
    call = {"guidance_scale": d.guidance_scale, "image_guidance_scale": image_guidance, "output_type": "np"}

    def run_theirs():
        processors = theirs.unet.attn_processors
        theirs.unet.set_attn_processor(CrossFrameAttnProcessor(num_frames=f))
        try:
            return theirs([INSTRUCTION] * f, images, steps, latents=latents.clone(), **call).images
        finally:
            theirs.unet.set_attn_processor(processors)

    fns = {
        "t2v": lambda: ours(INSTRUCTION, source, steps, latents=latents.clone(), **call).frames,
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
    what = args.model or "t2v-shapes-edit (embedded)"
    scheduler = type(ours.scheduler).__name__
    print(f"{what}: {f} frames {size}x{size}, {steps} steps ({scheduler}), image guidance {image_guidance:g}")
    print(f"  {args.runs} runs, {args.threads} threads")
    for name, t in times.items():
        print(f"  {name:<10} median {med[name]:.3f} s  (runs: {', '.join(f'{x:.3f}' for x in t)})")
    print(f"  ratio t2v / diffusers: {med['t2v'] / med['diffusers']:.3f}")
    print(f"  largest frame difference: {np.abs(out['t2v'] - out['diffusers']).max():.2e}")


if __name__ == "__main__":
    main()
