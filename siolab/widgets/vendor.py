"""The official JavaScript client (socket.io-client's ESM bundle), pinned and fetched at build time.

The bundle is not committed and never comes from a CDN at run time. ``hatch_build.py`` calls
``ensure()`` when a wheel, an sdist or an editable install is built: it takes the npm registry's
tarball of the pinned version (``npm pack`` when npm is there, else a plain HTTPS download),
checks it against the pinned sha512 integrity (the value in ``siolab/node/package-lock.json``),
and writes ``static/vendor/socket.io.esm.min.js`` and the package's MIT licence next to it
(both git-ignored). ``python -m siolab.widgets.vendor`` does the same by hand.

This module uses the standard library only: the build hook loads it by path, before siolab's
dependencies exist.
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

NAME = "socket.io-client"
VERSION = "4.8.4"
# the registry's dist.integrity of the tarball (npm view socket.io-client@4.8.4 dist.integrity)
INTEGRITY = "sha512-7wjKAvVXYOJsbmUgkWbnhPD4bFpkqrUR0++XOjpGFmqDqsqV1CI93VTraeExLxpjxEqrWgFoSRZu1ihjLWfkAA=="
REGISTRY = "https://registry.npmjs.org"
# what we take out of the tarball, and the sha256 each must have (so a file already in place is trusted)
FILES = {
    "package/dist/socket.io.esm.min.js": ("socket.io.esm.min.js",
                                          "771c3872e7d9bf81020615fda67ef0fd2aa61fcaf1990100714a46fa2c39f8a1"),
    "package/LICENSE": ("socket.io-client.LICENSE",
                        "73cb68c437d59e066f9386ef97be57298df4db119fdbd7d7150817c6dbd9f189"),
}
VENDOR = Path(__file__).parent / "static" / "vendor"
BUNDLE = VENDOR / "socket.io.esm.min.js"


class VendorError(RuntimeError):
    """The pinned bundle could not be fetched or did not match its pinned hash."""


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def present(dest: Path = VENDOR) -> bool:
    """True when every pinned file is in ``dest`` with its pinned sha256."""
    return all(_sha256(dest / name) == digest for name, digest in FILES.values())


def tarball_url(registry: str | None = None) -> str:
    registry = (registry or os.environ.get("npm_config_registry") or os.environ.get("NPM_CONFIG_REGISTRY")
                or REGISTRY).rstrip("/")
    return f"{registry}/{NAME}/-/{NAME}-{VERSION}.tgz"


def check_integrity(data: bytes, integrity: str | None = None) -> None:
    """Raise VendorError unless ``data`` has the pinned (npm's Subresource-Integrity-style) sha512."""
    integrity = integrity or INTEGRITY
    algorithm, _, expected = integrity.partition("-")
    got = base64.b64encode(hashlib.new(algorithm, data).digest()).decode("ascii")
    if got != expected:
        raise VendorError(f"{NAME}-{VERSION}.tgz: integrity mismatch (expected {integrity}, got "
                          f"{algorithm}-{got}): refusing to use it")


def _npm_pack() -> bytes | None:
    """The tarball by ``npm pack`` (uses npm's cache, registry and proxy settings); None without npm."""
    npm = shutil.which("npm")
    if npm is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run([npm, "pack", f"{NAME}@{VERSION}", "--pack-destination", tmp, "--silent",
                            "--ignore-scripts"], cwd=tmp, check=True, capture_output=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            print(f"siolab: npm pack failed ({exc.__class__.__name__}: {detail.decode(errors='replace')[-300:]}); "
                  f"downloading the tarball instead", file=sys.stderr)
            return None
        tgz = Path(tmp) / f"{NAME}-{VERSION}.tgz"
        return tgz.read_bytes() if tgz.exists() else None


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read()
    except OSError as exc:
        raise VendorError(f"could not download {url}: {exc}") from exc


def fetch(dest: Path = VENDOR, *, use_npm: bool = True) -> str:
    """Write the pinned files into ``dest`` (unless already there); returns how they were obtained."""
    if present(dest):
        return "already present"
    data = _npm_pack() if use_npm else None
    how = "npm pack"
    if data is None:
        how = f"download of {tarball_url()}"
        data = _download(tarball_url())
    check_integrity(data)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member, (name, digest) in FILES.items():
            extracted = tar.extractfile(member)
            if extracted is None:
                raise VendorError(f"{member} is missing from {NAME}-{VERSION}.tgz")
            content = extracted.read()
            if hashlib.sha256(content).hexdigest() != digest:
                raise VendorError(f"{member} in {NAME}-{VERSION}.tgz does not have its pinned sha256")
            tmp = dest / (name + ".part")
            tmp.write_bytes(content)
            tmp.replace(dest / name)
    return how


def bundle_text() -> str:
    """The bundle's source, ready to import from a Blob URL (its source-map comment removed: a blob has no
    neighbour to load the map from). Raises VendorError, saying how to fix it, when it is missing."""
    if _sha256(BUNDLE) != FILES["package/dist/socket.io.esm.min.js"][1]:
        raise VendorError(f"the official JavaScript client ({NAME} {VERSION}) is not installed next to siolab "
                          f"({BUNDLE} is missing or changed): it is fetched from the npm registry when siolab is "
                          f"built or installed. Run `python -m siolab.widgets.vendor` (needs the network), or "
                          f"reinstall with `pip install -e .`")
    text = BUNDLE.read_text(encoding="utf-8")
    return "\n".join(line for line in text.splitlines() if not line.startswith("//# sourceMappingURL="))


if __name__ == "__main__":
    try:
        print(f"{NAME} {VERSION}: {fetch()} -> {VENDOR}")
    except VendorError as exc:
        sys.exit(f"siolab: {exc}")
