"""Build vizarr's web app from its source, once, into a cache folder.

    python tools/vizarr_bundle.py --source /path/to/vizarr            # a checkout or a copy
    python tools/vizarr_bundle.py --source /path/to/vizarr.git        # a (bare) git repository
    python tools/vizarr_bundle.py                                     # the app, if built

vizarr (github.com/hms-dbmi/vizarr) is published neither on npm as an app nor as a static
site this machine can reach, so it is built from its source: the source is copied to
``CACHE/vizarr-KEY/src`` (``git archive`` of ``--rev`` for a git repository), its dependencies
are installed from the npm registry with the pnpm version and lock file the source pins
(``npx pnpm@X install --frozen-lockfile``), ``tsc`` checks it (a failure is reported, not
fatal: the app is still built), and ``vite build`` writes ``CACHE/vizarr-KEY/app``: a static
site to serve from any folder root, opened as ``APP_URL/?source=ZARR_URL``. KEY is the source's
short commit (a plain folder without git: ``v`` and its package.json version). A finished app
is reused: the second call costs nothing. The cache defaults to ``$XDG_CACHE_HOME/cellvol``.

Without ``--source``, prints the app of the commit the project tests against (:data:`COMMIT`)
if it was built, else fails with status 4.

Exit status: 0 with the app's folder on stdout; 3 when ``npm``/``node`` is missing or the
registry cannot be reached; 4 when there is no source (or no built app) to use; 1 for any
other failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Final

#: The vizarr commit (v0.3.0) the project tests against (see docs/format.md).
COMMIT: Final = "be7ccc2"
UNAVAILABLE: Final = 3
NO_SOURCE: Final = 4
_OFFLINE: Final = ("ENOTFOUND", "ECONNREFUSED", "EAI_AGAIN", "ETIMEDOUT")


class Unavailable(RuntimeError):
    """The app cannot be built on this machine (no npm, or no registry)."""


class NoSource(RuntimeError):
    """The given source is not a vizarr source, or no app is built yet."""


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/cellvol``, or ``~/.cache/cellvol``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cellvol"


def built_app(key: str = COMMIT, cache: Path | None = None) -> Path | None:
    """The folder of the app built for ``key`` (a short commit), or None if not built."""
    app = (cache or default_cache()) / f"vizarr-{key}" / "app"
    return app if (app / "index.html").is_file() else None


def bundle(source: Path, rev: str = "HEAD", cache: Path | None = None) -> Path:
    """The folder of vizarr's web app built from ``source``, building it if not yet there.

    Parameters
    ----------
    source
        A vizarr source folder (with ``package.json``), or a git repository (bare or not)
        holding vizarr, of which ``rev`` is built.
    rev
        The revision to build when ``source`` is a git repository.
    cache
        The cache folder (default :func:`default_cache`).

    Raises
    ------
    NoSource
        ``source`` does not exist or is not vizarr's source.
    Unavailable
        ``npm`` or ``node`` is not installed, or the npm registry did not answer.
    RuntimeError
        The install or the build failed for another reason (the tool's output is included).
    """
    if not source.exists():
        raise NoSource(f"vizarr source {source} does not exist")
    commit = _commit(source, rev)
    manifest = _manifest(source, commit)
    key = commit or f"v{manifest['version']}"
    root = (cache or default_cache()) / f"vizarr-{key}"
    app = root / "app"
    if (app / "index.html").is_file():
        return app
    for tool in ("npm", "node", "npx"):
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} is not installed (apt-get install nodejs npm)")
    src = root / "src"
    shutil.rmtree(src, ignore_errors=True)
    _copy_source(source, commit, src)
    pnpm = str(manifest.get("packageManager", ""))
    if not pnpm.startswith("pnpm@") or not (src / "pnpm-lock.yaml").is_file():
        raise NoSource(
            f"{source}: expected vizarr's package.json with packageManager 'pnpm@X' and its "
            f"pnpm-lock.yaml, found packageManager {pnpm!r}"
        )
    install = _run(["npx", "--yes", pnpm, "install", "--frozen-lockfile"], src, 900)
    if install.returncode != 0:
        text = install.stdout + install.stderr
        if any(s in text for s in _OFFLINE):
            raise Unavailable(f"the npm registry cannot be reached: {text.strip()[-500:]}")
        raise RuntimeError(f"installing vizarr's dependencies failed in {src}:\n{text}")
    checked = _run(["npx", "--no-install", "tsc"], src, 600)
    (root / "tsc.log").write_text(checked.stdout + checked.stderr)
    if checked.returncode != 0:
        print(
            f"vizarr's type check failed (see {root / 'tsc.log'}); building anyway", file=sys.stderr
        )
    partial = root / "app.partial"
    shutil.rmtree(partial, ignore_errors=True)
    built = _run(
        ["npx", "--no-install", "vite", "build", "--outDir", str(partial), "--emptyOutDir"],
        src,
        900,
    )
    if built.returncode != 0 or not (partial / "index.html").is_file():
        raise RuntimeError(f"building vizarr failed in {src}:\n{built.stdout}{built.stderr}")
    # Renamed only when complete, so an interrupted build is never taken for a finished one.
    shutil.rmtree(app, ignore_errors=True)
    partial.rename(app)
    return app


def _commit(source: Path, rev: str) -> str | None:
    """``rev``'s short commit if ``source`` is a git repository (bare or not), else None."""
    if (
        not ((source / "HEAD").is_file() and (source / "objects").is_dir())
        and not (source / ".git").exists()
    ):
        return None
    if shutil.which("git") is None:
        raise Unavailable("git is not installed, and the vizarr source is a git repository")
    done = _run(["git", f"--git-dir={_git_dir(source)}", "rev-parse", "--short=7", rev], source, 60)
    if done.returncode != 0:
        raise NoSource(f"{source} has no revision {rev!r}: {done.stderr.strip()}")
    return done.stdout.strip()


def _git_dir(source: Path) -> Path:
    return source if (source / "HEAD").is_file() else source / ".git"


def _copy_source(source: Path, commit: str | None, destination: Path) -> None:
    """The source tree at ``commit`` (or the folder as it is) into ``destination``."""
    if commit is None:
        shutil.copytree(source, destination, ignore=shutil.ignore_patterns("node_modules", "dist"))
        return
    archive = destination.with_suffix(".tar")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with archive.open("wb") as out:
        subprocess.run(
            ["git", f"--git-dir={_git_dir(source)}", "archive", commit],
            stdout=out,
            check=True,
            timeout=120,
        )
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter="data")
    archive.unlink()


def _manifest(source: Path, commit: str | None) -> dict[str, object]:
    """vizarr's package.json, read before anything is copied (from ``commit`` if given)."""
    path = source / "package.json"
    if commit is not None:
        done = _run(
            ["git", f"--git-dir={_git_dir(source)}", "show", f"{commit}:package.json"], source, 60
        )
        if done.returncode != 0:
            raise NoSource(f"{source} at {commit} has no package.json: not vizarr's source")
        text = done.stdout
    elif path.is_file():
        text = path.read_text()
    else:
        raise NoSource(f"{source} has no package.json: not vizarr's source")
    manifest = json.loads(text)
    if manifest.get("name") != "@hms-dbmi/vizarr":
        raise NoSource(f"{path}: expected name '@hms-dbmi/vizarr', found {manifest.get('name')!r}")
    return dict(manifest)


def _run(command: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--source", type=Path, default=None, help="vizarr source or git repo")
    parser.add_argument("--rev", default="HEAD", help="revision of a git source (HEAD)")
    parser.add_argument("--cache", type=Path, default=None, help="cache folder")
    args = parser.parse_args(argv)
    try:
        if args.source is None:
            app = built_app(COMMIT, args.cache)
            if app is None:
                raise NoSource(f"vizarr {COMMIT} is not built: run with --source VIZARR_SOURCE")
            print(app)
        else:
            print(bundle(args.source, args.rev, args.cache))
    except NoSource as error:
        print(f"vizarr bundle: {error}", file=sys.stderr)
        return NO_SOURCE
    except Unavailable as error:
        print(f"vizarr bundle unavailable: {error}", file=sys.stderr)
        return UNAVAILABLE
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        print(f"vizarr bundle failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
