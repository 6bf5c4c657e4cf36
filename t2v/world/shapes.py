"""The synthetic "Shapes world": scene specs, sampling and rendering.

A scene is one or two flat-coloured shapes (circle, square, triangle) on a
plain background, each with a size and a motion. Everything is deterministic
given a numpy Generator.

Layout rules (so that objects never overlap in any frame and are always fully
inside the canvas):

- sizes scale with min(height, width): small ~ 12 px, large ~ 22 px at 64x64;
- moving objects travel TRAVEL_FRAC of the canvas along their axis, linearly;
- growing/shrinking objects keep their centre (to half a pixel) and
  interpolate the side linearly, in whole pixels, between the small and the
  large size;
- every frame's bounding box is snapped to the pixel grid, so a moving shape
  keeps its exact pixel pattern (no shimmer);
- with two objects the canvas is split in two bands (top/bottom when no
  object moves vertically, left/right when no object moves horizontally), one
  object per band. A horizontal and a vertical mover cannot share the canvas
  without crossing at this travel length, so SceneSpec rejects that pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


BACKGROUNDS: dict[str, tuple[int, int, int]] = {"black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128)}
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 190, 70),
    "blue": (40, 90, 230),
    "yellow": (240, 220, 40),
    "purple": (150, 70, 210),
    "orange": (250, 140, 30),
    "cyan": (40, 210, 220),
    "white": (250, 250, 250),
}
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
MOTIONS = ("left", "right", "up", "down", "still", "growing", "shrinking")

HORIZONTAL = ("left", "right")
VERTICAL = ("up", "down")
SIZE_CHANGES = ("growing", "shrinking")

MIN_CONTRAST = 80.0  # an object colour must be at least this far (RGB Euclidean) from the background
SMALL_FRAC = 12 / 64  # object diameter / min(height, width)
LARGE_FRAC = 22 / 64
TRAVEL_FRAC = 0.5  # distance travelled by moving objects / canvas size along the motion axis
MARGIN = 1  # px kept free at the canvas border and on each side of a band border
MIN_CANVAS = 32


def color_allowed(color: str, background: str) -> bool:
    """Whether `color` contrasts enough with `background` (only white on white fails)."""
    c, b = np.array(COLORS[color], float), np.array(BACKGROUNDS[background], float)
    return float(np.linalg.norm(c - b)) >= MIN_CONTRAST


def _check(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")


@dataclass(frozen=True)
class ObjectSpec:
    """One object. `size` is None exactly when `motion` is growing/shrinking."""

    shape: str
    color: str
    size: str | None
    motion: str

    def __post_init__(self):
        _check("shape", self.shape, SHAPES)
        _check("color", self.color, COLORS)
        _check("motion", self.motion, MOTIONS)
        if self.motion in SIZE_CHANGES:
            if self.size is not None:
                raise ValueError(f"size must be None for a {self.motion} object, got {self.size!r}")
        else:
            _check("size", self.size, SIZES)


@dataclass(frozen=True)
class SceneSpec:
    """A background and one or two objects of distinct colours."""

    background: str
    objects: tuple[ObjectSpec, ...]

    def __post_init__(self):
        _check("background", self.background, BACKGROUNDS)
        objs = self.objects
        if not isinstance(objs, tuple) or not all(isinstance(o, ObjectSpec) for o in objs):
            raise ValueError(f"objects must be a tuple of ObjectSpec, got {objs!r}")
        if len(objs) not in (1, 2):
            raise ValueError(f"objects must hold 1 or 2 objects, got {len(objs)}")
        for o in objs:
            if not color_allowed(o.color, self.background):
                raise ValueError(f"object color {o.color!r} is too similar to background {self.background!r}")
        if len({o.color for o in objs}) != len(objs):
            raise ValueError(f"objects must have distinct colors, got {[o.color for o in objs]}")
        motions = {o.motion for o in objs}
        if motions & set(HORIZONTAL) and motions & set(VERTICAL):
            raise ValueError(
                "a horizontal and a vertical mover cannot be laid out without overlap, "
                f"got motions {[o.motion for o in objs]}"
            )


# --- held-out compositions (never sampled for training) ---


def is_held_out(obj: ObjectSpec) -> bool:
    """Held-out compositions: any purple triangle, any orange object moving up, any circle shrinking."""
    return (
        (obj.color == "purple" and obj.shape == "triangle")
        or (obj.color == "orange" and obj.motion == "up")
        or (obj.shape == "circle" and obj.motion == "shrinking")
    )


def scene_is_held_out(scene: SceneSpec) -> bool:
    """True if any object of the scene is a held-out composition."""
    return any(is_held_out(o) for o in scene.objects)


# --- (de)serialisation ---


def scene_to_dict(scene: SceneSpec) -> dict:
    """Plain-JSON dict of a scene."""
    return {
        "background": scene.background,
        "objects": [{"shape": o.shape, "color": o.color, "size": o.size, "motion": o.motion} for o in scene.objects],
    }


def scene_from_dict(d: dict) -> SceneSpec:
    """Inverse of scene_to_dict (validates)."""
    objs = tuple(ObjectSpec(o["shape"], o["color"], o.get("size"), o["motion"]) for o in d["objects"])
    return SceneSpec(d["background"], objs)


# --- sampling ---


def _sample_object(rng: np.random.Generator) -> ObjectSpec:
    motion = str(rng.choice(MOTIONS))
    size = None if motion in SIZE_CHANGES else str(rng.choice(SIZES))
    return ObjectSpec(str(rng.choice(SHAPES)), str(rng.choice(list(COLORS))), size, motion)


def sample_scene(rng: np.random.Generator, *, split: str = "train", p_two_objects: float = 0.25) -> SceneSpec:
    """Sample a scene, uniform over attributes up to rejection of invalid combinations.

    split="train" never yields a held-out object; split="held_out" yields exactly one
    object, which is held out (p_two_objects is ignored).
    """
    _check("split", split, ("train", "held_out"))
    if not 0.0 <= p_two_objects <= 1.0:
        raise ValueError(f"p_two_objects must be in [0, 1], got {p_two_objects!r}")
    background = str(rng.choice(list(BACKGROUNDS)))
    n = 1 if split == "held_out" or rng.random() >= p_two_objects else 2
    objs: tuple[ObjectSpec, ...] = ()
    while len(objs) < n:  # rejection sampling; acceptance is high for every rule
        o = _sample_object(rng)
        if is_held_out(o) != (split == "held_out"):
            continue
        try:  # SceneSpec rejects low contrast, repeated colours and incompatible motions
            SceneSpec(background, objs + (o,))
        except ValueError:
            continue
        objs += (o,)
    return SceneSpec(background, objs)


# --- geometry and rendering ---


def object_diameters(height: int, width: int) -> tuple[float, float]:
    """(small, large) object diameters in px for a canvas."""
    s = min(height, width)
    return round(SMALL_FRAC * s), round(LARGE_FRAC * s)


def _check_canvas(num_frames: int, height: int, width: int) -> None:
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be an int >= 1, got {num_frames!r}")
    for name, v in (("height", height), ("width", width)):
        if not isinstance(v, (int, np.integer)) or v < MIN_CANVAS:
            raise ValueError(f"{name} must be an int >= {MIN_CANVAS}, got {v!r}")


def trajectories(
    scene: SceneSpec, num_frames: int = 16, height: int = 64, width: int = 64, rng: np.random.Generator | None = None
) -> list[np.ndarray]:
    """Per object, a float array [F, 3] of (centre x, centre y, diameter) in px.

    Positions are random (from rng) within each object's band; rng=None means
    np.random.default_rng(0).
    """
    _check_canvas(num_frames, height, width)
    rng = np.random.default_rng(0) if rng is None else rng
    small, large = object_diameters(height, width)
    t = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    # bands: (x0, x1, y0, y1) regions, one per object
    full = (0, width, 0, height)
    if len(scene.objects) == 1:
        bands = [full]
    else:
        has_h = any(o.motion in HORIZONTAL for o in scene.objects)
        has_v = any(o.motion in VERTICAL for o in scene.objects)
        vertical_split = has_v or (not has_h and rng.random() < 0.5)  # left/right bands
        if vertical_split:
            bands = [(0, width // 2, 0, height), (width // 2, width, 0, height)]
        else:
            bands = [(0, width, 0, height // 2), (0, width, height // 2, height)]
        if rng.random() < 0.5:
            bands = bands[::-1]
    out = []
    for obj, (x0, x1, y0, y1) in zip(scene.objects, bands):
        # keep MARGIN px free from the band border on each side
        d_max = large if obj.size in (None, "large") else small
        r = d_max / 2
        lo_x, hi_x, lo_y, hi_y = x0 + MARGIN + r, x1 - MARGIN - r, y0 + MARGIN + r, y1 - MARGIN - r
        dx = dy = 0.0
        if obj.motion in HORIZONTAL:
            dx = TRAVEL_FRAC * width * (1 if obj.motion == "right" else -1)
        elif obj.motion in VERTICAL:
            dy = TRAVEL_FRAC * height * (1 if obj.motion == "down" else -1)
        # start so that start and end both lie in [lo, hi]
        cx0 = rng.uniform(max(lo_x, lo_x - dx), min(hi_x, hi_x - dx))
        cy0 = rng.uniform(max(lo_y, lo_y - dy), min(hi_y, hi_y - dy))
        if obj.motion == "growing":
            diam = np.round(small + (large - small) * t)  # whole px: grows 1 px at a time
        elif obj.motion == "shrinking":
            diam = np.round(large + (small - large) * t)
        else:
            diam = np.full_like(t, d_max)
        # snap the bounding box to the pixel grid: a moving shape keeps its exact pixel pattern
        rf = diam / 2
        cx = np.round(cx0 + dx * t - rf) + rf
        cy = np.round(cy0 + dy * t - rf) + rf
        out.append(np.stack([cx, cy, diam], axis=1))
    return out


def shape_mask(shape: str, cx: float, cy: float, diameter: float, height: int, width: int) -> np.ndarray:
    """Boolean [H, W] mask of one shape; pixel centres are at (i + 0.5).

    Circle: disk of that diameter. Square: side = diameter. Triangle: upright
    isosceles, base = height = diameter (fill ratio of its bounding box 0.5).
    """
    _check("shape", shape, SHAPES)
    y = np.arange(height, dtype=np.float64)[:, None] + 0.5 - cy
    x = np.arange(width, dtype=np.float64)[None, :] + 0.5 - cx
    r = diameter / 2
    if shape == "circle":
        return x**2 + y**2 <= r**2
    if shape == "square":
        return (x >= -r) & (x < r) & (y >= -r) & (y < r)
    # triangle: apex at (0, -r), base at y = r spanning [-r, r]
    return (y >= -r) & (y < r) & (np.abs(x) <= (y + r) / 2)


def render(
    scene: SceneSpec, num_frames: int = 16, height: int = 64, width: int = 64, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Render a scene to uint8 frames [F, H, W, 3] with exact palette colours (no anti-aliasing).

    Deterministic given rng (rng=None means np.random.default_rng(0)).
    """
    if not isinstance(scene, SceneSpec):
        raise ValueError(f"scene must be a SceneSpec, got {type(scene).__name__}")
    tracks = trajectories(scene, num_frames, height, width, rng)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    frames[:] = BACKGROUNDS[scene.background]
    for obj, track in zip(scene.objects, tracks):
        for f, (cx, cy, d) in enumerate(track):
            frames[f][shape_mask(obj.shape, cx, cy, d, height, width)] = COLORS[obj.color]
    return frames
