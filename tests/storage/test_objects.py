"""Objects in the store: listing with prefix/delimiter/pagination, preconditions, and blobs
that appear only when complete."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyless.projects import create_project
from keyless.state import ServerState
from keyless.storage import buckets, objects
from keyless.storage.blobs import BlobStore
from keyless.storage.errors import PayloadTooLarge, PreconditionFailed
from keyless.storage.objects import Preconditions, StoredBlob


def _put(state: ServerState, blobs: BlobStore, name: str, data: bytes = b"x",
         pre: Preconditions | None = None) -> objects.StorageObject:
    w = blobs.put(data, 1 << 20)
    with state.db.write() as s:
        row, _ = objects.put_object(s, "bkt", name, StoredBlob(w.blob_id, w.size, w.hasher.md5_b64,
                                                               w.hasher.crc32c_b64), {}, pre or Preconditions())
        return row


@pytest.fixture
def blobs(state: ServerState, tmp_path: Path) -> BlobStore:
    with state.db.write() as s:
        project = create_project(s, "my-project")
        # no soft delete (new buckets get Google's 7-day default): deletes here are for good
        buckets.create_bucket(s, project, {"name": "bkt", "softDeletePolicy": {"retentionDurationSeconds": 0}},
                              state.role_exists(s), state.member_check(s, "bucket"))
    return BlobStore(tmp_path / "blobs")


def test_list_with_delimiter_and_pages(state: ServerState, blobs: BlobStore) -> None:
    for n in ["a.txt", "dir/1", "dir/2", "dir/sub/3", "e/1", "z.txt", "dir!"]:
        _put(state, blobs, n)
    with state.db.read() as s:
        items, prefixes, token = objects.list_objects(s, "bkt", delimiter="/")
        assert [i.name for i in items] == ["a.txt", "dir!", "z.txt"] and prefixes == ["dir/", "e/"]
        assert token is None
        items, prefixes, _ = objects.list_objects(s, "bkt", prefix="dir/", delimiter="/")
        assert [i.name for i in items] == ["dir/1", "dir/2"] and prefixes == ["dir/sub/"]
        seen: list[str] = []
        token = None
        while True:  # maxResults counts items and prefixes together
            items, prefixes, token = objects.list_objects(s, "bkt", delimiter="/", max_results=2, page_token=token)
            assert len(items) + len(prefixes) <= 2
            seen += [i.name for i in items] + prefixes
            if token is None:
                break
        assert sorted(seen) == ["a.txt", "dir!", "dir/", "e/", "z.txt"]


def test_preconditions_and_generations(state: ServerState, blobs: BlobStore) -> None:
    first = _put(state, blobs, "f", pre=Preconditions(if_generation_match=0))
    with pytest.raises(PreconditionFailed):
        _put(state, blobs, "f", pre=Preconditions(if_generation_match=0))
    second = _put(state, blobs, "f", pre=Preconditions(if_generation_match=first.generation))
    assert second.generation > first.generation
    with pytest.raises(PreconditionFailed):
        _put(state, blobs, "g", pre=Preconditions(if_metageneration_match=1))


def test_blob_is_invisible_until_committed(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    w = store.writer(10)
    w.write(b"12345")
    assert not list((store.root / "blobs").rglob("*")) and len(list((store.root / "tmp").iterdir())) == 1
    with pytest.raises(PayloadTooLarge):
        w.write(b"678901")
    w.abort()
    assert not list((store.root / "tmp").iterdir())
    done = store.put(b"abc", 10)
    assert store.open(done.blob_id).read() == b"abc"
    # crc32c("abc") = 0x364B3FB7 (RFC 3720 CRC32C), base64 of its big-endian bytes
    assert done.hasher.crc32c_b64 == "Nks/tw==" and done.hasher.md5_b64 == "kAFQmDzST7DWlj99KOF/cg=="


def test_pure_python_crc32c_matches() -> None:
    from keyless.checksums import _crc32c_py
    assert _crc32c_py(0, b"123456789") == 0xE3069283  # the CRC-32C check value


def test_versions_listing_pages_and_delimiter(state: ServerState, blobs: BlobStore) -> None:
    """versions=true lists every generation by (name bytes, generation); prefixes collapse; page
    tokens resume after the last generation shown (issue #20)."""
    with state.db.write() as s:
        buckets.update_bucket(s, "bkt", {"versioning": {"enabled": True}}, replace_all=False,
                              pre=buckets.MetagenerationPreconditions())
    gens = {name: [_put(state, blobs, name).generation for _ in range(2)] for name in ("a", "b/1", "c")}
    with state.db.read() as s:
        seen: list[tuple[str, int]] = []
        token = None
        while True:
            items, prefixes, token = objects.list_versions(s, "bkt", max_results=2, page_token=token)
            assert len(items) <= 2
            seen += [(i.name, i.generation) for i in items]
            if token is None:
                break
        assert seen == [(n, g) for n in ("a", "b/1", "c") for g in gens[n]]
        items, prefixes, _ = objects.list_versions(s, "bkt", delimiter="/")
        assert [i.name for i in items] == ["a", "a", "c", "c"] and prefixes == ["b/"]
    with state.db.write() as s:  # the noncurrent generation of "a" deleted for good (no soft delete policy)
        assert objects.delete_object(s, "bkt", "a", Preconditions(), gens["a"][0]) is not None
    with state.db.read() as s:
        items, _, _ = objects.list_versions(s, "bkt", prefix="a")
        assert [i.generation for i in items] == [gens["a"][1]]
        with pytest.raises(objects.NotFound):
            objects.get_object(s, "bkt", "a", gens["a"][0])
