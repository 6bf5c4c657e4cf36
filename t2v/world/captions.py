"""Caption grammar of the Shapes world, its canonical phrasing, and novel phrasings.

`caption` samples the training grammar; `canonical_caption` is one fixed phrasing
used for evaluation prompts (it is also a sentence of the grammar);
`novel_caption` uses motion words, size words and templates the grammar never
emits (every novel caption contains at least one word outside GRAMMAR_WORDS),
to test generalisation to paraphrases.
"""

from __future__ import annotations

import re

import numpy as np

from t2v.world.shapes import BACKGROUNDS, COLORS, SIZES, ObjectSpec, SceneSpec


NOUNS = {"circle": ("circle", "ball", "disk"), "square": ("square", "box"), "triangle": ("triangle",)}
MOVING = ("moving", "sliding", "drifting")
DIRECTIONS = {
    "left": ("left", "to the left"),
    "right": ("right", "to the right"),
    "up": ("up", "upward"),
    "down": ("down", "downward"),
}
STILL = ("standing still", "staying still", "not moving")
SIZE_CHANGE = {"growing": ("growing", "getting bigger"), "shrinking": ("shrinking", "getting smaller")}
P_SIZE_WORD = 0.7  # probability of the size word for objects that have a size
P_BACKGROUND = 0.5  # probability of the background phrase

# Novel phrasings: none of these words appear in GRAMMAR_WORDS (checked by tests).
NOVEL_NOUNS = {
    "circle": ("circle", "orb", "dot"),
    "square": ("square", "block", "tile"),
    "triangle": ("triangle", "wedge"),
}
NOVEL_SIZES = {"small": ("tiny", "little"), "large": ("big", "huge")}
NOVEL_MOTIONS = {  # (present participle, third person)
    "left": (("heading left", "travels to the left"), ("heading leftwards", "goes leftwards")),
    "right": (("heading right", "travels to the right"), ("heading rightwards", "goes rightwards")),
    "up": (("rising", "rises"), ("climbing", "climbs")),
    "down": (("falling", "falls"), ("descending", "descends")),
    "still": (("motionless", "stays put"), ("resting", "rests")),
    "growing": (("expanding", "expands"), ("swelling", "swells")),
    "shrinking": (("contracting", "contracts"), ("dwindling", "dwindles")),
}
NOVEL_TEMPLATES = (  # {objs}: object phrases, {bg}: background name
    "there is {objs}, {bg} background",
    "{objs} against a {bg} backdrop",
    "a clip of {objs} over a {bg} backdrop",
)


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _object_phrase(obj: ObjectSpec, rng: np.random.Generator) -> str:
    words = []
    if obj.size is not None and rng.random() < P_SIZE_WORD:
        words.append(obj.size)
    words += [obj.color, _pick(rng, NOUNS[obj.shape])]
    if obj.motion in DIRECTIONS:
        words += [_pick(rng, MOVING), _pick(rng, DIRECTIONS[obj.motion])]
    elif obj.motion == "still":
        words.append(_pick(rng, STILL))
    else:
        words.append(_pick(rng, SIZE_CHANGE[obj.motion]))
    return _article(" ".join(words))


def caption(scene: SceneSpec, rng: np.random.Generator) -> str:
    """A random caption from the training grammar, e.g.
    "a small red ball sliding to the right on a black background".

    Objects are joined with " and " in random order; the background phrase is optional.
    """
    objs = list(scene.objects)
    if len(objs) == 2 and rng.random() < 0.5:
        objs = objs[::-1]
    text = " and ".join(_object_phrase(o, rng) for o in objs)
    if rng.random() < P_BACKGROUND:
        text += f" on a {scene.background} background"
    return text


def canonical_caption(scene: SceneSpec) -> str:
    """The fixed evaluation phrasing, e.g. "a small red circle moving right on a black background"."""

    def phrase(o: ObjectSpec) -> str:
        fixed = {"still": "standing still", "growing": "growing", "shrinking": "shrinking"}
        motion = fixed.get(o.motion, f"moving {o.motion}")
        size = f"{o.size} " if o.size else ""
        return _article(f"{size}{o.color} {o.shape} {motion}")

    return " and ".join(phrase(o) for o in scene.objects) + f" on a {scene.background} background"


def novel_caption(scene: SceneSpec, rng: np.random.Generator) -> str:
    """A paraphrase the grammar never produces, e.g. "there is a tiny red orb heading right, black background".

    The motion is always phrased with NOVEL_MOTIONS words, so the caption always
    contains a word outside GRAMMAR_WORDS.
    """
    template = _pick(rng, NOVEL_TEMPLATES)
    third_person = template.startswith("there is") and rng.random() < 0.5  # "a red orb and it rises"
    parts = []
    for o in scene.objects:
        words = []
        if o.size is not None and rng.random() < P_SIZE_WORD:
            words.append(_pick(rng, NOVEL_SIZES[o.size]))
        words += [o.color, _pick(rng, NOVEL_NOUNS[o.shape])]
        ing, third = _pick(rng, NOVEL_MOTIONS[o.motion])
        noun_phrase = _article(" ".join(words))
        parts.append(f"{noun_phrase} and it {third}" if third_person else f"{noun_phrase} {ing}")
    objs = (" and " if not third_person else ", and ").join(parts)
    return template.format(objs=objs, bg=scene.background)


def words(text: str) -> set[str]:
    """Lowercase word tokens of a text."""
    return set(re.findall(r"[a-z]+", text.lower()))


def _grammar_words() -> frozenset[str]:
    vocab = {"a", "an", "and", "on", "background", *COLORS, *BACKGROUNDS, *SIZES}
    for group in (*NOUNS.values(), MOVING, *DIRECTIONS.values(), STILL, *SIZE_CHANGE.values()):
        for phrase in group:
            vocab |= words(phrase)
    return frozenset(vocab)


GRAMMAR_WORDS = _grammar_words()  # every word `caption` and `canonical_caption` can emit
