"""Stage "controlnet" (t2v.training.controlnet) and the world's exact depth maps (t2v.world.depth)."""

import numpy as np
import pytest
import torch
import yaml
from diffusers import ControlNetModel, UNet2DConditionModel
from test_edit_stage import IMAGE_UNET
from test_training import TINY_DATA, unet_config, vae_config, write_config

from t2v.training.config import load_config
from t2v.training.controlnet import control_maps
from t2v.training.train import train
from t2v.world.depth import depth_levels, world_depth_maps
from t2v.world.shapes import COLORS, ObjectSpec, SceneSpec, render, scene_to_dict


def test_depth_maps_put_the_later_object_in_front():
    scene = SceneSpec(
        "white", (ObjectSpec("square", "red", "large", "still"), ObjectSpec("circle", "blue", "large", "still"))
    )
    frames = render(scene, 2, 64, 64, np.random.default_rng(3))
    depth = world_depth_maps(frames, scene)
    assert depth.shape == frames.shape and depth.dtype == np.uint8
    back, front = depth_levels(2)
    assert 0 < back < front == 255 and depth_levels(1) == [255]
    red, blue = ((frames == COLORS[c]).all(-1) for c in ("red", "blue"))
    assert red.any() and blue.any()
    assert (depth[red] == back).all() and (depth[blue] == front).all() and (depth[~red & ~blue] == 0).all()
    with pytest.raises(ValueError, match="uint8"):
        world_depth_maps(frames.astype(np.float32), scene)


def test_control_maps_of_a_batch():
    import json

    scene = SceneSpec("black", (ObjectSpec("square", "red", "large", "still"),))
    frames = render(scene, 2, 32, 32, np.random.default_rng(0))
    video = torch.from_numpy(frames).permute(0, 3, 1, 2).float()[None] / 127.5 - 1
    scenes = [json.dumps(scene_to_dict(scene))]
    edges, depth = control_maps("edges", video, scenes), control_maps("depth", video, scenes)
    assert edges.shape == depth.shape == (1, 2, 3, 32, 32)
    assert set(edges.unique().tolist()) == {0.0, 1.0} and depth.max() == 1.0
    inside = (frames[0] == COLORS["red"]).all(-1)
    assert inside.any()
    assert (depth[0, 0, 0][torch.from_numpy(inside)] == 1).all() and (edges[0, 0, 0].sum() < inside.sum())


@pytest.mark.parametrize("control", ["edges", "depth"])
def test_controlnet_stage_exports_a_controlnet_that_starts_from_the_unet(tmp_path, control):
    train(
        load_config(vae_config(tmp_path, vae_type="patch", vae={"patch_size": 8, "latent_channels": 8}, pca_frames=32))
    )
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=4, in_channels=8, out_channels=8, cross_attention_dim=384, use_linear_projection=True, **IMAGE_UNET
    )
    unet.save_pretrained(tmp_path / "unet")
    settings = yaml.safe_load(unet_config(tmp_path).read_text())
    settings.update(stage="controlnet", control=control, init_from=str(tmp_path / "unet"), steps=2, unet={})
    settings["data"] = {**TINY_DATA, "kind": "shapes_stills", "num_frames": 2}
    settings["output_dir"] = str(tmp_path / "cn")
    path = train(load_config(write_config(tmp_path / "cn.yaml", **settings)))
    controlnet = ControlNetModel.from_pretrained(path)
    assert (path / "diffusion_pytorch_model.safetensors").is_file()
    # the encoder started as the UNet's (two warm-up steps move it by about the learning rate)
    torch.testing.assert_close(controlnet.conv_in.weight, unet.conv_in.weight, atol=1e-3, rtol=0)
    assert not torch.equal(controlnet.conv_in.weight, unet.conv_in.weight)  # and it trained


def test_controlnet_stage_errors(tmp_path):
    settings = yaml.safe_load(unet_config(tmp_path).read_text())
    settings.update(stage="controlnet", control="pose")
    with pytest.raises(ValueError, match="control must be one of edges, depth"):
        train(load_config(write_config(tmp_path / "a.yaml", **settings)))
    settings.update(control="edges")
    with pytest.raises(ValueError, match="data.kind 'shapes_stills'"):
        train(load_config(write_config(tmp_path / "b.yaml", **settings)))


def test_overlapping_renders_and_depth_stills():
    from pathlib import Path

    from t2v.world.depth import ShapesDepthStillsDataset, render_with_masks
    from t2v.world.shapes import render

    objects = (ObjectSpec("square", "red", "large", "right"), ObjectSpec("circle", "blue", None, "growing"))
    scene = SceneSpec("gray", objects)
    plain, masks = render_with_masks(scene, 8, 64, 64, np.random.default_rng(5))
    assert np.array_equal(plain, render(scene, 8, 64, 64, np.random.default_rng(5)))  # the world's own render
    assert not (masks[0] & masks[1]).any()  # its layouts keep objects apart
    frames, masks = render_with_masks(scene, 8, 64, 64, np.random.default_rng(5), overlap=True)
    overlap = masks[0] & masks[1]
    assert overlap.any((1, 2)).all() and (frames[overlap] == COLORS["blue"]).all()  # the second is in front
    data = ShapesDepthStillsDataset(8, p_two_objects=1.0, p_overlap=1.0)
    item = data[3]
    assert item["video"].shape == (4, 3, 64, 64) and item["caption"] and "objects" in item["scene"]
    root = Path(__file__).parents[2] / "configs"
    for kind in ("edges", "depth"):
        config = load_config(root / f"shapes-controlnet-{kind}.yaml")
        assert config.stage == "controlnet" and config.control == kind
    assert load_config(root / "shapes-controlnet-depth.yaml").data.kind == "shapes_depth_stills"
