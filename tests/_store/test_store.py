"""cellvol._store against real backends: local disk, a moto S3 server, a loopback HTTP server.

:class:`StorageContract` holds what every backend must do; each backend subclasses it with a
``backend`` fixture (zarr-python's style of store tests). Nothing here mocks a client.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
import zarr.api.asynchronous
from s3fs import S3FileSystem
from support import DEAD_ENDPOINT, S3Bucket, S3Server
from zarr.core.sync import sync
from zarr.storage import FsspecStore, LocalStore

from cellvol._store import _s3 as s3_backend
from cellvol._store import (
    delete_prefix,
    join,
    list_keys,
    object_size,
    open_store,
    parse_location,
    read_bytes,
    read_objects,
    write_bytes,
)
from cellvol.errors import (
    CellvolError,
    InvalidInputError,
    ReadOnlyStoreError,
    StoreNotFoundError,
    WriteConflictError,
)

Serve = Callable[[str | os.PathLike[str]], str]

#: Credentials no message or repr may ever show. moto accepts any key and secret.
SECRET = "cellvol-SECRET-sentinel-7f3a9c"
KEY_ID = "AKIACELLVOLSENTINEL1"
TOKEN = "cellvol-bearer-sentinel-51d0"

DATA = np.arange(8 * 20, dtype="uint16").reshape(8, 20)  # 2 shards of 2 x 2 chunks


def write_sample(store: Any) -> None:
    """Write a small zarr v3 group with attributes and one sharded array."""
    group = zarr.create_group(store, zarr_format=3, attributes={"cellvol": {"test": True}})
    array = group.create_array(
        "raw", shape=DATA.shape, chunks=(4, 5), shards=(8, 10), dtype=DATA.dtype
    )
    array[:] = DATA


def check_sample(store: Any) -> None:
    """Read the sample back: whole, and one part of each shard (byte-range reads)."""
    group = zarr.open_group(store=store, mode="r", zarr_format=3)
    assert group.attrs["cellvol"] == {"test": True}
    array = group["raw"]
    assert isinstance(array, zarr.Array)
    np.testing.assert_array_equal(array[:], DATA)
    np.testing.assert_array_equal(array[3:6, 4:16], DATA[3:6, 4:16])
    direct = zarr.open_array(store=store, path="raw", mode="r", zarr_format=3)
    assert (direct.shape, direct.dtype) == (DATA.shape, DATA.dtype)


def no_secret_in(text: str) -> bool:
    return all(secret not in text for secret in (SECRET, KEY_ID, TOKEN))


def full_report(exc: BaseException) -> str:
    """The message, repr and the whole printed traceback, causes included."""
    return "".join([str(exc), repr(exc), *traceback.format_exception(exc)])


@dataclass
class Backend:
    """Where a backend's tests write and read, and with which options."""

    write_root: str
    read_root: str
    write_options: dict[str, Any] | None = None
    read_options: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def write_url(self, name: str) -> str:
        return join(self.write_root, name)

    def read_url(self, name: str) -> str:
        return join(self.read_root, name)

    def write(self, name: str, mode: str = "w") -> Any:
        return open_store(self.write_url(name), mode=mode, storage_options=self.write_options)

    def read(self, name: str, mode: str = "r") -> Any:
        return open_store(self.read_url(name), mode=mode, storage_options=self.read_options)


# --------------------------------------------------------------------------------------------
# What every backend does
# --------------------------------------------------------------------------------------------


class StorageContract:
    """Tests every backend passes. Subclasses provide the ``backend`` fixture."""

    @pytest.fixture
    def backend(self) -> Backend:
        raise NotImplementedError

    def test_write_then_read_back(self, backend: Backend) -> None:
        write_sample(backend.write("vol.ome.zarr"))
        store = backend.read("vol.ome.zarr")
        assert store.read_only
        check_sample(store)

    def test_read_only_store_refuses_writes(self, backend: Backend) -> None:
        write_sample(backend.write("vol.zarr"))
        group = zarr.open_group(store=backend.read("vol.zarr"), mode="r")
        with pytest.raises(ValueError, match="read-only"):
            group.attrs["changed"] = 1

    def test_missing_location_in_read_mode(self, backend: Backend) -> None:
        write_sample(backend.write("present.zarr"))  # the parent exists; the child does not
        with pytest.raises(StoreNotFoundError) as info:
            backend.read("missing.zarr")
        assert isinstance(info.value, FileNotFoundError)
        assert isinstance(info.value, CellvolError)
        assert backend.read_url("missing.zarr") in str(info.value)

    def test_no_credentials_in_reprs_or_errors(self, backend: Backend) -> None:
        write_sample(backend.write("vol.zarr"))
        store = backend.read("vol.zarr")
        group = zarr.open_group(store=store, mode="r")
        for text in (repr(store), str(store), repr(group), str(group.store_path)):
            assert no_secret_in(text), text
        with pytest.raises(StoreNotFoundError) as info:
            backend.read("missing.zarr")
        assert no_secret_in(full_report(info.value))

    def test_mode_is_checked(self, backend: Backend) -> None:
        with pytest.raises(InvalidInputError, match="unknown mode 'rw'"):
            backend.read("vol.zarr", mode="rw")


class WritableStorageContract(StorageContract):
    """Tests of the writable backends (local disk and S3)."""

    def test_r_plus_opens_existing_for_writing(self, backend: Backend) -> None:
        write_sample(backend.write("vol.zarr"))
        store = backend.write("vol.zarr", mode="r+")
        assert not store.read_only
        zarr.open_group(store=store, mode="r+").attrs["more"] = 2
        assert zarr.open_group(store=backend.read("vol.zarr"), mode="r").attrs["more"] == 2

    def test_r_plus_needs_an_existing_store(self, backend: Backend) -> None:
        with pytest.raises(StoreNotFoundError):
            backend.write("missing.zarr", mode="r+")

    def test_append_mode_creates(self, backend: Backend) -> None:
        store = backend.write("new.zarr", mode="a")
        assert not store.read_only
        write_sample(store)
        check_sample(backend.read("new.zarr"))

    def test_w_keeps_existing_content_until_zarr_overwrites(self, backend: Backend) -> None:
        write_sample(backend.write("vol.zarr"))
        backend.write("vol.zarr", mode="w")  # opening alone deletes nothing
        check_sample(backend.read("vol.zarr"))

    def test_exclusive_mode_refuses_a_used_location(self, backend: Backend) -> None:
        write_sample(backend.write("vol.zarr"))
        with pytest.raises(WriteConflictError, match="not empty") as info:
            backend.write("vol.zarr", mode="w-")
        assert isinstance(info.value, FileExistsError)
        write_sample(backend.write("fresh.zarr", mode="w-"))
        check_sample(backend.read("fresh.zarr"))

    def test_object_helpers(self, backend: Backend) -> None:
        store = backend.write("objects")
        assert read_bytes(store, "a/b.json") is None
        assert object_size(store, "a/b.json") is None
        assert list_keys(store) == []
        for key in ("a/b.json", "a/bc", "a/b/c/d", "top"):
            write_bytes(store, key, key.encode())
        assert read_bytes(store, "a/b/c/d") == b"a/b/c/d"
        assert object_size(store, "a/bc") == 4
        assert list_keys(store) == ["a/b.json", "a/b/c/d", "a/bc", "top"]
        assert list_keys(store, "a/b") == list_keys(store, "a/b/") == ["a/b/c/d"]
        assert list_keys(store, "nothing/here") == []
        delete_prefix(store, "a/b")  # the subtree a/b/, not a/bc nor a/b.json
        assert list_keys(store) == ["a/b.json", "a/bc", "top"]
        delete_prefix(store, "a/b.json")  # a single object
        delete_prefix(store, "never/written")
        assert list_keys(store) == ["a/bc", "top"]
        write_bytes(store, "top", b"replaced")
        assert read_bytes(store, "top") == b"replaced"
        delete_prefix(store, "")
        assert list_keys(store) == []

    def test_several_objects_are_read_at_once(self, backend: Backend) -> None:
        store = backend.write("objects")
        write_bytes(store, "a.json", b"{}")
        write_bytes(store, "empty", b"")
        write_bytes(store, "deep/b", b"bee")
        found = read_objects(store, ["deep/b", "missing", "a.json", "empty"])
        assert found == [b"bee", None, b"{}", b""]
        assert read_objects(store, []) == []

    def test_object_helpers_refuse_read_only_stores(self, backend: Backend) -> None:
        write_sample(backend.write("vol.zarr"))
        store = backend.read("vol.zarr")
        with pytest.raises(ReadOnlyStoreError, match="read-only"):
            write_bytes(store, "x", b"")
        with pytest.raises(ReadOnlyStoreError):
            delete_prefix(store, "")
        assert list_keys(store, "raw/c")  # reading is fine
        assert object_size(store, "zarr.json") == len(read_bytes(store, "zarr.json") or b"")


async def _get_range(store: Any, key: str, start: int, end: int) -> bytes:
    from zarr.abc.store import RangeByteRequest
    from zarr.core.buffer import default_buffer_prototype

    buffer = await store.get(key, default_buffer_prototype(), RangeByteRequest(start, end))
    return buffer.to_bytes()


# --------------------------------------------------------------------------------------------
# Local disk
# --------------------------------------------------------------------------------------------


class TestLocal(WritableStorageContract):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Backend:
        return Backend(str(tmp_path), str(tmp_path))

    def test_stores_are_local_stores(self, tmp_path: Path) -> None:
        store = open_store(tmp_path / "a.zarr", mode="w")
        assert isinstance(store, LocalStore)
        assert store.root == tmp_path / "a.zarr"

    def test_write_modes_create_the_directory(self, tmp_path: Path) -> None:
        for mode in ("a", "w", "w-"):
            target = tmp_path / mode / "deep" / "vol.zarr"
            open_store(target, mode=mode)
            assert target.is_dir()

    def test_existing_empty_directory_opens_for_reading(self, tmp_path: Path) -> None:
        assert open_store(tmp_path, mode="r").read_only

    def test_a_file_is_not_a_store(self, tmp_path: Path) -> None:
        (tmp_path / "file.zarr").write_bytes(b"not a directory")
        for mode in ("r", "w"):
            with pytest.raises(InvalidInputError, match="is a file, not a directory"):
                open_store(tmp_path / "file.zarr", mode=mode)

    def test_file_url_and_relative_path(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        write_sample(open_store(f"file://{tmp_path}/vol.zarr", mode="w"))
        monkeypatch.chdir(tmp_path)
        check_sample(open_store("vol.zarr"))
        check_sample(open_store(Path("vol.zarr")))

    def test_storage_options_do_not_apply(self, tmp_path: Path) -> None:
        with pytest.raises(InvalidInputError, match=r"storage_options \(anon\) only apply"):
            open_store(tmp_path, mode="r", storage_options={"anon": True})
        assert isinstance(open_store(tmp_path, mode="r", storage_options={}), LocalStore)

    def test_missing_path_message(self, tmp_path: Path) -> None:
        # cellvol's words: what is missing and what was expected, not zarr's modes.
        with pytest.raises(FileNotFoundError, match=r"nope\.zarr does not exist: expected a zarr"):
            open_store(tmp_path / "nope.zarr")
        with pytest.raises(FileNotFoundError, match=rf"nearest existing folder is {tmp_path}$"):
            open_store(tmp_path / "a" / "b" / "nope.zarr")


# --------------------------------------------------------------------------------------------
# S3 (moto)
# --------------------------------------------------------------------------------------------


@pytest.mark.s3
class TestS3(WritableStorageContract):
    @pytest.fixture
    def backend(self, s3_bucket: S3Bucket, s3_server: S3Server) -> Backend:
        options = s3_server.storage_options(key=KEY_ID, secret=SECRET)
        return Backend(s3_bucket.url("data"), s3_bucket.url("data"), options, options)

    def test_stores_are_fsspec_stores_over_s3fs(self, backend: Backend) -> None:
        store = backend.write("vol.zarr")
        assert isinstance(store, FsspecStore)
        assert isinstance(store.fs, S3FileSystem)  # cellvol's subclass, which retries
        assert store.fs.asynchronous
        assert store.path == backend.write_url("vol.zarr").removeprefix("s3://")

    def test_a_whole_object_is_one_request(
        self, backend: Backend, s3_calls: list[tuple[str, dict[str, Any]]]
    ) -> None:
        # s3fs alone sends a HEAD before each whole-object GET, and a listing after it when the
        # object is missing: three round trips for each name zarr probes when it opens a node.
        store = backend.write("vol.zarr")
        write_bytes(store, "doc.json", b'{"a": 1}')
        write_bytes(store, "empty", b"")
        s3_calls.clear()
        assert read_bytes(store, "doc.json") == b'{"a": 1}'
        assert read_bytes(store, "missing.json") is None
        assert read_bytes(store, "empty") == b""
        assert [name for name, _ in s3_calls] == ["GetObject"] * 3
        assert all(parameters.get("Range") == "bytes=0-" for _, parameters in s3_calls)

    def test_ranges_are_passed_on(
        self, backend: Backend, s3_calls: list[tuple[str, dict[str, Any]]]
    ) -> None:
        store = backend.write("vol.zarr")
        write_bytes(store, "doc", b"0123456789")
        s3_calls.clear()
        got = sync(_get_range(store, "doc", 2, 5))  # on zarr's loop, which owns the client
        assert got == b"234"
        assert [(name, parameters.get("Range")) for name, parameters in s3_calls] == [
            ("GetObject", "bytes=2-4")
        ]

    def test_a_store_keeps_many_connections_open_at_once(self, backend: Backend) -> None:
        # botocore's default of 10 would queue a plane's hundred ranges behind 10 connections.
        store = backend.write("vol.zarr")
        assert store.fs.s3.meta.config.max_pool_connections == 32

    def test_a_connection_pool_size_given_is_kept(
        self, s3_bucket: S3Bucket, s3_server: S3Server
    ) -> None:
        options = s3_server.storage_options(
            key=KEY_ID,
            secret=SECRET,
            config_kwargs={"max_pool_connections": 4, "connect_timeout": 7},
        )
        store = open_store(s3_bucket.url("pool.zarr"), mode="w", storage_options=options)
        config = store.fs.s3.meta.config
        assert config.max_pool_connections == 4
        assert config.connect_timeout == 7
        assert options["config_kwargs"] == {"max_pool_connections": 4, "connect_timeout": 7}

    def test_objects_land_under_the_prefix(self, backend: Backend, s3_server: S3Server) -> None:
        write_sample(backend.write("deep/vol.ome.zarr"))
        bucket = backend.write_root.removeprefix("s3://").split("/")[0]
        listing = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="data/deep/")
        keys = {entry["Key"] for entry in listing["Contents"]}
        assert "data/deep/vol.ome.zarr/zarr.json" in keys
        assert "data/deep/vol.ome.zarr/raw/zarr.json" in keys

    @pytest.mark.parametrize("mode", ["r", "r+", "a", "w", "w-"])
    def test_missing_bucket_in_every_mode(self, s3_server: S3Server, mode: str) -> None:
        options = s3_server.storage_options(key=KEY_ID, secret=SECRET)
        with pytest.raises(StoreNotFoundError) as info:
            open_store("s3://no-such-bucket-here/vol.zarr", mode=mode, storage_options=options)
        message = str(info.value)
        assert "bucket 'no-such-bucket-here' does not exist" in message
        assert s3_server.endpoint_url in message
        assert no_secret_in(full_report(info.value))

    def test_no_bucket_is_created(self, s3_server: S3Server) -> None:
        with pytest.raises(StoreNotFoundError):
            open_store(
                "s3://never-made-bucket/x", mode="w", storage_options=s3_server.storage_options()
            )
        names = {b["Name"] for b in s3_server.client().list_buckets()["Buckets"]}
        assert "never-made-bucket" not in names

    def test_empty_prefix_is_not_found_for_reading(self, s3_bucket: S3Bucket) -> None:
        _name, options = s3_bucket
        with pytest.raises(StoreNotFoundError, match=r"holds no object in it"):
            open_store(s3_bucket.url(), storage_options=options)
        with pytest.raises(StoreNotFoundError, match=r"holds no object under the prefix 'a/b/'"):
            open_store(s3_bucket.url("a/b"), storage_options=options)
        assert not open_store(s3_bucket.url("a/b"), mode="a", storage_options=options).read_only

    def test_prefix_match_is_by_whole_component(self, s3_bucket: S3Bucket) -> None:
        write_sample(open_store(s3_bucket.url("vol.zarr"), mode="w", storage_options=s3_bucket[1]))
        with pytest.raises(StoreNotFoundError):
            open_store(s3_bucket.url("vol"), storage_options=s3_bucket.storage_options)

    def test_trailing_slash_and_bucket_root(self, s3_bucket: S3Bucket) -> None:
        name, options = s3_bucket
        write_sample(open_store(f"s3://{name}/", mode="w", storage_options=options))
        check_sample(open_store(f"s3://{name}", storage_options=options))
        check_sample(open_store(f"s3://{name}//", storage_options=options))

    def test_endpoint_from_aws_endpoint_url(
        self,
        s3_bucket: S3Bucket,
        s3_server: S3Server,
        monkeypatch: pytest.MonkeyPatch,
        clean_fsspec_cache: None,
    ) -> None:
        write_sample(open_store(s3_bucket.url("v.zarr"), mode="w", storage_options=s3_bucket[1]))
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
        check_sample(open_store(s3_bucket.url("v.zarr")))  # credentials from the environment

    def test_endpoint_from_aws_endpoint_url_s3_wins(
        self,
        s3_bucket: S3Bucket,
        s3_server: S3Server,
        monkeypatch: pytest.MonkeyPatch,
        clean_fsspec_cache: None,
    ) -> None:
        write_sample(open_store(s3_bucket.url("v.zarr"), mode="w", storage_options=s3_bucket[1]))
        monkeypatch.setenv("AWS_ENDPOINT_URL", DEAD_ENDPOINT)
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint_url)
        check_sample(open_store(s3_bucket.url("v.zarr")))

    def test_explicit_endpoint_beats_the_environment(self, s3_bucket: S3Bucket) -> None:
        assert os.environ["AWS_ENDPOINT_URL"] == DEAD_ENDPOINT  # set for the whole session
        write_sample(open_store(s3_bucket.url("v.zarr"), mode="w", storage_options=s3_bucket[1]))
        check_sample(open_store(s3_bucket.url("v.zarr"), storage_options=s3_bucket[1]))

    def test_profile_from_aws_config(
        self,
        s3_bucket: S3Bucket,
        s3_server: S3Server,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        clean_fsspec_cache: None,
    ) -> None:
        write_sample(open_store(s3_bucket.url("v.zarr"), mode="w", storage_options=s3_bucket[1]))
        config = tmp_path / "config"
        config.write_text(
            "[profile archive]\n"
            f"aws_access_key_id = {KEY_ID}\n"
            f"aws_secret_access_key = {SECRET}\n"
            f"endpoint_url = {s3_server.endpoint_url}\n"
        )
        monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
        for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.delenv(name)
        check_sample(open_store(s3_bucket.url("v.zarr"), storage_options={"profile": "archive"}))
        monkeypatch.setenv("AWS_PROFILE", "archive")
        check_sample(open_store(s3_bucket.url("v.zarr")))

    def test_unknown_profile(
        self, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch, clean_fsspec_cache: None
    ) -> None:
        options = {**s3_bucket.storage_options, "profile": "no-such-profile"}
        with pytest.raises(InvalidInputError, match="AWS profile 'no-such-profile' was not found"):
            open_store(s3_bucket.url("v.zarr"), storage_options=options)

    def test_anonymous_access(
        self,
        s3_bucket: S3Bucket,
        s3_server: S3Server,
        monkeypatch: pytest.MonkeyPatch,
        clean_fsspec_cache: None,
    ) -> None:
        # moto enforces ACLs on unsigned requests: a public-read bucket of public-read objects
        name, options = s3_bucket
        public = {**options, "s3_additional_kwargs": {"ACL": "public-read"}}
        write_sample(open_store(s3_bucket.url("v.zarr"), mode="w", storage_options=public))
        s3_server.client().put_bucket_acl(Bucket=name, ACL="public-read")
        # No credentials anywhere: only unsigned (anonymous) requests can work.
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        endpoint = {"endpoint_url": s3_server.endpoint_url}
        with pytest.raises(PermissionError, match=r"no usable AWS credentials.*anon=True"):
            open_store(s3_bucket.url("v.zarr"), storage_options=endpoint)
        store = open_store(s3_bucket.url("v.zarr"), storage_options={**endpoint, "anon": True})
        assert store.fs.anon is True
        check_sample(store)

    def test_metadata_probe_when_listing_is_denied(
        self, s3_bucket: S3Bucket, s3_server: S3Server
    ) -> None:
        # Where listing is denied (a GetObject-only policy), reading falls back to looking for
        # a metadata document. moto lets anyone list any bucket, so that fallback is driven
        # directly here, with a real anonymous client against moto's ACL checks.
        _, options = s3_bucket
        public = {**options, "s3_additional_kwargs": {"ACL": "public-read"}}
        write_sample(open_store(s3_bucket.url("v.zarr"), mode="w", storage_options=public))
        write_sample(open_store(s3_bucket.url("private.zarr"), mode="w", storage_options=options))

        async def probe(url: str) -> None:
            fs = S3FileSystem(
                endpoint_url=s3_server.endpoint_url,
                anon=True,
                asynchronous=True,
                skip_instance_cache=True,
            )
            client = await fs.set_session()
            location = parse_location(url)
            bucket, _, key = location.path.partition("/")
            try:
                await s3_backend._probe_s3_metadata(
                    client, location, s3_server.endpoint_url, bucket, key, {"anon": True}
                )
            finally:
                await client.close()

        asyncio.run(probe(s3_bucket.url("v.zarr")))
        with pytest.raises(PermissionError, match=r"access denied .* pass credentials"):
            asyncio.run(probe(s3_bucket.url("private.zarr")))
        with pytest.raises(StoreNotFoundError, match=r"none of zarr\.json, \.zattrs"):
            asyncio.run(probe(s3_bucket.url("missing.zarr")))

    def test_unreachable_endpoint_is_a_connection_error(self, s3_bucket: S3Bucket) -> None:
        options = {
            **s3_bucket.storage_options,
            "endpoint_url": DEAD_ENDPOINT,
            "secret": SECRET,
            "config_kwargs": {"retries": {"max_attempts": 1}},  # botocore's default retries 4x
        }
        with pytest.raises(
            ConnectionError, match=r"could not reach the S3 endpoint http://127\.0\.0\.1:9"
        ) as info:
            open_store(s3_bucket.url("v.zarr"), storage_options=options)
        assert no_secret_in(full_report(info.value))

    def test_credentials_in_the_url_are_refused_unechoed(self) -> None:
        with pytest.raises(InvalidInputError) as info:
            open_store(f"s3://{KEY_ID}:{SECRET}@bucket/x")
        assert no_secret_in(full_report(info.value))

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            (
                {"endpoint": "http://x"},
                r"unknown S3 storage option 'endpoint' \(did you mean 'endpoint_url'\?\)",
            ),
            ({"asynchronous": False}, r"asynchronous are set by cellvol"),
            ({"loop": None}, r"loop are set by cellvol"),
            (["anon"], r"storage_options must be a mapping"),
        ],
    )
    def test_bad_options(self, s3_bucket: S3Bucket, options: Any, message: str) -> None:
        with pytest.raises(InvalidInputError, match=message):
            open_store(s3_bucket.url("v.zarr"), storage_options=options)

    def test_fs_options_are_passed_through(self, s3_bucket: S3Bucket) -> None:
        options = {**s3_bucket.storage_options, "default_block_size": 1 << 20, "use_ssl": False}
        store = open_store(s3_bucket.url("v.zarr"), mode="w", storage_options=options)
        assert store.fs.default_block_size == 1 << 20
        assert store.fs.endpoint_url == s3_bucket.storage_options["endpoint_url"]
        write_sample(store)

    def test_open_store_inside_a_running_event_loop(self, s3_bucket: S3Bucket) -> None:
        write_sample(open_store(s3_bucket.url("v.zarr"), mode="w", storage_options=s3_bucket[1]))
        options = {**s3_bucket.storage_options, "skip_instance_cache": True}

        async def read_in_this_loop() -> np.ndarray:
            store = open_store(s3_bucket.url("v.zarr"), storage_options=options)
            group = await zarr.api.asynchronous.open_group(store=store, mode="r")
            array = await group.getitem("raw")
            return np.asarray(await array.getitem(slice(None)))

        np.testing.assert_array_equal(asyncio.run(read_in_this_loop()), DATA)


# --------------------------------------------------------------------------------------------
# HTTP (read-only)
# --------------------------------------------------------------------------------------------


class TestHTTP(StorageContract):
    @pytest.fixture
    def backend(self, tmp_path: Path, http_server: Serve) -> Backend:
        base = http_server(tmp_path)
        headers = {"Authorization": f"Bearer {TOKEN}"}  # ignored by the server; never shown
        return Backend(str(tmp_path), base, read_options={"headers": headers})

    def test_stores_are_read_only_fsspec_stores(self, backend: Backend) -> None:
        write_sample(backend.write("vol.zarr"))
        store = backend.read("vol.zarr")
        assert isinstance(store, FsspecStore)
        assert type(store.fs).__name__ == "HTTPFileSystem"
        assert store.read_only
        assert store.path == backend.read_url("vol.zarr")

    @pytest.mark.parametrize("mode", ["r+", "a", "w", "w-"])
    def test_write_modes_are_refused(self, backend: Backend, mode: str) -> None:
        url = backend.read_url("vol.zarr")
        with pytest.raises(ReadOnlyStoreError, match="read-only") as info:
            open_store(url, mode=mode)
        assert isinstance(info.value, PermissionError)
        assert url in str(info.value)

    def test_root_without_metadata_is_not_found(self, backend: Backend, tmp_path: Path) -> None:
        (tmp_path / "plain").mkdir()
        (tmp_path / "plain" / "readme.txt").write_text("not zarr")
        with pytest.raises(
            StoreNotFoundError, match=r"no zarr store at .*/plain.*zarr\.json \(HTTP 404\)"
        ):
            backend.read("plain")

    def test_zarr_v2_root_is_found(self, backend: Backend) -> None:
        group = zarr.create_group(backend.write_url("v2.zarr"), zarr_format=2, attributes={"a": 1})
        group.create_array("x", shape=(3,), dtype="i2")[:] = [1, 2, 3]
        store = backend.read("v2.zarr")
        np.testing.assert_array_equal(
            zarr.open_array(store=store, path="x", mode="r")[:], [1, 2, 3]
        )

    def test_byte_ranges_are_served(self, backend: Backend, tmp_path: Path) -> None:
        write_sample(backend.write("vol.zarr"))
        store = backend.read("vol.zarr")
        # zarr reads each shard's index with a suffix range request
        shard = next(
            p
            for p in (tmp_path / "vol.zarr" / "raw").rglob("*")
            if p.is_file() and p.name != "zarr.json"
        )
        whole = shard.read_bytes()
        key = shard.relative_to(tmp_path / "vol.zarr").as_posix()
        fs = store.fs
        assert asyncio.run(_cat(fs, f"{store.path}/{key}", -16, None)) == whole[-16:]
        assert asyncio.run(_cat(fs, f"{store.path}/{key}", 3, 9)) == whole[3:9]

    def test_client_options_are_passed_through(self, backend: Backend) -> None:
        write_sample(backend.write("vol.zarr"))
        options = {"client_kwargs": {"headers": {"X-Cellvol": "1"}}, "block_size": 0}
        store = open_store(backend.read_url("vol.zarr"), storage_options=options)
        assert store.fs.client_kwargs == {"headers": {"X-Cellvol": "1"}}
        assert store.fs.block_size == 0
        check_sample(store)

    def test_authentication_required(self, tmp_path: Path) -> None:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorized)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            host, port = server.server_address[:2]
            with pytest.raises(PermissionError, match=r"requires authentication \(HTTP 401\)"):
                open_store(f"http://{host!s}:{port}/vol.zarr")
        finally:
            server.shutdown()
            server.server_close()
            thread.join()

    def test_unreachable_server_is_a_connection_error(self) -> None:
        with pytest.raises(
            ConnectionError, match=r"could not reach http://127\.0\.0\.1:9/vol\.zarr"
        ):
            open_store("http://127.0.0.1:9/vol.zarr")

    def test_credentials_in_the_url_are_refused_unechoed(self) -> None:
        with pytest.raises(InvalidInputError) as info:
            open_store(f"https://user:{SECRET}@127.0.0.1/x.zarr")
        assert no_secret_in(full_report(info.value))


class _Unauthorized(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Bearer realm="archive"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


async def _cat(fs: Any, url: str, start: int, end: int | None) -> bytes:
    from fsspec.implementations.http import HTTPFileSystem

    fresh = HTTPFileSystem(asynchronous=True, skip_instance_cache=True, **fs.kwargs)
    session = await fresh.set_session()
    try:
        return bytes(await fresh._cat_file(url, start=start, end=end))
    finally:
        await session.close()
