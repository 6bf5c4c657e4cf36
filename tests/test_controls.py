"""t2v.controls: Canny edges, OpenPose keypoints read and drawn, depth from a tiny random DPT, control videos."""

import json

import numpy as np
import pytest
import torch
from transformers import BertConfig, DPTConfig, DPTForDepthEstimation, DPTImageProcessor

from t2v.controls import (
    LIMB_SHADE,
    POSE_COLORS,
    POSE_LIMBS,
    DepthModel,
    canny_maps,
    depth_maps,
    depth_to_uint8,
    draw_pose_maps,
    load_depth_model,
    read_control_video,
    read_openpose_json,
)
from t2v.video_io import write_video


def square_video(frames: int = 2, size: int = 32, lo: int = 8, hi: int = 24) -> np.ndarray:
    video = np.zeros((frames, size, size, 3), np.uint8)
    video[:, lo:hi, lo:hi] = 255
    return video


# ---------------------------------------------------------------- Canny
def test_canny_of_a_square_is_its_outline():
    edges = canny_maps(square_video())
    assert edges.shape == (2, 32, 32, 3) and edges.dtype == np.uint8
    assert set(np.unique(edges)) == {0, 255} and (edges == edges[..., :1]).all()  # white on black, gray
    on = edges[0, :, :, 0] > 0
    ys, xs = np.nonzero(on)
    border = np.minimum(np.minimum(abs(ys - 7.5), abs(ys - 23.5)), np.minimum(abs(xs - 7.5), abs(xs - 23.5)))
    assert border.max() <= 0.5  # every edge pixel is next to the square's border ...
    assert not on[10:22, 10:22].any() and not on[:5].any() and not on[27:].any()  # ... none inside or far out
    for line in (on[12:20, 7] | on[12:20, 8], on[12:20, 23] | on[12:20, 24], on[7, 12:20] | on[8, 12:20]):
        assert line.all()  # each side is traced
    np.testing.assert_array_equal(edges[0], edges[1])


def test_canny_takes_float_frames_and_checks_thresholds():
    np.testing.assert_array_equal(canny_maps(square_video() / 255.0), canny_maps(square_video()))
    weak = square_video() // 16 + 10  # a step of 15: under the default thresholds, over low ones
    assert not canny_maps(weak).any() and canny_maps(weak, low=20, high=40).any()
    with pytest.raises(ValueError, match="low must be <= high"):
        canny_maps(square_video(), low=200, high=100)
    with pytest.raises(ValueError, match="high must be a number >= 0"):
        canny_maps(square_video(), high=float("nan"))
    with pytest.raises(ValueError, match=r"frames must have shape \[F, H, W, 3\]"):
        canny_maps(np.zeros((32, 32, 3), np.uint8))


# ---------------------------------------------------------------- OpenPose
def pose_frame(points: dict[int, tuple[float, float]], people: int = 1) -> dict:
    """An OpenPose frame: the given COCO-18 joints seen (confidence 0.9), the others (0, 0, 0)."""
    flat = []
    for j in range(18):
        x, y = points.get(j, (0, 0))
        flat += [x, y, 0.9 if j in points else 0]
    return {"version": 1.3, "people": [{"pose_keypoints_2d": list(flat)} for _ in range(people)]}


@pytest.mark.parametrize("limb", range(len(POSE_LIMBS)))
def test_each_limb_is_drawn_in_openposes_colour(limb):
    j, k = POSE_LIMBS[limb]
    keypoints = read_openpose_json([pose_frame({j: (16, 20), k: (48, 44)})], size=(64, 64))
    canvas = draw_pose_maps(keypoints, 64, 64)[0]
    assert tuple(canvas[32, 32]) == tuple(int(c * LIMB_SHADE) for c in POSE_COLORS[limb])  # the limb's middle
    assert tuple(canvas[20, 16]) == POSE_COLORS[j] and tuple(canvas[44, 48]) == POSE_COLORS[k]  # its joints
    assert not canvas[:8].any() and not canvas[56:].any() and not canvas[0, 0].any()  # unseen joints skipped


def test_pose_round_trip_through_a_json_file_and_a_folder(tmp_path):
    points = {0: (32, 10), 1: (32, 20), 2: (22, 20), 5: (42, 20), 8: (26, 40), 11: (38, 40)}
    frames = [pose_frame(points), pose_frame({}, people=0), pose_frame(points, people=2)]
    (tmp_path / "poses.json").write_text(json.dumps(frames))
    folder = tmp_path / "openpose"
    folder.mkdir()
    for i, frame in enumerate(frames):  # OpenPose's --write_json names
        (folder / f"clip_{i:012d}_keypoints.json").write_text(json.dumps(frame))
    for source in (frames, tmp_path / "poses.json", str(folder)):
        keypoints = read_openpose_json(source, size=(64, 64))
        assert [k.shape for k in keypoints] == [(1, 18, 3), (0, 18, 3), (2, 18, 3)]
        assert keypoints[0].dtype == np.float32
        np.testing.assert_allclose(keypoints[0][0, 2], [22, 20, 0.9], rtol=1e-6)
    maps = draw_pose_maps(keypoints, 64, 64)
    assert maps.shape == (3, 64, 64, 3) and maps.dtype == np.uint8
    assert tuple(maps[0, 10, 32]) == POSE_COLORS[0] and tuple(maps[0, 20, 22]) == POSE_COLORS[2]
    assert not maps[1].any()  # nobody in frame 1: black
    np.testing.assert_array_equal(maps[0], maps[2])  # two people at the same place draw as one


def test_pose_size_scales_coordinates():
    frame = pose_frame({1: (128, 32), 2: (64, 96)})
    keypoints = read_openpose_json([frame], size=(64, 64), pose_size=(256, 128))[0]
    np.testing.assert_allclose(keypoints[0, 1], [32, 16, 0.9], rtol=1e-6)  # x * 64/256, y * 64/128
    np.testing.assert_allclose(keypoints[0, 2], [16, 48, 0.9], rtol=1e-6)
    np.testing.assert_allclose(read_openpose_json([frame], size=(256, 128))[0][0, 1], [128, 32, 0.9], rtol=1e-6)
    canvas = draw_pose_maps([keypoints], 64, 64, stick_width=2)[0]
    assert tuple(canvas[16, 32]) == POSE_COLORS[1] and tuple(canvas[48, 16]) == POSE_COLORS[2]


def good_person() -> dict:
    return pose_frame({0: (1, 1)})["people"][0]


@pytest.mark.parametrize(
    "poses, match",
    [
        ({"people": []}, "poses must be a list of frames .* got dict"),
        ([], "at least one frame"),
        ([{"persons": []}], "pose frame 0 must be an object with a 'people' list"),
        ([{"people": [good_person()]}, {"people": None}], "pose frame 1 must be an object with a 'people' list"),
        ([{"people": [{"keypoints": []}]}], "pose frame 0, person 0 must be an object with 'pose_keypoints_2d'"),
        ([{"people": [{"pose_keypoints_2d": [0.0] * 53}]}], "must be 54 numbers .*got 53$"),
        ([{"people": [{"pose_keypoints_2d": [0.0] * 75}]}], "got 75 .BODY_25\\? run OpenPose with --model_pose COCO"),
        ([{"people": [{"pose_keypoints_2d": "0 0 0"}]}], "must be 54 numbers .*got str"),
        ([{"people": [{"pose_keypoints_2d": [0.0] * 53 + ["1"]}]}], "must hold only numbers"),
        ([{"people": [{"pose_keypoints_2d": [0.0] * 53 + [True]}]}], "must hold only numbers"),
        ([{"people": [good_person(), {"pose_keypoints_2d": [float("nan")] * 54}]}], "person 1: .*NaN or infinite"),
        ([{"people": [{"pose_keypoints_2d": [0.0] * 53 + [-1.0]}]}], "negative confidence"),
    ],
)
def test_pose_json_errors(poses, match):
    with pytest.raises(ValueError, match=match):
        read_openpose_json(poses, size=(64, 64))


def test_pose_sizes_and_files_are_checked(tmp_path):
    frames = [pose_frame({0: (1, 1)})]
    for kwargs, match in [
        ({"size": (64,)}, r"size must be \(width, height\)"),
        ({"size": (64, 0)}, r"size must be \(width, height\)"),
        ({"size": (64, 64), "pose_size": (64.0, 64)}, r"pose_size must be \(width, height\)"),
    ]:
        with pytest.raises(ValueError, match=match):
            read_openpose_json(frames, **kwargs)
    with pytest.raises(ValueError, match="pose file not found"):
        read_openpose_json(tmp_path / "missing.json", size=(64, 64))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        read_openpose_json(tmp_path / "bad.json", size=(64, 64))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .json files"):
        read_openpose_json(tmp_path / "empty", size=(64, 64))
    with pytest.raises(ValueError, match=r"keypoints of frame 0 must be finite numbers \[P, 18, 3\]"):
        draw_pose_maps([np.zeros((1, 17, 3))], 64, 64)
    with pytest.raises(ValueError, match="stick_width must be an integer >= 1"):
        draw_pose_maps([np.zeros((1, 18, 3))], 64, 64, stick_width=0)


# ---------------------------------------------------------------- depth
@pytest.fixture(scope="module")
def dpt_dir(tmp_path_factory):
    """A tiny random DPT (transformers' layout, safetensors) with its image processor."""
    torch.manual_seed(0)
    config = DPTConfig(
        hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32, image_size=32,
        patch_size=8, neck_hidden_sizes=[8, 8, 8, 8], fusion_hidden_size=8, backbone_out_indices=[0, 1, 2, 3],
        reassemble_factors=[4, 2, 1, 0.5], head_hidden_size=8,
    )  # fmt: skip
    model = DPTForDepthEstimation(config)
    with torch.no_grad():
        for p in model.parameters():  # big enough weights that the depth varies over the picture
            p.normal_(0, 0.3)
    path = tmp_path_factory.mktemp("tiny-dpt")
    model.save_pretrained(path)
    DPTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def test_depth_maps_from_a_tiny_random_dpt(dpt_dir):
    video = np.random.default_rng(0).integers(0, 256, (3, 24, 40, 3), dtype=np.uint8)
    maps = depth_maps(video, dpt_dir, batch_size=2)
    assert maps.shape == (3, 24, 40, 3) and maps.dtype == np.uint8
    assert (maps == maps[..., :1]).all() and maps.min() == 0 and maps.max() == 255  # one scale for the video

    estimator = load_depth_model(dpt_dir)
    assert isinstance(estimator, DepthModel) and not estimator.metric
    np.testing.assert_array_equal(depth_maps(video, estimator), maps)  # a loaded model, batches of 8
    with torch.no_grad():  # by hand: the model's relative inverse depth, resized, near (large) = bright
        inputs = estimator.processor(images=list(video), return_tensors="pt")
        depth = estimator.model(**inputs).predicted_depth
        depth = torch.nn.functional.interpolate(depth[:, None], size=(24, 40), mode="bicubic")[:, 0]
    expected = ((depth - depth.min()) / (depth.max() - depth.min()) * 255).round()
    assert np.abs(maps[..., 0].astype(float) - expected.numpy()).max() <= 1


def test_metric_depth_models_are_inverted(dpt_dir, tmp_path):
    video = np.random.default_rng(1).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    metric = tmp_path / "metric"
    metric.mkdir()
    for f in dpt_dir.iterdir():
        (metric / f.name).write_bytes(f.read_bytes())
    config = json.loads((dpt_dir / "config.json").read_text())
    (metric / "config.json").write_text(json.dumps({**config, "depth_estimation_type": "metric"}))
    estimator = load_depth_model(metric)  # as Depth Anything's metric variants say it
    assert estimator.metric
    relative = depth_maps(video, dpt_dir)
    inverted = depth_maps(video, estimator)
    assert (relative[..., 0].astype(int) - 127.5).ravel() @ (inverted[..., 0].astype(int) - 127.5).ravel() < 0


def test_depth_to_uint8_near_is_bright():
    depth = torch.tensor([[[1.0, 2.0], [3.0, 5.0]]])
    np.testing.assert_array_equal(depth_to_uint8(depth)[0, ..., 0], [[0, 64], [128, 255]])  # inverse depth
    np.testing.assert_array_equal(depth_to_uint8(depth, metric=True)[0, ..., 0], [[255, 96], [42, 0]])  # 1/d
    assert not depth_to_uint8(torch.ones(2, 3, 3)).any()  # flat: black, no division by zero


def test_depth_model_errors(tmp_path, dpt_dir):
    with pytest.raises(ValueError, match="depth model folder .*missing does not exist"):
        depth_maps(square_video(), tmp_path / "missing")
    with pytest.raises(ValueError, match="has no config.json"):
        load_depth_model(tmp_path)
    BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match="holds a 'bert' model, not a depth-estimation model .*dpt"):
        load_depth_model(tmp_path / "bert")
    weightless = tmp_path / "weightless"
    weightless.mkdir()
    (weightless / "config.json").write_text((dpt_dir / "config.json").read_text())
    with pytest.raises(ValueError, match="could not load the depth model in"):
        load_depth_model(weightless)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        depth_maps(square_video(), dpt_dir, batch_size=0)


# ---------------------------------------------------------------- control videos
def test_read_control_video(tmp_path):
    video = square_video(3)
    write_video(tmp_path / "v.npy", video)
    np.testing.assert_array_equal(read_control_video(tmp_path / "v.npy"), video)
    write_video(tmp_path / "frames", video)
    np.testing.assert_array_equal(read_control_video(tmp_path / "frames"), video)
    with pytest.raises(ValueError, match="video not found"):
        read_control_video(tmp_path / "missing.mp4")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="unsupported extension '.txt'"):
        read_control_video(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no PNG frames"):
        read_control_video(tmp_path / "empty")
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="could not read"):
        read_control_video(tmp_path / "broken.mp4")
