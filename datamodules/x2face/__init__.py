"""X2Face's data: synthetic talking faces (default) and VoxCeleb-style face-video folders.

Docs: docs/papers/x2face.md (commands, datasets, official weights, measured figures)."""

from datamodules.x2face.audio import AudioFeatures, read_wav, write_wav
from datamodules.x2face.datamodule import FaceFrames, FacePairs, FaceVideoDataModule, FolderFaceVideos
from datamodules.x2face.synthetic import FPS, SAMPLE_RATE, SyntheticFaceVideos, render_face

__all__ = ["FPS", "SAMPLE_RATE", "AudioFeatures", "FaceFrames", "FacePairs", "FaceVideoDataModule",
           "FolderFaceVideos", "SyntheticFaceVideos", "read_wav", "render_face", "write_wav"]
