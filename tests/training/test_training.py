"""Training: configs, both stages on tiny models, checkpoints and resume, the exported model, 2 processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from t2v.training.config import load_config
from t2v.training.train import parse_overrides, train


TINY_DATA = {"kind": "shapes", "seed": 0, "num_frames": 4, "height": 32, "width": 32}
TINY_VAE = {"block_out_channels": [8, 8], "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 4}
TINY_UNET = {
    "block_out_channels": [8, 8],
    "layers_per_block": 1,
    "attention_head_dim": 4,
    "norm_num_groups": 4,
    "down_block_types": ["CrossAttnDownBlock3D", "DownBlock3D"],
    "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D"],
}


def write_config(path: Path, **settings) -> Path:
    path.write_text(yaml.safe_dump(settings))
    return path


def vae_config(tmp_path, **extra):
    settings = {
        "stage": "vae",
        "output_dir": str(tmp_path / "run"),
        "steps": 4,
        "batch_size": 2,
        "checkpoint_every": 2,
        "lr": 1e-3,
        "warmup_steps": 1,
        "data": TINY_DATA,
        "vae": TINY_VAE,
        "vae_frames_per_clip": 2,
    }
    return write_config(tmp_path / "vae.yaml", **{**settings, **extra})


def unet_config(tmp_path, **extra):
    settings = {
        "stage": "unet",
        "output_dir": str(tmp_path / "run"),
        "steps": 3,
        "batch_size": 2,
        "checkpoint_every": 2,
        "warmup_steps": 1,
        "vae_path": str(tmp_path / "run" / "vae"),
        "data": TINY_DATA,
        "unet": TINY_UNET,
    }
    return write_config(tmp_path / "unet.yaml", **{**settings, **extra})


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown TrainConfig keys: stepz"):
        load_config(write_config(tmp_path / "a.yaml", stepz=3))
    with pytest.raises(ValueError, match="unknown DataConfig keys: colour"):
        load_config(write_config(tmp_path / "b.yaml", data={"colour": "red"}))
    stages = "'vae', 'unet', 'decoder', 'image', 'edit', 'controlnet'"
    with pytest.raises(ValueError, match=f"stage must be one of {stages}, got 'gan'"):
        load_config(write_config(tmp_path / "c.yaml", stage="gan"))
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    overrides = parse_overrides(["steps=5", "output_dir=tmp/x", 'vae={"a": 1}'])
    assert overrides == {"steps": 5, "output_dir": "tmp/x", "vae": {"a": 1}}
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["steps"])


def test_shipped_configs_load():
    root = Path(__file__).parents[2] / "configs"
    assert load_config(root / "shapes-vae.yaml").stage == "vae"
    assert load_config(root / "shapes-unet.yaml").stage == "unet"
    image = load_config(root / "shapes-image.yaml")
    assert image.stage == "image" and image.data.kind == "shapes_stills" and image.init_from.endswith(".safetensors")
    motion = load_config(root / "shapes-unet-motion.yaml")
    assert motion.temporal_position == "sinusoidal" and motion.init_from.startswith("runs/shapes3/")
    spatial = load_config(root / "shapes-unet-spatial.yaml")  # starts from the motion run's output
    assert spatial.temporal_position == "sinusoidal+spatial"
    assert spatial.init_from.startswith(motion.output_dir + "/model/")
    shift = load_config(root / "shapes-unet-shift.yaml")  # starts from the spatial run's output
    assert shift.noise_shift == 7.0 and shift.init_from.startswith(spatial.output_dir + "/model/")
    decoder = load_config(root / "shapes-decoder.yaml")  # the shipped VAE's refiner
    assert decoder.stage == "decoder" and decoder.vae_path == "t2v/models/default/vae" and decoder.refiner_layers == 5


def test_noise_schedule_shift():
    """The shifted schedule lowers log-SNR by shift (t/T)^2 and every named scheduler reproduces it."""
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

    from t2v.pipelines.schedulers import make_scheduler, scheduler_names
    from t2v.training.loop import noise_schedule

    def log_snr(ac):
        return torch.log(ac / (1 - ac)).double()

    base = DDPMScheduler(**noise_schedule()).alphas_cumprod
    shifted = DDPMScheduler(**noise_schedule(7.0)).alphas_cumprod
    diff = log_snr(shifted) - log_snr(base)
    expected = torch.tensor([0.0, -7 * (499 / 999) ** 2, -7.0], dtype=torch.float64)
    assert torch.allclose(diff[[0, 499, 999]], expected, atol=1e-3)
    assert (shifted[1:] < shifted[:-1]).all()
    dpm = DPMSolverMultistepScheduler(**noise_schedule(7.0))  # as shipped with a model; swapped by name
    for name in scheduler_names():
        assert torch.allclose(make_scheduler(name, dpm.config).alphas_cumprod, shifted), name
    with pytest.raises(ValueError, match="noise_shift must be >= 0"):
        noise_schedule(-1.0)


def test_timestep_sampling_power():
    from t2v.training.unet import sample_timesteps

    torch.manual_seed(0)
    uniform, ramp = sample_timesteps(20000, 1000), sample_timesteps(20000, 1000, power=1.0)
    assert uniform.min() >= 0 and max(uniform.max(), ramp.max()) <= 999 and uniform.dtype == torch.long
    assert abs(uniform.float().mean() - 500) < 10 and abs(ramp.float().mean() - 667) < 10  # E[t] = T (1+p) / (2+p)
    assert (ramp >= 500).float().mean() > 0.73  # 3/4 of the steps in the noisier half


def test_unet_stage_needs_a_vae(tmp_path):
    with pytest.raises(ValueError, match="vae_path must be a trained VAE directory"):
        train(load_config(unet_config(tmp_path)))


TINY_TAESD = {
    "encoder_block_out_channels": [8, 8],
    "decoder_block_out_channels": [8, 8],
    "num_encoder_blocks": [0, 1],
    "num_decoder_blocks": [1, 1],
    "latent_channels": 4,
}


def spy_on_runs(monkeypatch) -> list[dict]:
    """Record, for every training run, the step it resumed at (None: started afresh) and the
    optimisation steps it ran (calls of its loss), by wrapping the loop the stages share."""
    from t2v.training import first_stage, loop, unet

    runs, real_run, real_load = [], loop.run, loop.load_checkpoint

    def run(config, model, loss_fn, *args, **kwargs):
        record = {"resumed_at": None, "steps_run": 0}
        runs.append(record)

        def counted_loss(*a, **kw):
            record["steps_run"] += 1
            return loss_fn(*a, **kw)

        return real_run(config, model, counted_loss, *args, **kwargs)

    def load_checkpoint(*args, **kwargs):
        runs[-1]["resumed_at"] = step = real_load(*args, **kwargs)
        return step

    for stage_module in (first_stage, unet):  # the stages call the loop by the name they imported
        monkeypatch.setattr(stage_module, "run", run)
    monkeypatch.setattr(loop, "load_checkpoint", load_checkpoint)
    return runs


@pytest.mark.parametrize("vae_type", ["kl", "tiny"])
def test_two_stages_checkpoint_resume_and_export(tmp_path, vae_type, monkeypatch):
    from safetensors.torch import load_file

    from t2v.models.temporal_position import has_frame_positions
    from t2v.pipelines.text_to_video import load_pipeline

    runs = spy_on_runs(monkeypatch)
    first_stage = {"vae_type": vae_type, "vae": TINY_VAE if vae_type == "kl" else TINY_TAESD}
    # stage 1: the VAE; a checkpoint at step 2, then a second run resumes there and runs steps 3 and 4 only
    write_config(tmp_path / "vae.yaml", **{**yaml.safe_load(vae_config(tmp_path).read_text()), **first_stage})
    train(load_config(tmp_path / "vae.yaml", {"steps": 2}))
    state = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 2
    before = {k: v.clone() for k, v in load_file(tmp_path / "run" / "checkpoint" / "model.safetensors").items()}
    train(load_config(tmp_path / "vae.yaml"))
    assert runs == [{"resumed_at": None, "steps_run": 2}, {"resumed_at": 2, "steps_run": 2}]  # a restart runs 4
    assert json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["step"] == 4
    assert json.loads((tmp_path / "run" / "vae-train-log.json").read_text())["steps"] == 4
    train(load_config(tmp_path / "vae.yaml"))  # already at the last step: resumes and runs nothing
    assert runs[2] == {"resumed_at": 4, "steps_run": 0}

    after = load_file(tmp_path / "run" / "checkpoint" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)  # resumed training changed the weights
    vae_cfg = json.loads((tmp_path / "run" / "vae" / "config.json").read_text())
    assert vae_cfg["latent_channels"] == 4 and vae_cfg["scaling_factor"] > 0

    # stage 2: the UNet on the VAE's latents; the export is a pipeline that generates. A text-embedding
    # cache of 1 caption is cleared every step (a full cache must not end the run with a KeyError).
    # The kl run also gives its temporal attention frame positions, which the export must carry; the
    # tiny run trains on a shifted noise schedule, which the exported scheduler must carry.
    positions = "sinusoidal" if vae_type == "kl" else None
    shift = 0.0 if vae_type == "kl" else 3.0
    train(
        load_config(
            unet_config(tmp_path, sample_every=3, text_cache_size=1, temporal_position=positions, noise_shift=shift)
        )
    )
    assert runs[3] == {"resumed_at": None, "steps_run": 3}  # not resumed from the VAE's checkpoint in the same dir
    model = tmp_path / "run" / "model"
    assert (model / "model_index.json").is_file() and not (model / "text_encoder").exists()
    assert (tmp_path / "run" / "samples" / "step000003.gif").is_file()
    pipe = load_pipeline(model, device="cpu")
    assert has_frame_positions(pipe.unet) == (positions is not None)
    assert json.loads((model / "t2v_model.json").read_text()).get("temporal_position") == positions
    from diffusers import DDPMScheduler

    from t2v.training.loop import noise_schedule

    assert torch.allclose(pipe.scheduler.alphas_cumprod, DDPMScheduler(**noise_schedule(shift)).alphas_cumprod)
    assert (pipe.scheduler.config.trained_betas is None) == (shift == 0)
    pipe.set_progress_bar_config(disable=True)
    frames = pipe("a red circle moving right", num_frames=4, num_inference_steps=2, seed=0).frames
    assert frames.shape == (1, 4, 32, 32, 3) and np.isfinite(frames).all()
    assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.rglob("*.pt"))  # no pickle anywhere


def test_vae_loss_goes_down(tmp_path):
    """A few dozen steps on the Shapes world must reduce the reconstruction loss: the loop really learns."""
    from diffusers import AutoencoderKL

    from t2v.world import ShapesWorldDataset

    cfg = vae_config(tmp_path, ema_decay=0.0)
    ds = ShapesWorldDataset(length=8, seed=123, num_frames=2, height=32, width=32)
    frames = torch.stack([ds[i]["video"] for i in range(8)]).flatten(0, 1)

    def recon_loss(path):
        vae = AutoencoderKL.from_pretrained(path)
        with torch.no_grad():
            return (vae(frames, sample_posterior=False).sample - frames).abs().mean().item()

    train(load_config(cfg, {"steps": 1, "lr": 1e-9}))
    untrained = recon_loss(tmp_path / "run" / "vae")
    train(load_config(cfg, {"steps": 120, "lr": 3e-3, "warmup_steps": 10, "output_dir": str(tmp_path / "run2")}))
    trained = recon_loss(tmp_path / "run2" / "vae")
    assert trained < 0.5 * untrained, (untrained, trained)


def test_decoder_stage_learns_to_clean_noisy_latents(tmp_path):
    """Stage 'decoder' trains a refiner for a PatchAutoencoder: decoding noisy latents of unseen frames
    must get closer to the frames than the linear decoder gets, while clean latents still decode as before."""
    from t2v.models.patch_vae import PatchAutoencoder
    from t2v.training.first_stage import load_first_stage
    from t2v.world import ShapesWorldDataset

    data = {**TINY_DATA, "height": 64, "width": 64}
    train(
        load_config(
            vae_config(
                tmp_path,
                vae_type="patch",
                vae={"patch_size": 8, "latent_channels": 32},
                pca_frames=256,
                pca_min_std=0.5,
                data=data,
            )
        )
    )
    with pytest.raises(ValueError, match="vae_path must be a PatchAutoencoder directory"):
        train(load_config(vae_config(tmp_path, stage="decoder", vae_path=str(Path(__file__).parent / "missing"))))
    cfg = vae_config(
        tmp_path,
        stage="decoder",
        vae_path=str(tmp_path / "run" / "vae"),
        output_dir=str(tmp_path / "dec"),
        steps=150,
        batch_size=4,
        vae_frames_per_clip=4,
        lr=2e-3,
        warmup_steps=10,
        ema_decay=0.99,
        refiner_channels=32,
        refiner_noise=0.5,
        data=data,
    )
    train(load_config(cfg))
    linear, refined = load_first_stage(tmp_path / "run" / "vae"), load_first_stage(tmp_path / "dec" / "vae")
    assert isinstance(refined, PatchAutoencoder) and refined.refiner is not None and linear.refiner is None
    assert torch.equal(refined.decoder.weight, linear.decoder.weight)  # the linear part stays frozen
    ds = ShapesWorldDataset(length=16, seed=99, num_frames=1, height=64, width=64)
    frames = torch.cat([ds[i]["video"] for i in range(16)])
    with torch.no_grad():
        z = linear.encode(frames).latents
        noisy = z + 0.3 * torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
        err = lambda vae, latents: (vae.decode(latents).sample - frames).abs().mean().item()  # noqa: E731
        assert err(refined, noisy) < 0.8 * err(linear, noisy), (err(refined, noisy), err(linear, noisy))
        assert err(refined, z) < err(linear, z) + 0.02


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes(tmp_path):
    train(load_config(vae_config(tmp_path), {"steps": 1}))  # a VAE for the UNet stage
    cfg = unet_config(tmp_path, output_dir=str(tmp_path / "ddp"), steps=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--cpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "t2v.training.train",
            str(cfg),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    state = json.loads((tmp_path / "ddp" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 2
    assert (tmp_path / "ddp" / "model" / "unet" / "diffusion_pytorch_model.safetensors").is_file()


def test_layout_regions_train_with_each_phrase_in_its_band(tmp_path, monkeypatch):
    """layout_regions: the UNet's cross-attention runs with token biases that block the other object's
    words for two-object clips; the exported model has its plain processors back."""
    from t2v.pipelines import regions

    train(load_config(vae_config(tmp_path, steps=2)))
    blocked_calls = []
    original = regions.RegionalCrossAttnProcessor.__call__

    def spy(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        if encoder_hidden_states is not None:
            blocked_calls.append(int((self.state["bias"] < 0).any(-1).sum()))  # regions that block words
        return original(self, attn, hidden_states, encoder_hidden_states, *args, **kwargs)

    monkeypatch.setattr(regions.RegionalCrossAttnProcessor, "__call__", spy)
    data = {**TINY_DATA, "p_two_objects": 1.0}
    # with the object-weighted loss
    train(load_config(unet_config(tmp_path, layout_regions=True, caption_dropout=0.0, data=data, fg_weight=2.0)))
    assert blocked_calls and min(blocked_calls) >= 2  # both regions of at least one clip block the other's words
    from t2v.pipelines.text_to_video import load_pipeline

    pipe = load_pipeline(tmp_path / "run" / "model", device="cpu")
    assert not any(isinstance(p, regions.RegionalCrossAttnProcessor) for p in pipe.unet.attn_processors.values())
    with pytest.raises(ValueError, match="layout_regions needs the Shapes world"):
        train(load_config(unet_config(tmp_path, layout_regions=True, data={"kind": "folder", "path": str(tmp_path)})))


def test_foreground_marks_the_latent_cells_that_hold_an_object():
    from t2v.training.first_stage import foreground

    frames = -torch.ones(2, 3, 32, 32)  # black background in [-1, 1]
    frames[0, 0, 10:15, 20:25] = 0.8  # a red 5x5 square over latent cells (1, 2) and (1, 3) at factor 8
    cells = foreground(frames, 8)
    assert cells.shape == (2, 1, 4, 4)
    assert {tuple(i) for i in cells[0, 0].nonzero().tolist()} == {(1, 2), (1, 3)}
    assert not cells[1].any()  # an empty frame has no foreground
    assert foreground(frames)[0, 0].sum() == 25  # at pixel resolution: the square itself


def test_clip_mse_weighs_object_cells_more():
    from t2v.training.unet import clip_mse

    target = torch.zeros(1, 4, 2, 4, 4)
    fg = torch.zeros(1, 1, 2, 4, 4, dtype=torch.bool)
    fg[..., 0, 0] = True
    on_object, off_object = target.clone(), target.clone()
    on_object[..., 0, 0] = 1.0
    off_object[..., 3, 3] = 1.0
    plain = clip_mse(on_object, target)
    assert torch.allclose(plain, clip_mse(off_object, target)) and torch.allclose(plain, torch.tensor([1 / 16]))
    assert torch.allclose(clip_mse(on_object, target, fg, 0.0), plain)  # weight 0: the plain mean
    # weight 3: object cells weigh 4, the mean weight is (4 + 15) / 16
    assert torch.allclose(clip_mse(on_object, target, fg, 3.0), torch.tensor([4 / 19]))
    assert torch.allclose(clip_mse(off_object, target, fg, 3.0), torch.tensor([1 / 19]))
    assert torch.allclose(clip_mse(target + 1, target, fg, 3.0), torch.tensor([1.0]))  # weights average to 1


def test_image_stage_starts_from_video_unet_and_exports_a_stable_diffusion_folder(tmp_path):
    """Stage "image": a UNet2DConditionModel on stills, started from a 3D UNet's spatial layers; the export
    is a StableDiffusionPipeline folder that t2v's text-to-image pipeline (and diffusers') loads."""
    from diffusers import UNet3DConditionModel
    from safetensors.torch import load_file, save_file

    from t2v.pipelines.text_to_image import TextToImagePipeline
    from t2v.training.image import spatial_weights

    train(
        load_config(vae_config(tmp_path, vae_type="patch", vae={"patch_size": 8, "latent_channels": 8}, pca_frames=32))
    )
    torch.manual_seed(0)
    video_unet = UNet3DConditionModel(
        sample_size=4, in_channels=8, out_channels=8, cross_attention_dim=384, **{**TINY_UNET, "attention_head_dim": 2}
    )
    save_file(video_unet.state_dict(), tmp_path / "video-unet.safetensors")
    image_unet = {
        **TINY_UNET,
        "attention_head_dim": [4, 4],
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    }
    settings = yaml.safe_load(unet_config(tmp_path).read_text())
    settings.update(stage="image", unet=image_unet, init_from=str(tmp_path / "video-unet.safetensors"), steps=2)
    settings["data"] = {**TINY_DATA, "kind": "shapes_stills", "num_frames": 2}
    settings["output_dir"] = str(tmp_path / "image")
    path = train(load_config(write_config(tmp_path / "image.yaml", **settings)))
    index = json.loads((path / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["unet"] == ["diffusers", "UNet2DConditionModel"]
    start = spatial_weights(video_unet.state_dict())
    assert not any("temp_" in k or k.startswith("transformer_in") for k in start)
    trained = load_file(path / "unet" / "diffusion_pytorch_model.safetensors")
    assert set(trained) == set(start)
    pipe = TextToImagePipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red circle on a black background", num_inference_steps=2, seed=0, output_type="np").images
    assert image.shape == (1, 32, 32, 3) and np.isfinite(image).all()
