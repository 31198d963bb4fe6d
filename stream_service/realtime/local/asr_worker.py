"""One transcription worker process: ``python -m stream_service.realtime.local.asr_worker``.

It decodes one utterance at a time with pocketsphinx (the US English model inside its
wheel), streamed: the parent sends the utterance's 24 kHz PCM16 while the user is still
speaking, so when speech stops only the last few hundred milliseconds are left to decode
and the transcript is ready within tens of milliseconds. The decoder's second passes
(``fwdflat``, ``bestpath``) are off: they would run at the end of the utterance, where
they cost more time than the turn has (150-500 ms here).

Frames on stdin: a kind byte (``S`` start, ``F`` feed, ``E`` end) and a 4-byte big-endian
length, then that many bytes (the audio of ``F``). Each ``E`` is answered on stdout with a
4-byte length and the transcript in UTF-8. At end of input (the parent stopped or died)
the worker exits: it never outlives the service.
"""

from __future__ import annotations

import os
import struct
import sys
from typing import BinaryIO

HEADER = struct.Struct(">cI")
LENGTH = struct.Struct(">I")
START, FEED, END = b"S", b"F", b"E"
ASR_RATE = 16_000
# Narrower beams than pocketsphinx's defaults and every other frame scored (``ds``): a
# third of the CPU (about 0.15 s per second of speech here) for the same words on the test
# speech, so decoding keeps up with the speech even on a busy machine.
DECODER_OPTIONS = {
    "ds": 2,
    "fwdflat": False,
    "bestpath": False,
    "maxhmmpf": 3000,
    "maxwpf": 10,
    "beam": 1e-40,
    "wbeam": 1e-24,
}


def _read(stream: BinaryIO, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    import numpy as np
    import soxr  # type: ignore[import-untyped]
    from pocketsphinx import Decoder  # type: ignore[import-untyped]

    decoder = Decoder(samprate=ASR_RATE, logfn=os.devnull, **DECODER_OPTIONS)
    resampler = None
    while (header := _read(stdin, HEADER.size)) is not None:
        kind, length = HEADER.unpack(header)
        payload = _read(stdin, length) if length else b""
        if payload is None:
            return
        if kind == START:
            resampler = soxr.ResampleStream(24_000, ASR_RATE, 1, dtype="int16", quality="HQ")
            decoder.start_utt()
        elif kind == FEED and resampler is not None:
            samples = np.frombuffer(payload, dtype="<i2")
            pcm16k = np.asarray(resampler.resample_chunk(samples), dtype="<i2").tobytes()
            if pcm16k:
                decoder.process_raw(pcm16k, False, False)
        elif kind == END:
            text = ""
            if resampler is not None:
                tail = np.asarray(resampler.resample_chunk(np.zeros(0, "<i2"), last=True), "<i2")
                if len(tail):
                    decoder.process_raw(tail.tobytes(), False, False)
                decoder.end_utt()
                hyp = decoder.hyp()
                text = str(hyp.hypstr) if hyp is not None else ""
                resampler = None
            answer = text.encode()
            stdout.write(LENGTH.pack(len(answer)) + answer)
            stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
