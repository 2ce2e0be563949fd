"""task=fetch_weights: the opt-in download of public pretrained weights into the torch hub cache, each file checked
against its published SHA-256 (the full hash from the config, or the prefix in the file name, as ``torch.hub``'s
``check_hash`` does). A file already in the cache with the right hash is not fetched again."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import urllib.error
from typing import Any
from urllib.parse import urlparse

import torch
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


def cache_path(url: str) -> str:
    """Where ``url``'s file lands: ``<torch hub dir>/checkpoints/<file name>`` (where torchvision looks)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))


def expected_hash(name: str, url: str, sha256: str | None) -> str:
    """The SHA-256 (or its published prefix) the file must have."""
    if sha256:
        if not re.fullmatch(r"[0-9a-fA-F]{8,64}", str(sha256)):
            raise ValueError(f"task.files.{name}.sha256={sha256} is not a hex SHA-256 (or a prefix of 8+ digits)")
        return str(sha256).lower()
    match = torch.hub.HASH_REGEX.search(os.path.basename(urlparse(url).path))
    if match is None:
        raise ValueError(f"task.files.{name}: {url} has no hash in its file name; set task.files.{name}.sha256")
    return match.group(1)


def _matches(path: str, digest: str) -> bool:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest().startswith(digest)


def fetch_one(name: str, url: str, sha256: str | None = None) -> str:
    """Download ``url`` into the hub cache unless a file with the right hash is there; returns its path."""
    digest = expected_hash(name, url, sha256)
    dst = cache_path(url)
    if os.path.isfile(dst):
        if _matches(dst, digest):
            log.info("%s: already in the cache (%s)", name, dst)
            return dst
        raise ValueError(f"{dst} is in the cache but its SHA-256 does not start with {digest}: delete it and fetch "
                         f"again")
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:  # writes a temporary file, checks the hash, then moves it into place (torch.hub)
        torch.hub.download_url_to_file(url, dst, hash_prefix=digest, progress=False)
    except RuntimeError as err:
        if "invalid hash value" in str(err):
            raise ValueError(f"task.files.{name}: {url} does not have the published SHA-256 {digest}: refused, "
                             f"nothing was written") from None
        raise
    except (urllib.error.URLError, OSError) as err:
        raise ValueError(f"task.files.{name}: cannot download {url} ({err}); this machine may be offline: copy the "
                         f"file to {dst} by hand instead") from None
    log.info("%s: %s -> %s", name, url, dst)
    return dst


def fetch_weights(cfg: DictConfig) -> dict[str, str]:
    """Fetch every file of ``task.files`` (or those named in ``task.only``); returns name -> cached path."""
    files: dict[str, Any] = OmegaConf.to_container(cfg.task.files, resolve=True)
    only = cfg.task.get("only")
    names = list(files) if only is None else [str(n) for n in only]
    unknown = [n for n in names if n not in files]
    if unknown:
        raise ValueError(f"task.only={unknown} names no file of task.files (files: {', '.join(files)})")
    out = {name: fetch_one(name, str(files[name]["url"]), files[name].get("sha256")) for name in names}
    for name, path in out.items():
        print(f"condsynth: {name} -> {path}")
    return out
