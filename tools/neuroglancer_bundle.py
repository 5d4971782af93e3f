"""Fetch neuroglancer from the npm registry and build its web app, once, into a cache folder.

    python tools/neuroglancer_bundle.py              # prints the app's folder
    python tools/neuroglancer_bundle.py --cache ~/.cache/cellvol

The npm package ships neuroglancer's ES modules, not a built client, so this installs it with
esbuild from the npm registry, exactly as ``tools/neuroglancer/package-lock.json`` records
them (``npm ci``, every package checked against the lock's integrity hash, no package's
install script run), in ``CACHE/neuroglancer-VERSION-HASH/build``, and bundles it with
``tools/neuroglancer_build.mjs`` into ``CACHE/neuroglancer-VERSION-HASH/app``: a static site
(``index.html`` and its bundles) to serve from any folder root, e.g.
``python -m http.server -d APP --bind 127.0.0.1``. ``HASH`` is that of the manifest, the lock
and the build script, so a change to any of them builds a new app; a finished app is reused
(the second call costs nothing). The cache defaults to ``$XDG_CACHE_HOME/cellvol``
(``~/.cache/cellvol``).

To move to another release: change ``tools/neuroglancer/package.json`` and regenerate the lock
there with ``npm install --package-lock-only --ignore-scripts``.

Exit status: 0 with the app's folder on stdout; 3 when the bundle cannot be made here because
``npm``/``node`` is missing or the registry cannot be reached (the message says which); 1 for
any other failure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

#: What is installed: neuroglancer, the bundler, and the icon set neuroglancer's package.json
#: pins to a git commit, which npm cannot fetch from its registry alone (its npm release stands
#: in; the build script maps the missing icons); the lock pins every other package.
PACKAGE: Final = Path(__file__).with_name("neuroglancer")
BUILD_SCRIPT: Final = Path(__file__).with_name("neuroglancer_build.mjs")
#: The neuroglancer release the project tests against (see docs/format.md).
VERSION: Final = str(
    json.loads((PACKAGE / "package.json").read_text())["dependencies"]["neuroglancer"]
)
UNAVAILABLE: Final = 3
_INPUTS: Final = (PACKAGE / "package.json", PACKAGE / "package-lock.json", BUILD_SCRIPT)


class Unavailable(RuntimeError):
    """The bundle cannot be made on this machine (no npm, or no registry)."""


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/cellvol``, or ``~/.cache/cellvol``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cellvol"


def bundle(cache: Path | None = None) -> Path:
    """The folder of the built neuroglancer web app, building it if not yet there.

    Raises
    ------
    Unavailable
        ``npm`` or ``node`` is not installed, or the npm registry did not answer.
    RuntimeError
        The install or the build failed for another reason (the tool's output is included).
    """
    root = (cache or default_cache()) / f"neuroglancer-{VERSION}-{inputs_hash()}"
    app = root / "app"
    if (app / "index.html").is_file():
        return app
    for tool in ("npm", "node"):
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} is not installed (apt-get install nodejs npm)")
    build = root / "build"
    build.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(PACKAGE / name, build / name)
    # No install scripts: esbuild's binary comes as a package of its own for the platform.
    command = ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
    install = _run(command, build, 600)
    if install.returncode != 0:
        text = install.stdout + install.stderr
        if any(s in text for s in ("ENOTFOUND", "ECONNREFUSED", "EAI_AGAIN", "ETIMEDOUT")):
            raise Unavailable(f"the npm registry cannot be reached: {text.strip()[-500:]}")
        raise RuntimeError(f"npm ci of neuroglancer {VERSION} failed in {build}:\n{text}")
    shutil.copyfile(BUILD_SCRIPT, build / "build.mjs")  # beside node_modules: resolves esbuild
    partial = root / "app.partial"
    shutil.rmtree(partial, ignore_errors=True)
    built = _run(["node", "build.mjs", str(partial)], build, 600)
    if built.returncode != 0 or not (partial / "index.html").is_file():
        raise RuntimeError(
            f"bundling neuroglancer {VERSION} failed in {build}:\n{built.stdout}{built.stderr}"
        )
    # Renamed only when complete, so an interrupted build is never taken for a finished one.
    shutil.rmtree(app, ignore_errors=True)
    partial.rename(app)
    return app


def inputs_hash() -> str:
    """A short hash of the manifest, the lock and the build script: the app's cache key."""
    digest = hashlib.sha256()
    for path in _INPUTS:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _run(command: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cache", type=Path, default=None, help="cache folder")
    args = parser.parse_args(argv)
    try:
        print(bundle(args.cache))
    except Unavailable as error:
        print(f"neuroglancer bundle unavailable: {error}", file=sys.stderr)
        return UNAVAILABLE
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        print(f"neuroglancer bundle failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
