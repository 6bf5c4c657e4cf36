"""End to end with the embedded edit model t2v-shapes-edit: offline, from the CLI, on Shapes-world clips."""

import numpy as np
import pytest
from typer.testing import CliRunner

from t2v.cli import app
from t2v.eval.analyse import analyse_video
from t2v.video_io import read_video
from t2v.world.edits import Edit, render_edit_pair
from t2v.world.shapes import ObjectSpec, SceneSpec


pytestmark = pytest.mark.slow


def test_t2v_edit_changes_the_background_and_keeps_the_object(tmp_path):
    """`t2v edit clip.npy "change the background to white"` with the embedded model and its defaults: the
    background becomes white in most frames while the red circle stays red and where it was."""
    scene = SceneSpec("black", (ObjectSpec("circle", "red", "large", "right"),))
    source, reference = render_edit_pair(scene, Edit("background", "white"), 8, rng=np.random.default_rng(3))
    np.save(tmp_path / "clip.npy", source)
    out = tmp_path / "edited.npy"
    r = CliRunner().invoke(
        app,
        ["edit", str(tmp_path / "clip.npy"), "change the background to white", "-o", str(out), "--seed", "0", "-q"],
    )
    assert r.exit_code == 0, r.output
    frames, _ = read_video(out)
    assert frames.shape == source.shape
    analysis = analyse_video(frames)
    assert analysis.background == "white"
    found = {o.color: o for o in analysis.objects}
    assert "red" in found
    ref = {o.color: o for o in analyse_video(reference).objects}["red"]
    assert np.nanmedian(np.hypot(*(found["red"].centroids - ref.centroids).T)) < 4
