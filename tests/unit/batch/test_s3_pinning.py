"""Chunks read the exact input version that was validated (S3 ETag, ``IfMatch``)."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from core.settings import Settings
from functions.batch.store.dynamodb import DynamoBatchStore


def test_reads_fail_once_the_input_is_overwritten() -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="rtai-files")
        store = DynamoBatchStore(Settings(), ddb=boto3.client("dynamodb", "us-east-1"), s3=s3)
        s3.put_object(Bucket="rtai-files", Key="files/f", Body=b"0123456789")
        info = store.object_info("files/f")
        assert info is not None and info[0] == 10
        assert store.read_range("files/f", 2, 5, info[1]) == b"234"
        assert b"".join(store.stream_body("files/f", info[1])) == b"0123456789"
        s3.put_object(Bucket="rtai-files", Key="files/f", Body=b"abcdefghij")
        with pytest.raises(ClientError) as changed:
            store.read_range("files/f", 2, 5, info[1])
        assert changed.value.response["Error"]["Code"] == "PreconditionFailed"
        assert store.object_info("files/missing") is None
