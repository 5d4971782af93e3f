"""Make the pictures of the user pages from the real ssTEM stack in ../shared/data.

    .venv/bin/python tools/docs_images.py          # writes docs/img/view-page.png, planes.png

Converts the serial-section TEM stack (30 slices of 512², 4 x 4 x 50 nm) and its membrane
labels (cells numbered as connected components, the largest annotated), serves the image on
127.0.0.1 and photographs the ``/view`` page in headless Chromium, and draws three orthogonal
planes of level 0 with the labels over them.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

import cellvol
from cellvol.formats._open import open_source
from cellvol.server import Server

ROOT = Path(__file__).resolve().parents[1]
SSTEM = ROOT.parent / "shared" / "data" / "sstem"
OUT = ROOT / "docs" / "img"
CHROMIUM_FLAGS = [  # as the page's tests: WebGL through SwiftShader for the 3-D view
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def build(work: Path) -> Path:
    """The ssTEM image with a ``cells`` label image, one cell annotated."""
    from skimage.measure import label

    image = work / "sstem.ome.zarr"
    cellvol.convert(SSTEM / "image", image, voxel_size=(50, 4, 4), unit="nm")
    # The label stack is 255 inside cells and 0 on membranes: cells are its connected parts.
    interiors = np.asarray(open_source(SSTEM / "label").array[:])
    cells = label(interiors > 0, connectivity=1).astype(np.uint32)  # type: ignore[no-untyped-call]
    table = cellvol.write_labels(image, cells, "cells").segments
    largest = int(table.ids[np.argmax(table.voxel_count)])
    cellvol.annotate(image, "cells", largest, name="neurite", references=["GO:0043005"])
    return image


def planes(image: Path, target: Path) -> None:
    """Three orthogonal planes through the volume's centre, labels over them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    volume = cellvol.open(image)
    cells = volume.labels["cells"]
    z, y, x = (n // 2 for n in volume.shape)
    size = volume.voxel_size
    assert size is not None
    views = [
        ("XY", volume.plane_index("z", z), cells.plane_index("z", z), (size.x, size.y)),
        ("XZ", volume.plane_index("y", y), cells.plane_index("y", y), (size.x, size.z)),
        ("YZ", volume.plane_index("x", x), cells.plane_index("x", x), (size.y, size.z)),
    ]
    figure, axes = plt.subplots(
        1, 3, figsize=(12, 4.4), gridspec_kw={"width_ratios": [1, 1, 1]}, layout="constrained"
    )
    colours = cells.colors
    for axis, (name, plane, labelled, (dx, dy)) in zip(axes, views, strict=True):
        extent = (0, plane.shape[1] * dx, plane.shape[0] * dy, 0)
        axis.imshow(plane, cmap="gray", extent=extent, interpolation="nearest")
        overlay = np.zeros((*labelled.shape, 4))
        for segment in np.unique(labelled):
            if segment and int(segment) in colours:
                rgba = np.array(colours[int(segment)]) / 255
                overlay[labelled == segment] = rgba * [1, 1, 1, 0.45]
        axis.imshow(overlay, extent=extent, interpolation="nearest", aspect="auto")
        axis.set_title(f"{name} plane, labels over the image")
        axis.set_xlabel("nm")
    figure.savefig(target, dpi=80)


def view_page(image: Path, target: Path) -> None:
    """A screenshot of the browser page, the annotated cell chosen in its segment list."""
    from playwright.sync_api import sync_playwright

    with Server([str(image)]) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=CHROMIUM_FLAGS
        )
        page = browser.new_page(viewport={"width": 1280, "height": 820})
        page.goto(f"{server.url}view/sstem")
        page.wait_for_function("document.body.dataset.firstFrame3d", timeout=60_000)
        page.fill("#segment-search", "neurite")
        page.wait_for_function(
            "document.querySelectorAll('#segment-list li').length === 1", timeout=30_000
        )
        page.click("#segment-list li")
        page.wait_for_selector("#segment-body a", timeout=30_000)
        page.wait_for_function(
            "document.querySelectorAll('.panel[data-ready=\"1\"]').length === 3"
            " && document.querySelector('#view3d').dataset.ready === '1'",
            timeout=30_000,
        )
        page.wait_for_timeout(1000)  # the planes through the new crosshair
        page.screenshot(path=str(target))
        browser.close()


def main() -> None:
    if not SSTEM.is_dir():
        sys.exit(f"{SSTEM} not found: the pictures are made from the real ssTEM stack")
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        image = build(Path(work))
        planes(image, OUT / "planes.png")
        view_page(image, OUT / "view-page.png")
    print(f"wrote {OUT / 'planes.png'} and {OUT / 'view-page.png'}")


if __name__ == "__main__":
    main()
