"""The synthetic Shapes world: scenes, rendering, captions and a torch dataset."""

from t2v.world.captions import GRAMMAR_WORDS, canonical_caption, caption, novel_caption, validation_caption
from t2v.world.dataset import ShapesWorldDataset
from t2v.world.sample import write_samples
from t2v.world.shapes import (
    BACKGROUNDS,
    COLORS,
    MOTIONS,
    SHAPES,
    SIZES,
    ObjectSpec,
    SceneSpec,
    color_allowed,
    is_held_out,
    render,
    sample_scene,
    scene_from_dict,
    scene_is_held_out,
    scene_to_dict,
    trajectories,
)


__all__ = [
    "BACKGROUNDS",
    "COLORS",
    "MOTIONS",
    "SHAPES",
    "SIZES",
    "GRAMMAR_WORDS",
    "ObjectSpec",
    "SceneSpec",
    "ShapesWorldDataset",
    "canonical_caption",
    "caption",
    "color_allowed",
    "is_held_out",
    "novel_caption",
    "render",
    "sample_scene",
    "scene_from_dict",
    "scene_is_held_out",
    "scene_to_dict",
    "trajectories",
    "validation_caption",
    "write_samples",
]
