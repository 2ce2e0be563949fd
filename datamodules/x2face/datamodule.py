"""Talking-face data for X2Face (and its identity network, ``model=face_id``).

Sources (``dataset.dataset``):
  * ``synthetic_faces`` (default): procedural talking faces (``datamodules.x2face.synthetic``); training, validation
    and test identities are disjoint (as VoxCeleb's splits), ground-truth pose and audio per frame.
  * ``face_video``: folders in the VoxCeleb layout, ``<root>/<split>/<identity>/<video>/<frame>.{jpg,png}`` with
    split = train, val, test; optional per video ``<video>/audio.wav`` (16-bit PCM, 16 kHz, starting at frame 0,
    ``dataset.fps`` frames per second) and ``<video>/pose.csv`` (one ``pitch,yaw,roll`` row per frame, degrees;
    ``task=crop_faces`` style tools write it).

Samples (``mode=pairs``, X2Face): a video of an identity, ``K`` source frames and a driving frame from it, and a
frame of another identity (the identity stage's dR)::

    {"source": [K, 3, H, W], "driving": [3, H, W], "other": [3, H, W], "identity": int, "other_identity": int,
     "driving_pose": [3], "source_pose": [K, 3], "driving_audio": [F], "source_audio": [F]}

(pose and audio entries only where the source has them). K = ``num_sources`` in training, ``eval_sources`` in val
and test (Table 1 compares 1 and 3 source frames on the same samples). Sample ``i`` of a split is a deterministic
function of (seed, split, i).

Samples (``mode=identities``, face_id): ``{"image": [3, H, W], "label": int}`` over the training identities;
val/test frames come from videos of the same identities that training does not see.
"""

from __future__ import annotations

import csv
import logging
import os
import zlib
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from datamodules.base import BaseDataModule, check_count
from datamodules.transforms import as_hw, read_image
from datamodules.x2face.audio import AudioFeatures, read_wav
from datamodules.x2face.synthetic import FPS, SyntheticFaceVideos

log = logging.getLogger(__name__)

DATASETS = ("synthetic_faces", "face_video")
MODES = ("pairs", "identities")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "val", "test")


class FaceVideos(Protocol):
    def identities(self) -> list[int]: ...
    def videos(self, identity: int) -> list[int]: ...
    def num_frames(self, identity: int, video: int) -> int: ...
    def frame(self, identity: int, video: int, t: int) -> torch.Tensor: ...


def _rng(seed: int, *keys: object) -> np.random.Generator:
    return np.random.default_rng([int(seed)] + [zlib.crc32(str(k).encode()) for k in keys])


# --------------------------------------------------------------------------------------------- folders
class FolderFaceVideos:
    """``<root>/<identity>/<video>/<frames>``; identities and videos sorted by name (indices into those lists)."""

    def __init__(self, root: str, image_size: int, fps: float = FPS, audio: AudioFeatures | None = None,
                 min_frames: int = 2):
        if not os.path.isdir(root):
            raise FileNotFoundError(
                f"dataset.root: {root} does not exist or is not a folder; face_video needs "
                f"<root>/{{train,val,test}}/<identity>/<video>/<frame>.jpg (task=crop_faces writes it)")
        self.root, self.image_size, self.fps = root, int(image_size), float(fps)
        self.audio = audio or AudioFeatures()
        self.names: list[str] = []
        self.video_names: list[list[str]] = []
        self.frames: list[list[list[str]]] = []
        for ident in sorted(os.listdir(root)):
            ipath = os.path.join(root, ident)
            if not os.path.isdir(ipath):
                continue
            vids, frames = [], []
            for vid in sorted(os.listdir(ipath)):
                vpath = os.path.join(ipath, vid)
                if not os.path.isdir(vpath):
                    continue
                files = sorted(f for f in os.listdir(vpath) if f.lower().endswith(IMAGE_EXTENSIONS))
                if len(files) >= min_frames:
                    vids.append(vid)
                    frames.append([os.path.join(vpath, f) for f in files])
            if vids:
                self.names.append(ident)
                self.video_names.append(vids)
                self.frames.append(frames)
        if not self.names:
            raise ValueError(
                f"{root} holds no <identity>/<video>/ folder with at least {min_frames} frames "
                f"({', '.join(IMAGE_EXTENSIONS)}); lay the frames out as <identity>/<video>/<frame>.jpg")
        self._audio: dict[tuple[int, int], tuple[np.ndarray, int, str]] = {}

    def identities(self) -> list[int]:
        return list(range(len(self.names)))

    def videos(self, identity: int) -> list[int]:
        return list(range(len(self.video_names[identity])))

    def num_frames(self, identity: int, video: int) -> int:
        return len(self.frames[identity][video])

    def video_dir(self, identity: int, video: int) -> str:
        return os.path.join(self.root, self.names[identity], self.video_names[identity][video])

    def frame(self, identity: int, video: int, t: int) -> torch.Tensor:
        path = self.frames[identity][video][t]
        img = read_image(path)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(x[None], size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True)[0].clamp(0, 1)
        return x

    def has_pose(self, identity: int, video: int) -> bool:
        return os.path.isfile(os.path.join(self.video_dir(identity, video), "pose.csv"))

    def pose(self, identity: int, video: int, t: int) -> torch.Tensor:
        path = os.path.join(self.video_dir(identity, video), "pose.csv")
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r and not r[0].startswith("#")]
        if rows and not _is_number(rows[0][0]):
            rows = rows[1:]
        if len(rows) != self.num_frames(identity, video):
            raise ValueError(f"{path} has {len(rows)} pose rows for {self.num_frames(identity, video)} frames; "
                             f"write one pitch,yaw,roll row per frame")
        return torch.tensor([float(v) for v in rows[t][:3]])

    def has_audio(self, identity: int, video: int) -> bool:
        return os.path.isfile(os.path.join(self.video_dir(identity, video), "audio.wav"))

    def audio_features(self, identity: int, video: int, t: int) -> torch.Tensor:
        key = (identity, video)
        if key not in self._audio:
            path = os.path.join(self.video_dir(identity, video), "audio.wav")
            samples, rate = read_wav(path)
            self._audio[key] = (samples, rate, path)
        samples, rate, path = self._audio[key]
        return self.audio.at_frame(samples, rate, t, self.fps, source=path)


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------- datasets
class FacePairs(Dataset):
    """X2Face samples (see the module docstring)."""

    def __init__(self, videos: Any, length: int, num_sources: int, seed: int, split: str,
                 with_pose: bool = True, with_audio: bool = True):
        self.videos, self.length, self.k, self.seed, self.split = videos, int(length), int(num_sources), seed, split
        self.ids = videos.identities()
        if len(self.ids) < 2:
            raise ValueError(f"the {split} split has {len(self.ids)} identity; X2Face's identity stage needs at least "
                             f"2 (dR is another identity's frame)")
        self.with_pose, self.with_audio = with_pose, with_audio

    def __len__(self) -> int:
        return self.length

    def _has(self, what: str, identity: int, video: int) -> bool:
        fn = getattr(self.videos, f"has_{what}", None)
        return getattr(self, f"with_{what}") and (fn is None or fn(identity, video))

    def __getitem__(self, index: int) -> dict[str, Any]:
        r = _rng(self.seed, "pairs", self.split, index)
        ident = self.ids[int(r.integers(len(self.ids)))]
        vids = self.videos.videos(ident)
        video = vids[int(r.integers(len(vids)))]
        n = self.videos.num_frames(ident, video)
        picks = r.choice(n, size=self.k + 1, replace=n < self.k + 1)
        sources, driving = [int(t) for t in picks[: self.k]], int(picks[self.k])
        other = self.ids[int((self.ids.index(ident) + 1 + r.integers(len(self.ids) - 1)) % len(self.ids))]
        ovids = self.videos.videos(other)
        ovideo = ovids[int(r.integers(len(ovids)))]
        oframe = int(r.integers(self.videos.num_frames(other, ovideo)))
        sample: dict[str, Any] = {
            "source": torch.stack([self.videos.frame(ident, video, t) for t in sources]),
            "driving": self.videos.frame(ident, video, driving),
            "other": self.videos.frame(other, ovideo, oframe),
            "identity": ident, "other_identity": other,
        }
        if self._has("pose", ident, video):
            sample["driving_pose"] = self.videos.pose(ident, video, driving)
            sample["source_pose"] = torch.stack([self.videos.pose(ident, video, t) for t in sources])
        if hasattr(self.videos, "mouth"):  # synthetic ground truth: the mouth opening the audio drives
            sample["driving_mouth"] = torch.tensor(self.videos.mouth(ident, video, driving))
        if self._has("audio", ident, video):
            sample["driving_audio"] = self.videos.audio_features(ident, video, driving)
            sample["source_audio"] = self.videos.audio_features(ident, video, sources[0])
        return sample


class FaceFrames(Dataset):
    """Identity classification samples ``{"image", "label"}``: frames of the identities of ``videos``, label = the
    identity's position in ``videos.identities()``, from the videos ``video_slice`` selects."""

    def __init__(self, videos: Any, length: int, seed: int, split: str, video_slice: slice):
        self.videos, self.length, self.seed, self.split = videos, int(length), seed, split
        self.ids = videos.identities()
        self.slice = video_slice
        for ident in self.ids:
            if not videos.videos(ident)[video_slice]:
                raise ValueError(f"identity {ident} has no video for the {split} split of the identity classifier; "
                                 f"give every identity at least 2 videos")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        r = _rng(self.seed, "frames", self.split, index)
        label = int(r.integers(len(self.ids)))
        ident = self.ids[label]
        vids = self.videos.videos(ident)[self.slice]
        video = vids[int(r.integers(len(vids)))]
        t = int(r.integers(self.videos.num_frames(ident, video)))
        return {"image": self.videos.frame(ident, video, t), "label": label}


# ------------------------------------------------------------------------------------------ datamodule
class FaceVideoDataModule(BaseDataModule):
    """X2Face pairs or identity-classifier frames from synthetic faces or a VoxCeleb-style folder."""

    def __init__(self, dataset: str = "synthetic_faces", mode: str = "pairs", root: str | None = None,
                 image_size: int = 256, size_multiple: int = 256, num_sources: int = 1, eval_sources: int = 3,
                 num_identities: int = 64, num_val_identities: int = 8, num_test_identities: int = 8,
                 videos_per_identity: int = 4, frames_per_video: int = 100, fps: float = FPS,
                 batch_size: int = 16, num_workers: int = 0, seed: int = 0,
                 num_train: int | None = 2000, num_val: int | None = 64, num_test: int | None = 64,
                 audio_window_s: float = 0.2) -> None:
        super().__init__(dataset, DATASETS, batch_size, num_workers, seed, num_train, num_val, num_test,
                         counts_optional=False)
        if mode not in MODES:
            raise ValueError(f"dataset.mode={mode!r} is unknown; use one of {MODES}")
        size = as_hw(image_size, "dataset.image_size")
        if size[0] != size[1]:
            raise ValueError(f"dataset.image_size={list(size)} must be square (X2Face's identity grid is square)")
        mult = int(size_multiple)
        if size[0] % mult:
            fit = max(mult, round(size[0] / mult) * mult)
            raise ValueError(
                f"dataset.image_size={size[0]} does not fit the U-Net's 2**depth={mult} ({mult.bit_length() - 1} "
                f"stride-2 downsamplings): set dataset.image_size={fit}, or model.depth to fewer downsamplings")
        for name, value in (("num_sources", num_sources), ("eval_sources", eval_sources),
                            ("num_identities", num_identities), ("num_val_identities", num_val_identities),
                            ("num_test_identities", num_test_identities),
                            ("videos_per_identity", videos_per_identity), ("frames_per_video", frames_per_video)):
            check_count(name, value, allow_none=False)
        if dataset == "face_video" and not root:
            raise ValueError("dataset=face_video needs dataset.root=<folder with train/, val/, test/ of "
                             "<identity>/<video>/<frame>.jpg>")
        self.mode, self.root, self.image_size = mode, root, size[0]
        self.num_sources, self.eval_sources = int(num_sources), int(eval_sources)
        self.counts = {"train": num_identities, "val": num_val_identities, "test": num_test_identities}
        self.videos_per_identity, self.frames_per_video, self.fps = videos_per_identity, frames_per_video, fps
        self.audio = AudioFeatures(window_s=audio_window_s)
        self.train_size = size

    @property
    def audio_dim(self) -> int:
        return self.audio.dim

    def source(self, split: str) -> Any:
        """The face videos of ``split``: synthetic identities are disjoint across splits (offsets 0, 100000,
        200000); ``mode=identities`` uses the training identities in every split (held-out videos for val/test)."""
        if self.dataset_name == "face_video":
            folder = os.path.join(str(self.root), "train" if self.mode == "identities" else split)
            return FolderFaceVideos(folder, self.image_size, self.fps, self.audio)
        if self.mode == "identities":
            n_videos = self.videos_per_identity + (0 if split == "train" else 1)
            return SyntheticFaceVideos(self.seed, 0, self.counts["train"], n_videos, self.frames_per_video,
                                       self.image_size, audio=self.audio)
        first = {"train": 0, "val": 100_000, "test": 200_000}[split]
        return SyntheticFaceVideos(self.seed, first, self.counts[split], self.videos_per_identity,
                                   self.frames_per_video, self.image_size, audio=self.audio)

    def make_split(self, split: str) -> Dataset:
        length = {"train": self.num_train, "val": self.num_val, "test": self.num_test}[split]
        videos = self.source(split)
        if self.mode == "identities":
            held_out = slice(-1, None)
            if self.dataset_name == "synthetic_faces":
                vslice = slice(0, self.videos_per_identity) if split == "train" else slice(self.videos_per_identity,
                                                                                            None)
            else:  # folder: the last video of each identity is held out for val/test
                vslice = slice(0, -1) if split == "train" else held_out
            return FaceFrames(videos, length, self.seed, split, vslice)
        k = self.num_sources if split == "train" else max(self.num_sources, self.eval_sources)
        return FacePairs(videos, length, k, self.seed, split)

    @property
    def num_classes(self) -> int:
        if self.dataset_name == "face_video":
            return len(self.source("train").identities())
        return int(self.counts["train"])

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.train_set = self.make_split("train")
            self.val_set = self.make_split("val")
        if stage == "validate":
            self.val_set = self.make_split("val")
        if stage in ("test", "predict"):
            self.test_set = self.make_split("test")
            self.predict_set = self.test_set


__all__: Sequence[str] = ("FaceVideoDataModule", "FacePairs", "FaceFrames", "FolderFaceVideos")
