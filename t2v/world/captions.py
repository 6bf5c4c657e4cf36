"""Captions of the Shapes world: training phrasings, held-out phrasings and one canonical phrasing.

Each concept (object colour, background colour, shape, size, motion) and the sentence frames have
three disjoint vocabularies, as a (train, validation, novel) triple of phrases:

- train: what `caption` samples, the words the model learns ("a scarlet ball slides to the left");
- validation: `validation_caption` only, to choose training settings ("footage of a ruby sphere ascending");
- novel: `novel_caption` only, the eval's novel split ("a crimson orb sinking over an ebony backdrop").

Every held-out phrase has a word of its own set (VALIDATION_WORDS, NOVEL_WORDS) that `caption` never
emits; glue words ("a", "and", "on", ...) and the direction words ("left", "to the left", ...) are
shared. `canonical_caption` is one fixed phrasing from the training words, for evaluation prompts.
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np

from t2v.world.shapes import ObjectSpec, SceneSpec


TRAIN, VALIDATION, NOVEL = 0, 1, 2
SPLIT_NAMES = ("train", "validation", "novel")

# concept -> (train, validation, novel) phrases; the first train phrase is the canonical word
COLOR_WORDS = {
    "red": (("red", "scarlet", "cherry red", "bright red"), ("ruby", "tomato red"), ("crimson", "blood red")),
    "green": (("green", "grass green", "lime green", "bright green"), ("leaf green",), ("emerald", "forest green")),
    "blue": (("blue", "royal blue", "bright blue"), ("cobalt", "cobalt blue"), ("sapphire", "sapphire blue")),
    "yellow": (("yellow", "lemon yellow", "bright yellow"), ("canary yellow",), ("golden", "banana yellow")),
    "purple": (("purple", "violet", "bright purple"), ("grape", "plum"), ("lavender", "orchid")),
    "orange": (("orange", "bright orange", "vivid orange"), ("pumpkin orange",), ("tangerine", "carrot orange")),
    "cyan": (("cyan", "aqua", "bright cyan"), ("aquamarine",), ("teal", "turquoise")),
    "white": (("white", "snow white", "bright white"), ("milky white", "ivory"), ("pure white", "pearl white")),
}
BACKGROUND_WORDS = {
    "black": (("black", "pitch black", "solid black"), ("coal black",), ("jet black", "ebony")),
    "white": (("white", "plain white", "snow white"), ("milky white",), ("pure white", "chalk white")),
    "gray": (("gray", "grey", "plain gray"), ("stone gray", "slate gray"), ("ash gray", "concrete gray")),
}
SHAPE_WORDS = {
    "circle": (("circle", "ball", "disk", "disc", "round shape"), ("sphere", "circular shape"), ("orb", "dot")),
    "square": (("square", "box", "block", "square shape"), ("cube",), ("tile", "rectangle")),
    "triangle": (("triangle", "triangular shape"), ("pyramid",), ("wedge", "arrowhead")),
}
SIZE_WORDS = {
    "small": (("small", "little", "tiny"), ("miniature",), ("mini", "petite")),
    "large": (("large", "big", "huge"), ("giant", "oversized"), ("enormous", "massive", "gigantic")),
}
# Motions are (participle, third person) pairs. A direction is a verb of MOVE_VERBS with a phrase of
# DIRECTION_WORDS (shared by the three sets), or a phrase of its own in MOTION_WORDS.
MOVE_VERBS = (
    (("moving", "moves"), ("sliding", "slides"), ("drifting", "drifts"), ("going", "goes"), ("heading", "heads")),
    (("gliding", "glides"), ("shifting", "shifts")),
    (("travelling", "travels"), ("traveling", "travels"), ("cruising", "cruises")),
)
DIRECTION_WORDS = {
    "left": ("left", "to the left", "leftward", "leftwards", "towards the left"),
    "right": ("right", "to the right", "rightward", "rightwards", "towards the right"),
    "up": ("up", "upward", "upwards"),
    "down": ("down", "downward", "downwards"),
}
MOTION_WORDS = {
    "left": ((), (), ()),
    "right": ((), (), ()),
    "up": ((("rising", "rises"), ("floating up", "floats up")), (("ascending", "ascends"),),
           (("climbing", "climbs"),)),
    "down": ((("falling", "falls"), ("dropping", "drops")), (("descending", "descends"),),
             (("sinking", "sinks"),)),
    "still": (
        (("standing still", "stands still"), ("staying still", "stays still"), ("not moving", "does not move"),
         ("sitting still", "sits still"), ("stationary", "is stationary")),
        (("resting", "rests"), ("holding still", "holds still")),
        (("motionless", "is motionless"), ("staying put", "stays put"), ("remaining in place", "remains in place")),
    ),
    "growing": (
        (("growing", "grows"), ("getting bigger", "gets bigger"), ("expanding", "expands"),
         ("growing larger", "grows larger")),
        (("increasing in size", "increases in size"), ("inflating", "inflates")),
        (("swelling", "swells"), ("ballooning", "balloons"), ("becoming bigger", "becomes bigger")),
    ),
    "shrinking": (
        (("shrinking", "shrinks"), ("getting smaller", "gets smaller"), ("contracting", "contracts")),
        (("decreasing in size", "decreases in size"), ("deflating", "deflates")),
        (("dwindling", "dwindles"), ("diminishing", "diminishes"), ("becoming smaller", "becomes smaller")),
    ),
}  # fmt: skip
ADVERBS = (("slowly", "steadily", "smoothly"), ("gradually",), ("gently",))
LEADS = (  # sentence openings before the objects; "there is" becomes "there are" for two objects
    ("", "there is", "a video of", "a video showing", "an animation of"),
    ("footage of", "a scene with"),
    ("a clip of", "we see", "a movie of"),
)
BACKGROUND_FRAMES = (  # appended to the objects; {a}: the background word with its article, {w}: the bare word
    (" on {a} background", ", {w} background", " against {a} background", " on {w}", " with {a} background"),
    (" on {a} canvas", ", {w} canvas"),
    (" against {a} backdrop", " over {a} backdrop", ", {w} backdrop"),
)
JOINERS = {"ing": (" and ", ", and ", ", "), "that": (" and ", ", and "), "verb": (" and ", ", and ", " while ")}
GLUE = frozenset({"a", "an", "and", "in", "is", "of", "on", "that", "the", "to", "towards", "while", "with"})

P_PLAIN = 0.35  # share of training captions in the plain grammar (canonical words, few variants)
P_SIZE_WORD = 0.7  # probability of the size word for objects that have a size
P_BACKGROUND = 0.5  # probability of the background phrase
P_BACKGROUND_FIRST = 0.2  # probability that a background phrase opens a caption without a lead
P_ADVERB = 0.2  # probability of an adverb for a moving or resizing object
P_HELD = 0.5  # in held-out captions, probability of held-out words for a slot not forced to have them

# The plain grammar: "a small red ball sliding to the right on a black background".
PLAIN_NOUNS = {"circle": ("circle", "ball", "disk"), "square": ("square", "box"), "triangle": ("triangle",)}
PLAIN_MOVING = ("moving", "sliding", "drifting")
PLAIN_DIRECTIONS = {"left": ("left", "to the left"), "right": ("right", "to the right"), "up": ("up", "upward"),
                    "down": ("down", "downward")}  # fmt: skip
PLAIN_STILL = ("standing still", "staying still", "not moving")
PLAIN_SIZE_CHANGE = {"growing": ("growing", "getting bigger"), "shrinking": ("shrinking", "getting smaller")}


def motion_phrases(motion: str, split: int) -> tuple[tuple[str, str], ...]:
    """The (participle, third person) phrases of a motion in one set; the canonical one is first in train."""
    own = MOTION_WORDS[motion][split]
    if motion not in DIRECTION_WORDS:
        return own
    verbs = [(f"{ing} {d}", f"{third} {d}") for ing, third in MOVE_VERBS[split] for d in DIRECTION_WORDS[motion]]
    return (*verbs, *own)


def _vocabulary() -> dict[str, dict[str, tuple]]:
    motions = {m: tuple(motion_phrases(m, s) for s in range(3)) for m in MOTION_WORDS}
    return {"color": COLOR_WORDS, "background": BACKGROUND_WORDS, "shape": SHAPE_WORDS, "size": SIZE_WORDS,
            "motion": motions}  # fmt: skip


VOCABULARY = _vocabulary()  # kind -> concept -> (train, validation, novel) phrases


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _choose(rng: np.random.Generator, sets: tuple, split: int, forced: bool = False):
    """A training option (split TRAIN), else a held-out option when forced or with P_HELD, else the canonical one."""
    if split == TRAIN:
        return _pick(rng, sets[TRAIN])
    return _pick(rng, sets[split]) if forced or rng.random() < P_HELD else sets[TRAIN][0]


def _describe(obj: ObjectSpec, rng: np.random.Generator, split: int, form: str) -> str:
    """One object phrase; in held-out splits at least one of its words comes from the split's set."""
    kinds = ["color", "shape", "motion"] + (["size"] if obj.size is not None and rng.random() < P_SIZE_WORD else [])
    forced = _pick(rng, kinds)
    word = {k: _choose(rng, VOCABULARY[k][getattr(obj, k)], split, k == forced) for k in kinds}
    noun = _article(" ".join(([word["size"]] if "size" in word else []) + [word["color"], word["shape"]]))
    ing, third = word["motion"]
    if obj.motion != "still" and rng.random() < P_ADVERB:
        adverb = _choose(rng, ADVERBS, split)
        ing, third = f"{adverb} {ing}", f"{third} {adverb}"
    return {"ing": f"{noun} {ing}", "that": f"{noun} that {third}", "verb": f"{noun} {third}"}[form]


def _background(scene: SceneSpec, text: str, lead: str, rng: np.random.Generator, split: int) -> str:
    if rng.random() >= P_BACKGROUND:
        return text
    frame = _choose(rng, BACKGROUND_FRAMES, split)
    word = _choose(rng, BACKGROUND_WORDS[scene.background], split)
    phrase = frame.format(a=_article(word), w=word)
    if not lead and not frame.endswith("}") and rng.random() < P_BACKGROUND_FIRST:
        return f"{phrase.lstrip(', ')}, {text}"  # "on a black background, a red ball moving left"
    return text + phrase


def _caption(scene: SceneSpec, rng: np.random.Generator, split: int) -> str:
    objs = list(scene.objects)
    if len(objs) == 2 and rng.random() < 0.5:
        objs = objs[::-1]
    lead = _choose(rng, LEADS, split)
    form = _pick(rng, ("ing", "that") if lead else ("ing", "that", "verb"))
    text = _pick(rng, JOINERS[form]).join(_describe(o, rng, split, form) for o in objs)
    if lead:
        text = f"{lead.replace('there is', 'there are') if len(objs) == 2 else lead} {text}"
    return _background(scene, text, lead, rng, split)


def _plain_object(obj: ObjectSpec, rng: np.random.Generator) -> str:
    words = []
    if obj.size is not None and rng.random() < P_SIZE_WORD:
        words.append(obj.size)
    words += [obj.color, _pick(rng, PLAIN_NOUNS[obj.shape])]
    if obj.motion in PLAIN_DIRECTIONS:
        words += [_pick(rng, PLAIN_MOVING), _pick(rng, PLAIN_DIRECTIONS[obj.motion])]
    elif obj.motion == "still":
        words.append(_pick(rng, PLAIN_STILL))
    else:
        words.append(_pick(rng, PLAIN_SIZE_CHANGE[obj.motion]))
    return _article(" ".join(words))


def _plain_caption(scene: SceneSpec, rng: np.random.Generator) -> str:
    objs = list(scene.objects)
    if len(objs) == 2 and rng.random() < 0.5:
        objs = objs[::-1]
    text = " and ".join(_plain_object(o, rng) for o in objs)
    if rng.random() < P_BACKGROUND:
        text += f" on a {scene.background} background"
    return text


def caption(scene: SceneSpec, rng: np.random.Generator) -> str:
    """A random training caption: P_PLAIN of them in the plain grammar with the canonical colour words
    ("a small red ball sliding to the right on a black background"), the others from the training
    vocabulary ("there are a tiny scarlet disc heading left, and a cyan block drifting leftwards")."""
    if rng.random() < P_PLAIN:
        return _plain_caption(scene, rng)
    return _caption(scene, rng, TRAIN)


def validation_caption(scene: SceneSpec, rng: np.random.Generator) -> str:
    """A caption with validation words (every object has one), e.g. "footage of a cobalt cube gliding left";
    for choosing training settings, never for training or the eval's novel split."""
    return _caption(scene, rng, VALIDATION)


def novel_caption(scene: SceneSpec, rng: np.random.Generator) -> str:
    """A caption with novel words (every object has one), e.g. "a crimson orb sinking against an ebony
    backdrop"; the eval's novel split. Neither `caption` nor `validation_caption` emits these words."""
    return _caption(scene, rng, NOVEL)


def canonical_caption(scene: SceneSpec) -> str:
    """The fixed evaluation phrasing, e.g. "a small red circle moving right on a black background"."""

    def phrase(o: ObjectSpec) -> str:
        fixed = {"still": "standing still", "growing": "growing", "shrinking": "shrinking"}
        motion = fixed.get(o.motion, f"moving {o.motion}")
        size = f"{o.size} " if o.size else ""
        return _article(f"{size}{o.color} {o.shape} {motion}")

    return " and ".join(phrase(o) for o in scene.objects) + f" on a {scene.background} background"


def words(text: str) -> set[str]:
    """Lowercase word tokens of a text."""
    return set(re.findall(r"[a-z]+", text.lower()))


def split_phrases(split: int) -> list[str]:
    """Every phrase one set can emit: concept phrases, adverbs, leads, background frames (without the word)."""
    out = [p for table in VOCABULARY.values() for sets in table.values() for p in sets[split]]
    out = [" ".join(p) if isinstance(p, tuple) else p for p in out]
    out += [*ADVERBS[split], *LEADS[split], *(f.format(a="", w="") for f in BACKGROUND_FRAMES[split])]
    if split == TRAIN:
        out += ["there are", *PLAIN_MOVING, *PLAIN_STILL, *(p for t in PLAIN_NOUNS.values() for p in t)]
        out += [p for t in (*PLAIN_DIRECTIONS.values(), *PLAIN_SIZE_CHANGE.values()) for p in t]
        out += [*JOINERS["verb"], "that"]  # the joiners and the relative clause "a ball that rises"
    return out


def _split_words(split: int) -> frozenset[str]:
    return frozenset(w for p in split_phrases(split) for w in words(p))


GRAMMAR_WORDS = _split_words(TRAIN) | {"a", "an", "and", "on"}  # every word `caption` and `canonical_caption` can emit
TRAIN_WORDS = GRAMMAR_WORDS - GLUE  # the words of the training vocabulary, glue words aside
VALIDATION_WORDS = _split_words(VALIDATION) - GRAMMAR_WORDS - GLUE  # words only validation captions use
NOVEL_WORDS = _split_words(NOVEL) - GRAMMAR_WORDS - GLUE  # words only novel captions use


@cache
def _matcher(kind: str) -> tuple[re.Pattern, dict[str, str]]:
    concept_of = {}
    for concept, sets in VOCABULARY[kind].items():
        for phrases in sets:
            for p in phrases:
                for text in p if isinstance(p, tuple) else (p,):
                    concept_of[text] = concept
    alternatives = "|".join(re.escape(t) for t in sorted(concept_of, key=len, reverse=True))
    return re.compile(rf"(?<![a-z])(?:{alternatives})(?![a-z])"), concept_of


def pattern(kind: str) -> str:
    """A regular expression matching any phrase of a kind ("color", "background", "shape", "size", "motion")."""
    return _matcher(kind)[0].pattern


def mentions(text: str, kind: str) -> list[str]:
    """The concepts of a kind that a text names, in order, by any phrase of the three sets (longest first):
    mentions("a crimson orb sinking", "color") == ["red"]; mentions(..., "motion") == ["down"]."""
    regex, concept_of = _matcher(kind)
    return [concept_of[m.group(0)] for m in regex.finditer(text.lower())]


def vocabulary_summary() -> dict:
    """Which phrases are trained on and which are held out, for the model card:
    {kind: {concept: {"train": [...], "validation": [...], "novel": [...]}}}.

    Motions list their own phrases (participles); "verb" lists the verbs every direction takes with
    its "direction" phrases, which are shared by the three sets; "lead" and "background frame" are
    the sentence frames."""

    def sets(triple) -> dict:
        return {name: list(triple[s]) for s, name in enumerate(SPLIT_NAMES)}

    summary = {
        kind: {c: sets(t) for c, t in VOCABULARY[kind].items()} for kind in ("color", "background", "shape", "size")
    }
    summary["motion"] = {m: sets(tuple(tuple(ing for ing, _ in s) for s in t)) for m, t in MOTION_WORDS.items()}
    summary["verb"] = {"left, right, up, down": sets(tuple(tuple(ing for ing, _ in s) for s in MOVE_VERBS))}
    summary["direction"] = {d: sets((p, p, p)) for d, p in DIRECTION_WORDS.items()}
    summary["adverb"] = {"moving, resizing": sets(ADVERBS)}
    summary["lead"] = {"opening": sets(tuple(tuple(x for x in s if x) for s in LEADS))}
    frames = tuple(tuple(f.strip(", ").format(a="a black", w="black") for f in s) for s in BACKGROUND_FRAMES)
    summary["background frame"] = {"background": sets(frames)}
    return summary
