"""Reading botocore's ``ClientError``: the error code, and the answers the code checks for."""

from __future__ import annotations

from botocore.exceptions import ClientError


def error_code(exc: ClientError) -> str:
    """The service's error code (``"ConditionalCheckFailedException"``, ``"404"``, ...)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def conditional_failed(exc: ClientError) -> bool:
    """A DynamoDB condition expression was false: the write was refused, not lost."""
    return error_code(exc) == "ConditionalCheckFailedException"


def transaction_condition_failed(exc: ClientError) -> bool:
    """A DynamoDB transaction was cancelled because one of its conditions was false."""
    if error_code(exc) != "TransactionCanceledException":
        return False
    reasons = exc.response.get("CancellationReasons") or []
    if reasons:
        return any(r.get("Code") == "ConditionalCheckFailed" for r in reasons)
    return "ConditionalCheckFailed" in str(exc)
