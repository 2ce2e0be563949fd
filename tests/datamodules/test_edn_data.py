"""Everybody Dance Now data: synthetic pairs are consecutive and deterministic; the dance_video layout (frame folder
or video + OpenPose JSON folder) skips frames without a person and names every bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.edn import EDNDataModule, SyntheticDanceDataset
from datamodules.edn.keypoints import FramePose, KeypointError, write_openpose_json
from datamodules.edn.render import render_pose
from datamodules.edn.synthetic import SUBJECTS, dance_sequence, render_photo
from datamodules.video import VideoWriter


def test_synthetic_pairs_are_consecutive_and_seeded() -> None:
    ds = SyntheticDanceDataset(4, (32, 64), seed=3)
    a, b = ds[1], ds[2]
    assert a["label"].shape == (2, 3, 32, 64) and a["image"].shape == (2, 3, 32, 64)
    assert torch.equal(a["label"][1], b["label"][0]) and torch.equal(a["image"][1], b["image"][0])
    assert torch.equal(SyntheticDanceDataset(4, (32, 64), seed=3)[1]["image"], a["image"])
    assert not torch.equal(SyntheticDanceDataset(4, (32, 64), seed=4)[1]["image"], a["image"])
    assert a["image"].min() >= -1 and a["image"].max() <= 1


def test_source_subject_differs_from_target() -> None:
    tgt = dance_sequence("target", 30, 128, 256, seed=0)
    src = dance_sequence("source", 30, 128, 256, seed=0)
    height = lambda p: p.body[[11, 14], 1].max() - p.body[0, 1]  # noqa: E731
    assert np.mean([height(p) for p in src]) < 0.85 * np.mean([height(p) for p in tgt])  # farther away
    assert max(p.body[[11, 14], 1].max() for p in src) < max(p.body[[11, 14], 1].max() for p in tgt)


def _write_clip(tmp_path, n: int = 6, empty: tuple[int, ...] = (), json_count: int | None = None,
                video: bool = False) -> tuple[str, str]:
    frames, keypoints = tmp_path / "frames", tmp_path / "keypoints"
    frames.mkdir()
    poses = dance_sequence("target", n, 64, 128, seed=1)
    images = [render_photo(SUBJECTS["target"], p, 64, 128) for p in poses]
    for i, (pose, img) in enumerate(zip(poses, images, strict=True)):
        if i < (json_count if json_count is not None else n):
            write_openpose_json(str(keypoints / f"frame{i:06d}_keypoints.json"), [] if i in empty else [pose])
        Image.fromarray(img).save(frames / f"frame{i:06d}.png")
    if video:
        writer = VideoWriter(str(tmp_path / "clip.mp4"), 10)
        for img in images:
            writer.write(img)
        return writer.close(), str(keypoints)
    return str(frames), str(keypoints)


def test_dance_video_skips_frames_without_a_person(tmp_path, caplog) -> None:
    frames, keypoints = _write_clip(tmp_path, n=8, empty=(3,))
    dm = EDNDataModule("dance_video", image_size=(32, 64), frames=frames, keypoints=keypoints, num_val=1,
                       num_test=1, size_multiple=8)
    dm.setup("fit")
    assert dm.video().skipped == 1 and "1 of 8 frames have no usable pose" in caplog.text
    assert dm.video().pairs == [0, 1, 4, 5, 6]      # pairs (2, 3) and (3, 4) need frame 3
    assert len(dm.train_set) == 3 and len(dm.val_set) == 1 and len(dm.test_set) == 1
    item = dm.train_set[0]
    assert item["label"].shape == (2, 3, 32, 64) and item["face_box"][0, 2] == 8


def test_dance_video_from_a_video_file(tmp_path) -> None:
    video, keypoints = _write_clip(tmp_path, n=5, video=True)
    dm = EDNDataModule("dance_video", image_size=(32, 64), frames=video, keypoints=keypoints, num_val=1,
                       num_test=1, size_multiple=8)
    dm.setup("fit")
    assert len(dm.video().pairs) == 4 and dm.train_set[0]["image"].shape == (2, 3, 32, 64)


def _arrays(obj, seen=None) -> int:
    """How many numpy/torch image arrays (ndim >= 3) ``obj`` holds in its attributes, lists and dicts."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray | torch.Tensor):
        return int(obj.ndim >= 3)
    if isinstance(obj, dict):
        return sum(_arrays(v, seen) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(_arrays(v, seen) for v in obj)
    if hasattr(obj, "__dict__") and type(obj).__module__.startswith("datamodules"):
        return _arrays(vars(obj), seen)
    return 0


def test_dance_video_reads_frames_lazily_from_a_frame_cache(tmp_path, monkeypatch) -> None:
    """A video is decoded once into <video>.frames/<H>x<W>/ and each item reads its two frames from there: the
    dataset holds no frame arrays, and a frame changed on disk is what the next item returns."""
    video, keypoints = _write_clip(tmp_path, n=5, video=True)
    dm = EDNDataModule("dance_video", image_size=(32, 64), frames=video, keypoints=keypoints, num_val=1,
                       num_test=1, size_multiple=8)
    dm.setup("fit")
    cache = tmp_path / "clip.mp4.frames" / "32x64"
    assert sorted(p.name for p in cache.iterdir()) == [f"frame{i:06d}.png" for i in range(5)] + ["frames.json"]
    assert not [p for p in cache.parent.iterdir() if p.name.startswith(".")]     # no partial folder left
    assert _arrays(dm) == 0                                                      # nothing decoded is kept
    first = np.array(Image.open(cache / "frame000000.png"))
    assert first.shape == (32, 64, 3)
    expected = torch.from_numpy(first).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(dm.train_set[0]["image"][0], expected)
    Image.fromarray(np.zeros_like(first)).save(cache / "frame000000.png")      # read again on the next access
    assert torch.equal(dm.train_set[0]["image"][0], torch.full_like(expected, -1.0))
    assert dm.video()._frame_size == (64, 128)                                  # the video's own size scales poses

    # a second datamodule reuses the cache without decoding; a changed video is decoded again
    import datamodules.edn.video as video_mod

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(video_mod, "_decode_into", no_decode)
    again = EDNDataModule("dance_video", image_size=(32, 64), frames=video, keypoints=keypoints, num_val=1,
                          num_test=1, size_multiple=8)
    again.setup("fit")
    assert torch.equal(again.train_set[0]["image"][0], torch.full_like(expected, -1.0))
    monkeypatch.undo()
    stat = os.stat(video)
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    rebuilt = EDNDataModule("dance_video", image_size=(32, 64), frames=video, keypoints=keypoints, num_val=1,
                            num_test=1, size_multiple=8, frame_cache=str(tmp_path / "elsewhere"))
    rebuilt.setup("fit")
    assert (tmp_path / "elsewhere" / "clip.mp4.frames" / "32x64" / "frames.json").is_file()
    assert torch.equal(rebuilt.train_set[0]["image"][0], expected)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(ValueError, match="cannot write the frame cache of dataset.frames=.*set dataset.frame_cache="):
        EDNDataModule("dance_video", image_size=(32, 64), frames=video, keypoints=keypoints, num_val=1, num_test=1,
                      size_multiple=8, frame_cache=str(not_a_folder)).setup("fit")


def test_dance_video_bad_inputs(tmp_path) -> None:
    frames, keypoints = _write_clip(tmp_path, n=4, json_count=3)
    with pytest.raises(KeypointError, match="has 4 frames but dataset.keypoints=.* has 3 JSON files"):
        EDNDataModule("dance_video", image_size=(32, 64), frames=frames, keypoints=keypoints).setup("fit")
    with pytest.raises(KeypointError, match="missing does not exist.*extract_poses"):
        EDNDataModule("dance_video", image_size=(32, 64), frames=frames,
                      keypoints=str(tmp_path / "missing")).setup("fit")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.mp4 is an empty \\(0-byte\\) file"):
        EDNDataModule("dance_video", image_size=(32, 64), frames=str(empty), keypoints=keypoints).setup("fit")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video" * 100)
    with pytest.raises(ValueError, match="cannot open video dataset.frames=.*corrupt.mp4"):
        EDNDataModule("dance_video", image_size=(32, 64), frames=str(corrupt), keypoints=keypoints).setup("fit")
    nobody = tmp_path / "nobody"
    for i in range(4):
        write_openpose_json(str(nobody / f"f{i}_keypoints.json"), [])
    with pytest.raises(KeypointError, match="no frame of .* has a usable person"):
        EDNDataModule("dance_video", image_size=(32, 64), frames=frames, keypoints=str(nobody)).setup("fit")
    with pytest.raises(ValueError, match="needs dataset.keypoints="):
        EDNDataModule("dance_video", frames=frames)


def test_renderer_draws_hands_and_face_when_present() -> None:
    pose = dance_sequence("target", 1, 64, 128)[0]
    plain = render_pose(pose, 64, 128)
    hand = np.zeros((21, 3))
    hand[:, 0], hand[:, 1], hand[:, 2] = np.linspace(10, 30, 21), 10, 1
    with_hand = render_pose(FramePose(pose.body, hand_right=hand), 64, 128)
    assert (with_hand != plain).any() and (render_pose(FramePose(pose.body, hand_right=hand), 64, 128,
                                                       hands=False) == plain).all()
