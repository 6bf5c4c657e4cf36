"""The one-shot tuning evaluation's judges (t2v.eval.tune) on exactly rendered clips: no model needed."""

import numpy as np
import pytest

from t2v.eval.tune import (
    EVAL_WORLD_SEED,
    KINDS,
    MAX_PSNR,
    MOVES,
    VALIDATION_WORLD_SEED,
    judge_edit,
    psnr,
    summarise_tuning,
    track_agreement,
    tune_pairs,
    tuning_markdown,
)
from t2v.eval.zero_shot import track


PAIRS = tune_pairs(6)


def test_pairs_are_one_mover_each_with_edit_kinds_cycled_and_deterministic():
    assert [p.edit.kind for p in PAIRS] == list(KINDS) * 2
    for p in PAIRS:
        (obj,) = p.scene.objects
        assert obj.motion in MOVES and p.edited.objects[0].motion == obj.motion
        assert p.caption != p.prompt and obj.motion in p.caption and obj.motion in p.prompt
        assert p.source.shape == p.target.shape == (16, 64, 64, 3) and p.source.dtype == np.uint8
    again = tune_pairs(6)
    assert all(np.array_equal(a.source, b.source) and a.prompt == b.prompt for a, b in zip(PAIRS, again))
    other = tune_pairs(6, VALIDATION_WORLD_SEED)
    assert VALIDATION_WORLD_SEED != EVAL_WORLD_SEED
    assert not any(np.array_equal(a.source, b.source) for a, b in zip(PAIRS, other))


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p.edit.kind)
def test_a_perfect_edit_passes(pair):
    verdict = judge_edit(pair, pair.target)
    assert verdict["all_correct"] and verdict["attributes"] and verdict["motion"], verdict
    assert verdict["correlation"] == pytest.approx(1.0) and verdict["mean_error"] == 0 and verdict["present"] == 1
    assert verdict["source_gone"] is (True if pair.edit.kind == "color" else None)


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p.edit.kind)
def test_a_copy_of_the_source_fails(pair):
    verdict = judge_edit(pair, pair.source)
    assert not verdict["attributes"] and not verdict["all_correct"], verdict
    if pair.edit.kind == "color":
        assert verdict["source_gone"] is False and not verdict["color"]
    else:
        assert not verdict[pair.edit.kind], verdict  # the shape or the background is the source's


@pytest.mark.parametrize("pair", PAIRS[:3], ids=lambda p: p.edit.kind)
def test_a_wrong_motion_fails(pair):
    backwards = judge_edit(pair, pair.target[::-1].copy())  # the right object, moving the other way
    assert backwards["attributes"] and not backwards["motion"] and not backwards["all_correct"]
    assert backwards["correlation"] < -0.99  # (pixel snapping: not exactly -1)
    still = judge_edit(pair, np.repeat(pair.target[:1], len(pair.target), axis=0))  # the right object, not moving
    assert still["attributes"] and not still["motion"] and np.isnan(still["correlation"])
    vertical = pair.scene.objects[0].motion in ("up", "down")  # shifted 5 px across the motion, towards the middle
    across = np.nanmean(track(pair.target, pair.edited.objects[0].color)[0][:, 0 if vertical else 1])
    shifted = judge_edit(pair, np.roll(pair.target, 5 if across < 32 else -5, axis=2 if vertical else 1))
    assert shifted["correlation"] > 0.99 and shifted["mean_error"] == pytest.approx(5, abs=0.01)
    assert not shifted["motion"], shifted


def test_an_object_missing_from_frames_fails_the_motion():
    pair = PAIRS[0]
    frames = pair.target.copy()
    frames[::3] = frames[0, 0, 0]  # a third of the frames are background only
    verdict = judge_edit(pair, frames)
    assert verdict["present"] == pytest.approx(10 / 16) and not verdict["motion"]


def test_track_agreement_and_psnr():
    ref = np.stack([np.arange(8.0), np.full(8, 3.0)], 1)
    corr, err, present = track_agreement(ref, ref + [0, 2])
    assert corr == pytest.approx(1) and err == pytest.approx(2) and present == 1
    gone = ref.copy()
    gone[2:] = np.nan
    assert np.isnan(track_agreement(ref, gone)[0]) and track_agreement(ref, gone)[2] == 0.25
    a = np.zeros((2, 4, 4, 3), np.uint8)
    assert (
        psnr(a, a) == MAX_PSNR
        and psnr(a, a + 255) == pytest.approx(0)
        and psnr(a, a + 1) == pytest.approx(48.13, abs=0.01)
    )


def test_summary_and_markdown():
    rows = []
    for pair, frames in ((PAIRS[0], PAIRS[0].target), (PAIRS[1], PAIRS[1].source), (PAIRS[2], PAIRS[2].target)):
        rows.append({"kind": pair.edit.kind, "psnr": 30.0, "tune_seconds": 60.0, **judge_edit(pair, frames)})
    summary = summarise_tuning(rows)
    assert summary["edits"] == 3 and summary["edit_right"] == pytest.approx(2 / 3)
    assert summary["by_kind"] == {"color": 1.0, "shape": 0.0, "background": 1.0}
    assert summary["source_colour_gone"] == 1.0 and summary["psnr_25"] == 1.0
    settings = {"pairs": 3, "seeds": [0], "lr": 3e-4, "frames": 16, "model": "m", "world_seed": 1}
    text = tuning_markdown({"settings": settings, "by_setting": {"steps=300 guidance=7.5": summary}})
    assert "| 300 | 7.5 | 67% |" in text and "100%/0%/100%" in text
