"""Layout of a Shapes-world prompt: two objects, one band each, as regions for regional prompting.

The world lays two objects out in two bands (left/right when one moves vertically, top/bottom when
one moves horizontally; see t2v.world.shapes). `shapes_regions` reads the object phrases and their
motion words from a prompt and returns one `Region` per object, so the embedded model's
cross-attention hears each object's words only in its band (t2v.pipelines.regions):

    >>> prompt = "a red square moving right and a blue circle growing on a black background"
    >>> regions = shapes_regions(prompt, 16, 64, 64)
    >>> [r.text for r in regions]
    ['a red square moving right', 'a blue circle growing']

Prompts are read with the caption vocabulary of all three sets (t2v.world.captions: training,
validation and novel words), so "a crimson orb sinking and a teal tile growing over a jet black
backdrop" is laid out too. Prompts that do not name exactly two objects (a colour each) give None.
"""

from __future__ import annotations

import re

import torch

from t2v.pipelines.regions import Region, band_masks
from t2v.world.captions import BACKGROUND_FRAMES, DIRECTION_WORDS, LEADS, mentions, pattern
from t2v.world.shapes import COLORS


def _spaced(text: str) -> str:
    """`text` as a regular expression matching itself with any run of spaces between words."""
    return re.escape(text).replace(re.escape(" "), r"\s+")


def _frame(frame: str) -> str:
    """A background frame of the captions (" on {a} background") as a regular expression."""
    background = f"(?:{pattern('background')})"
    rx = _spaced(frame.strip(", ")).replace(re.escape("{a}"), rf"(?:an?\s+)?{background}")
    return rx.replace(re.escape("{w}"), background)


_FRAMES = "|".join(_frame(f) for frames in BACKGROUND_FRAMES for f in frames)
_BACKGROUND_END = re.compile(rf"(?:,\s*|\s+)(?:{_FRAMES})\s*$")  # "..., on a black background"
_BACKGROUND_START = re.compile(rf"^(?:{_FRAMES})\s*,\s*")  # "black background, ..."
_LEADS = sorted({lead for leads in LEADS for lead in leads if lead} | {"there are"}, key=len, reverse=True)
_LEAD = re.compile(rf"^(?:{'|'.join(map(_spaced, _LEADS))})\s+")
_OBJECT_SPLIT = re.compile(r"(?:,?\s+and|,|\s+while)\s+(?=an?\s)")  # "... and a blue circle", not "... and it rises"
_DIRECTION_OF = {w: m for m, phrases in DIRECTION_WORDS.items() for w in phrases if " " not in w}  # "leftwards"


def object_phrases(prompt: str) -> list[str]:
    """The object phrases of a Shapes-world prompt, in order (background phrase left out)."""
    text = prompt.strip().lower().rstrip(".!")
    text = _BACKGROUND_START.sub("", _BACKGROUND_END.sub("", text))
    text = _LEAD.sub("", text)
    return [p.strip() for p in _OBJECT_SPLIT.split(text) if p.strip()]


def _motions(phrase: str) -> set[str]:
    """The motions a phrase names, by a motion phrase ("sinks", "gliding left") or a direction word alone."""
    return set(mentions(phrase, "motion")) | {
        _DIRECTION_OF[w] for w in re.findall(r"[a-z]+", phrase) if w in _DIRECTION_OF
    }


def _direction(phrases: list[str]) -> str:
    """The band direction `shapes_regions` uses: rows when an object moves sideways (and none vertically)."""
    motions = set().union(*map(_motions, phrases))
    return "rows" if motions & {"left", "right"} and not motions & {"up", "down"} else "columns"


def _texts(prompt: str, phrases: list[str]) -> list[str]:
    """The phrases as they are spelled in the prompt (phrases are lowercased)."""
    lowered, texts, cursor = prompt.lower(), [], 0
    for p in phrases:
        start = lowered.index(p, cursor)
        texts.append(prompt[start : start + len(p)])
        cursor = start + len(p)
    return texts


def _two_objects(phrases: list[str]) -> bool:
    return len(phrases) == 2 and all(len(set(mentions(p, "color"))) == 1 for p in phrases)


def has_layout(prompt: str | None) -> bool:
    """Whether `shapes_regions` lays the prompt out: two object phrases ("and", ",", "while"), a colour each."""
    return prompt is not None and _two_objects(object_phrases(prompt))


def shapes_regions(prompt: str, num_frames: int, height: int, width: int) -> list[Region] | None:
    """One Region per object of a two-object prompt (left/top band for the first), else None."""
    phrases = object_phrases(prompt)
    if not _two_objects(phrases):
        return None
    masks = band_masks(2, _direction(phrases), num_frames, height, width)
    return [Region(t, m) for t, m in zip(_texts(prompt, phrases), masks)]


def clip_regions(caption: str, scene: dict, video) -> list[Region] | None:
    """Regions for a rendered two-object training clip: its caption's object phrases, each given the
    half of the frame its object stays in (found by the object's exact colour in `video`, [F, 3, H, W]
    in [-1, 1]), split the way `shapes_regions` splits when both splits separate the objects. None for
    one object, or when no split separates them. Trains the layout `shapes_regions` gives at inference."""
    phrases = object_phrases(caption)
    if len(scene["objects"]) != 2 or len(phrases) != 2:
        return None
    frames, _, height, width = video.shape
    boxes = []  # (x_min, x_max, y_min, y_max) of each object's pixels over the whole clip
    for p in phrases:
        colors = set(mentions(p, "color"))
        if len(colors) != 1:
            return None
        rgb = torch.tensor(COLORS[colors.pop()], dtype=video.dtype) / 127.5 - 1
        hit = ((video - rgb[:, None, None]).abs().amax(1) < 0.02).any(0)  # [H, W]
        if not hit.any():
            return None
        ys, xs = torch.nonzero(hit, as_tuple=True)
        boxes.append((int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())))
    (ax0, ax1, ay0, ay1), (bx0, bx1, by0, by1) = boxes
    order = {  # direction -> (first object in the first band, first object in the second band)
        "columns": (ax1 < width // 2 <= bx0, bx1 < width // 2 <= ax0),
        "rows": (ay1 < height // 2 <= by0, by1 < height // 2 <= ay0),
    }
    preferred = _direction(phrases)
    for direction in (preferred, "rows" if preferred == "columns" else "columns"):
        if any(order[direction]):
            first, second = band_masks(2, direction, frames, height, width)
            if order[direction][1]:
                first, second = second, first
            texts = _texts(caption, phrases)
            return [Region(texts[0], first), Region(texts[1], second)]
    return None


# The region-planner interface (t2v.models.defaults.REGION_PLANNERS["shapes"]): has_layout, plan_regions, LAYOUT_HELP
plan_regions = shapes_regions
LAYOUT_HELP = (
    "one prompt naming two objects, each with a colour, joined by 'and' "
    "(e.g. 'a red square moving right and a blue circle growing on a black background')"
)

DRAWS = (
    "coloured circles, squares and triangles (one or two, small or large) moving, growing, shrinking or "
    "standing still on a black, white or gray background, e.g. 'a red circle moving right'"
)


def prompt_warning(prompt: str) -> str | None:
    """A one-line warning when a prompt names no shape of the world (e.g. "a dog running"), else None."""
    if mentions(prompt, "shape"):
        return None
    shown = prompt if len(prompt) <= 60 else prompt[:57] + "..."
    return f"this model draws only {DRAWS}; {shown!r} names none of its shapes, so expect an empty clip"
