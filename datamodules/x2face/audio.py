"""Audio features for X2Face's audio-driven stage: log-mel spectrograms of a 0.2 s window centred on each video frame.

The paper uses SyncNet's audio features (a network trained for lip sync, not available offline). Here a fixed,
training-free stand-in: a log-mel spectrogram (25 ms Hann windows every 10 ms, 40 HTK mel bands up to 8 kHz, the
usual speech front end, computed with ``torch.stft``) of the 0.2 s around the frame, flattened (17 x 40 = 680
values at 16 kHz). The linear regression to the driving vector (scikit-learn) is fitted on these.

Audio files: 16-bit PCM WAV (mono or the mean of its channels), read with the standard library.
"""

from __future__ import annotations

import math
import os
import wave

import numpy as np
import torch


def mel_filterbank(n_fft: int, sample_rate: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> torch.Tensor:
    """[n_mels, n_fft // 2 + 1] triangular HTK-mel filters."""
    fmax = sample_rate / 2 if fmax is None else fmax

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)

    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fb = np.zeros((n_mels, len(freqs)), dtype=np.float32)
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        fb[m] = np.clip(np.minimum(up, down), 0, None)
    return torch.from_numpy(fb)


class AudioFeatures:
    """Log-mel features of the ``window_s`` seconds centred on a frame."""

    def __init__(self, window_s: float = 0.2, n_mels: int = 40, win_ms: float = 25.0, hop_ms: float = 10.0,
                 sample_rate: int = 16000):
        self.window_s, self.n_mels, self.sample_rate = float(window_s), int(n_mels), int(sample_rate)
        self.win = int(round(win_ms * sample_rate / 1000))
        self.hop = int(round(hop_ms * sample_rate / 1000))
        self.n_fft = 1 << (self.win - 1).bit_length()
        self.window_samples = int(round(self.window_s * sample_rate))
        self.fb = mel_filterbank(self.n_fft, sample_rate, self.n_mels, 0.0, sample_rate / 2)
        self.frames = 1 + (self.window_samples - self.n_fft) // self.hop  # torch.stft(center=False) frames

    @property
    def dim(self) -> int:
        return self.frames * self.n_mels

    def of_window(self, samples: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(samples, self.n_fft, hop_length=self.hop, win_length=self.win,
                          window=torch.hann_window(self.win), center=False, return_complex=True).abs() ** 2
        return torch.log(self.fb @ spec + 1e-6).T.flatten()  # [frames * n_mels], time-major

    def at_frame(self, audio: np.ndarray, sample_rate: int, t: int, fps: float, source: str = "audio") -> torch.Tensor:
        """Features of frame ``t`` of a video at ``fps``; the window is zero-padded past the ends, but the frame's
        own time must lie inside the audio."""
        if sample_rate != self.sample_rate:
            raise ValueError(f"{source}: sample rate {sample_rate} Hz; the features expect {self.sample_rate} Hz "
                             f"(resample it, e.g. ffmpeg -i in.wav -ar {self.sample_rate} out.wav)")
        centre = int(round((t + 0.5) / fps * sample_rate))
        if centre > len(audio):
            raise ValueError(
                f"{source} is too short: {len(audio) / sample_rate:.2f} s, but frame {t} at {fps:g} fps is at "
                f"{centre / sample_rate:.2f} s; use the audio of the whole video (or fewer frames)")
        half = self.window_samples // 2
        lo, hi = centre - half, centre - half + self.window_samples
        pad_lo, pad_hi = max(0, -lo), max(0, hi - len(audio))
        seg = np.asarray(audio[max(lo, 0):min(hi, len(audio))], dtype=np.float32)
        seg = np.pad(seg, (pad_lo, pad_hi))
        return self.of_window(torch.from_numpy(seg))


def read_wav(path: str) -> tuple[np.ndarray, int]:
    """(samples in [-1, 1] as float32, sample rate) of a 16-bit PCM WAV file; clear errors for anything else."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        with wave.open(path, "rb") as w:
            width, channels, rate, n = w.getsampwidth(), w.getnchannels(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError) as err:
        raise ValueError(f"could not read audio file {path}: {err}; write it as 16-bit PCM WAV") from err
    if width != 2:
        raise ValueError(f"audio file {path} has {8 * width}-bit samples; write it as 16-bit PCM WAV")
    if rate <= 0:
        raise ValueError(f"audio file {path} says its sample rate is {rate} Hz; rewrite it with its real rate (e.g. "
                         "ffmpeg -i in.wav -ar 16000 out.wav)")
    x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        x = x.reshape(-1, channels).mean(1)
    return x, rate


def write_wav(path: str, samples: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM mono WAV."""
    data = (np.clip(np.asarray(samples), -1, 1) * 32767).astype("<i2").tobytes()
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(data)


def duration_frames(audio: np.ndarray, sample_rate: int, fps: float) -> int:
    return int(math.floor(len(audio) / sample_rate * fps))
