"""What a user sees when a command fails: one line, perhaps a hint, never a traceback.

The convention (docs/errors.md): stderr holds ``error: ...`` and at most one more line,
``hint: ...``; the exit status is 2 when the command line does not parse, else 1; any
``--option`` the text names is one the command has. Most cases run in this process through
:func:`cellvol.cli.main` (a subprocess each would take a second or two); the ones about the
process as a whole (its exit, its sessions) run as a real ``python -m cellvol``.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from support import DEAD_ENDPOINT, S3Bucket, S3Server

import cellvol
from cellvol.cli import command_options, main

_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def check_one_line(args: list[str], status: int, stderr: str) -> str:
    """Assert the convention for a failed run of ``cellvol *args``; return the error line."""
    assert status != 0, f"cellvol {' '.join(args)} succeeded"
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert 1 <= len(lines) <= 2, f"expected 'error:' and at most a 'hint:' line, got:\n{stderr}"
    assert lines[0].startswith("error: "), stderr
    assert len(lines) == 1 or lines[1].startswith("hint: "), stderr
    assert "=True" not in stderr, f"a Python keyword:\n{stderr}"
    assert "=False" not in stderr, f"a Python keyword:\n{stderr}"
    real = {"--help"}
    for option in command_options(args).values():
        real.update(option.opts, option.secondary_opts)
    for named in _OPTION.findall(stderr):
        assert named in real or named in args, f"{named} is not an option of: {args}\n{stderr}"
    return lines[0]


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the command line in this process; return its exit status and stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(args)
    code = exit_.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


def run_process(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cellvol *args`` with this checkout first on the path."""
    root = str(Path(cellvol.__file__).parents[1])
    path = os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "PYTHONPATH": path, "COLUMNS": "80"}
    return subprocess.run(
        [sys.executable, "-m", "cellvol", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Files the bad command lines name: an image, an array, a foreign folder..."""
    root = tmp_path_factory.mktemp("cli-errors")
    image = root / "img.ome.zarr"
    cellvol.write_pyramid(np.zeros((8, 16, 16), np.uint8), image, 1.0, n_levels=2)
    np.save(root / "a.npy", np.zeros((8, 16, 16), np.uint8))
    (root / "foreign").mkdir()
    (root / "foreign" / "notes.txt").write_text("not a zarr store")
    (root / "empty").mkdir()
    (root / "plain.txt").write_text("a file")
    (root / "taken.mrc").write_bytes(b"")
    (root / "segments.csv").write_text("segment_id,name\n1,membrane\n")
    return {
        "tmp": str(root),
        "image": str(image),
        "npy": str(root / "a.npy"),
        "foreign": str(root / "foreign"),
        "empty": str(root / "empty"),
        "plain": str(root / "plain.txt"),
        "taken": str(root / "taken.mrc"),
        "csv": str(root / "segments.csv"),
        "missing": str(root / "missing.zarr"),
        "dead": DEAD_ENDPOINT,
    }


# (arguments, a piece of the error line). Paths are filled in from ``inputs``.
BAD_INPUTS: list[tuple[list[str], str]] = [
    (["frobnicate"], "No such command"),
    (["info"], "Missing argument"),
    (["info", "--bogus", "{image}"], "No such option: --bogus"),
    (["info", "{missing}"], "missing.zarr does not exist: expected a zarr store"),
    (["info", "{tmp}/no/such/dir/x.zarr"], "nearest existing folder is"),
    (["info", "gs://bucket/x.zarr"], "unsupported URL scheme 'gs'"),
    (["info", "{empty}"], "holds no zarr group or array"),
    (["info", "{plain}"], "is a file, not a directory"),
    (["info", "s3:/bucket/x.zarr"], "is ambiguous"),
    (["info", "s3://bad_bucket!/x.zarr"], "not a valid S3 bucket name"),
    (["info", "http://user:pw@127.0.0.1:9/x.zarr"], "credentials in the URL"),
    (["info", "{image}", "--endpoint-url", "{dead}"], "only apply to s3://"),
    (["info", "s3://bucket/img.ome.zarr", "--endpoint-url", "{dead}"], "could not reach"),
    (["info", "http://127.0.0.1:9/x.zarr"], "could not reach"),
    (["demo", "{tmp}/d.zarr", "--shape", "1,2"], "--shape must have three entries"),
    (["demo", "{tmp}/d.zarr", "--shape", "a,b,c"], "--shape must be three integers"),
    (["demo", "{tmp}/d.zarr", "--seed", "x"], "Invalid value for '--seed'"),
    (["demo", "{image}", "--shape", "8,8,8"], "not an earlier cellvol demo"),
    (["convert", "{tmp}/none.npy", "{tmp}/o.zarr"], "none.npy"),
    (["convert", "{npy}", "{tmp}/o1.zarr"], "records no complete voxel size"),
    (["convert", "{npy}", "{tmp}/o2.zarr", "--voxel-size", "a"], "--voxel-size takes numbers"),
    (["convert", "{npy}", "{tmp}/o3.zarr", "--voxel-size", "1,2"], "one or three values"),
    (["convert", "{npy}", "{tmp}/o4.zarr", "--int8", "maybe"], "--int8 must be"),
    (["convert", "{npy}", "{image}", "--voxel-size", "3"], "different parameters"),
    (["convert", "{npy}", "{foreign}", "--voxel-size", "1"], "holds no cellvol write"),
    (["convert", "{npy}", "{missing}", "--labels", "seg"], "no image to add labels 'seg' to"),
    (["convert", "{npy}", "{image}", "--labels", "s", "--chunks", "8,8,8"], "do not apply"),
    (["convert", "{npy}", "{image}", "--labels", "bad name"], "label name 'bad name'"),
    (["convert", "{npy}", "{tmp}/o5.zarr", "--voxel-size", "1", "--method", "median"], "median"),
    (["convert", "{npy}", "{tmp}/o6.zarr", "--voxel-size", "1", "--unit", "parsec"], "parsec"),
    (
        ["convert", "{npy}", "{tmp}/o7.zarr", "--voxel-size", "1", "--compression-level", "30"],
        "compression_level must be 1-22",
    ),
    (["export", "{image}", "{tmp}/out.txt"], "cannot tell the format"),
    (["export", "{image}", "{taken}"], "taken.mrc exists"),
    (["export", "{image}", "{tmp}/o.mrc", "--level", "9"], "level"),
    (["export", "{image}", "{tmp}/o.mrc", "--region", "0:99,:,:"], "0:99"),
    (["export", "{missing}", "{tmp}/o.mrc"], "missing.zarr does not exist"),
    (["annotate", "{image}", "{csv}"], "Missing option '--labels'"),
    (["annotate", "{image}", "{csv}", "--labels", "nope"], "nope"),
    (["annotate", "{image}", "{tmp}/none.csv", "--labels", "nope"], "none.csv"),
    (["meshes", "{image}"], "Missing option '--labels'"),
    (["meshes", "{image}", "--labels", "nope"], "no labels 'nope'"),
    (["meshes", "{missing}", "--labels", "cells"], "missing.zarr does not exist"),
    (["meshes", "{image}", "--labels", "x", "--triangle-budget", "many"], "--triangle-budget"),
    (["pack", "{image}", "{tmp}/o.zip"], "ends in .ozx"),
    (["pack", "{missing}", "{tmp}/o.ozx"], "missing.zarr does not exist"),
    (["pack", "{image}", "{plain}.ozx", "--endpoint-url", "{dead}"], "only apply to s3://"),
    (["unpack", "{image}", "{tmp}/u"], "is not a zipped OME-Zarr"),
    (["unpack", "{tmp}/none.ozx", "{tmp}/u"], "none.ozx does not exist"),
    (["unpack", "{plain}", "{tmp}/u"], "is not a zipped OME-Zarr"),
    (["serve"], "Missing argument"),
    (["serve", "{missing}"], "missing.zarr does not exist"),
    (["serve", "{image}", "--port", "http"], "Invalid value for '--port'"),
    (["serve", "{image}", "--header-timeout", "0"], "header_timeout must be positive"),
    (["verify"], "Missing argument"),
    (["verify", "{missing}"], "missing.zarr does not exist"),
    (["verify", "{empty}"], "holds no OME-Zarr image"),
    (["verify", "gs://bucket/x.zarr"], "unsupported URL scheme 'gs'"),
    (["crate"], "Missing argument"),
    (["crate", "{missing}"], "missing.zarr does not exist"),
    (["crate", "{empty}"], "no OME-Zarr image"),
    (["validate"], "Missing argument"),
    (["validate", "{missing}"], "missing.zarr does not exist"),
    (["validate", "gs://bucket/x.zarr"], "unsupported URL scheme 'gs'"),
    (["link"], "Missing argument"),
    (["link", "{tmp}/s.zarr", "em={image}"], "at least two images"),
    (["link", "{tmp}/s.zarr", "em", "lm={image}"], "expected NAME=IMAGE"),
    (["link", "{tmp}/s.zarr", "em={image}", "lm={npy}", "--points", "{tmp}/no.csv"], "no.csv"),
    (["link", "{tmp}/s.zarr", "em={image}", "lm={image}", "--scale", "1,1,1"], "OME-Zarr 0.5"),
]


@pytest.mark.parametrize(
    ("template", "expected"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS]
)
def test_every_failure_is_one_line(
    template: list[str],
    expected: str,
    inputs: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [part.format(**inputs) for part in template]
    status, stderr = run_main(args, capsys)
    line = check_one_line(args, status, stderr)
    assert expected in line, stderr


def test_the_table_covers_every_command() -> None:
    from typer.main import get_command

    from cellvol.cli import app

    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    assert commands == {args[0] for args, _ in BAD_INPUTS} - {"frobnicate"}
    assert len(BAD_INPUTS) >= 30


def test_hints_name_the_commands_options(
    inputs: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The library's ``overwrite=True`` and ``voxel_size=(z, y, x)`` are options here."""
    cases = [
        (["export", inputs["image"], inputs["taken"]], "hint: pass --overwrite to replace it"),
        (["convert", inputs["npy"], inputs["foreign"], "--voxel-size", "1"], "--overwrite"),
        (["convert", inputs["npy"], f"{inputs['tmp']}/v.zarr"], "--voxel-size Z,Y,X"),
    ]
    for args, hint in cases:
        status, stderr = run_main(args, capsys)
        check_one_line(args, status, stderr)
        assert hint in stderr


def test_an_unexpected_error_is_one_line_unless_asked(
    monkeypatch: pytest.MonkeyPatch, inputs: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("cellvol.cli.open_volume", broken)
    status, stderr = run_main(["info", inputs["image"]], capsys)
    check_one_line(["info"], status, stderr)
    assert "unexpected ZeroDivisionError: a bug" in stderr
    assert "CELLVOL_TRACEBACK=1" in stderr
    monkeypatch.setenv("CELLVOL_TRACEBACK", "1")
    with pytest.raises(ZeroDivisionError):
        main(["info", inputs["image"]])


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another socket listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_serve_on_a_taken_port(inputs: dict[str, str], taken_port: int) -> None:
    args = ["serve", inputs["image"], "--port", str(taken_port)]
    result = run_process(*args)
    check_one_line(args, result.returncode, result.stderr)
    assert f"cannot listen on 127.0.0.1:{taken_port}" in result.stderr
    assert f"hint: choose another port with --port {taken_port + 1}, or --port 0" in result.stderr


@pytest.mark.s3
def test_s3_dead_endpoint_fails_fast_in_one_line(
    s3_bucket: S3Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["info", s3_bucket.url("img.ome.zarr"), "--endpoint-url", DEAD_ENDPOINT]
    status, stderr = run_main(args, capsys)
    check_one_line(args, status, stderr)
    assert f"could not reach the S3 endpoint {DEAD_ENDPOINT}" in stderr
    assert "hint: check the address" in stderr
    assert "--endpoint-url URL" in stderr


class _Failing(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint whose every answer is a 500 InternalError; counts the requests."""

    requests = 0
    _BODY = b"<Error><Code>InternalError</Code><Message>failing</Message></Error>"

    def _fail(self) -> None:
        type(self).requests += 1
        self.send_response(500)
        self.send_header("Content-Length", str(len(self._BODY)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(self._BODY)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _fail

    def log_message(self, *args: object) -> None:
        pass


def test_persistent_s3_server_errors_are_one_line_after_bounded_retries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    np.save(tmp_path / "in.npy", np.zeros((8, 8, 8), np.uint8))
    try:
        for args in (
            ["info", "s3://bucket/img.ome.zarr", "--endpoint-url", endpoint],
            [
                "convert",
                str(tmp_path / "in.npy"),
                "s3://bucket/out.ome.zarr",
                "--voxel-size",
                "1,1,1",
                "--endpoint-url",
                endpoint,
            ],
        ):
            _Failing.requests = 0
            status, stderr = run_main(args, capsys)
            line = check_one_line(args, status, stderr)
            assert endpoint in line
            assert "InternalError" in line
            assert 1 <= _Failing.requests <= 4, _Failing.requests  # the probe's bounded retries
    finally:
        server.shutdown()


@pytest.mark.s3
def test_s3_without_credentials_suggests_anon(
    s3_bucket: S3Bucket,
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    args = ["info", s3_bucket.url("img.ome.zarr"), "--endpoint-url", s3_server.endpoint_url]
    status, stderr = run_main(args, capsys)
    check_one_line(args, status, stderr)
    assert "no usable AWS credentials" in stderr
    assert "use --anon for a public bucket" in stderr


@pytest.mark.s3
def test_s3_commands_close_their_sessions(s3_bucket: S3Bucket, s3_server: S3Server) -> None:
    """No "Unclosed client session" from aiohttp when the process exits, failed or not."""
    url = s3_bucket.url("img.ome.zarr")
    cellvol.write_pyramid(
        np.zeros((8, 8, 8), np.uint8), url, 1.0, storage_options=s3_bucket.storage_options
    )
    listed = run_process("info", url, "--json", "--endpoint-url", s3_server.endpoint_url)
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr == ""
    assert json.loads(listed.stdout)["levels"][0]["shape"] == [8, 8, 8]
    missing = ["info", s3_bucket.url("none.zarr"), "--endpoint-url", s3_server.endpoint_url]
    failed = run_process(*missing)
    check_one_line(missing, failed.returncode, failed.stderr)
    assert "holds no object" in failed.stderr


def _hostile_inputs(root: Path) -> dict[str, tuple[str, str]]:
    """Files whose metadata a parser chokes on: (the input, what the error line names)."""
    import h5py
    import tifffile

    data = np.zeros((4, 8, 8), np.uint8)
    ome = root / "ome.ome.tif"
    tifffile.imwrite(
        ome, data, ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": "abc", "PhysicalSizeY": 1}
    )
    spacing, unit = root / "spacing.tif", root / "unit.tif"
    for path, meta in ((spacing, {"spacing": "abc"}), (unit, {"unit": "\\x", "spacing": 1})):
        tifffile.imwrite(
            path,
            data,
            imagej=True,
            resolution=(1, 1),
            metadata={"axes": "ZYX", "unit": "um"} | meta,
        )
    loop = root / "loop.h5"
    with h5py.File(loop, "w") as f:
        f["a"] = h5py.SoftLink("/a")
    nan = root / "nan.h5"
    with h5py.File(nan, "w") as f:
        f["v"] = data
        f["v"].attrs["element_size_um"] = [float("nan"), 1.0, 1.0]
    return {
        "ome-physical-size": (str(ome), "PhysicalSizeX"),
        "imagej-spacing": (str(spacing), "ImageJ spacing"),
        "imagej-unit": (str(unit), "ImageJ unit"),
        "hdf5-link-loop": (f"{loop}:/a", "'/a'"),
        "hdf5-nan-voxel": (str(nan), "element_size_um"),
    }


@pytest.mark.parametrize(
    "case",
    ["ome-physical-size", "imagej-spacing", "imagej-unit", "hdf5-link-loop", "hdf5-nan-voxel"],
)
def test_hostile_metadata_is_one_line_and_writes_nothing(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, field = _hostile_inputs(tmp_path)[case]
    dest = tmp_path / "out.zarr"
    args = ["convert", src, str(dest)]
    status, stderr = run_main(args, capsys)
    line = check_one_line(args, status, stderr)
    assert field in line, stderr
    assert src.split(":/")[0] in line, stderr
    assert not dest.exists()


def test_hostile_metadata_has_no_traceback_in_a_real_process(tmp_path: Path) -> None:
    src, _ = _hostile_inputs(tmp_path)["hdf5-link-loop"]
    done = run_process("convert", src, str(tmp_path / "out.zarr"))
    check_one_line(["convert", src, str(tmp_path / "out.zarr")], done.returncode, done.stderr)
    assert not (tmp_path / "out.zarr").exists()


def test_a_library_warning_is_one_line(tmp_path: Path) -> None:
    import mrcfile

    src = tmp_path / "nan-origin.mrc"
    with mrcfile.new(src) as mrc:
        mrc.set_data(np.zeros((4, 8, 8), np.int16))
        mrc.voxel_size = 10.0
        mrc.header.origin.x = float("nan")
    done = run_process("convert", str(src), str(tmp_path / "out.zarr"), "--no-digest")
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(warned) == 1, done.stderr
    assert warned[0].startswith("warning: "), done.stderr
    assert "origin" in warned[0]
    assert "Traceback" not in done.stderr
