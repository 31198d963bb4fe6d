#!/usr/bin/env bash
# Installs the Debian packages the tests use (real Chromium, nginx, redis-server for the room bus;
# Node.js for the CDK's jsii), if missing.
set -euo pipefail
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v node >/dev/null || need+=(nodejs npm)
# espeak-ng: the local voice stand-in's speech (GPL-3.0, called as a program) and test speech.
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v redis-server >/dev/null || need+=(redis-server)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
