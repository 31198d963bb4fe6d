"""Batch persistence: a small interface and its DynamoDB + S3 implementation."""

from functions.batch.store.base import BatchStore
from functions.batch.store.dynamodb import DynamoBatchStore

__all__ = ["BatchStore", "DynamoBatchStore"]
