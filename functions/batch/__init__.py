"""The Batch API's domain, shared by the API Lambda, the worker Lambda and the local worker.

- :mod:`functions.batch.validation`: JSONL checks (file-level errors name the 1-based line).
- :mod:`functions.batch.store`: files in S3, batches/items/chunks in DynamoDB.
- :mod:`functions.batch.queue`: chunk messages on SQS.
- :mod:`functions.batch.service`: what the REST controllers call.
- :mod:`functions.batch.worker`: runs one chunk of lines against the model provider.
- :mod:`functions.batch.finalizer`: assembles the output and error files exactly once.
"""
