#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine: postfix (smtp-sink, a real SMTP
# server for the send tests; and Postfix itself, which the sendmail transport's tests run
# as a private instance in a temp dir, never touching /etc/postfix), msmtp (a sendmail that
# relays by SMTP, for the refusals Postfix reports only as bounces), tmux (to drive the TUI
# as a person would), PostgreSQL (the shared store's tests start their own throwaway server
# on 127.0.0.1; no cluster is started here), openssl (DKIM keys in OpenSSL 3's formats and
# a test certificate for the store's TLS test), Dovecot's IMAP server (the bounce-mailbox
# tests run a private instance from a config in a temp dir; the system service is not
# started), and Python's dkimpy + PyNaCl (an independent DKIM verifier for the signing
# test). Safe to rerun.
set -euo pipefail

need=()
command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ] || need+=(postfix)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
command -v msmtp >/dev/null 2>&1 || need+=(msmtp)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# Debian puts initdb and pg_ctl under /usr/lib/postgresql/VERSION/bin, off the PATH.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
[ -x /usr/sbin/dovecot ] && [ -e /usr/lib/dovecot/imap ] || need+=(dovecot-imapd)

if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "tests need: ${need[*]}. Install them with:" >&2
        echo "  sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Postfix with no system configuration (no /etc/postfix/main.cf) and nothing started:
    # the tests run smtp-sink and their own private Postfix instances.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    # msmtp's AppArmor profile would confine it to the user's own configuration files.
    echo "msmtp msmtp/apparmor boolean false" | debconf-set-selections
    apt-get update -qq
    # policy-rc.d 101: the packages' services (postfix, the default PostgreSQL cluster,
    # dovecot) are not started; the tests start what they need themselves.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# dkimpy verifies the DKIM signatures tact makes; PyNaCl lets it check Ed25519 ones.
if ! python3 -c 'import dkim, nacl' >/dev/null 2>&1; then
    if ! python3 -m pip install --quiet dkimpy pynacl; then
        # A distribution Python refuses pip (PEP 668): take Debian's packages instead.
        if [ "$(id -u)" -ne 0 ]; then
            echo "tests need Python's dkimpy and PyNaCl. Install them with:" >&2
            echo "  sudo apt-get install -y --no-install-recommends python3-dkim python3-nacl" >&2
            exit 1
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            python3-dkim python3-nacl >/dev/null
    fi
fi
