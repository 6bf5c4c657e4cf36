"""The control judge (t2v.eval.controls) on exactly rendered clips."""

import numpy as np
import pytest

from t2v.eval.controls import control_cases, controls_markdown, evaluate_controls, judge_control
from t2v.world.shapes import BACKGROUNDS, COLORS


def redressed(case, source, masks):
    """The perfect output: the source's layout in the prompt's colours and background."""
    out = np.empty_like(source)
    out[:] = BACKGROUNDS[case.look.background]
    for obj, mask in zip(case.look.objects, masks):
        out[mask] = COLORS[obj.color]
    return out


@pytest.mark.parametrize("kind,two", [("edges", False), ("depth", False), ("depth", True)])
def test_the_perfect_output_passes_and_the_source_fails_the_look(kind, two):
    for case in control_cases(3, kind, two_objects=two):
        source, masks = case.clip()
        assert case.maps(source).shape == source.shape
        good = judge_control(case, redressed(case, source, masks), source, masks)
        assert good["iou"] == 1.0 and good["iou_ok"] == 1.0 and good["look"]
        assert good.get("front", True)
        copy = judge_control(case, source, source, masks)
        assert copy["iou"] == 1.0 and not copy["look"]


def test_the_wrong_order_and_a_moved_layout_fail():
    case = control_cases(1, "depth", two_objects=True)[0]
    source, masks = case.clip()
    behind = redressed(case, source, masks[::-1])  # paints object 0 last: in front
    behind[masks[1] & ~masks[0]] = COLORS[case.look.objects[1].color]
    behind[masks[0]] = COLORS[case.look.objects[0].color]
    assert not judge_control(case, behind, source, masks)["front"]
    moved = np.roll(redressed(case, source, masks), 12, axis=2)
    assert judge_control(case, moved, source, masks)["iou_ok"] < 1.0


def test_cases_are_redressed_and_reproducible():
    a, b = control_cases(4, "edges"), control_cases(4, "edges")
    assert [c.prompt for c in a] == [c.prompt for c in b]
    for c in a:
        assert c.look.background != c.scene.background
        assert [o.shape for o in c.look.objects] == [o.shape for o in c.scene.objects]
    with pytest.raises(ValueError, match="control kinds"):
        control_cases(1, "pose")


def test_evaluate_and_markdown():
    cases = control_cases(2, "edges")
    perfect = {c.prompt: redressed(c, *c.clip()) for c in cases}
    out = evaluate_controls(lambda prompt, maps, seed: perfect[prompt] / 255.0, cases, (0,), progress=False)
    s = out["summary"]["1 object"]
    assert s["videos"] == 2 and s["iou_ok"] == 1.0 and s["look"] == 1.0
    assert "| edges | 1 object | 2 | 1.00 | 100% | 100% | - |" in controls_markdown("edges", out["summary"])
