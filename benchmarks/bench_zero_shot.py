"""Zero-shot video speed: t2v's TextToVideoZeroPipeline against diffusers' deprecated one, same weights.

    python benchmarks/bench_zero_shot.py                    # the embedded t2v-shapes-image model, 16 frames 64x64
    python benchmarks/bench_zero_shot.py --sd15 --runs 3    # Stable Diffusion 1.5's full architecture, random weights

Both pipelines share the same UNet, VAE and text encoder objects and run DDIM with the same steps, t0/t1
and seed, in latent-warp mode (the method as diffusers has it); runs alternate in one process (ours,
theirs, ours, ...) so both see the same machine state. Prints the median seconds of each and their ratio
(target <= 1.0). `--sd15` builds SD 1.5's UNet and VAE (860M + 84M parameters, random weights; a tiny CLIP
text encoder with SD's 768-wide states stands in for CLIP-L) and runs them small (128x128, 4 frames,
4 steps): it shows that the code path holds at real size, not how fast SD 1.5 is.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


PROMPT = "a small red circle on a black background"


def sd15_components():
    """SD 1.5's UNet and VAE configs with random weights, a small CLIP text encoder of width 768."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    sys.path.insert(0, "tests")
    from tiny import tiny_clip_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8, sample_size=64)  # SD 1.5's config
    vae = AutoencoderKL(
        block_out_channels=[128, 256, 512, 512],
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    )
    tokenizer = tiny_clip_tokenizer()
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=768, intermediate_size=1024, num_attention_heads=12, num_hidden_layers=2
    )
    text_encoder = CLIPTextModel(config).eval()
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False)
    return {"vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "unet": unet, "scheduler": scheduler}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="text-to-image model directory (default: the embedded one)")
    p.add_argument("--sd15", action="store_true", help="SD 1.5's architecture with random weights, run small")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    import torch
    from diffusers import DDIMScheduler
    from diffusers import TextToVideoZeroPipeline as DiffusersZero

    from t2v.pipelines.text_to_image import TextToImagePipeline
    from t2v.pipelines.text_to_video_zero import TextToVideoZeroPipeline

    torch.set_num_threads(args.threads)
    if args.sd15:
        parts, frames, size, steps = sd15_components(), args.frames or 4, args.size or 128, args.steps or 4
    else:
        pipe = TextToImagePipeline.from_pretrained(args.model)
        parts = {k: getattr(pipe, k) for k in ("vae", "text_encoder", "tokenizer", "unet")}
        parts["scheduler"] = DDIMScheduler.from_config(pipe.scheduler.config)
        frames, size, steps = args.frames or 16, args.size or 64, args.steps or 50
    t1 = min(steps - 1, max(1, round(0.94 * steps)))  # the original's 44 and 47 of 50
    t0 = min(t1 - 1, round(0.88 * steps))
    ours = TextToVideoZeroPipeline(**parts)
    theirs = DiffusersZero(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    call = {"video_length": frames, "height": size, "width": size, "num_inference_steps": steps, "t0": t0, "t1": t1}
    call.update(guidance_scale=7.5, motion_field_strength_x=12, motion_field_strength_y=12, output_type="np")
    fns = {
        "t2v": lambda: ours(PROMPT, generator=torch.Generator().manual_seed(0), **call),
        "diffusers": lambda: theirs(PROMPT, generator=torch.Generator().manual_seed(0), **call),
    }
    for pipe in (ours, theirs):
        pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        for fn in fns.values():  # warm-up
            fn()
        times = {name: [] for name in fns}
        for _ in range(args.runs):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(t) for name, t in times.items()}
    what = "SD 1.5 architecture (random weights)" if args.sd15 else (args.model or "t2v-shapes-image (embedded)")
    print(f"{what}: {frames} frames {size}x{size}, {steps} DDIM steps (t0 {t0}, t1 {t1}), {args.runs} runs")
    for name, t in times.items():
        print(f"  {name:<10} median {med[name]:.3f} s  (runs: {', '.join(f'{x:.3f}' for x in t)})")
    print(f"  ratio t2v / diffusers: {med['t2v'] / med['diffusers']:.3f}")


if __name__ == "__main__":
    main()
