"""The batch worker Lambda: SQS-fed, partial-batch failure reporting, DLQ for poison."""
