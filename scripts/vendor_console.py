#!/usr/bin/env python3
"""Vendor the console's browser libraries from the npm registry, pinned and checked.

``npm pack`` downloads each package's tarball without running any install script; only
the files the console loads (its dist build) and the licence are extracted into
``proxy/console/static/vendor/<package>/``, and ``manifest.json`` there records each
version, the tarball's sha256 and every extracted file's sha256. The vendored files are
committed: the service runs offline and without a front-end build step. Re-run this
script (``python scripts/vendor_console.py``) only to change a version; ``--check``
verifies the committed files against the manifest (no network).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "proxy" / "console" / "static" / "vendor"

# package -> (version, files to keep, relative to the tarball's package/ folder). ES module
# builds: the console loads them with an import map, no bundler. terra-draw ships no licence
# file: its package.json (licence field "MIT") is kept as the record.
PACKAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "maplibre-gl": (
        "6.17.0",
        (
            "dist/maplibre-gl.mjs",
            "dist/maplibre-gl-worker.mjs",  # loaded by maplibre-gl.mjs from beside itself
            "dist/maplibre-gl.css",
            "LICENSE.txt",
        ),
    ),
    "terra-draw": ("1.35.0", ("dist/terra-draw.modern.js", "package.json")),
    "terra-draw-maplibre-gl-adapter": (
        "1.4.1",
        ("dist/terra-draw-maplibre-gl-adapter.modern.js", "package.json"),
    ),
    "axe-core": ("4.14.1", ("axe.min.js", "LICENSE")),
}


def sha256(data: bytes) -> str:
    """The hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def pack(name: str, version: str, workdir: Path) -> bytes:
    """The tarball of ``name@version``, downloaded by ``npm pack`` (no scripts run)."""
    out = subprocess.run(
        ["npm", "pack", f"{name}@{version}", "--json", "--ignore-scripts", "--silent"],
        cwd=workdir,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    filename = json.loads(out)[0]["filename"]
    return (workdir / filename).read_bytes()


def member(tar: tarfile.TarFile, names: set[str], wanted: str) -> bytes:
    """One file of the package's tarball."""
    path = f"package/{wanted}"
    if path not in names:
        raise SystemExit(f"{wanted} is not in the tarball: {sorted(names)[:40]}")
    extracted = tar.extractfile(path)
    if extracted is None:
        raise SystemExit(f"{wanted} is not a regular file")
    return extracted.read()


def vendor() -> dict[str, object]:
    """Download, extract and record every package; returns the manifest."""
    manifest: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (version, files) in PACKAGES.items():
            tarball = pack(name, version, Path(tmp))
            target = VENDOR / name
            target.mkdir(parents=True, exist_ok=True)
            kept: dict[str, str] = {}
            with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
                names = set(tar.getnames())
                for wanted in files:
                    data = member(tar, names, wanted)
                    (target / Path(wanted).name).write_bytes(data)
                    kept[Path(wanted).name] = sha256(data)
                licence = json.loads(member(tar, names, "package.json"))["license"]
            manifest[name] = {
                "version": version,
                "license": licence,
                "tarball_sha256": sha256(tarball),
                "files": kept,
            }
            print(f"{name}@{version}: {', '.join(kept)}")
    (VENDOR / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def check() -> int:
    """0 when every vendored file matches the manifest's sha256 and version pins."""
    manifest = json.loads((VENDOR / "manifest.json").read_text())
    bad = []
    for name, (version, files) in PACKAGES.items():
        entry = manifest.get(name, {})
        if entry.get("version") != version:
            bad.append(f"{name}: manifest has {entry.get('version')}, the script pins {version}")
        for wanted in files:
            path = VENDOR / name / Path(wanted).name
            digest = sha256(path.read_bytes()) if path.exists() else "missing"
            if digest != entry.get("files", {}).get(path.name):
                bad.append(f"{path.relative_to(ROOT)}: {digest}")
    print("\n".join(bad) or "vendored files match the manifest")
    return 1 if bad else 0


def main() -> int:
    """Vendor, or with ``--check`` verify the committed files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify, download nothing")
    if parser.parse_args().check:
        return check()
    vendor()
    return check()


if __name__ == "__main__":
    sys.exit(main())
