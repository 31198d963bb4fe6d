"""Prometheus metrics of the voice sessions on one node (served with the stream service's).

``rtai_voice_relay_added_seconds`` is the relay's own cost per frame: from the frame read
off one socket to its write on the other returning (upstream -> client and back).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream_service.metrics import LoopHistogram

_TURN_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 3, 5)
_RELAY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)


class RealtimeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.sessions = Gauge(
            "rtai_voice_sessions",
            "Voice sessions open on this node (with or without a client).",
            registry=r,
        )
        self.sessions_started = Counter(
            "rtai_voice_sessions_started",
            "Voice sessions started on this node.",
            ["provider"],
            registry=r,
        )
        self.turn_latency = Histogram(
            "rtai_voice_turn_latency_seconds",
            "Per turn: input_audio_buffer.speech_stopped to the first reply audio delta sent.",
            buckets=_TURN_BUCKETS,
            registry=r,
        )
        self.barge_ins = Counter(
            "rtai_voice_barge_ins", "Responses cancelled by the user speaking.", registry=r
        )
        self.truncations = Counter(
            "rtai_voice_truncations", "conversation.item.truncate events applied.", registry=r
        )
        self.resumes = Counter(
            "rtai_voice_resumes", "Reconnects that resumed a session.", ["outcome"], registry=r
        )
        self.resume_ok = self.resumes.labels("resumed")
        self.resume_not_found = self.resumes.labels("session_not_found")
        self.errors = Counter(
            "rtai_voice_errors", "error events sent, by code.", ["code"], registry=r
        )
        self.limit_rejections = Counter(
            "rtai_voice_limit_rejections",
            "Events or sessions refused by a limit.",
            ["limit"],
            registry=r,
        )
        self.upstream_failures = Counter(
            "rtai_voice_upstream_failures",
            "Relay upstream connects that failed or dropped.",
            registry=r,
        )
        # Observed on the event loop per frame: no lock per observation.
        self.relay_down = LoopHistogram(
            "rtai_voice_relay_added_downstream_seconds",
            "Relay: upstream frame read to the client write returning.",
            _RELAY_BUCKETS,
        )
        self.relay_up = LoopHistogram(
            "rtai_voice_relay_added_upstream_seconds",
            "Relay: client frame read to the upstream write returning.",
            _RELAY_BUCKETS,
        )
        r.register(self.relay_down)
        r.register(self.relay_up)
