"""Shareable bundles: a folder with ``model.safetensors`` (the inference weights), ``config.json`` (model, stage and
the stored config the loader rebuilds the networks from) and ``SHA256SUMS`` (a SHA-256 per file).

Safetensors holds tensors and nothing else (no pickle at all), so a bundle is the format to hand to other people;
:func:`lightning_modules.loading.load` takes the folder and checks every hash before it reads a byte of either
file's content.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from lightning_modules.checkpoints import CheckpointError, CheckpointRecord

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
HASH_FILE = "SHA256SUMS"
BUNDLE_FORMAT = "condsynth-bundle"
BUNDLE_VERSION = 1
_CHUNK = 1 << 20


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_bundle(module: Any, record: CheckpointRecord, folder: str) -> dict[str, str]:
    """Write ``module``'s weights (an inference module: training-only networks dropped) and ``record``'s config
    into ``folder``; each file is written to a temporary name and renamed, the hash file last. Returns
    file name -> SHA-256."""
    from safetensors.torch import save_file

    from datamodules.atomic_writes import atomic_path, atomic_write_text

    os.makedirs(folder, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    weights = os.path.join(folder, WEIGHTS_FILE)
    with atomic_path(weights, keep_extension=True) as tmp:
        save_file(state, tmp, metadata={"format": BUNDLE_FORMAT, "model": str(record.model)})
    config = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "model": record.model, "stage": record.stage,
              "step": record.step, "config": record.config, "official": record.official,
              "feature_clusters": record.feature_clusters}
    atomic_write_text(os.path.join(folder, CONFIG_FILE), json.dumps(config, indent=1, sort_keys=True, default=str))
    hashes = {name: sha256_of(os.path.join(folder, name)) for name in (WEIGHTS_FILE, CONFIG_FILE)}
    atomic_write_text(os.path.join(folder, HASH_FILE), "".join(f"{h}  {n}\n" for n, h in hashes.items()))
    return hashes


def _expected_hashes(folder: str) -> dict[str, str]:
    path = os.path.join(folder, HASH_FILE)
    if not os.path.isfile(path):
        raise CheckpointError(f"{folder} is not a condsynth bundle: it has no {HASH_FILE} (write one with "
                              f"python run.py task=export task.format=safetensors task.ckpt_path=<ckpt>)")
    expected = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                expected[parts[1]] = parts[0].lower()
    return expected


def read_bundle(folder: str) -> CheckpointRecord:
    """The record of a bundle folder, after checking each file's SHA-256 against ``SHA256SUMS``: a file that
    differs stops with one line naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    expected = _expected_hashes(folder)
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        path = os.path.join(folder, name)
        if name not in expected or not os.path.isfile(path):
            raise CheckpointError(f"{folder} is not a complete condsynth bundle: {name} or its hash is missing")
        actual = sha256_of(path)
        if actual != expected[name]:
            raise CheckpointError(f"{path} does not match its SHA-256 in {HASH_FILE} ({actual[:16]}... vs "
                                  f"{expected[name][:16]}...): the file was changed or damaged; download it again")
    with open(os.path.join(folder, CONFIG_FILE)) as f:
        try:
            meta = json.load(f)
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{folder}/{CONFIG_FILE} is not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise CheckpointError(f"{folder}/{CONFIG_FILE} is not a condsynth bundle config (format "
                              f"{meta.get('format') if isinstance(meta, dict) else None!r})")
    try:
        state = load_file(os.path.join(folder, WEIGHTS_FILE))
    except SafetensorError as err:
        raise CheckpointError(f"{folder}/{WEIGHTS_FILE} is not a readable safetensors file ({err})") from None
    ckpt = {"state_dict": state, "global_step": meta.get("step") or 0,
            "condsynth": {k: meta.get(k) for k in ("model", "stage", "config", "official", "feature_clusters")}}
    record = CheckpointRecord.from_checkpoint(ckpt, folder)
    record.inference_only = True
    return record
