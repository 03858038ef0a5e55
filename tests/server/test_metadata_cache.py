"""The in-memory cache of instance metadata texts."""

from __future__ import annotations

from pathlib import Path

from radserve.server import MetadataCache, StoredInstance


def _instance(uid: str, sha256: str = "a" * 64) -> StoredInstance:
    return StoredInstance(
        study_instance_uid="1.2",
        series_instance_uid="1.2.3",
        sop_instance_uid=uid,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        path=Path("/nowhere"),
        size_bytes=1,
        sha256=sha256,
    )


def test_a_text_is_built_once_then_kept() -> None:
    cache = MetadataCache(max_bytes=1000)
    built: list[str] = []

    def build(text: str) -> str:
        built.append(text)
        return text

    assert cache.text(_instance("1"), lambda: build("x" * 10)) == "x" * 10
    assert cache.text(_instance("1"), lambda: build("other")) == "x" * 10
    assert built == ["x" * 10]
    # Another file under the same UID (an overwrite) is another entry.
    assert cache.text(_instance("1", "b" * 64), lambda: build("new")) == "new"


def test_the_byte_budget_drops_the_least_recently_used() -> None:
    cache = MetadataCache(max_bytes=25)
    for uid in ("1", "2"):
        cache.text(_instance(uid), lambda uid=uid: uid * 10)
    cache.text(_instance("1"), lambda: "rebuilt")  # 1 is now the most recent
    cache.text(_instance("3"), lambda: "3" * 10)
    assert cache.size_bytes <= 25
    assert cache.text(_instance("1"), lambda: "rebuilt") == "1" * 10
    assert cache.text(_instance("2"), lambda: "rebuilt") == "rebuilt"
    too_big = cache.text(_instance("4"), lambda: "4" * 100)  # served, never kept
    assert too_big == "4" * 100 and cache.size_bytes <= 25
