"""The edit judge (t2v.eval.edits) on exactly rendered clips: a perfect edit passes, copy-back and wrong edits fail."""

import numpy as np
import pytest

from t2v.eval.edits import EditCase, edit_cases, edits_markdown, evaluate_edits, judge_edit, summarise_edits
from t2v.world.edits import Edit, render_edit_pair
from t2v.world.shapes import ObjectSpec, SceneSpec


SCENE = SceneSpec("black", (ObjectSpec("circle", "red", "large", "right"),))


def case(edit: Edit, scene: SceneSpec = SCENE) -> EditCase:
    return EditCase("seen", "an instruction", scene, edit, 7)


@pytest.mark.parametrize(
    "edit",
    [Edit("color", "blue", 0), Edit("background", "white"), Edit("shape", "square", 0), Edit("size", "small", 0)],
)
def test_the_reference_passes_and_the_source_fails(edit):
    c = case(edit)
    source, reference = c.clips()
    good = judge_edit(c, reference, reference)
    assert good["correct"] and good["changed"] and good["kept"] and good["centroid"] and good["psnr"] == float("inf")
    copy_back = judge_edit(c, source, reference)
    assert not copy_back["changed"] and not copy_back["correct"]


def test_a_wrong_edit_or_a_lost_attribute_fails():
    c = case(Edit("color", "blue", 0))
    _, reference = c.clips()
    _, green = render_edit_pair(SCENE, Edit("color", "green", 0), rng=np.random.default_rng(7))
    assert not judge_edit(c, green, reference)["changed"]
    _, squared = render_edit_pair(
        SceneSpec("black", (ObjectSpec("square", "blue", "large", "right"),)), Edit("background", "white"),
        rng=np.random.default_rng(7),
    )  # fmt: skip
    verdict = judge_edit(c, squared, reference)  # recoloured, but the background changed too
    assert verdict["changed"] and not verdict["kept"] and not verdict["kept_background"]


def test_a_moved_object_fails_the_centroid_check():
    c = case(Edit("color", "blue", 0))
    _, reference = c.clips()
    shifted = np.roll(reference, 3, axis=2)  # 3 px to the right in every frame
    verdict = judge_edit(c, shifted, reference)
    assert verdict["correct"] and not verdict["centroid"] and verdict["centroid_error"] == pytest.approx(3, abs=0.5)


def test_cases_are_reproducible_and_held_out_ones_make_held_out_compositions():
    from t2v.world.edits import apply_edit
    from t2v.world.shapes import scene_is_held_out

    a, b = edit_cases(6, sets=("seen", "held_out")), edit_cases(6, sets=("seen", "held_out"))
    assert [x.instruction for x in a] == [x.instruction for x in b]
    assert all(scene_is_held_out(apply_edit(x.scene, x.edit)) == (x.split == "held_out") for x in a)
    with pytest.raises(ValueError, match="edit sets are"):
        edit_cases(1, sets=("bogus",))


def test_evaluate_and_summarise():
    cases = edit_cases(2, sets=("seen",))
    perfect = {x.instruction: x.clips()[1] for x in cases}
    out = evaluate_edits(lambda text, source, seed: perfect[text] / 255.0, cases, seeds=(0,), progress=False)
    s = out["summary"]["seen"]
    assert s["edits"] == 2 and s["correct"] == 1.0 and s["centroid"] == 1.0
    assert "| seen | 2 | 100% |" in edits_markdown(summarise_edits(out["results"]))
