#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine: smtp-sink (from postfix, a real
# SMTP server for send tests) and tmux (to drive the TUI as a person would). Safe to rerun.
set -euo pipefail

need=()
command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ] || need+=(postfix)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "tests need: ${need[*]}. Install them with:" >&2
    echo "  sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Install postfix for its smtp-sink tool only: no mail system is configured or started.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
