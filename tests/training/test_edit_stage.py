"""Stage "edit": an Instruct-Pix2Pix UNet on the Shapes world's edit pairs (t2v.training.edit)."""

import json

import numpy as np
import pytest
import torch
import yaml
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file
from test_training import TINY_DATA, TINY_UNET, unet_config, vae_config, write_config

from t2v.training.config import DataConfig, load_config
from t2v.training.data import collate, make_dataset
from t2v.training.edit import dropout_masks
from t2v.training.image import widen_conv_in
from t2v.training.train import train


IMAGE_UNET = {
    **TINY_UNET,
    "attention_head_dim": [4, 4],
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
}


def test_widened_unet_first_computes_the_picture_model():
    """The paper's initialisation: zero weights on the new source channels, so the source changes nothing."""
    torch.manual_seed(0)
    kw = dict(sample_size=4, out_channels=4, cross_attention_dim=8, use_linear_projection=True, **IMAGE_UNET)
    picture = UNet2DConditionModel(in_channels=4, **kw).eval()
    wide = UNet2DConditionModel(in_channels=8, **kw).eval()
    wide.load_state_dict(widen_conv_in(picture.state_dict(), 4))
    x, cond = torch.randn(2, 4, 4, 4), torch.randn(2, 3, 8)
    with torch.no_grad():
        expected = picture(x, 10, encoder_hidden_states=cond).sample
        for source in (torch.zeros_like(x), torch.randn_like(x)):
            got = wide(torch.cat([x, source], 1), 10, encoder_hidden_states=cond).sample
            torch.testing.assert_close(got, expected)


def test_dropout_masks_follow_instruct_pix2pix():
    keep_text, keep_image = dropout_masks(200_000, 0.05, torch.Generator().manual_seed(0))
    both = (~keep_text & ~keep_image).float().mean().item()
    text_only = (~keep_text & keep_image).float().mean().item()
    image_only = (keep_text & ~keep_image).float().mean().item()
    assert both == pytest.approx(0.05, abs=0.003)
    assert text_only == pytest.approx(0.05, abs=0.003) and image_only == pytest.approx(0.05, abs=0.003)


def test_edit_pairs_collate_for_training():
    data = make_dataset(DataConfig(kind="shapes_edits", num_frames=2, height=32, width=32, length=4))
    batch = collate([data[0], data[1]])
    assert batch["source"].shape == batch["edited"].shape == (2, 2, 3, 32, 32)
    assert len(batch["instruction"]) == 2 and all(isinstance(t, str) and t for t in batch["instruction"])
    assert not torch.equal(batch["source"], batch["edited"])  # an edit changes the clip


def test_edit_stage_exports_an_instruct_pix2pix_folder(tmp_path):
    """From a picture UNet's weights (widened), a few steps on edit pairs; diffusers' Instruct-Pix2Pix layout
    that t2v's VideoInstructPix2PixPipeline loads and runs."""
    from t2v.pipelines.video_instruct_pix2pix import VideoInstructPix2PixPipeline

    train(
        load_config(vae_config(tmp_path, vae_type="patch", vae={"patch_size": 8, "latent_channels": 8}, pca_frames=32))
    )
    torch.manual_seed(0)
    picture = UNet2DConditionModel(
        sample_size=4, in_channels=8, out_channels=8, cross_attention_dim=384, use_linear_projection=True, **IMAGE_UNET
    )
    save_file(picture.state_dict(), tmp_path / "image-unet.safetensors")
    settings = yaml.safe_load(unet_config(tmp_path).read_text())
    settings.update(stage="edit", unet=IMAGE_UNET, init_from=str(tmp_path / "image-unet.safetensors"), steps=2)
    settings["data"] = {**TINY_DATA, "kind": "shapes_edits", "num_frames": 2}
    settings["output_dir"] = str(tmp_path / "edit")
    path = train(load_config(write_config(tmp_path / "edit.yaml", **settings)))
    index = json.loads((path / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionInstructPix2PixPipeline"
    trained = load_file(path / "unet" / "diffusion_pytorch_model.safetensors")
    assert trained["conv_in.weight"].shape[1] == 16  # noisy latents + the source's
    pipe = VideoInstructPix2PixPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    source = np.zeros((3, 32, 32, 3), np.uint8)
    frames = pipe("make the background white", source, 2, seed=0).frames
    assert frames.shape == (3, 32, 32, 3) and np.isfinite(frames).all()


def test_edit_stage_needs_edit_pairs(tmp_path):
    settings = yaml.safe_load(unet_config(tmp_path).read_text())
    settings.update(stage="edit", vae_path=str(tmp_path))
    with pytest.raises(ValueError, match="stage 'edit' trains on data.kind 'shapes_edits'"):
        train(load_config(write_config(tmp_path / "edit.yaml", **settings)))
