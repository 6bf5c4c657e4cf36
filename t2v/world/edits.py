"""Edit pairs of the Shapes world: one clip before and after a single change, and the instruction for it.

An `Edit` changes one attribute of a scene: an object's colour ("color"), the background ("background"),
an object's shape ("shape") or the size of an object that has one ("size"; growing and shrinking objects
have none). `render_edit_pair` renders the scene before and after from the same random state, so the
objects keep their trajectories and only the edited attribute differs (a resized object keeps its centre,
to half a pixel). `sample_edit` draws a (scene, edit) pair: split "train" never makes a held-out composition
(`t2v.world.shapes.is_held_out`) in either clip; split "held_out" always makes one in the edited clip.

`edit_instruction` phrases an edit as Instruct-Pix2Pix does ("make the circle blue", "turn it into a
square", "change the background to white", "make it bigger"), in three disjoint sets of phrasings like the
captions' (`t2v.world.captions`): train, validation and novel. The colour, shape and size words come from
the captions' vocabularies of the same set, so "train" instructions use training words only, and every
validation or novel instruction has a word of its own set (EDIT_VALIDATION_WORDS, EDIT_NOVEL_WORDS).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import torch

from t2v.world.captions import (
    GLUE,
    GRAMMAR_WORDS,
    NOVEL,
    SPLIT_NAMES,
    TRAIN,
    VALIDATION,
    VOCABULARY,
    _article,
    _choose,
    _pick,
    words,
)
from t2v.world.shapes import (
    BACKGROUNDS,
    COLORS,
    SHAPES,
    SIZES,
    SceneSpec,
    _check,
    object_diameters,
    sample_scene,
    scene_is_held_out,
    scene_to_dict,
    shape_mask,
    trajectories,
)


EDIT_KINDS = ("color", "background", "shape", "size")
EDIT_VALUES = {"color": tuple(COLORS), "background": tuple(BACKGROUNDS), "shape": SHAPES, "size": SIZES}

# (train, validation, novel) instruction templates; {obj}: the edited object ("the red ball", "it"), {value}:
# the new colour, background or size word, {a_value}: the same with its article. Size edits by direction.
TEMPLATES = {
    "color": (
        ("make {obj} {value}", "turn {obj} {value}", "recolor {obj} {value}", "color {obj} {value}",
         "paint {obj} {value}", "change the color of {obj} to {value}", "change {obj} to {value}"),
        ("dye {obj} {value}", "{obj} should be {value}"),
        ("repaint {obj} {value}", "give {obj} {a_value} hue", "tint {obj} {value}"),
    ),
    "background": (
        ("change the background to {value}", "make the background {value}", "turn the background {value}",
         "set the background to {value}", "paint the background {value}", "use {a_value} background"),
        ("switch the background to {value}", "color the canvas {value}", "the background should be {value}"),
        ("swap the backdrop for {a_value} one", "give the scene {a_value} backdrop", "repaint the backdrop {value}"),
    ),
    "shape": (
        ("turn {obj} into {a_value}", "make {obj} {a_value}", "change {obj} into {a_value}",
         "change {obj} to {a_value}", "replace {obj} with {a_value}", "make {obj} into {a_value}"),
        ("transform {obj} into {a_value}", "morph {obj} into {a_value}"),
        ("reshape {obj} into {a_value}", "convert {obj} into {a_value}", "swap {obj} for {a_value}"),
    ),
    "large": (
        ("make {obj} bigger", "make {obj} larger", "enlarge {obj}", "make {obj} {value}"),
        ("scale {obj} up", "increase the size of {obj}"),
        ("magnify {obj}", "supersize {obj}", "upsize {obj}"),
    ),
    "small": (
        ("make {obj} smaller", "shrink {obj}", "make {obj} {value}"),
        ("scale {obj} down", "reduce the size of {obj}"),
        ("miniaturize {obj}", "downsize {obj}", "compress {obj}"),
    ),
}  # fmt: skip
# How an instruction names the edited object, by the attributes it uses; only those that single it out.
REFERENCES = {
    (): "it",
    ("shape",): "the {shape}",
    ("color",): "the {color} one",
    ("color", "shape"): "the {color} {shape}",
    ("size", "shape"): "the {size} {shape}",
    ("size", "color", "shape"): "the {size} {color} {shape}",
}


@dataclass(frozen=True)
class Edit:
    """Set attribute `kind` of object `target` (None for the background) to `value`."""

    kind: str
    value: str
    target: int | None = None

    def __post_init__(self):
        _check("kind", self.kind, EDIT_KINDS)
        _check(f"value of a {self.kind} edit", self.value, EDIT_VALUES[self.kind])
        if (self.target is None) != (self.kind == "background"):
            raise ValueError(f"target must be None exactly for a background edit, got {self.target!r} ({self.kind})")
        if self.target is not None and self.target not in (0, 1):
            raise ValueError(f"target must be an object index, 0 or 1, got {self.target!r}")


def edited_value(scene: SceneSpec, edit: Edit) -> str | None:
    """The value the edit replaces: the background, or the target object's attribute (None: no size)."""
    if edit.target is None:
        return scene.background
    if edit.target >= len(scene.objects):
        raise ValueError(f"edit target {edit.target} but the scene has {len(scene.objects)} object(s)")
    return getattr(scene.objects[edit.target], edit.kind)


def apply_edit(scene: SceneSpec, edit: Edit) -> SceneSpec:
    """The edited scene; ValueError if the edit changes nothing or makes an invalid scene (an object colour
    too close to the background, two objects of one colour, a size for a growing or shrinking object)."""
    old = edited_value(scene, edit)
    if old == edit.value:
        raise ValueError(f"the edit changes nothing: the {edit.kind} is already {old!r}")
    if edit.kind == "background":
        return SceneSpec(edit.value, scene.objects)
    obj = scene.objects[edit.target]
    if edit.kind == "size" and old is None:
        raise ValueError(f"a {obj.motion} object has no size to edit")
    objects = list(scene.objects)
    objects[edit.target] = dataclasses.replace(obj, **{edit.kind: edit.value})
    return SceneSpec(scene.background, tuple(objects))


def edit_to_dict(scene: SceneSpec, edit: Edit) -> dict:
    """Plain-JSON record of an edit: kind, target, from (the old value), value, and both scenes."""
    return {
        "kind": edit.kind, "target": edit.target, "from": edited_value(scene, edit), "value": edit.value,
        "source": scene_to_dict(scene), "edited": scene_to_dict(apply_edit(scene, edit)),
    }  # fmt: skip


# --- sampling ---


def sample_edit(
    rng: np.random.Generator, split: str = "train", *, p_two_objects: float = 0.25, kinds: tuple = EDIT_KINDS
) -> tuple[SceneSpec, Edit]:
    """A training scene (`sample_scene`) and a valid edit of one of `kinds` (about uniform over kinds, then
    uniform over targets and new values). split "train": neither clip has a held-out composition;
    "held_out": the edited clip has one (e.g. "make the triangle purple"), the source never."""
    _check("split", split, ("train", "held_out"))
    if not kinds or not set(kinds) <= set(EDIT_KINDS):
        raise ValueError(f"kinds must be a non-empty subset of {EDIT_KINDS}, got {kinds!r}")
    while True:  # rejection sampling: invalid edits (no size, low contrast, held-out or not) are redrawn
        scene = sample_scene(rng, split="train", p_two_objects=p_two_objects)
        kind = str(_pick(rng, tuple(kinds)))
        target = None if kind == "background" else int(rng.integers(len(scene.objects)))
        old = scene.background if target is None else getattr(scene.objects[target], kind)
        edit = Edit(kind, str(_pick(rng, [v for v in EDIT_VALUES[kind] if v != old])), target)
        try:
            edited = apply_edit(scene, edit)
        except ValueError:
            continue
        if scene_is_held_out(edited) == (split == "held_out"):
            return scene, edit


# --- rendering ---


def _resnap(centre: float, diameter: float) -> float:
    """A centre snapped again for a new `diameter`, so that its bounding box stays on the pixel grid."""
    return float(np.round(centre - diameter / 2) + diameter / 2)


def _draw(scene: SceneSpec, tracks: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """`scene`'s objects along `tracks` (as `render`), at the diameter of their own size where they have one."""
    diameters = dict(zip(SIZES, object_diameters(height, width)))
    frames = np.empty((len(tracks[0]), height, width, 3), np.uint8)
    frames[:] = BACKGROUNDS[scene.background]
    for obj, track in zip(scene.objects, tracks):
        for f, (cx, cy, d) in enumerate(track):
            if obj.size is not None and d != diameters[obj.size]:  # resized by the edit: the same centre
                new = diameters[obj.size]
                cx, cy, d = _resnap(cx, new), _resnap(cy, new), new
            frames[f][shape_mask(obj.shape, cx, cy, d, height, width)] = COLORS[obj.color]
    return frames


def render_edit_pair(
    scene: SceneSpec,
    edit: Edit,
    num_frames: int = 16,
    height: int = 64,
    width: int = 64,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(source, edited) uint8 frames [F, H, W, 3] of the scene before and after the edit, from one draw of
    the trajectories: only the edited attribute differs. The layout is drawn for the larger of the two
    versions of a resized object (so it fits both); other edits render the source as `render(scene, ...,
    rng)` does for the same rng state. rng=None means np.random.default_rng(0)."""
    edited = apply_edit(scene, edit)
    grows = edit.kind == "size" and edit.value == "large"
    tracks = trajectories(edited if grows else scene, num_frames, height, width, rng)
    return _draw(scene, tracks, height, width), _draw(edited, tracks, height, width)


# --- instructions ---


def _split(split: str) -> int:
    _check("split", split, SPLIT_NAMES)
    return SPLIT_NAMES.index(split)


def _reference(scene: SceneSpec, target: int, rng: np.random.Generator, split: int) -> str:
    """A phrase naming object `target` that fits no other object of the scene ("it" with one object)."""
    obj = scene.objects[target]
    others = [o for i, o in enumerate(scene.objects) if i != target]

    def unique(attrs) -> bool:
        if any(getattr(obj, a) is None for a in attrs):
            return False
        return not any(all(getattr(o, a) == getattr(obj, a) for a in attrs) for o in others)

    attrs = _pick(rng, [a for a in REFERENCES if unique(a)])
    return REFERENCES[attrs].format(**{a: _choose(rng, VOCABULARY[a][getattr(obj, a)], split) for a in attrs})


def edit_instruction(scene: SceneSpec, edit: Edit, rng: np.random.Generator, split: str = "train") -> str:
    """A random instruction for `edit` of `scene` in the phrasings of `split` ("train", "validation" or
    "novel"): "recolor the ball green", "turn it into a square", "change the background to white"."""
    s = _split(split)
    apply_edit(scene, edit)  # a valid edit of this scene
    key = edit.value if edit.kind == "size" else edit.kind
    template = _pick(rng, TEMPLATES[key][s])
    value = _choose(rng, VOCABULARY[edit.kind][edit.value], s)
    obj = "" if edit.target is None else _reference(scene, edit.target, rng, s)
    return template.format(obj=obj, value=value, a_value=_article(value))


def canonical_instruction(scene: SceneSpec, edit: Edit) -> str:
    """The fixed evaluation phrasing: "make the red circle blue", "turn the red circle into a square",
    "change the background to white", "make the red circle large"."""
    if edit.kind == "background":
        return f"change the background to {edit.value}"
    obj = scene.objects[edit.target]
    apply_edit(scene, edit)
    name = f"the {obj.color} {obj.shape}"
    return f"turn {name} into {_article(edit.value)}" if edit.kind == "shape" else f"make {name} {edit.value}"


def _split_words(split: int) -> set[str]:
    """Every word the phrasings of one set can emit: templates, references and the vocabulary's words."""
    blank = dict.fromkeys(("obj", "value", "a_value", "color", "shape", "size"), "")
    texts = [t.format(**blank) for table in TEMPLATES.values() for t in table[split]]
    texts += [t.format(**blank) for t in REFERENCES.values()] + ["a", "an"]
    texts += [p for kind in EDIT_KINDS for sets in VOCABULARY[kind].values() for p in sets[split]]
    return {w for t in texts for w in words(t)}


EDIT_TRAIN_WORDS = frozenset(_split_words(TRAIN))  # every word a "train" instruction can have
_SHARED = EDIT_TRAIN_WORDS | GRAMMAR_WORDS | GLUE  # words of training instructions or training captions
EDIT_VALIDATION_WORDS = frozenset(_split_words(VALIDATION)) - _SHARED  # words only validation instructions have
EDIT_NOVEL_WORDS = frozenset(_split_words(NOVEL)) - _SHARED  # words only novel instructions have


# --- dataset ---


def as_video(frames: np.ndarray) -> torch.Tensor:
    """uint8 [F, H, W, 3] -> float32 [F, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


class ShapesEditDataset(torch.utils.data.Dataset):
    """`length` procedurally generated edit pairs; item i depends only on (seed, i).

    Items are dicts: "source" and "edited" float32 [F, 3, H, W] in [-1, 1] (the same clip before and after
    the edit), "instruction" str (phrased in `phrasing`: "train", "validation" or "novel"), "edit" JSON
    string (`edit_to_dict`). `split`: "train" (no held-out composition in either clip) or "held_out" (the
    edit makes one)."""

    def __init__(
        self,
        length: int,
        seed: int = 0,
        num_frames: int = 16,
        height: int = 64,
        width: int = 64,
        p_two_objects: float = 0.25,
        split: str = "train",
        phrasing: str = "train",
        kinds: tuple = EDIT_KINDS,
    ):
        if not isinstance(length, int) or length < 0:
            raise ValueError(f"length must be an int >= 0, got {length!r}")
        _check("split", split, ("train", "held_out"))
        _split(phrasing)
        self.length, self.seed, self.split, self.phrasing, self.kinds = length, seed, split, phrasing, tuple(kinds)
        self.num_frames, self.height, self.width, self.p_two_objects = num_frames, height, width, p_two_objects

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        if not -self.length <= i < self.length:
            raise IndexError(f"index {i} out of range for length {self.length}")
        rng = np.random.default_rng([self.seed, i % self.length, 11])
        scene, edit = sample_edit(rng, self.split, p_two_objects=self.p_two_objects, kinds=self.kinds)
        source, edited = render_edit_pair(scene, edit, self.num_frames, self.height, self.width, rng)
        return {
            "source": as_video(source), "edited": as_video(edited),
            "instruction": edit_instruction(scene, edit, rng, self.phrasing),
            "edit": json.dumps(edit_to_dict(scene, edit)),
        }  # fmt: skip
