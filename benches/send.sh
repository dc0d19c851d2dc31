#!/usr/bin/env bash
# tact's sending benchmarks (the Sending issue): measurement and documentation, NOT run by CI.
#
#   benches/send.sh                 # release build, then a few minutes
#   BIG_ROWS=0 benches/send.sh      # skip the 1,000,000-recipient RSS run
#
# Targets, on a 2-core machine, all against Debian's smtp-sink on 127.0.0.1:
#   1. one connection: at least 2,000 messages/s of a ~3 KB personalised, unsigned message;
#   2. ~10,000 recipients at concurrency 4: at least 3x the Python `mailmerge` CLI sending
#      the same messages to the same sink, and at least half of `smtp-source -d -s 4` with
#      the same message size;
#   3. peak RSS under 300 MB while sending to 1,000,000 recipients.
#
# Fairness: every sender talks to the same smtp-sink (no dump to disk, so the sink is not
# the bottleneck); mailmerge gets the messages tact would send (its database is built from
# tact's preview, as in compare.sh) and the text-only template, its fastest path;
# smtp-source sends messages of tact's average size. Rates are messages / wall time of the
# whole command.
#
# Environment: SMALL_ROWS (24000 rows, ~10,000 recipients), BIG_ROWS (2400000 rows, ~1M
# recipients; 0 skips), MAILMERGE_SPEC (mailmerge==2.3.0), KEEP (unset).

set -euo pipefail

SMALL_ROWS=${SMALL_ROWS:-24000}
BIG_ROWS=${BIG_ROWS:-2400000}
MAILMERGE_SPEC=${MAILMERGE_SPEC:-mailmerge==2.3.0}
NOW=2026-11-23T12:00:00Z

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCHES=$REPO/benches
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tact-send-bench.XXXXXX")
SINK_PID=
cleanup() {
    [[ -n $SINK_PID ]] && kill "$SINK_PID" 2>/dev/null || true
    if [[ -n ${KEEP:-} ]]; then echo "kept: $TMP"; else rm -rf -- "$TMP"; fi
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }
die() { printf 'send.sh: error: %s\n' "$*" >&2; exit 1; }
now_ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

command -v python3 >/dev/null || die "python3 is required"
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
[[ -x $SINK && -x $SOURCE ]] || die "smtp-sink/smtp-source missing: run tests/setup.sh"
[[ -x /usr/bin/time ]] || { apt-get install -y -qq time >/dev/null 2>&1 || die "apt-get install time"; }

say "machine"
echo "$(nproc) cores; load average $(cut -d' ' -f1 /proc/loadavg)"

say "cargo build --release"
(cd "$REPO" && cargo build --release --quiet)
BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/tact

# A free port, and a sink that discards (no -d): we measure senders, not the disk.
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$SINK" -u nobody 127.0.0.1:"$PORT" 1024 >"$TMP/sink.log" 2>&1 &
SINK_PID=$!
sleep 0.5
SMTP=smtp://127.0.0.1:$PORT

# campaign DIR CONCURRENCY: a text-only copy of the generated campaign with no rate limit
campaign() {
    local dir=$1 conc=$2 out=$1/campaigns/bench-c$2.toml
    [[ -d $TMP/templates-text ]] || { cp -r "$REPO/templates" "$TMP/templates-text"; rm "$TMP/templates-text/winter-sale.html.tera"; }
    sed -e "s|^templates = .*|templates = \"$TMP/templates-text\"|" -e "s|^name = .*|name = \"bench-c$conc\"|" \
        "$dir/campaigns/winter-sale.toml" >"$out"
    printf '\n[send]\nrate_per_second = 1000000\nconcurrency = %s\n' "$conc" >>"$out"
    echo "$out"
}

# send_once CAMPAIGN NAME: fresh state, sends, prints "messages seconds"
send_once() {
    local c=$1 name=$2 a b
    rm -rf "$TMP/state-$name"
    "$BIN" --state "$TMP/state-$name" init >/dev/null
    a=$(now_ns)
    "$BIN" --state "$TMP/state-$name" --now "$NOW" send "$c" --smtp "$SMTP" --json >"$TMP/$name.json" 2>"$TMP/$name.err" \
        || { cat "$TMP/$name.err" >&2; die "tact send exited non-zero"; }
    b=$(now_ns)
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["sent"])' "$TMP/$name.json" | tr '\n' ' '
    secs "$a" "$b"
    echo
}

say "generate $SMALL_ROWS rows"
python3 "$BENCHES/gen_audience.py" "$SMALL_ROWS" "$TMP/small" >/dev/null
C1=$(campaign "$TMP/small" 1)
C4=$(campaign "$TMP/small" 4)

say "message size"
"$BIN" --state "$TMP/state-preview" --now "$NOW" preview "$C4" --out "$TMP/eml" >/dev/null 2>&1
msgs=$(find "$TMP/eml" -name '*.eml' | wc -l)
bytes=$(find "$TMP/eml" -name '*.eml' -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s / NR }')
echo "$msgs messages, average $bytes bytes"

say "1. tact, one connection"
read -r n1 s1 < <(send_once "$C1" c1)
r1=$(rate "$n1" "$s1")
echo "$n1 messages in $s1 s: $r1 messages/s"

say "2a. tact, concurrency 4"
read -r n4 s4 < <(send_once "$C4" c4)
r4=$(rate "$n4" "$s4")
echo "$n4 messages in $s4 s: $r4 messages/s"

say "2b. smtp-source -d -s 4, $n4 messages of $bytes bytes"
a=$(now_ns)
"$SOURCE" -d -s 4 -m "$n4" -l "$bytes" -f bench@northwind.example -t sink@example.com 127.0.0.1:"$PORT"
b=$(now_ns)
ss=$(secs "$a" "$b"); rs=$(rate "$n4" "$ss")
echo "$n4 messages in $ss s: $rs messages/s"

say "2c. mailmerge ($MAILMERGE_SPEC), same messages, same sink"
python3 -m venv "$TMP/venv"
"$TMP/venv/bin/pip" install --quiet --disable-pip-version-check "$MAILMERGE_SPEC"
python3 "$BENCHES/mailmerge/make_database.py" "$TMP/eml" "$TMP/small/customers.csv" "$TMP/mm.csv"
printf '[smtp_server]\nhost = 127.0.0.1\nport = %s\nsecurity = Never\n' "$PORT" >"$TMP/mm.conf"
a=$(now_ns)
"$TMP/venv/bin/mailmerge" --template "$BENCHES/mailmerge/winter-sale-text.txt" --database "$TMP/mm.csv" \
    --config "$TMP/mm.conf" --no-dry-run --no-limit --output-format raw >/dev/null
b=$(now_ns)
sm=$(secs "$a" "$b"); rm_=$(rate "$msgs" "$sm")
echo "$msgs messages in $sm s: $rm_ messages/s"

if [[ $BIG_ROWS -gt 0 ]]; then
    say "3. peak RSS sending to ~1M recipients ($BIG_ROWS rows, concurrency 4)"
    python3 "$BENCHES/gen_audience.py" "$BIG_ROWS" "$TMP/big" >/dev/null
    CB=$(campaign "$TMP/big" 4)
    "$BIN" --state "$TMP/state-big" init >/dev/null
    /usr/bin/time -v -o "$TMP/big.time" "$BIN" --state "$TMP/state-big" --now "$NOW" send "$CB" --smtp "$SMTP" --json \
        >"$TMP/big.json" 2>"$TMP/big.err" || { tail "$TMP/big.err" >&2; die "big send failed"; }
    nb=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["sent"])' "$TMP/big.json")
    rb=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["summary"]["rate_per_second"]))' "$TMP/big.json")
    rss=$(awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$TMP/big.time")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { print $2 }' "$TMP/big.time")
    echo "$nb sent, $rb messages/s while sending, wall $wall, peak RSS $rss MB"
fi

say "summary"
printf '%-46s %10s\n' "tact, 1 connection (target >= 2000/s)" "$r1/s"
printf '%-46s %10s\n' "tact, concurrency 4" "$r4/s"
printf '%-46s %10s   tact/smtp-source = %s (target >= 0.5)\n' "smtp-source -d -s 4" "$rs/s" "$(ratio "$r4" "$rs")"
printf '%-46s %10s   tact/mailmerge   = %s (target >= 3)\n' "mailmerge --no-dry-run" "$rm_/s" "$(ratio "$r4" "$rm_")"
[[ $BIG_ROWS -gt 0 ]] && printf '%-46s %10s\n' "peak RSS, ~1M recipients (target < 300 MB)" "$rss MB"
