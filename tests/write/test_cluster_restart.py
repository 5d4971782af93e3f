"""A pyramid write whose whole dask cluster is killed mid-stage, finished by resume on a new one.

A subprocess starts a ``LocalCluster`` (scheduler and client in that process, two worker
processes under their nannies, all on 127.0.0.1) and writes; once the first task of the first
stage has finished, its whole process group (scheduler, client, nannies and workers) is killed
with SIGKILL, so nothing of that cluster gets to clean up. A second cluster then resumes the
write, taking over the dead writer's lease. The store ends object for object equal to an
uninterrupted write, with no lease, no temporary and no unfinished multipart upload left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import S3Server

import cellvol
from cellvol.synthetic import SyntheticVolume

pytestmark = pytest.mark.slow

SHAPE = (64, 256, 512)
LAYOUT = {"chunks": (32, 64, 64), "shards": (64, 64, 128), "n_levels": 3, "name": "tomo"}
SEED = 5

# Prints one line per progress event, so that the test can kill it mid-stage.
WRITER = textwrap.dedent(
    """
    import json, sys

    import distributed

    import cellvol
    from cellvol.synthetic import SyntheticVolume

    def report(event):
        print(event.stage, event.done, event.total, flush=True)

    if __name__ == "__main__":
        dest, options = sys.argv[1], json.loads(sys.argv[2])
        with (
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                host="127.0.0.1",
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            cellvol.write_pyramid(
                SyntheticVolume({shape}, seed={seed}), dest, 1.0, storage_options=options,
                client=client, progress=report, **{layout},
            )
        print("finished", flush=True)
    """
).format(shape=SHAPE, seed=SEED, layout=LAYOUT)


def _kill_cluster_mid_stage(
    tmp_path: Path, dest: str, options: dict[str, Any] | None, victim: str
) -> int:
    """Run the writer and SIGKILL it once stage 0 is under way; return its process group.

    ``victim`` "cluster" kills the whole process group; "scheduler" kills only the process of
    the scheduler, the client and the nannies, leaving the worker processes orphaned.
    """
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    # A session of its own: the group holds the scheduler, the nannies and the workers.
    process = subprocess.Popen(
        [sys.executable, str(script), dest, json.dumps(options)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    killed_at = None
    try:
        assert process.stdout is not None
        for line in process.stdout:
            fields = line.split()
            if fields[0] == "finished":
                break
            stage, done, total = (int(f) for f in fields)
            if stage == 0 and 0 < done < total:
                if victim == "cluster":
                    os.killpg(process.pid, signal.SIGKILL)
                else:
                    os.kill(process.pid, signal.SIGKILL)
                killed_at = (done, total)
                break
    finally:
        if killed_at is None:
            _end_group(process.pid)
        process.wait(timeout=60)
        process.stdout.close()  # type: ignore[union-attr]
    assert killed_at is not None, "the cluster finished before it could be killed mid-stage"
    assert process.returncode == -signal.SIGKILL
    return process.pid


def _end_group(pgid: int) -> None:
    """Kill whatever of the writer's process group outlived the test (orphaned workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _resume(dest: str, options: dict[str, Any] | None, client: Any) -> cellvol.WriteResult:
    # The dead writer's lease is seconds old: taking it over is the operator's call.
    return cellvol.write_pyramid(
        SyntheticVolume(SHAPE, seed=SEED),
        dest,
        1.0,
        storage_options=options,
        client=client,
        break_lease=True,
        **LAYOUT,
    )


def _clean(dest: str, options: dict[str, Any] | None) -> cellvol.WriteResult:
    return cellvol.write_pyramid(
        SyntheticVolume(SHAPE, seed=SEED), dest, 1.0, storage_options=options, **LAYOUT
    )


@pytest.mark.parametrize("victim", ["cluster", "scheduler"])
def test_a_killed_cluster_then_resume_on_a_new_one_on_local_disk(
    tmp_path: Path, cluster_client: Any, victim: str
) -> None:
    clean = _clean(str(tmp_path / "clean.zarr"), None)
    dest = tmp_path / "killed.zarr"
    pgid = _kill_cluster_mid_stage(tmp_path, str(dest), None, victim)
    try:
        assert not (dest / "_cellvol" / "complete.json").exists()
        # Orphaned workers of a killed scheduler may still be finishing their tasks meanwhile.
        resumed = _resume(str(dest), None, cluster_client)
    finally:
        _end_group(pgid)
    assert resumed.shards_reused > 0
    assert resumed.shards_written + resumed.shards_reused == clean.shards_written
    expected, stored = _files(tmp_path / "clean.zarr"), _files(dest)
    assert sorted(stored) == sorted(expected)  # no .partial left, nothing missing
    assert [key for key in expected if stored[key] != expected[key]] == []


@pytest.mark.s3
@pytest.mark.parametrize("victim", ["cluster", "scheduler"])
def test_a_killed_cluster_then_resume_on_a_new_one_on_s3(
    tmp_path: Path,
    cluster_client: Any,
    s3_server: S3Server,
    buckets: tuple[str, str],
    victim: str,
) -> None:
    options = s3_server.storage_options()
    clean_in, killed_in = buckets
    clean = _clean(f"s3://{clean_in}/img.ome.zarr", options)
    dest = f"s3://{killed_in}/img.ome.zarr"
    pgid = _kill_cluster_mid_stage(tmp_path, dest, options, victim)
    try:
        resumed = _resume(dest, options, cluster_client)
    finally:
        _end_group(pgid)
    assert resumed.shards_reused > 0
    assert resumed.shards_written + resumed.shards_reused == clean.shards_written
    expected = s3_server.objects(clean_in)
    stored = s3_server.objects(killed_in)
    assert sorted(stored) == sorted(expected)  # no lease, no temporary, nothing missing
    assert [key for key in expected if stored[key] != expected[key]] == []
    uploads = s3_server.client().list_multipart_uploads(Bucket=killed_in)
    assert uploads.get("Uploads", []) == []


@pytest.fixture
def buckets(s3_server: S3Server) -> Iterator[tuple[str, str]]:
    names = tuple(f"cellvol-restart-{uuid.uuid4().hex[:12]}" for _ in range(2))
    client = s3_server.client()
    for name in names:
        client.create_bucket(Bucket=name)
    yield names  # type: ignore[misc]
    for name in names:
        for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": entry["Key"]} for entry in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys})
        client.delete_bucket(Bucket=name)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }
