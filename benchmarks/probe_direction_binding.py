"""Can a text-to-video UNet learn to take the motion direction from the prompt? (a diagnostic)

    python benchmarks/probe_direction_binding.py                              # the embedded model, 150 steps
    python benchmarks/probe_direction_binding.py --positions sinusoidal --schedule zero-snr --steps 300

Fine-tunes a copy of the model (nothing is saved) on the smallest direction problem there is: a
large red circle on black moving left or moving right, two prompts. Every --every steps it prints
the training loss and how much the UNet's output at the noisiest timestep changes between the two
prompts (same noise; at that step the noisy input says almost nothing, so the prompt must decide
the direction). A model that ignores the direction word keeps that change near 0. It measures
dependence, not accuracy: at that step the best prediction is the average of all clips that fit the
prompt, which differs little between the two directions; full generations (`t2v eval`) decide.

--schedule: the training noise schedule: "model" (the schedule the model was trained with, from its
scheduler config), "zero-snr" (rescaled to zero terminal SNR, Lin et al. 2023), or "shift"
(ModelScope's scaled-linear schedule with its log-SNR lowered by --shift * (t/T)^2, as training's
`noise_shift`, so that the noisy steps hide the clip).
Also prints d' = |latent(left) - latent(right)| * sqrt(alpha_bar_t): how well an ideal observer
could tell the two directions apart from the noisy input alone at a few timesteps.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F


PROMPTS = {
    "left": "a large red circle moving left on a black background",
    "right": "a large red circle moving right on a black background",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the embedded model)")
    ap.add_argument(
        "--positions",
        default="model",
        help="frame positions: 'model' (as loaded), 'none', 'sinusoidal', 'sinusoidal+spatial'",
    )
    ap.add_argument("--schedule", choices=("model", "zero-snr", "shift"), default="model")
    ap.add_argument("--shift", type=float, default=7.0)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--timestep-power", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from diffusers import DDPMScheduler

    from t2v.models.temporal_position import add_frame_positions, frame_position_kind
    from t2v.pipelines.text_to_video import load_pipeline
    from t2v.training.first_stage import encode
    from t2v.training.loop import noise_schedule
    from t2v.training.unet import sample_timesteps
    from t2v.world.shapes import ObjectSpec, SceneSpec, render

    pipe = load_pipeline(args.model, device="cpu")
    unet, vae, tok, te = pipe.unet, pipe.vae, pipe.tokenizer, pipe.text_encoder
    if args.positions != "model":
        add_frame_positions(unet, None if args.positions == "none" else args.positions)
    if args.schedule == "shift":
        noise_scheduler = DDPMScheduler(**noise_schedule(args.shift), prediction_type="v_prediction")
    else:  # the model's own schedule, optionally rescaled to zero terminal SNR
        noise_scheduler = DDPMScheduler.from_config(
            pipe.scheduler.config, prediction_type="v_prediction", rescale_betas_zero_snr=args.schedule == "zero-snr"
        )

    @torch.no_grad()
    def embed(prompt: str) -> torch.Tensor:
        t = tok([prompt], padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
        return te(t.input_ids, attention_mask=t.attention_mask)[0]

    emb = {k: embed(p) for k, p in PROMPTS.items()}
    rng = np.random.default_rng(0)

    @torch.no_grad()
    def latents(directions) -> torch.Tensor:
        scenes = [SceneSpec("black", (ObjectSpec("circle", "red", "large", d),)) for d in directions]
        clips = np.stack([render(scene, rng=rng) for scene in scenes])
        frames = torch.from_numpy(clips).float().div(127.5).sub(1).permute(0, 1, 4, 2, 3).flatten(0, 1)
        lat = encode(vae, frames, sample=False) * vae.config.scaling_factor
        return lat.reshape(len(directions), -1, *lat.shape[1:]).permute(0, 2, 1, 3, 4)

    pair = latents(["left", "right"])
    gap = (pair[0] - pair[1]).norm()
    ac = noise_scheduler.alphas_cumprod
    print(
        f"positions {frame_position_kind(unet)}, schedule {args.schedule}; "
        "d' (left vs right from the noisy input alone): "
        + ", ".join(f"t={t}: {gap * ac[t].sqrt():.2f}" for t in (500, 700, 900, 999))
    )
    probe_noise = torch.randn(pair[:1].shape, generator=torch.Generator().manual_seed(0))
    top = noise_scheduler.config.num_train_timesteps - 1

    @torch.no_grad()
    def sensitivity() -> float:
        unet.eval()
        out = [unet(probe_noise, top, encoder_hidden_states=emb[k]).sample for k in ("left", "right")]
        unet.train()
        return (out[0] - out[1]).norm().item()

    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr)
    unet.train()
    start = time.perf_counter()
    print(f"step 0: |UNet(left) - UNet(right)| at t={top}: {sensitivity():.2f}")
    for step in range(1, args.steps + 1):
        directions = rng.choice(["left", "right"], 8)
        x0 = latents(directions)
        noise = torch.randn_like(x0)
        t = sample_timesteps(len(directions), noise_scheduler.config.num_train_timesteps, args.timestep_power)
        cond = torch.cat([emb[d] for d in directions])
        pred = unet(noise_scheduler.add_noise(x0, noise, t), t, encoder_hidden_states=cond).sample
        loss = F.mse_loss(pred, noise_scheduler.get_velocity(x0, noise, t))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.every == 0:
            print(
                f"step {step}: loss {loss.item():.3f}, |UNet(left) - UNet(right)| at t={top}: {sensitivity():.2f} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
