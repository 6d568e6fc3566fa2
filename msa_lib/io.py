"""Atomic file writes, the one mechanism behind the run cache, checkpoints and feature caches.

Why: an interrupted `make book` (or a killed training run) must never leave half a file that a
later run trusts. Every writer goes through a temp file in the same folder plus ``os.replace``.
This module has no dependencies on the rest of msa_lib, so every layer can use it.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable

__all__ = ["atomic_write"]


def atomic_write(path: str | Path, write: Callable[[IO], object], binary: bool = True) -> Path:
    """Call ``write(fh)`` on a temp file next to ``path``, then move it into place atomically.

    The parent folder is created; on any error the temp file is removed and the error re-raised,
    so ``path`` holds either its old content or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
