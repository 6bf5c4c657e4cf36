"""Does a ControlNet use its maps? The frozen UNet's loss on held-out stills with the right control maps,
shuffled maps and all-zero maps (and without the ControlNet).

    python benchmarks/probe_controlnet_maps.py runs/controlnet-edges/controlnet --control edges

A ControlNet that follows its maps has a clearly lower loss with the right maps than with shuffled ones; equal
losses mean the maps do not reach the output (see experiments/controlnet-edges-1).
"""

from __future__ import annotations

import argparse


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("controlnet")
    p.add_argument("--control", default="edges", choices=("edges", "depth"))
    p.add_argument("--items", type=int, default=16, help="held-out items (4 stills each)")
    args = p.parse_args()

    import torch
    from diffusers import ControlNetModel, DDPMScheduler, UNet2DConditionModel

    from t2v.models.loading import DEFAULT_IMAGE_MODEL_DIR, DEFAULT_MODEL_DIR
    from t2v.training.config import DataConfig
    from t2v.training.controlnet import control_maps
    from t2v.training.data import collate, make_dataset
    from t2v.training.first_stage import encode, load_first_stage
    from t2v.training.loop import noise_schedule
    from t2v.training.unet import load_text_encoder, text_embedder

    torch.manual_seed(0)
    vae = load_first_stage(DEFAULT_MODEL_DIR / "vae").eval()
    text_encoder, tokenizer = load_text_encoder("minilm")
    embed = text_embedder(tokenizer, text_encoder, 1000)
    unet = UNet2DConditionModel.from_pretrained(DEFAULT_IMAGE_MODEL_DIR / "unet").eval()
    controlnet = ControlNetModel.from_pretrained(args.controlnet).eval()
    noise_scheduler = DDPMScheduler(**noise_schedule(7.0), prediction_type="v_prediction")
    kind = "shapes_depth_stills" if args.control == "depth" else "shapes_stills"
    data = make_dataset(DataConfig(kind=kind, seed=999, num_frames=4, length=10_000))
    batch = collate([data[i] for i in range(args.items)])
    video = batch["video"]
    maps = control_maps(args.control, video, batch["scene"]).flatten(0, 1)
    with torch.no_grad():
        latents = encode(vae, video.flatten(0, 1)) * vae.config.scaling_factor
        cond = embed([c for c in batch["caption"] for _ in range(video.shape[1])], "cpu")
        noise = torch.randn_like(latents)
        t = torch.randint(0, 1000, (len(latents),))
        noisy = noise_scheduler.add_noise(latents, noise, t)
        target = noise_scheduler.get_velocity(latents, noise, t)

        def loss(control) -> float:
            extra = {}
            if control is not None:
                down, mid = controlnet(noisy, t, cond, controlnet_cond=control, return_dict=False)
                extra = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
            return torch.nn.functional.mse_loss(unet(noisy, t, cond, **extra).sample, target).item()

        rows = {
            "without the ControlNet": loss(None),
            "right maps": loss(maps),
            "shuffled maps": loss(maps[torch.randperm(len(maps))]),
            "zero maps": loss(torch.zeros_like(maps)),
        }
    for name, value in rows.items():
        print(f"{name:<24} {value:.5f}")


if __name__ == "__main__":
    main()
