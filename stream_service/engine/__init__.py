"""The durable stream engine: one producer per stream, memory fan-out, batched store writes."""
