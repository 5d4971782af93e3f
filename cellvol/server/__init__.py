"""Serve volumes over HTTP: raw keys for viewers, rendered planes, a catalog and a browser page.

``cellvol serve PATH...`` on the command line, or from Python (a notebook, a test)::

    from cellvol.server import Server
    with Server(["tomogram.ome.zarr"]) as server:
        print(server.url)  # http://127.0.0.1:PORT/

Needs the ``server`` extra (starlette, uvicorn, pillow).
"""

from cellvol.server._app import Served, create_app, serve_name
from cellvol.server._runner import Server

__all__ = ["Served", "Server", "create_app", "serve_name"]
