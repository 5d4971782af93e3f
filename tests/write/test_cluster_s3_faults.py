"""A pyramid write to S3 on a dask cluster whose worker is killed mid-stage.

A real ``LocalCluster`` of two worker processes writes to the session's moto server on
127.0.0.1; one worker process is killed with SIGKILL once the first task of the first stage
has finished. Its tasks run again elsewhere (its nanny starts a new worker), and the store
ends object for object equal to a write on this machine's threads, with nothing left over.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from support import S3Server

import cellvol
from cellvol.progress import ProgressEvent
from cellvol.synthetic import SyntheticVolume

pytestmark = pytest.mark.s3

SHAPE = (64, 512, 1024)
LAYOUT = {"chunks": (32, 64, 64), "shards": (64, 128, 256)}
IMAGE = "img.ome.zarr"


@pytest.fixture
def buckets(s3_server: S3Server) -> Iterator[tuple[str, str]]:
    names = tuple(f"cellvol-kill-{uuid.uuid4().hex[:12]}" for _ in range(2))
    for name in names:
        s3_server.client().create_bucket(Bucket=name)
    yield names  # type: ignore[misc]
    client = s3_server.client()
    for name in names:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": entry["Key"]} for entry in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys})
        client.delete_bucket(Bucket=name)


def test_a_worker_killed_mid_write_costs_a_retry_and_nothing_else(
    cluster_client: Any, s3_server: S3Server, buckets: tuple[str, str]
) -> None:
    clean, killed_in = buckets
    options = s3_server.storage_options()
    source = SyntheticVolume(SHAPE, "uint8", seed=3)
    cellvol.write_pyramid(source, f"s3://{clean}/{IMAGE}", 1.0, storage_options=options, **LAYOUT)

    victim = min(cluster_client.run(os.getpid).values())
    killed: list[ProgressEvent] = []

    def kill_once(event: ProgressEvent) -> None:
        if not killed and event.stage == 0 and 0 < event.done < event.total:
            os.kill(victim, signal.SIGKILL)
            killed.append(event)

    cellvol.write_pyramid(
        source,
        f"s3://{killed_in}/{IMAGE}",
        1.0,
        storage_options=options,
        client=cluster_client,
        progress=kill_once,
        **LAYOUT,
    )
    assert killed, "the worker was never killed mid-stage"
    assert victim not in cluster_client.run(os.getpid).values()  # a new worker took its place
    expected = s3_server.objects(clean)
    stored = s3_server.objects(killed_in)
    assert sorted(stored) == sorted(expected)  # no lease, no temporary, nothing missing
    assert [key for key in expected if stored[key] != expected[key]] == []
