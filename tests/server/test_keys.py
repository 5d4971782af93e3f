"""Raw store keys over a real server on 127.0.0.1: one test per HTTP rule, then hostile paths."""

from email.utils import formatdate
from pathlib import Path

import numpy as np
import pytest
from server_helpers import SECRET, Running

import cellvol
from cellvol.server._keys import is_safe_key

KEY = "0/c/0/0/0"


def _stored(running, key: str = KEY) -> bytes:
    return (running.image / key).read_bytes()


def test_get_returns_the_stored_bytes(running) -> None:
    reply = running.request(f"/data/tomo/{KEY}")
    assert reply.status == 200
    assert reply.body == _stored(running)
    assert reply.headers["content-length"] == str(len(reply.body))
    assert reply.headers["accept-ranges"] == "bytes"
    assert reply.headers["content-type"] == "application/octet-stream"


def test_metadata_is_json(running) -> None:
    reply = running.request("/data/tomo/zarr.json")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("application/json")
    assert b'"multiscales"' in reply.body


def test_head_has_the_headers_and_no_body(running) -> None:
    reply = running.request(f"/data/tomo/{KEY}", method="HEAD")
    assert reply.status == 200
    assert reply.body == b""
    assert reply.headers["content-length"] == str(len(_stored(running)))
    assert reply.headers["etag"]


def test_a_byte_range(running) -> None:
    reply = running.request(f"/data/tomo/{KEY}", headers={"Range": "bytes=10-19"})
    size = len(_stored(running))
    assert reply.status == 206
    assert reply.body == _stored(running)[10:20]
    assert reply.headers["content-range"] == f"bytes 10-19/{size}"
    assert reply.headers["content-length"] == "10"


def test_an_open_ended_range(running) -> None:
    reply = running.request(f"/data/tomo/{KEY}", headers={"Range": "bytes=100-"})
    assert reply.status == 206
    assert reply.body == _stored(running)[100:]


def test_a_suffix_range(running) -> None:
    reply = running.request(f"/data/tomo/{KEY}", headers={"Range": "bytes=-16"})
    size = len(_stored(running))
    assert reply.status == 206
    assert reply.body == _stored(running)[-16:]
    assert reply.headers["content-range"] == f"bytes {size - 16}-{size - 1}/{size}"


def test_a_range_past_the_end_is_clipped(running) -> None:
    size = len(_stored(running))
    reply = running.request(f"/data/tomo/{KEY}", headers={"Range": f"bytes={size - 4}-{size + 99}"})
    assert reply.status == 206
    assert reply.body == _stored(running)[-4:]


def test_an_unsatisfiable_range_is_416(running) -> None:
    size = len(_stored(running))
    for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        reply = running.request(f"/data/tomo/{KEY}", headers={"Range": header})
        assert reply.status == 416, header
        assert reply.headers["content-range"] == f"bytes */{size}"


def test_ranges_with_huge_numbers_are_answered_not_crashed(running) -> None:
    size = len(_stored(running))
    huge = "9" * 5000  # beyond Python's int-from-string limit of 4300 digits
    cases = {f"bytes={huge}-": 416, f"bytes={huge}-{huge}": 416, f"bytes=0-{huge}": 206}
    for header, status in cases.items():
        reply = running.request(f"/data/tomo/{KEY}", headers={"Range": header})
        assert reply.status == status, header[:20]
    reply = running.request(f"/data/tomo/{KEY}", headers={"Range": f"bytes=-{huge}"})
    assert reply.status == 206
    assert reply.body == _stored(running)
    assert reply.headers["content-range"] == f"bytes 0-{size - 1}/{size}"


def test_malformed_or_multiple_ranges_get_the_whole_object(running) -> None:
    for header in ("bytes=5-2", "items=0-3", "bytes=0-1,4-5", "bytes=x-y"):
        reply = running.request(f"/data/tomo/{KEY}", headers={"Range": header})
        assert reply.status == 200, header
        assert reply.body == _stored(running)


def test_cors_exposes_the_range_headers(running) -> None:
    reply = running.request(f"/data/tomo/{KEY}", headers={"Origin": "http://127.0.0.1:9"})
    assert reply.headers["access-control-allow-origin"] == "*"
    exposed = {h.strip().lower() for h in reply.headers["access-control-expose-headers"].split(",")}
    assert {"content-range", "content-length", "etag"} <= exposed


def test_cors_preflight_allows_range(running) -> None:
    reply = running.request(
        f"/data/tomo/{KEY}",
        method="OPTIONS",
        headers={
            "Origin": "http://127.0.0.1:9",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range",
        },
    )
    assert reply.status == 200
    assert "range" in reply.headers["access-control-allow-headers"].lower()
    assert "GET" in reply.headers["access-control-allow-methods"]


def test_if_none_match_gives_304(running) -> None:
    etag = running.request(f"/data/tomo/{KEY}", method="HEAD").headers["etag"]
    reply = running.request(f"/data/tomo/{KEY}", headers={"If-None-Match": etag})
    assert reply.status == 304
    assert reply.body == b""
    assert reply.headers["etag"] == etag
    assert running.request(f"/data/tomo/{KEY}", headers={"If-None-Match": '"other"'}).status == 200


def test_if_modified_since_gives_304(running) -> None:
    modified = running.request(f"/data/tomo/{KEY}", method="HEAD").headers["last-modified"]
    assert (
        running.request(f"/data/tomo/{KEY}", headers={"If-Modified-Since": modified}).status == 304
    )
    long_ago = formatdate(0, usegmt=True)
    assert (
        running.request(f"/data/tomo/{KEY}", headers={"If-Modified-Since": long_ago}).status == 200
    )


def test_if_range_with_a_stale_validator_sends_everything(running) -> None:
    etag = running.request(f"/data/tomo/{KEY}", method="HEAD").headers["etag"]
    fresh = running.request(f"/data/tomo/{KEY}", headers={"Range": "bytes=0-3", "If-Range": etag})
    assert fresh.status == 206
    stale = running.request(f"/data/tomo/{KEY}", headers={"Range": "bytes=0-3", "If-Range": '"x"'})
    assert stale.status == 200
    assert stale.body == _stored(running)


def test_cache_control_for_data_and_metadata(running) -> None:
    assert "max-age=3600" in running.request(f"/data/tomo/{KEY}").headers["cache-control"]
    assert "max-age=60" in running.request("/data/tomo/zarr.json").headers["cache-control"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_nothing_can_be_written(running, method: str) -> None:
    before = _stored(running)
    reply = running.request(f"/data/tomo/{KEY}", method=method)
    assert reply.status == 405
    assert _stored(running) == before


def test_unknown_volume_and_missing_key_are_404(running) -> None:
    assert running.request(f"/data/nope/{KEY}").status == 404
    assert running.request("/data/tomo/0/c/9/9/9").status == 404
    assert running.request("/data/tomo/").status == 404


def test_keys_of_labels_and_the_manifest_are_served(running) -> None:
    assert running.request("/data/tomo/labels/cells/zarr.json").status == 200
    assert running.request("/data/tomo/_cellvol/manifest.json", method="HEAD").status in (200, 404)


HOSTILE = [
    "/data/tomo/../secret.txt",
    "/data/tomo/..%2fsecret.txt",
    "/data/tomo/%2e%2e/secret.txt",
    "/data/tomo/%2e%2e%2fsecret.txt",
    "/data/tomo/%252e%252e/secret.txt",
    "/data/tomo/%252e%252e%252fsecret.txt",
    "/data/tomo/0/../../secret.txt",
    "/data/tomo/0/%2e%2e/%2e%2e/secret.txt",
    "/data/tomo/..\\secret.txt",
    "/data/tomo/..%5csecret.txt",
    "/data/tomo/%5c..%5csecret.txt",
    "/data/tomo/0%5c..%5c..%5csecret.txt",
    "/data/tomo/zarr.json%00",
    "/data/tomo/zarr.json%00.png",
    "/data/tomo/%00",
    "/data/tomo/./zarr.json",
    "/data/tomo/0/./c",
    "/data/tomo//etc/passwd",
    "/data/tomo/%2fetc%2fpasswd",
    "/data/tomo/%2Fetc%2Fpasswd",
    "/data/tomo/..%c0%afsecret.txt",
    "/data/tomo/..%c1%9csecret.txt",
    "/data/tomo/%c0%ae%c0%ae/secret.txt",
    "/data/tomo/..%u2216secret.txt",
    "/data/tomo/.hidden",
    "/data/tomo/%2ehidden",
    "/data/tomo/%252ehidden",
    "/data/tomo/leak",
    "/data/tomo/0/leakdir/secret.txt",
    "/data/tomo/0/leakdir/../../secret.txt",
    "/data/tomo/.git/config",
    "/data/tomo/~/secret.txt",
    "/data/tomo/0/c/0/0/0/..",
    "/data/tomo/0/c/0/0/0%2f..",
    "/data/tomo/....//secret.txt",
    "/data/tomo/.../secret.txt",
    "/data/tomo/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/data/tomo/file:///etc/passwd",
    "/data/tomo/%0d%0aSet-Cookie:x",
    "/data/tomo/zarr.json%20",
    "/data/tomo/" + "a/" * 600 + "x",
    "/data/..%2f..%2fsecret.txt/zarr.json",
    "/data/%2e%2e/zarr.json",
    "/tiles/tomo/0/z/0/..%2f..%2f/0.png",
    "/slice/..%2ftomo.png",
    "/static/../app.py",
    "/static/%2e%2e/app.py",
    "/static/..%2fapp.py",
    "/view/..%2f..%2fsecret.txt",
    "/segment/tomo/..%2fcells?z=0&y=0&x=0",
]


def test_hostile_paths_never_escape_and_never_fail(running) -> None:
    assert len(HOSTILE) >= 40
    for path in HOSTILE:
        reply = running.request(path)
        assert reply.status in (400, 404), (path, reply.status)
        assert SECRET not in reply.body, path
        assert b"Traceback" not in reply.body, path
        assert b"root:" not in reply.body, path


def test_key_rule() -> None:
    assert is_safe_key("0/c/1/2/3")
    assert is_safe_key("labels/cells/zarr.json")
    assert is_safe_key("0/.zarray")
    assert not is_safe_key("0/.hidden")
    assert not is_safe_key("a//b")
    assert not is_safe_key("a/../b")
    assert not is_safe_key("a\\b")
    assert not is_safe_key("a\x00b")
    assert not is_safe_key("%2e%2e")
    assert not is_safe_key("")


@pytest.mark.s3
def test_raw_keys_of_an_s3_image(s3_bucket, tmp_path: Path) -> None:
    from cellvol.server import Server

    url = s3_bucket.url("served.ome.zarr")
    data = np.arange(4 * 16 * 16, dtype=np.uint8).reshape(4, 16, 16)
    cellvol.write_pyramid(data, url, 1.0, n_levels=1, storage_options=s3_bucket.storage_options)
    with Server([url], storage_options=s3_bucket.storage_options) as server:
        client = Running(server.url, server.host, server.port, tmp_path, tmp_path, data, data)
        whole = client.request("/data/served/0/c/0/0/0")
        assert whole.status == 200
        part = client.request("/data/served/0/c/0/0/0", headers={"Range": "bytes=-8"})
        assert part.status == 206
        assert part.body == whole.body[-8:]
        etag = whole.headers["etag"]
        assert (
            client.request("/data/served/0/c/0/0/0", headers={"If-None-Match": etag}).status == 304
        )
        assert client.request("/data/served/0/c/9/9/9").status == 404
        assert client.request("/data/served/../x").status == 404
