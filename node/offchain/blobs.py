"""Content-addressed blobs: curves, images, documents and batch manifests, named by SHA-256."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from node.errors import StoreError

DEFAULT_MAX_BLOB_BYTES = 64 * 1024 * 1024
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    """Blobs in ``root/ab/cdef…``; writes are atomic (temporary file, fsync, rename)."""

    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BLOB_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def put(self, data: bytes) -> str:
        """Store ``data``; return its SHA-256 hex digest. Storing it again is a no-op."""
        if len(data) > self.max_bytes:
            raise StoreError(
                f"blob of {len(data)} bytes exceeds the {self.max_bytes}-byte limit; nothing stored"
            )
        digest = hashlib.sha256(data).hexdigest()
        path = self.path(digest)
        if path.exists():
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return digest

    def get(self, digest: str) -> bytes:
        """The blob's bytes, checked against its name (a blob edited on disk is an error)."""
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"blob {digest} is not in {self.root}") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise StoreError(f"blob {digest} was altered on disk: its content no longer matches")
        return data

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def path(self, digest: str) -> Path:
        if not _DIGEST.match(digest):
            raise StoreError(f"{digest!r} is not a SHA-256 hex digest")
        return self.root / digest[:2] / digest[2:]
