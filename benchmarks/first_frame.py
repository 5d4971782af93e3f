"""Time to the page's first 3-D frame, with every segment surface, on loopback.

    .venv/bin/python benchmarks/first_frame.py                 # a synthetic image with labels
    .venv/bin/python benchmarks/first_frame.py --image IMAGE --labels NAME

``cellvol serve`` runs in this process on 127.0.0.1 (port 0); headless Chromium (Debian's, via
Playwright, WebGL through SwiftShader as in the page's tests) opens ``/view/NAME`` in a fresh
browser context each run, so nothing is cached between runs. The page records, in
``performance.now()`` time from the start of navigation, when its three planes were first all
drawn (``firstPlanes``) and when the 3-D view first drew a complete frame: the three planes as
textures and every segment surface listed by ``/meshes`` (``firstFrame3d``). One untimed run
warms the server's chunk cache and the operating system's page cache; then ``--runs`` timed
runs. The synthetic image is 64 x 512 x 512 uint8 (voxels 8 x 4 x 4 nm, z y x) with 24 ellipsoid
segments, made once in ``--data-dir``; its meshes are computed as the labels are written.
Results go to ``benchmarks/results/first-frame.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SHAPE = (64, 512, 512)
SEGMENTS = 24
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def synthetic_image(data_dir: Path) -> Path:
    """The benchmark image with its labels (and so their meshes), written once."""
    import cellvol
    from cellvol.synthetic import SyntheticVolume

    path = data_dir / "first-frame.ome.zarr"
    if (path / "labels" / "cells" / "meshes").exists():
        return path
    if path.exists():
        shutil.rmtree(path)
    data_dir.mkdir(parents=True, exist_ok=True)
    image = SyntheticVolume(SHAPE, "uint8", seed=0)[:, :, :]
    labels = np.zeros(SHAPE, np.uint16)
    rng = np.random.default_rng(0)
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    for segment in range(1, SEGMENTS + 1):
        centre = rng.uniform([8, 40, 40], [SHAPE[0] - 8, SHAPE[1] - 40, SHAPE[2] - 40])
        radii = rng.uniform([4, 12, 12], [10, 40, 40])
        inside = sum(((c - m) / r) ** 2 for c, m, r in zip((z, y, x), centre, radii, strict=True))
        labels[inside <= 1] = segment
    cellvol.write_pyramid(image, path, (8, 4, 4), n_levels=3, chunks=(32, 128, 128))
    cellvol.write_labels(path, labels, "cells")
    return path


def measure(url: str, runs: int) -> list[dict[str, float]]:
    """Per run: the page's firstPlanes and firstFrame3d, in seconds from navigation."""
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for run in range(runs + 1):
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.goto(url)
            page.wait_for_function("document.body.dataset.firstFrame3d", timeout=120_000)
            marks = page.evaluate(
                "[Number(document.body.dataset.firstPlanes),"
                " Number(document.body.dataset.firstFrame3d),"
                " Number(document.getElementById('view3d').dataset.surfaces)]"
            )
            context.close()
            if run:  # the first run warms the caches
                times.append(
                    {
                        "first_planes_s": round(marks[0] / 1000, 3),
                        "first_3d_frame_s": round(marks[1] / 1000, 3),
                        "surfaces": marks[2],
                    }
                )
        browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", help="an image written by cellvol, with labels and meshes")
    parser.add_argument("--labels", default="cells", help="the label image to show (cells)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/cellvol-bench"))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "first-frame.json")
    args = parser.parse_args()

    import cellvol
    from cellvol.server import Server, serve_name

    image = Path(args.image) if args.image else synthetic_image(args.data_dir)
    name = serve_name(str(image))
    volume = cellvol.open(str(image))
    labels = volume.labels[args.labels]
    with Server([str(image)], port=0) as server:
        with urllib.request.urlopen(f"{server.url}meshes/{name}/{args.labels}") as reply:
            listed = json.load(reply)
        times = measure(f"{server.url}view/{name}", args.runs)
    triangles = sum(int(s["triangles"]) for s in listed["segments"])
    frames = [t["first_3d_frame_s"] for t in times]
    planes = [t["first_planes_s"] for t in times]
    result: dict[str, Any] = {
        "image": str(image),
        "shape": list(volume.shape),
        "labels": args.labels,
        "segments": labels.segment_count,
        "triangles": triangles,
        "runs": args.runs,
        "python": platform.python_version(),
        "browser": "Debian chromium, headless, WebGL through SwiftShader (software)",
        "first_planes_median_s": round(statistics.median(planes), 3),
        "first_3d_frame_median_s": round(statistics.median(frames), 3),
        "first_3d_frame_max_s": round(max(frames), 3),
        "per_run": times,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
