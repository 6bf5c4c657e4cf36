"""The PCA patch autoencoder: reconstructs unseen clips, whitened latents, diffusers' first-stage interface."""

import numpy as np
import torch
from diffusers import DiffusionPipeline, TextToVideoSDPipeline

from t2v.models.patch_vae import PatchAutoencoder
from t2v.world import ShapesWorldDataset


def frames(n_clips=40, seed=0):
    ds = ShapesWorldDataset(length=n_clips, seed=seed, num_frames=4, height=32, width=32)
    return torch.cat([ds[i]["video"] for i in range(n_clips)])


def test_fit_reconstructs_and_whitens():
    vae = PatchAutoencoder(patch_size=8, latent_channels=32)
    stats = vae.fit(frames())
    assert stats["variance_kept"] > 0.98 and stats["psnr_db"] > 28
    test = frames(seed=1)  # unseen clips
    with torch.no_grad():
        z = vae.encode(test).latents
        recon = vae.decode(z).sample
    assert z.shape == (len(test), 32, 4, 4)
    assert 0.5 < z.std().item() < 1.5  # whitened: about unit variance, as diffusion expects
    assert (recon - test).abs().mean() < 0.05
    assert 2 ** (len(vae.config.block_out_channels) - 1) == 8  # the factor diffusers pipelines compute


def test_untrained_refiner_changes_nothing_and_is_saved(tmp_path):
    import pytest

    vae = PatchAutoencoder(patch_size=8, latent_channels=32)
    vae.fit(frames())
    refined = PatchAutoencoder(patch_size=8, latent_channels=32, refiner_channels=16)
    refined.load_state_dict(vae.state_dict(), strict=False)
    z = torch.randn(3, 32, 4, 4)
    with torch.no_grad():
        assert torch.equal(refined.decode(z).sample, vae.decode(z).sample)  # zero last layer: the identity
        torch.nn.init.normal_(refined.refiner[-1].weight, std=0.1)
        assert not torch.allclose(refined.decode(z).sample, vae.decode(z).sample)  # and it is applied
    refined.save_pretrained(tmp_path / "v", safe_serialization=True)
    loaded = PatchAutoencoder.from_pretrained(tmp_path / "v", use_safetensors=True)
    assert loaded.config.refiner_channels == 16
    with torch.no_grad():
        assert torch.equal(loaded.decode(z).sample, refined.decode(z).sample)
    with pytest.raises(ValueError, match="refiner_layers must be >= 2"):
        PatchAutoencoder(refiner_channels=8, refiner_layers=1)


def test_unfitted_is_not_an_identity():
    vae = PatchAutoencoder(patch_size=8, latent_channels=32)
    test = frames(seed=1)
    with torch.no_grad():
        assert (vae(test).sample - test).abs().mean() > 0.2


def test_runs_in_both_pipelines_with_same_frames(tmp_path):
    from tiny import tiny_pipeline

    from t2v.models.loading import save_model
    from t2v.pipelines.text_to_video import load_pipeline

    pipe = tiny_pipeline(tmp_path, "bert")
    vae = PatchAutoencoder(patch_size=2, latent_channels=4)
    vae.fit(frames())
    pipe.register_modules(vae=vae)
    pipe.vae_scale_factor = 2
    path = save_model(pipe, tmp_path / "m")
    ours = load_pipeline(path, device="cpu")
    assert type(ours.vae).__name__ == "PatchAutoencoder"
    ours.set_progress_bar_config(disable=True)
    theirs = DiffusionPipeline.from_pretrained(path)
    assert isinstance(theirs, TextToVideoSDPipeline)
    theirs.set_progress_bar_config(disable=True)
    expected = theirs(
        "a red ball",
        num_frames=2,
        num_inference_steps=2,
        height=32,
        width=32,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).frames
    got = ours("a red ball", num_frames=2, num_inference_steps=2, height=32, width=32, seed=0).frames
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_min_std_whitens_strong_channels_and_keeps_detail_small():
    data, test = frames(), frames(seed=1)
    whitened, partial = (
        PatchAutoencoder(patch_size=8, latent_channels=32),
        PatchAutoencoder(patch_size=8, latent_channels=32),
    )
    whitened.fit(data)
    stats = partial.fit(data, min_std=0.5)
    with torch.no_grad():
        zw, zp = whitened.encode(test).latents, partial.encode(test).latents
        recon = partial.decode(zp).sample
    std_w, std_p = zw.transpose(0, 1).flatten(1).std(dim=1), zp.transpose(0, 1).flatten(1).std(dim=1)
    assert 0.6 < std_p[0] < 1.5  # the brightness channel (std >> 0.5) is still unit variance
    assert std_p[-1] < 0.5 * std_w[-1]  # the weakest detail channel keeps its small natural scale
    assert stats["psnr_db"] > 28 and (recon - test).abs().mean() < 0.05  # same reconstruction
