"""The evaluation runner: prompt sets, judging, reports. An oracle that renders the truth scores 100%."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from t2v.eval.run import eval_prompts, evaluate, write_report
from t2v.models.defaults import ModelDefaults
from t2v.world import render, scene_is_held_out
from t2v.world.captions import NOVEL_WORDS, VALIDATION_WORDS, words


def test_prompt_sets():
    prompts = eval_prompts(10, seed=3)
    assert [p.split for p in prompts] == ["seen"] * 10 + ["held_out"] * 10 + ["novel"] * 10
    assert all(not scene_is_held_out(p.scene) for p in prompts if p.split != "held_out")
    assert all(scene_is_held_out(p.scene) for p in prompts if p.split == "held_out")
    for p in prompts:
        held = words(p.prompt) & (VALIDATION_WORDS | NOVEL_WORDS)
        assert held <= NOVEL_WORDS and bool(held) == (p.split == "novel"), p.prompt  # novel words, never trained on
    assert eval_prompts(10, seed=3) == prompts and eval_prompts(10, seed=4) != prompts


def test_validation_prompts():
    both = eval_prompts(10, seed=3, splits=("validation", "novel"))
    assert [p.split for p in both] == ["novel"] * 10 + ["validation"] * 10  # in SPLITS order
    assert both[:10] == eval_prompts(10, seed=3)[20:]  # a split's prompts do not depend on the others asked for
    validation = eval_prompts(10, seed=3, splits=("validation",))
    assert validation == both[10:] and not any(scene_is_held_out(p.scene) for p in validation)
    for p in validation:
        assert words(p.prompt) & VALIDATION_WORDS and not words(p.prompt) & NOVEL_WORDS, p.prompt
    with pytest.raises(ValueError, match="splits"):
        eval_prompts(2, splits=("seen", "test"))


def test_cli_eval_refuses_an_unknown_split():
    from typer.testing import CliRunner

    from t2v.cli import app

    r = CliRunner().invoke(app, ["eval", "--split", "novel", "--split", "test"])
    assert r.exit_code == 2 and "--split must be one of" in r.output and "test" in r.output


class Oracle:
    """Renders the scene a prompt describes (optionally a wrong one): a perfect (or broken) model."""

    def __init__(self, prompts, wrong=False):
        self.scenes = {p.prompt: p.scene for p in prompts}
        self.wrong = wrong

    def __call__(self, prompts, generator, **kwargs):
        videos = []
        for prompt, g in zip(prompts, generator):
            scene = self.scenes[prompt]
            frames = render(scene, num_frames=16, height=64, width=64, rng=np.random.default_rng(g.initial_seed()))
            if self.wrong:
                frames = frames[::-1]  # time reversed: right becomes left, growing becomes shrinking
            videos.append(frames.astype(np.float32) / 255)
        return SimpleNamespace(frames=np.stack(videos))


def test_oracle_scores_perfectly_and_a_broken_model_does_not(tmp_path):
    prompts = eval_prompts(6, seed=1)
    report = evaluate(Oracle(prompts), prompts, seeds=(0, 1), progress=False)
    for split in ("seen", "held_out", "novel"):
        assert report["summary"][split]["all_correct"] == 1.0
        assert report["summary"][split]["videos"] == 12
        assert report["summary"][split]["flicker"] == 0.0
    broken = evaluate(Oracle(prompts, wrong=True), prompts, seeds=(0,), progress=False)
    still = sum(all(o["motion"] == "still" for o in r["scene"]["objects"]) for r in broken["results"])
    assert broken["summary"]["seen"]["motion"] < 1.0 and sum(r["all_correct"] for r in broken["results"]) <= still

    json_path, md_path = write_report(
        report, tmp_path / "out", {"model": "oracle", "prompts": 6, "seeds": 2, "steps": 0, "guidance": 0}
    )
    data = json.loads(json_path.read_text())
    assert len(data["results"]) == 36 and data["summary"]["seen"]["all_correct"] == 1.0
    assert "| seen | 12 | 100%" in md_path.read_text()


def test_evaluate_runs_a_real_pipeline(pipe):
    prompts = eval_prompts(1, seed=0)
    report = evaluate(
        pipe, prompts, seeds=(0,), progress=False, num_frames=2, num_inference_steps=1, height=32, width=32
    )
    assert len(report["results"]) == 3 and set(report["summary"]) == {"seen", "held_out", "novel"}


def test_storyboard_and_long_evaluation_run(pipe):
    from t2v.eval.run import evaluate_long, evaluate_storyboards, storyboard_scenes

    boards = storyboard_scenes(2)
    assert len(boards) == 2 and all(len(b) == 4 and all(len(s.objects) == 1 for s in b) for b in boards)
    pipe.defaults = ModelDefaults(num_frames=4)
    sb = evaluate_storyboards(pipe, n=1, scene_frames=4, transition_frames=2, progress=False, num_inference_steps=1)
    assert sb["summary"]["scenes"] == 4 and len(sb["results"][0]["scenes"]) == 4
    assert sb["summary"]["max_jump_ratio_max"] == max(r["max_jump_ratio"] for r in sb["results"]) > 0
    row = sb["results"][0]  # inside scenes: a subset of the frame pairs, over the same median
    assert 0 <= row["max_jump_ratio_inside_scenes"] <= row["max_jump_ratio"] + 1e-6
    assert (
        0 <= row["bound_jump_ratio"] <= row["max_jump_ratio"] + 1e-6
    )  # the video's own transitions are among those bounded
    shared = evaluate_storyboards(
        pipe, n=1, scene_frames=4, transition_frames=2, progress=False, backgrounds="shared", num_inference_steps=1
    )
    assert shared["summary"]["backgrounds"] == "shared" and shared["summary"]["scenes"] == 4
    lg = evaluate_long(pipe, eval_prompts(1)[:1], num_frames=8, progress=False, num_inference_steps=1)
    assert lg["summary"]["videos"] == 1 and lg["summary"]["num_frames"] == 8


def test_shared_background_storyboards():
    from t2v.eval.run import storyboard_scenes

    boards = storyboard_scenes(6, backgrounds="shared")
    assert all(
        len(b) == 4 and len({s.background for s in b}) == 1 and all(len(s.objects) == 1 for s in b) for b in boards
    )
    assert len({b[0].background for b in boards}) > 1 and boards == storyboard_scenes(6, backgrounds="shared")
    assert any(
        len({s.background for s in b}) > 1 for b in storyboard_scenes(6)
    )  # "mixed" (the default) changes backgrounds
    with pytest.raises(ValueError, match="backgrounds must be one of"):
        storyboard_scenes(1, backgrounds="same")


def test_dissolve_bound_is_reached_by_a_linear_crossfade_only():
    from t2v.eval.analyse import frame_changes
    from t2v.eval.run import dissolve_bound

    a, b = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 240, np.uint8)
    steps = 12
    fade = np.stack([np.round(a + (b.astype(float) - a) * t / steps).astype(np.uint8) for t in range(steps + 1)])
    assert dissolve_bound([(a, b, steps)]) == pytest.approx(20.0)
    assert frame_changes(fade).max() == pytest.approx(20.0)  # the crossfade meets the bound
    cut = np.stack([a] * 6 + [b] * 7)
    assert frame_changes(cut).max() == pytest.approx(240.0) and dissolve_bound([(a, b, steps)]) < 240
    rng = np.random.default_rng(0)
    for _ in range(20):  # any path between a and b: its largest step is at least the bound
        path = np.concatenate([a[None], rng.integers(0, 256, (steps - 1, 8, 8, 3), dtype=np.uint8), b[None]])
        assert frame_changes(path).max() >= dissolve_bound([(a, b, steps)]) - 1e-6


def test_cli_eval_writes_report(model_dir, tmp_path):
    from typer.testing import CliRunner

    from t2v.cli import app

    r = CliRunner().invoke(
        app,
        [
            "eval",
            "--model",
            str(model_dir),
            "--prompts",
            "1",
            "--seeds",
            "1",
            "--steps",
            "1",
            "-o",
            str(tmp_path / "ev"),
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert len(data["results"]) == 3 and set(data["summary"]) == {"seen", "held_out", "novel"}
    assert "| seen | 1 |" in (tmp_path / "ev" / "eval.md").read_text()


def test_cli_eval_times_the_whole_run(model_dir, tmp_path):
    from typer.testing import CliRunner

    from t2v.cli import app

    r = CliRunner().invoke(
        app,
        [
            "eval",
            "--model",
            str(model_dir),
            "--prompts",
            "0",
            "--long",
            "1",
            "--steps",
            "1",
            "-o",
            str(tmp_path / "ev"),
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert data["seconds"] > 0 and data["long"]["summary"]["videos"] == 1  # long videos only: still timed


def test_cli_eval_storyboards_with_auto_transitions(model_dir, tmp_path):
    from typer.testing import CliRunner

    from t2v.cli import app

    args = [
        "eval",
        "--model",
        str(model_dir),
        "--prompts",
        "0",
        "--storyboards",
        "1",
        "--storyboard-backgrounds",
        "shared",
        "--scene-frames",
        "8",
        "--steps",
        "1",
        "-o",
        str(tmp_path / "ev"),
        "--device",
        "cpu",
    ]
    r = CliRunner().invoke(app, args + ["--transition-frames", "auto"])
    assert r.exit_code == 0, r.output
    board = json.loads((tmp_path / "ev" / "eval.json").read_text())["storyboards_shared"]
    lengths = board["results"][0]["transition_frames"]
    assert len(lengths) == 3 and set(lengths) <= {
        2,
        4,
    }  # chosen per cut, at most a quarter of each 8-frame scene a side
    assert board["summary"]["scene_frames"] == 8 and board["summary"]["transition_frames"] == "auto"
    r = CliRunner().invoke(app, args + ["--transition-frames", "slow"])
    assert r.exit_code == 2 and "--transition-frames must be an integer >= 0 or 'auto', got 'slow'" in r.output


def test_long_evaluation_uses_regions_where_the_video_is_one_pass(bert_pipe):
    from t2v.eval.run import eval_prompts, evaluate_long

    two = [p for p in eval_prompts(48) if len(p.scene.objects) == 2][:1] + eval_prompts(1)[:1]
    assert len(two[0].scene.objects) == 2 and len(two[1].scene.objects) == 1
    bert_pipe.defaults = ModelDefaults(num_frames=4)
    kw = {"num_frames": 8, "progress": False, "num_inference_steps": 1, "height": 32, "width": 32}
    rows = evaluate_long(bert_pipe, two, regions=True, scene_motion="keyframes", **kw)["results"]
    assert [r["regions"] for r in rows] == [True, False]  # the two-object prompt only
    rows = evaluate_long(bert_pipe, two, regions=True, scene_motion="windows", **kw)["results"]
    assert [r["regions"] for r in rows] == [False, False]  # windows: several passes, no regions
    assert "all_correct" in rows[0]
