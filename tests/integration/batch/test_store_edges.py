"""Batch store edges against the embedded AWS (moto over HTTP): result bodies over
DynamoDB's 400 KB item limit, and a finalizer that outlived its lease."""

from __future__ import annotations

from core.settings import Settings
from functions.batch.finalizer import Finalizer
from functions.batch.schemas import ItemResult, now_s
from functions.batch.store.dynamodb import DynamoBatchStore, file_key
from tests.integration.batch.conftest import chat_line
from tests.integration.batch.helpers import make_batch


def _result(line: int, text: str, request_id: str = "req_1") -> ItemResult:
    body = {"object": "chat.completion", "choices": [{"message": {"content": text}}]}
    return ItemResult(
        line=line,
        custom_id=f"c{line}",
        succeeded=True,
        status_code=200,
        body=body,
        request_id=request_id,
    )


def test_a_result_body_over_the_item_limit_is_kept_whole(batch_settings: Settings) -> None:
    store = DynamoBatchStore(batch_settings)
    batch = make_batch(batch_settings, [chat_line("c1", "x")])
    huge = "é" * 300_000  # 600 KB of UTF-8: over DynamoDB's 400 KB item limit
    assert store.record_result(batch.id, _result(1, huge, "req_a"))
    # A retried attempt of the same line is refused and leaves no object behind.
    assert not store.record_result(batch.id, _result(1, "other", "req_b"))
    (item,) = store.iter_items(batch.id)
    assert item.body["choices"][0]["message"]["content"] == huge
    listed = store.s3.list_objects_v2(Bucket=store.bucket, Prefix=f"results/{batch.id}/")
    assert [o["Key"] for o in listed.get("Contents", [])] == [
        f"results/{batch.id}/0000001-req_a.json"
    ]


def test_a_finalizer_that_outlived_its_lease_changes_nothing(batch_settings: Settings) -> None:
    store = DynamoBatchStore(batch_settings)
    batch = make_batch(batch_settings, [chat_line(f"c{i}", "x") for i in (1, 2)])
    for line in (1, 2):
        store.record_result(batch.id, _result(line, f"answer {line}"))
    store.mark_chunk_done(batch.id, 0)
    # A finalizer took the lease long ago and stalled (a paused Lambda, a long GC).
    current = store.get_batch(batch.id)
    assert current is not None
    stale = store.begin_finalize(current, "stale-token", now_s() - 1000, lease_s=1)
    assert stale is not None
    # Another one takes the expired lease over and ends the batch.
    ended = Finalizer(batch_settings, store).finalize(batch.id)
    assert ended is not None and ended.status == "completed" and ended.output_file_id
    output = store.get_file(ended.output_file_id)
    assert output is not None
    body = store.read_body(output.s3_key)
    # The stale one wakes up and assembles what it sees now (more results than before).
    store.record_result(batch.id, _result(3, "late"))
    assert Finalizer(batch_settings, store)._assemble(stale, "stale-token") is None
    after = store.get_file(ended.output_file_id)
    assert after is not None and after.s3_key == output.s3_key
    assert store.read_body(after.s3_key) == body  # the output that was handed out stands
    assert store.object_info(f"{file_key(ended.output_file_id)}/stale-token") is None
    final = store.get_batch(batch.id)
    assert final is not None and final.status == "completed" and final.completed == 2
    # ...and the input file, no longer in use, can be deleted.
    input_file = store.get_file(batch.input_file_id)
    assert input_file is not None
    store.delete_file(input_file)
    assert store.get_file(batch.input_file_id) is None
