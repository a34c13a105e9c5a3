"""Reasoning sealed for stateless clients: AES-GCM blobs that only this deployment can open.

A client that sends `store: false` keeps the conversation itself; the reasoning a chat backend
produced travels with it as `encrypted_content` and comes back to the backend opened again.
Replicas open each other's blobs when they share `--seal-key`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from diglot.translators.context import Sealing
from diglot.translators.errors import RequestError

_VERSION = b"\x01"
_NONCE = 12
_CONTEXT = b"diglot sealed reasoning v1\0"  # with the tenant, authenticated in every blob
_KEPT_SEALINGS = 1024
KEY_FILE = "seal.key"


class SealError(ValueError):
    """A blob this key did not seal: tampered with, truncated, or from somewhere else."""


def key_from_secret(secret: str) -> bytes:
    """The AES-256 key of a `--seal-key` secret; every replica with the same secret agrees."""
    return hashlib.sha256(b"diglot seal key\0" + secret.encode()).digest()


def key_in(state_dir: Path) -> bytes:
    """The state directory's key, made once (mode 0600) by whichever process needs it first."""
    path = state_dir / KEY_FILE
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        draft = state_dir / f".{KEY_FILE}.{secrets.token_hex(8)}"
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(secrets.token_bytes(32))
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)  # whole or not at all; the first process to link wins
        finally:
            draft.unlink()
        key = path.read_bytes()
    if len(key) != 32:
        raise OSError(f"{path} does not hold a 32-byte key")
    return key


class Sealer:
    """Seals and opens reasoning text; the key is loaded on first need, then kept."""

    def __init__(self, secret: str | None, state_dir: Path) -> None:
        self._secret = secret
        self._state_dir = state_dir
        self._aead: AESGCM | None = None
        self._sealings: dict[str, Sealing] = {}  # per tenant: made once, not per request

    def ready(self) -> AESGCM:
        """Load the key now; a key that cannot be had is a 503 for the request needing it."""
        if self._aead is not None:
            return self._aead
        try:
            key = key_from_secret(self._secret) if self._secret else key_in(self._state_dir)
        except OSError as exc:
            raise RequestError(
                f"Reasoning cannot be sealed or opened: the seal key is unavailable ({exc}).",
                code="seal_key_unavailable",
                status=503,
                error_type="server_error",
            ) from None
        self._aead = AESGCM(key)
        return self._aead

    def sealing(self, tenant: str) -> Sealing:
        """What the translators are given for one request: blobs bound to its tenant."""
        sealing = self._sealings.get(tenant)
        if sealing is None:
            if len(self._sealings) >= _KEPT_SEALINGS:
                self._sealings.clear()
            sealing = self._sealings[tenant] = Sealing(
                seal=lambda text: self.seal(text, tenant), open=lambda blob: self.open(blob, tenant)
            )
        return sealing

    def seal(self, text: str, tenant: str) -> str:
        """base64url(version, nonce, ciphertext and tag) without padding."""
        nonce = secrets.token_bytes(_NONCE)
        sealed = self.ready().encrypt(nonce, text.encode(), _CONTEXT + tenant.encode())
        return base64.urlsafe_b64encode(_VERSION + nonce + sealed).rstrip(b"=").decode()

    def open(self, blob: str, tenant: str) -> str:
        """The text of a blob this key sealed for this tenant; anything else is a SealError."""
        cipher = self.ready()
        try:
            raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
        except (binascii.Error, ValueError):
            raise SealError("not a sealed blob") from None
        if raw[:1] != _VERSION or len(raw) < 1 + _NONCE + 16:
            raise SealError("not a sealed blob")
        try:
            plain = cipher.decrypt(
                raw[1 : 1 + _NONCE], raw[1 + _NONCE :], _CONTEXT + tenant.encode()
            )
        except InvalidTag:
            raise SealError("the blob was altered, or sealed with another key or tenant") from None
        return plain.decode()
