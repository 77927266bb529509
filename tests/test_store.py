"""The store's one write path (``write_batch``) on a real SQLite file: the ids it reports
are the rows' ids, a vector computed again replaces the stored one, and a file that fails
after being indexed leaves the index."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event

from searchapp.store import STATUS_FAILED, BatchWrite, FailureWrite, PhotoWrite, Store

MODEL = "test-model"


def _photo(root_id: int, root: Path, name: str, chash: str) -> PhotoWrite:
    return PhotoWrite(root_id, str(root / name), 10, 1, chash, 40, 30, "JPEG")


@pytest.fixture(params=["returning", "no returning"])
def store(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201
    """A store on this SQLite, and one that acts as SQLite before 3.35 (no RETURNING)."""
    store = Store(tmp_path / "library.sqlite3")
    if request.param == "no returning":
        store.engine.dialect.insert_executemany_returning = False
    yield store
    store.close()


def test_a_batch_reports_each_new_rows_id_and_replaces_a_vector_computed_again(
    store: Store, tmp_path: Path
) -> None:
    root_id = store.add_root(tmp_path).id
    rng = np.random.default_rng(0)
    first = rng.standard_normal((20, 8), dtype=np.float32)
    batch = BatchWrite(model_id=MODEL)
    for i in range(20):
        batch.indexed.append(_photo(root_id, tmp_path, f"p{i:02d}.jpg", f"h{i:02d}"))
        batch.vectors[f"h{i:02d}"] = first[i]
    result = store.write_batch(batch)
    by_path = {i: store.find_photo_by_path(tmp_path / f"p{i:02d}.jpg") for i in range(20)}
    assert result.upserted == {by_path[i].id: f"h{i:02d}" for i in range(20)}

    again = BatchWrite(model_id=MODEL)  # h03 embedded again: the new vector wins
    again.indexed.append(_photo(root_id, tmp_path, "p03.jpg", "h03"))
    again.vectors["h03"] = new = rng.standard_normal(8, dtype=np.float32)
    again.failed.append(FailureWrite(root_id, str(tmp_path / "p05.jpg"), 3, 2, "damaged"))
    result = store.write_batch(again)
    assert result.upserted == {by_path[3].id: "h03"}
    assert result.removed == [by_path[5].id]
    stored = store.vectors_for_hashes(["h03", "h04"], MODEL)
    np.testing.assert_array_equal(stored["h03"], new)
    np.testing.assert_array_equal(stored["h04"], first[4])
    failed = store.find_photo_by_path(tmp_path / "p05.jpg")
    assert failed.id == by_path[5].id and failed.status == STATUS_FAILED


def test_new_rows_with_and_without_exif_are_one_insert(store: Store, tmp_path: Path) -> None:
    root_id = store.add_root(tmp_path).id
    batch = BatchWrite(model_id=MODEL)
    for i in range(6):  # EXIF dates and cameras on some photos only, as in a real folder
        photo = _photo(root_id, tmp_path, f"p{i}.jpg", f"h{i}")
        batch.indexed.append(replace(photo, taken_at=1e9 + i if i % 2 else None,
                                     camera="Pixel 7" if i % 3 == 0 else None))  # fmt: skip
        batch.vectors[f"h{i}"] = np.ones(8, dtype=np.float32)
    batch.failed.append(FailureWrite(root_id, str(tmp_path / "bad.jpg"), 3, 2, "damaged"))
    inserts = []
    event.listen(store.engine, "before_cursor_execute", lambda *a: inserts.append(a[2]))
    result = store.write_batch(batch)
    assert len([q for q in inserts if q.startswith("INSERT INTO photos")]) == 1, inserts
    assert sorted(result.upserted.values()) == [f"h{i}" for i in range(6)]
    assert store.find_photo_by_path(tmp_path / "p3.jpg").taken_at == 1e9 + 3
