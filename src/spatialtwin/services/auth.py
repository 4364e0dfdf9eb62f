"""The signing keys of a deployment, in one folder, and the tokens they sign and verify.

    keys/
      active            the key id that signs new tokens
      <kid>.key         its Ed25519 private key (PKCS#8 PEM, mode 0600); only the active one
      <kid>.pub         every public key still trusted (the active one and older ones)

`spatialtwin keys init` makes the folder (mode 0700) with one key; `keys rotate` makes a new
key, points `active` at it and deletes the old private key, keeping its public key, so tokens
the old key signed verify until `keys remove KID` deletes that public key. A server reads the
folder again whenever its listing changes (names or modification times; one `scandir` of a
few entries per verification), so a rotation or removal by the command line takes effect on a
running server at its next request, and a fleet's servers sharing the folder agree.

Every file is written complete or not at all (a temporary file beside it, fsynced, renamed),
private keys created with mode 0600 from the start. Two processes initialising one folder at
once both end up using the one key whose `active` pointer was written first (created
exclusively).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spatialtwin.errors import SpatialTwinError
from spatialtwin.files import create_bytes_exclusive
from spatialtwin.rights.roles import Caller
from spatialtwin.rights.tokens import (
    DEFAULT_TTL_S,
    SigningKey,
    key_id_of,
    new_key_id,
    new_key_pair,
    public_key,
    verify,
)
from spatialtwin.rights.tokens import (
    issue as issue_token,
)

ACTIVE = "active"
VERIFIED_MAX = 10_000
PRIVATE_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """`data` at `path`, complete or absent, created with `mode` (0600 for a private key)."""
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _no_keys(folder: Path) -> SpatialTwinError:
    return SpatialTwinError(
        "keys_missing",
        f"no signing keys in {folder}; run `spatialtwin keys init`",
        {"folder": str(folder)},
        status=500,
    )


@dataclass(frozen=True)
class KeyInfo:
    kid: str
    active: bool
    has_private_key: bool
    created_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "active": self.active,
            "private_key": self.has_private_key,
            "created_s": round(self.created_s, 3),
        }


class KeyRing:
    """The keys in `folder`: sign with the active one, verify with every public one."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._seen: tuple[tuple[str, int], ...] | None = None
        self._public: dict[str, Any] = {}
        self._signing: SigningKey | None = None
        # Tokens verified under the current listing: token -> (caller, exp). A signature check
        # is ~0.3 ms; a page fetching its levels sends one token many times. Emptied whenever
        # the folder changes (a removed key's tokens must fail at once), bounded by count.
        self._verified: OrderedDict[str, tuple[Caller, float]] = OrderedDict()

    # --- making and changing keys ------------------------------------------------------------

    @classmethod
    def init(cls, folder: str | os.PathLike[str]) -> tuple[KeyRing, bool]:
        """The ring in `folder`, made with one key when it has none; (ring, whether made)."""
        ring = cls(folder)
        if (ring.folder / ACTIVE).exists():
            return ring, False
        ring.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(ring.folder, 0o700)
        kid = ring._new_key()
        made = create_bytes_exclusive(ring.folder / ACTIVE, kid.encode())
        if not made:  # another process initialised the folder meanwhile: use its key
            (ring.folder / f"{kid}{PRIVATE_SUFFIX}").unlink(missing_ok=True)
            (ring.folder / f"{kid}{PUBLIC_SUFFIX}").unlink(missing_ok=True)
        _fsync_dir(ring.folder)
        return ring, made

    def _new_key(self) -> str:
        kid = new_key_id()
        private_pem, public_pem = new_key_pair()
        _write_private(self.folder / f"{kid}{PRIVATE_SUFFIX}", private_pem, 0o600)
        _write_private(self.folder / f"{kid}{PUBLIC_SUFFIX}", public_pem, 0o644)
        return kid

    def rotate(self) -> str:
        """A new active key; the old private keys are deleted, their public keys kept."""
        if not (self.folder / ACTIVE).exists():
            raise _no_keys(self.folder)
        kid = self._new_key()
        _write_private(self.folder / ACTIVE, kid.encode(), 0o644)
        for path in self.folder.glob(f"*{PRIVATE_SUFFIX}"):
            if path.name != f"{kid}{PRIVATE_SUFFIX}":
                path.unlink(missing_ok=True)
        _fsync_dir(self.folder)
        return kid

    def remove(self, kid: str) -> None:
        """Stop trusting `kid`: the tokens it signed no longer verify. The active key stays."""
        if kid == self.active_kid():
            raise SpatialTwinError(
                "key_active",
                "the active key cannot be removed; rotate first",
                {"kid": kid},
                status=409,
            )
        path = self.folder / f"{kid}{PUBLIC_SUFFIX}"
        if "/" in kid or not path.exists():
            raise SpatialTwinError("key_not_found", f"no key {kid!r}", {"kid": kid}, status=404)
        path.unlink()
        (self.folder / f"{kid}{PRIVATE_SUFFIX}").unlink(missing_ok=True)
        _fsync_dir(self.folder)

    # --- reading -------------------------------------------------------------------------------

    def active_kid(self) -> str:
        try:
            return (self.folder / ACTIVE).read_text().strip()
        except FileNotFoundError as exc:
            raise _no_keys(self.folder) from exc

    def trusted(self) -> list[KeyInfo]:
        active = self.active_kid()
        out = []
        for path in sorted(self.folder.glob(f"*{PUBLIC_SUFFIX}")):
            kid = path.name[: -len(PUBLIC_SUFFIX)]
            private = (self.folder / f"{kid}{PRIVATE_SUFFIX}").exists()
            out.append(KeyInfo(kid, kid == active, private, path.stat().st_mtime))
        return out

    def _listing(self) -> tuple[tuple[str, int], ...]:
        try:
            with os.scandir(self.folder) as entries:
                return tuple(
                    sorted(
                        (e.name, e.stat().st_mtime_ns)
                        for e in entries
                        if not e.name.startswith(".")
                    )
                )
        except FileNotFoundError:
            return ()

    def _refresh(self) -> None:
        """Read the folder again if its listing changed since the last read."""
        listing = self._listing()
        if listing == self._seen:
            return
        with self._lock:
            public = {}
            for name, _ in listing:
                if name.endswith(PUBLIC_SUFFIX):
                    kid = name[: -len(PUBLIC_SUFFIX)]
                    try:
                        public[kid] = public_key((self.folder / name).read_bytes())
                    except (OSError, ValueError):
                        continue  # removed meanwhile, or not a key: not trusted
            signing = None
            try:
                kid = self.active_kid()
                signing = SigningKey(kid, (self.folder / f"{kid}{PRIVATE_SUFFIX}").read_bytes())
            except (SpatialTwinError, OSError):
                signing = None
            self._public, self._signing, self._seen = public, signing, listing
            self._verified.clear()

    def signing_key(self) -> SigningKey:
        self._refresh()
        if self._signing is None:
            raise _no_keys(self.folder)
        return self._signing

    def issue(
        self,
        role: str,
        tenant: str | None,
        *,
        subject: str | None = None,
        scopes: Any = None,
        ttl_s: int = DEFAULT_TTL_S,
        now_s: float | None = None,
    ) -> str:
        """A token signed by the active key (see `rights.tokens.issue`)."""
        return issue_token(
            self.signing_key(),
            role,
            tenant,
            subject=subject,
            scopes=scopes,
            ttl_s=ttl_s,
            now_s=now_s,
        )

    def verify(self, token: str) -> Caller:
        """The caller a token names; 401 unless a trusted key signed it and it is in date."""
        self._refresh()
        known = self._verified.get(token) if isinstance(token, str) else None
        if known is not None and known[1] > time.time():
            self._verified.move_to_end(token)
            return known[0]
        key_id_of(token)  # a malformed header is refused before any key is looked up
        caller = verify(token, self._public)
        if caller.expires_s is not None:
            self._verified[token] = (caller, caller.expires_s)
            while len(self._verified) > VERIFIED_MAX:
                self._verified.popitem(last=False)
        return caller


def write_demo_tokens(ring: KeyRing, data_dir: Path) -> dict[str, str]:
    """Tokens for the embedded demo, an admin's and a brand's (`demo-brand`), valid 30 days,
    written to `data_dir/demo-token` and `demo-brand-token` (mode 0600)."""
    ttl_s = 30 * 24 * 3600
    tokens = {
        "admin": ring.issue("admin", None, subject="demo-admin", ttl_s=ttl_s),
        "brand": ring.issue("brand", "demo-brand", subject="demo-merchandiser", ttl_s=ttl_s),
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    _write_private(data_dir / "demo-token", (tokens["admin"] + "\n").encode(), 0o600)
    _write_private(data_dir / "demo-brand-token", (tokens["brand"] + "\n").encode(), 0o600)
    return tokens
