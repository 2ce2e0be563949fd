"""Everybody Dance Now's data: consecutive frame pairs (t, t+1) of one target dancer, each with its pose label.

A sample: ``label`` [2, 3, H, W] (rendered keypoints, [-1, 1]), ``image`` [2, 3, H, W] (the frames, [-1, 1]),
``face_box`` [2, 3] (top, left, size of each frame's face crop, see :func:`render.face_box`), ``pose`` [2, 25, 3]
(BODY_25 keypoints at the label's size), ``path``.

* ``synthetic_dance`` (default): the seeded synthetic dancer (:mod:`datamodules.edn.synthetic`), rendered on the
  fly at the training size; train, val and test are different stretches of the dance (held-out frames).
* ``dance_video``: ``dataset.frames`` (a video file or a folder of frames) and ``dataset.keypoints`` (a folder of
  OpenPose JSON files, one per frame, in the same natural order). Frames whose JSON has no person, or whose
  person has no neck and no nose (nothing to anchor the label), are skipped and counted; a pair needs both
  frames. Labels are rendered on the fly at the training size. Frames are read from disk per item: a frame folder
  as it is; a video file is decoded once, at the training size, into PNG files in
  ``<dataset.frame_cache or the video's folder>/<video file name>.frames/<H>x<W>/`` (written atomically, reused
  while the video is unchanged: :func:`datamodules.edn.video.cache_video_frames`), so no split holds the video in
  memory. The last ``num_test`` pairs are the test split, the ``num_val`` before them the validation split.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from datamodules.base import BaseDataModule, check_count
from datamodules.edn.keypoints import FramePose, KeypointError, keypoint_files, read_frame_pose, to_body25
from datamodules.edn.render import face_box, render_pose
from datamodules.edn.synthetic import SUBJECTS, DanceMotion, dance_pose, render_photo
from datamodules.edn.video import FrameSource, cache_video_frames
from datamodules.transforms import as_hw, stride_warning, training_size

log = logging.getLogger(__name__)

DATASETS = ("synthetic_dance", "dance_video")


def to_signed_tensor(img: np.ndarray) -> torch.Tensor:
    """RGB uint8 [H, W, 3] -> float [3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div(127.5).sub(1.0)


def scale_pose(pose: FramePose, sx: float, sy: float) -> FramePose:
    """Keypoints of a frame resized by (sx, sy)."""
    out = FramePose(pose.body.copy(), extra=dict(pose.extra))
    for name, arr in pose.parts().items():
        if arr is not None:
            arr = arr.astype(np.float64).copy()
            arr[:, 0] *= sx
            arr[:, 1] *= sy
            setattr(out, name, arr)
    return out


def usable(pose: FramePose | None) -> bool:
    """A frame can train when it has a person with a neck or a nose (the label then shows a body)."""
    return pose is not None and (pose.body[1, 2] > 0 or pose.body[0, 2] > 0)


class LabelRenderer:
    """Pose -> (label tensor, face box) at one size, with the dataset's face/hand options."""

    def __init__(self, size: tuple[int, int], face: bool = True, hands: bool = True) -> None:
        self.size, self.face, self.hands = size, face, hands

    def __call__(self, pose: FramePose) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h, w = self.size
        label = to_signed_tensor(render_pose(pose, h, w, face=self.face, hands=self.hands))
        body = torch.from_numpy(to_body25(pose.body)).float()
        return label, torch.tensor(face_box(pose, h, w), dtype=torch.long), body


def pair_sample(labels: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], images: list[torch.Tensor],
                path: str) -> dict:
    """``pose`` [2, 25, 3]: each frame's BODY_25 keypoints at the label's size (for task=test's pose distance)."""
    return {"label": torch.stack([x[0] for x in labels]), "face_box": torch.stack([x[1] for x in labels]),
            "pose": torch.stack([x[2] for x in labels]), "image": torch.stack(images), "path": path}


class SyntheticDanceDataset(Dataset):
    """Pairs (t, t+1) of frames ``start .. start + num_pairs`` of the seeded synthetic dance of ``subject``."""

    def __init__(self, num_pairs: int, size: tuple[int, int], seed: int = 0, start: int = 0,
                 subject: str = "target", face: bool = True, hands: bool = True) -> None:
        if subject not in SUBJECTS:
            raise ValueError(f"dataset.subject={subject!r} is unknown; use one of {sorted(SUBJECTS)}")
        self.num_pairs, self.size, self.start = int(num_pairs), size, int(start)
        self.subject = SUBJECTS[subject]
        self.motion = DanceMotion(seed)
        self.render = LabelRenderer(size, face, hands)

    def __len__(self) -> int:
        return self.num_pairs

    def pose(self, t: int) -> FramePose:
        return dance_pose(self.subject, self.motion(t), *self.size)

    def __getitem__(self, i: int) -> dict[str, Any]:
        t = self.start + i
        poses = [self.pose(t), self.pose(t + 1)]
        images = [to_signed_tensor(render_photo(self.subject, p, *self.size)) for p in poses]
        return pair_sample([self.render(p) for p in poses], images, f"synthetic_dance/{t:06d}")


class DanceVideoFrames:
    """A target video's usable frames and poses at one size (see the module docstring)."""

    def __init__(self, frames: str, keypoints: str, size: tuple[int, int], face: bool = True,
                 hands: bool = True, frame_cache: str | None = None) -> None:
        self.source = FrameSource(frames, key="dataset.frames")
        self.json = keypoint_files(keypoints)
        if len(self.json) != len(self.source):
            raise KeypointError(
                f"dataset.frames={frames} has {len(self.source)} frames but dataset.keypoints={keypoints} has "
                f"{len(self.json)} JSON files; they must match one to one (re-run task=extract_poses on these frames)")
        self.size = size
        self.render = LabelRenderer(size, face, hands)
        self.poses = [read_frame_pose(p) for p in self.json]
        self.skipped = sum(not usable(p) for p in self.poses)
        if self.skipped == len(self.poses):
            raise KeypointError(f"no frame of {frames} has a usable person in {keypoints} (a neck or a nose); "
                                "check that the video shows the dancer and the keypoints belong to it")
        if self.skipped:
            log.warning("dance_video: %d of %d frames have no usable pose and are skipped", self.skipped,
                        len(self.poses))
        self._frame_size: tuple[int, int] | None = None
        self.reader = self.source
        if not self.source.is_folder:  # decoded once into a folder of frames at the training size, read per item
            self.reader, self._frame_size = cache_video_frames(self.source, size, frame_cache)
            if len(self.reader) != len(self.json):
                raise KeypointError(
                    f"dataset.frames={frames} decodes to {len(self.reader)} frames but dataset.keypoints={keypoints} "
                    f"has {len(self.json)} JSON files; they must match one to one (re-run task=extract_poses on "
                    "this video)")
        self.pairs = [t for t in range(len(self.poses) - 1) if usable(self.poses[t]) and usable(self.poses[t + 1])]

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        self._frame_size = frame.shape[:2]
        h, w = self.size
        if frame.shape[:2] == (h, w):
            return frame
        return np.array(Image.fromarray(frame).resize((w, h), Image.BICUBIC))

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t`` at the training size, read from disk now (the frame folder, or the video's frame cache)."""
        frame = self.reader.read(t)
        if self.reader is self.source:
            return self._resize(frame)
        return frame

    def item(self, t: int) -> dict[str, Any]:
        images = [to_signed_tensor(self.frame(k)) for k in (t, t + 1)]
        fh, fw = self._frame_size
        poses = [scale_pose(self.poses[k], self.size[1] / fw, self.size[0] / fh) for k in (t, t + 1)]
        return pair_sample([self.render(p) for p in poses], images, self.json[t])


class _PairSubset(Dataset):
    def __init__(self, frames: DanceVideoFrames, starts: list[int]) -> None:
        self.frames, self.starts = frames, starts

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.frames.item(self.starts[i])


class EDNDataModule(BaseDataModule):
    """Loaders of consecutive frame pairs for Everybody Dance Now (module docstring). ``image_size`` [H, W] is the
    full (local/face stage) size; stage ``global`` trains at ``scale`` = 0.5 of it, fitted to ``size_multiple``."""

    def __init__(self, dataset: str = "synthetic_dance", image_size: tuple[int, int] = (128, 256),
                 scale: float = 1.0, size_multiple: int = 16, frames: str | None = None,
                 keypoints: str | None = None, frame_cache: str | None = None, face: bool = True,
                 hands: bool = True, subject: str = "target",
                 batch_size: int = 1, num_workers: int = 0, num_train: int | None = 256, num_val: int | None = 8,
                 num_test: int | None = 8, seed: int = 0) -> None:
        real = dataset != "synthetic_dance"
        super().__init__(dataset, DATASETS, batch_size, num_workers, seed, num_train, num_val, num_test,
                         counts_optional=real)
        check_count("size_multiple", size_multiple, allow_none=False)
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale <= 1:
            raise ValueError(f"dataset.scale={scale!r} must be in (0, 1] (0.5 = stage global)")
        if real:
            for key, value in (("frames", frames), ("keypoints", keypoints)):
                if not value:
                    raise ValueError(f"dataset {dataset!r} needs dataset.{key}=<"
                                     + ("a video file or a folder of frames" if key == "frames"
                                        else "a folder of OpenPose JSON files, one per frame") + f">; got {value!r}")
        self.image_size = as_hw(image_size, "dataset.image_size")
        scaled = training_size(self.image_size, float(scale), 1)
        self.train_size = training_size(self.image_size, float(scale), int(size_multiple))
        if self.train_size != scaled:
            log.warning(stride_warning(scaled, int(size_multiple), self.train_size))
        self.frames_path, self.keypoints_path, self.frame_cache = frames, keypoints, frame_cache
        self.face, self.hands, self.subject = bool(face), bool(hands), subject
        self._video: DanceVideoFrames | None = None
        if not real:
            SyntheticDanceDataset(1, self.train_size, subject=subject)  # checks the subject now

    def _synthetic(self, num: int, start: int) -> SyntheticDanceDataset:
        return SyntheticDanceDataset(num, self.train_size, self.seed, start, self.subject, self.face, self.hands)

    def video(self) -> DanceVideoFrames:
        if self._video is None:
            self._video = DanceVideoFrames(self.frames_path, self.keypoints_path, self.train_size, self.face,
                                           self.hands, self.frame_cache)
        return self._video

    def setup(self, stage: str | None = None) -> None:
        if self.dataset_name == "synthetic_dance":
            n_tr, n_va, n_te = int(self.num_train), int(self.num_val), int(self.num_test)
            gap = 50  # frames between the splits
            self.train_set = self._synthetic(n_tr, 0)
            self.val_set = self._synthetic(n_va, n_tr + gap)
            self.test_set = self._synthetic(n_te, n_tr + n_va + 2 * gap)
            self.predict_set = self.test_set
            return
        video = self.video()
        pairs = video.pairs
        n_te = min(self.num_test or 0, max(len(pairs) - 2, 0))
        n_va = min(self.num_val or 0, max(len(pairs) - n_te - 1, 0))
        train = pairs[: len(pairs) - n_te - n_va]
        if self.num_train is not None:
            train = train[: self.num_train]
        if not train:
            raise KeypointError(f"dataset.frames={self.frames_path}: only {len(pairs)} consecutive frame pairs have "
                                "usable poses, none left for training; use a longer video")
        self.train_set = _PairSubset(video, train)
        self.val_set = _PairSubset(video, pairs[len(pairs) - n_te - n_va: len(pairs) - n_te] or train[-1:])
        self.test_set = _PairSubset(video, pairs[len(pairs) - n_te:] or train[-1:])
        self.predict_set = self.test_set
