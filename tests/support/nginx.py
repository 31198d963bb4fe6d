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


class NginxProcess:
    """One nginx run from a config file in its own temporary prefix."""

    def __init__(self, prefix: str) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=prefix))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf = self.tmp / "nginx.conf"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self, *extra: str) -> list[str]:
        return [nginx_binary(), "-c", str(self.conf), "-p", str(self.tmp), *extra]

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        wait_http(self.url + "/stream/healthz")

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        time.sleep(0.05)
        shutil.rmtree(self.tmp, ignore_errors=True)


class Nginx:
    def __init__(self, upstream_port: int) -> None:
        self.nginx = NginxProcess("rtai-nginx-")
        self.tmp, self.port, self.url = self.nginx.tmp, self.nginx.port, self.nginx.url
        self.nginx.conf.write_text(
            _CONF.format(tmp=self.tmp, port=self.port, upstream=upstream_port)
        )

    def __enter__(self) -> Nginx:
        self.nginx.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.nginx.stop()


# The same process and temp-path settings as _CONF, but with a master process (a reload
# is graceful only with one).
_BALANCER_CONF = (
    _CONF.split("  # A common setup", 1)[0].replace("master_process off;\n", "")
    + """  upstream targets {{
{servers}
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://targets;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 120s;
    }}
  }}
}}
# On reload, the old worker keeps serving its open connections for at most this long, then
# closes them: an ALB target group's deregistration delay.
worker_shutdown_timeout {shutdown}s;
"""
)


class Balancer:
    """A real nginx as the load balancer in front of stream nodes (master process on, so a
    reload is graceful): :meth:`route_to` is a deregistration. New requests go to the new
    targets at once; connections already open stay on the old ones until they end or
    ``deregistration_delay_s`` has passed, when nginx closes them (an ALB's cut)."""

    def __init__(self, upstream_ports: list[int], deregistration_delay_s: float) -> None:
        self.nginx = NginxProcess("rtai-balancer-")
        self.url = self.nginx.url
        self.delay_s = deregistration_delay_s
        self._write(upstream_ports)

    def _write(self, ports: list[int]) -> None:
        servers = "\n".join(f"    server 127.0.0.1:{port};" for port in ports)
        self.nginx.conf.write_text(
            _BALANCER_CONF.format(
                tmp=self.nginx.tmp,
                port=self.nginx.port,
                servers=servers,
                shutdown=int(self.delay_s),
            )
        )

    def route_to(self, ports: list[int]) -> None:
        """Only ``ports`` get new requests from now on (nginx -s reload)."""
        self._write(ports)
        subprocess.run(
            self.nginx.command("-s", "reload"),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def __enter__(self) -> Balancer:
        self.nginx.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.nginx.stop()
