"""The pinned official JavaScript client: its pins, how it is fetched and checked, and that git never holds it."""
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from siolab.widgets import vendor

ROOT = Path(__file__).resolve().parent.parent


def test_the_pin_is_the_node_tests_pin():
    locked = json.loads((ROOT / "siolab" / "node" / "package-lock.json").read_text())
    entry = locked["packages"]["node_modules/socket.io-client"]
    assert (entry["version"], entry["integrity"]) == (vendor.VERSION, vendor.INTEGRITY)
    assert vendor.VERSION.startswith("4.8.")


def test_the_install_put_the_bundle_and_its_licence_next_to_the_widgets():
    assert vendor.present(), "run `python -m siolab.widgets.vendor` or `pip install -e .` (needs the npm registry)"
    licence = (vendor.VENDOR / "socket.io-client.LICENSE").read_text()
    assert "MIT" in licence or "Permission is hereby granted" in licence
    assert 30_000 < vendor.BUNDLE.stat().st_size < 60_000


def test_git_does_not_hold_the_bundle():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "siolab/widgets/static/vendor"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
    assert tracked == ""
    ignored = subprocess.run(["git", "check-ignore", "-q", str(vendor.BUNDLE)], cwd=ROOT)
    assert ignored.returncode == 0


def _tarball(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _integrity(data: bytes) -> str:
    import base64
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


@pytest.fixture
def fake_release(monkeypatch):
    """A made-up release of the package, pinned like the real one, served by a fake registry."""
    bundle, licence = b"export{x as io};const x=1;\n//# sourceMappingURL=socket.io.esm.min.js.map", b"MIT"
    tgz = _tarball({"package/dist/socket.io.esm.min.js": bundle, "package/LICENSE": licence})
    monkeypatch.setattr(vendor, "INTEGRITY", _integrity(tgz))
    monkeypatch.setattr(vendor, "FILES", {
        "package/dist/socket.io.esm.min.js": ("socket.io.esm.min.js", hashlib.sha256(bundle).hexdigest()),
        "package/LICENSE": ("socket.io-client.LICENSE", hashlib.sha256(licence).hexdigest())})
    downloads = []
    monkeypatch.setattr(vendor, "_download", lambda url: downloads.append(url) or tgz)
    monkeypatch.setattr(vendor, "_npm_pack", lambda: None)  # as on a machine without npm
    return downloads


def test_fetch_downloads_checks_and_writes_then_trusts_what_is_there(tmp_path, fake_release):
    assert vendor.fetch(tmp_path).startswith("download of https://registry.npmjs.org/socket.io-client/-/")
    assert fake_release == [vendor.tarball_url()] and vendor.tarball_url().endswith(f"-{vendor.VERSION}.tgz")
    assert (tmp_path / "socket.io-client.LICENSE").read_bytes() == b"MIT"
    assert vendor.fetch(tmp_path) == "already present" and len(fake_release) == 1
    (tmp_path / "socket.io.esm.min.js").write_text("tampered")
    assert vendor.fetch(tmp_path).startswith("download of") and vendor.present(tmp_path)


def test_a_tarball_that_does_not_match_its_pin_is_refused(tmp_path, fake_release, monkeypatch):
    monkeypatch.setattr(vendor, "_download", lambda url: _tarball({"package/LICENSE": b"evil"}))
    with pytest.raises(vendor.VendorError, match="integrity mismatch"):
        vendor.fetch(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_registry_mirror_is_used_when_configured(monkeypatch):
    monkeypatch.setenv("npm_config_registry", "https://mirror.example/npm/")
    assert vendor.tarball_url() == f"https://mirror.example/npm/socket.io-client/-/socket.io-client-{vendor.VERSION}.tgz"


def test_bundle_text_says_how_to_fix_a_missing_bundle(monkeypatch, tmp_path):
    monkeypatch.setattr(vendor, "BUNDLE", tmp_path / "missing.js")
    with pytest.raises(vendor.VendorError, match="python -m siolab.widgets.vendor"):
        vendor.bundle_text()


async def test_a_missing_bundle_becomes_a_message_in_the_panel(monkeypatch, tmp_path, lab):
    monkeypatch.setattr(vendor, "BUNDLE", tmp_path / "missing.js")
    widget = lab.browser_client("browser")
    assert widget.library == "" and "python -m siolab.widgets.vendor" in widget.library_error
    widget.close()


def test_the_build_hook_force_includes_the_files_in_wheels_and_sdists_not_in_editables(tmp_path, monkeypatch):
    hook_module = pytest.importorskip("hatchling.builders.hooks.plugin.interface",
                                      reason="hatchling is not installed here (builds get it in their own env)")
    del hook_module
    import importlib.util
    spec = importlib.util.spec_from_file_location("hatch_build", ROOT / "hatch_build.py")
    hatch_build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hatch_build)
    hook = hatch_build.JavaScriptClientHook.__new__(hatch_build.JavaScriptClientHook)
    monkeypatch.setattr(type(hook), "root", property(lambda self: str(ROOT)))
    data = {"force_include": {}}
    hook.initialize("standard", data)
    shipped = ["siolab/widgets/static/vendor/socket.io.esm.min.js",
               "siolab/widgets/static/vendor/socket.io-client.LICENSE"]
    assert data["force_include"] == {str(ROOT / path): path for path in shipped}
    editable = {"force_include": {}}
    hook.initialize("editable", editable)
    assert editable["force_include"] == {}
