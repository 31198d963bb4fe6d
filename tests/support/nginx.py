"""A real nginx (Debian's package) in front of a server, with its default buffering on."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.servers import free_port, wait_http

_CONF = """
worker_processes 1;
master_process off;
daemon off;
error_log {tmp}/error.log warn;
pid {tmp}/nginx.pid;
events {{ worker_connections 512; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  # A common setup that breaks streaming: gzip for event streams. nginx's gzip filter
  # holds output until its buffer fills, unless the response already has a
  # Content-Encoding, which the stream service sends (identity).
  gzip on;
  gzip_types text/event-stream application/json;
  gzip_min_length 0;
  server {{
    listen 127.0.0.1:{port};
    # Defaults on purpose: proxy_buffering is on; the app's X-Accel-Buffering: no turns it
    # off for its streams.
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 120s;
    }}
    # The control: a proxy that drops the app's anti-buffering headers, as misconfigured
    # proxies and CDNs do. Streams through it arrive in a burst.
    location /buffered/ {{
      proxy_pass http://127.0.0.1:{upstream}/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ignore_headers X-Accel-Buffering;
      proxy_hide_header Content-Encoding;
    }}
  }}
}}
"""


def nginx_binary() -> str:
    for candidate in ("nginx", "/usr/sbin/nginx"):
        if path := shutil.which(candidate):
            return path
    raise RuntimeError("nginx is not installed (make test installs it: scripts/system-deps.sh)")


class Nginx:
    def __init__(self, upstream_port: int) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="rtai-nginx-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (self.tmp / "nginx.conf").write_text(
            _CONF.format(tmp=self.tmp, port=self.port, upstream=upstream_port)
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Nginx:
        self.proc = subprocess.Popen(
            [nginx_binary(), "-c", str(self.tmp / "nginx.conf"), "-p", str(self.tmp)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        wait_http(self.url + "/stream/healthz")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        time.sleep(0.05)
        shutil.rmtree(self.tmp, ignore_errors=True)
