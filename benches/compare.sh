#!/usr/bin/env bash
# tact against its peers (issue 7), in one run on one machine: measurement and
# documentation, NEVER run by CI (it refuses to run when CI is set).
#
#   benches/compare.sh                          # everything: about 10 minutes on 2 cores
#   BIG_ROWS=0 benches/compare.sh               # without the million-recipient send (~5 min)
#   CHECK_ROWS=20000 PREVIEW_ROWS=2000 SEND_ROWS=4000 BIG_ROWS=0 benches/compare.sh   # a smoke run
#
# It installs what it lacks (as root on Debian): GNU time, postfix for smtp-sink and
# smtp-source (through tests/setup.sh), a Python venv with $MAILMERGE_SPEC from PyPI.
# Then it builds tact (release), generates every audience first (benches/gen_audience.py,
# deterministic), measures, and prints one Markdown table: each figure, its ratio to the
# peer and the target, with the machine, the date and tact's commit.
#
# What is measured, and the target (a 2-core machine):
#   check    `tact check` over CHECK_ROWS rows, with every measurement on (issue 14): wall
#            < 7 s, peak RSS < 1 GB, for winter-sale (exit 0) and for birthday-treat (exit 3:
#            its postcode + birth date are measured for re-identification, generalisations
#            included); the CPU time (user + sys) beside it, which load on the machine
#            changes less than the wall.
#   dry run  `tact preview --out` of PREVIEW_ROWS rows against the Python `mailmerge` CLI's
#            `--dry-run` rendering the same messages: >= 2x its messages/s, both for the
#            campaign with text and HTML parts and for its text-only variant. mailmerge on
#            its own trivial `--sample` template is shown for context.
#   send     ~SEND_ROWS * 0.42 recipients to one Debian smtp-sink on 127.0.0.1:
#            tact at 1 connection: >= 2,000 messages/s;
#            tact at CONCURRENCY connections: >= 3x mailmerge's real send, and >= 0.5x
#            `smtp-source -d -s CONCURRENCY` (the sink's own ceiling) with the same
#            message count and size. Ratios at 1 connection are shown for context.
#   1M send  BIG_ROWS rows (~1,000,000 recipients) at CONCURRENCY connections: peak RSS
#            < 300 MB, and >= 0.5x smtp-source's rate for the same count (the whole
#            command's wall, planning and the check included; the send loop's own rate
#            is shown beside it).
#
# How the comparison is kept fair:
#   * the same recipients and messages: mailmerge cannot segment, check consent or seal
#     unsubscribe tokens, so its database is built from tact's own preview output
#     (benches/mailmerge/make_database.py), one row per message tact wrote, and its
#     template (benches/mailmerge/winter-sale.txt) is templates/winter-sale.{txt,html}.tera
#     as Jinja2; benches/mailmerge/same_messages.py proves, message by message, that To,
#     Subject and the decoded parts of the dry runs are identical;
#   * dry runs write to tmpfs (/dev/shm when writable): on ext4, creating thousands of
#     files right after deleting thousands (the previous run) makes the kernel's inode
#     allocator crawl, which would measure the disk, not the program;
#   * every sender talks to the same smtp-sink, which discards (no -d): the sink is not
#     the bottleneck. The sends use the text-only variant (mailmerge's fastest path: it
#     parses every HTML part with html5lib) with no rate limit; tact records every
#     message in its ledger, mailmerge and smtp-source record nothing;
#   * mailmerge has no concurrency setting and opens one connection per message: the
#     >= 3x target is against tact at CONCURRENCY connections, as tact would be run;
#     the 1-connection ratio is printed too;
#   * smtp-source sends fixed bytes: its -l is tact's average message size less the
#     headers smtp-source adds itself, so both put the same bytes on the wire;
#   * every rate is messages / wall time of the whole command, process start to exit
#     (tact's include reading the CSV, planning and checking), median of RUNS runs; the
#     senders take turns within each round, so a busy moment hits all of them.
#
# Environment (0 skips a part):
#   CHECK_ROWS (1000000), PREVIEW_ROWS (10000), SEND_ROWS (24000: ~10,000 recipients),
#   BIG_ROWS (2400000: ~1,000,000 recipients), CONCURRENCY (4), RUNS (3),
#   MAILMERGE_SPEC (mailmerge==2.3.0), KEEP (set: keep the scratch folders), TMPDIR.

set -euo pipefail

CHECK_ROWS=${CHECK_ROWS:-1000000}
PREVIEW_ROWS=${PREVIEW_ROWS:-10000}
SEND_ROWS=${SEND_ROWS:-${SMALL_ROWS:-24000}}
BIG_ROWS=${BIG_ROWS:-2400000}
CONCURRENCY=${CONCURRENCY:-4}
RUNS=${RUNS:-3}
MAILMERGE_SPEC=${MAILMERGE_SPEC:-mailmerge==2.3.0}
NOW=2026-11-23T12:00:00Z
FROM=bench@northwind.example
TO=sink@example.com

say() { printf '\n== %s\n' "$*"; }
die() { printf 'compare.sh: error: %s\n' "$*" >&2; exit 1; }

[[ -z ${CI:-} ]] || die "this is a measurement, not a test: it does not run under CI"
for v in CHECK_ROWS PREVIEW_ROWS SEND_ROWS BIG_ROWS CONCURRENCY RUNS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v=${!v} is not a whole number"
done
((RUNS > 0 && CONCURRENCY > 0)) || die "RUNS and CONCURRENCY must be at least 1"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCHES=$REPO/benches
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tact-bench.XXXXXX")
if [[ -w /dev/shm ]]; then OUT=$(mktemp -d /dev/shm/tact-bench.XXXXXX); else OUT=$TMP/out; mkdir -p "$OUT"; fi
SINK_PID=
cleanup() {
    if [[ -n $SINK_PID ]]; then kill "$SINK_PID" 2>/dev/null || true; fi
    if [[ -n ${KEEP:-} ]]; then echo "kept: $TMP $OUT"; else rm -rf -- "$TMP" "$OUT"; fi
}
trap cleanup EXIT

now_ns() { date +%s%N; }
# seconds between two now_ns readings, 3 decimals
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# pass EXPR VAR=VALUE...: PASS when the awk expression holds
pass() {
    local expr=$1 args=()
    shift
    for a in "$@"; do args+=(-v "$a"); done
    awk "${args[@]}" "BEGIN { print (($expr) ? \"PASS\" : \"FAIL\") }"
}
# GNU time -v fields: wall seconds, peak RSS in MB
time_wall() { awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.2f", s }' "$1"; }
time_rss_mb() { awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$1"; }
json_summary() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"][sys.argv[2]])' "$1" "$2"; }
per_s() { echo "$(thousands "$1")/s"; }
thousands() { printf '%d' "$1" | sed -e ':a' -e 's/\B[0-9]\{3\}\>/,&/' -e 'ta'; }

need_mailmerge=$(( PREVIEW_ROWS > 0 || SEND_ROWS > 0 ))
need_sink=$(( SEND_ROWS > 0 || BIG_ROWS > 0 ))

# --- tools ----------------------------------------------------------------------------
command -v python3 >/dev/null || die "python3 is required"
command -v cargo >/dev/null || die "cargo is required"
as_root() { [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; }
apt_install() {
    as_root || die "$* missing: apt-get install $*"
    echo "installing Debian package(s): $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
}
[[ -x /usr/bin/time ]] || apt_install time
if ((need_sink)); then
    if ! { command -v smtp-sink || [[ -x /usr/sbin/smtp-sink ]]; } >/dev/null; then
        "$REPO/tests/setup.sh" || die "smtp-sink missing: run tests/setup.sh as root"
    fi
    SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
    SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
    [[ -x $SINK && -x $SOURCE ]] || die "smtp-sink/smtp-source missing: apt-get install postfix"
fi
if ((need_mailmerge)); then
    say "install $MAILMERGE_SPEC into a venv"
    if ! python3 -m venv "$TMP/venv" >/dev/null 2>&1; then
        apt_install python3-venv
        rm -rf "$TMP/venv"
        python3 -m venv "$TMP/venv"
    fi
    "$TMP/venv/bin/pip" install --quiet --disable-pip-version-check "$MAILMERGE_SPEC"
    MAILMERGE=$TMP/venv/bin/mailmerge
    "$MAILMERGE" --version
fi

say "cargo build --release"
(cd "$REPO" && cargo build --release --quiet)
BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/tact
[[ -x $BIN ]] || die "no binary at $BIN"
tact() { "$BIN" --state "$TMP/state" --now "$NOW" "$@"; }

# --- machine --------------------------------------------------------------------------
say "machine"
cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem_gb=$(awk '/^MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
commit=$(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [[ $commit != unknown && -n $(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    commit="$commit + uncommitted changes"
fi
started=$(date -u +%Y-%m-%dT%H:%MZ)
read -r load_start _ </proc/loadavg
facts="$(nproc) cores ($cpu), ${mem_gb} GB, $(uname -sr), $(python3 --version 2>&1)"
((need_mailmerge)) && facts+=", $("$MAILMERGE" --version 2>&1 | tr -d '\n')"
((need_sink)) && facts+=", postfix $(dpkg-query -W -f='${Version}' postfix 2>/dev/null || echo '?')"
echo "$facts"
echo "$started; tact $commit; load average (1 min) $load_start"
if awk -v l="$load_start" 'BEGIN { exit !(l > 0.5) }'; then
    echo "warning: something else is using the CPU; the figures will be noisy (rerun on an idle machine)"
fi
echo "scratch: $TMP; message output: $OUT"

# The command as run, with the settings that differ from the defaults.
command_line=
for v in CHECK_ROWS:1000000 PREVIEW_ROWS:10000 SEND_ROWS:24000 BIG_ROWS:2400000 CONCURRENCY:4 RUNS:3 MAILMERGE_SPEC:mailmerge==2.3.0; do
    name=${v%%:*}
    [[ ${!name} == "${v#*:}" ]] || command_line+="$name=${!name} "
done
command_line+=benches/compare.sh

# --- audiences: all generated before anything is timed ---------------------------------
generate() { # ROWS DIR
    python3 "$BENCHES/gen_audience.py" "$1" "$2" 2>&1 | sed 's/^/  /'
}
# text_campaign DIR FILE CONCURRENCY: the generated campaign without its HTML part, with no
# rate limit, as DIR/campaigns/FILE.toml; prints its path. It keeps the campaign's name,
# which the messages carry (List-Id, links), so they stay byte for byte mailmerge's.
text_campaign() {
    local dir=$1 conc=$3 out=$1/campaigns/$2.toml
    if [[ ! -d $TMP/templates-text ]]; then
        cp -r "$REPO/templates" "$TMP/templates-text"
        rm "$TMP/templates-text/winter-sale.html.tera"
    fi
    sed -e "s|^templates = .*|templates = \"$TMP/templates-text\"|" "$dir/campaigns/winter-sale.toml" >"$out"
    grep -q "templates-text" "$out" || die "could not point $out at the text-only templates"
    ! grep -q '^\[send\]' "$out" || die "the campaign already has a [send] table: update compare.sh"
    printf '\n[send]\nrate_per_second = 1000000\nconcurrency = %s\n' "$conc" >>"$out"
    echo "$out"
}
say "generate the audiences"
if ((CHECK_ROWS > 0)); then
    generate "$CHECK_ROWS" "$TMP/check"
    # sample-data's birthday-treat over the same audience (the generator writes winter-sale).
    sed -e 's|^audience = .*|audience = "../customers.csv"|' \
        -e 's|^schema = .*|schema = "../customers.schema.toml"|' \
        -e "s|^templates = .*|templates = \"$REPO/templates\"|" \
        "$REPO/sample-data/campaigns/birthday-treat.toml" >"$TMP/check/campaigns/birthday-treat.toml"
fi
if ((PREVIEW_ROWS > 0)); then
    generate "$PREVIEW_ROWS" "$TMP/preview"
    text_campaign "$TMP/preview" winter-sale-text 1 >/dev/null
fi
if ((SEND_ROWS > 0)); then
    generate "$SEND_ROWS" "$TMP/send"
    C1=$(text_campaign "$TMP/send" text-c1 1)
    CN=$(text_campaign "$TMP/send" "text-c$CONCURRENCY" "$CONCURRENCY")
fi
if ((BIG_ROWS > 0)); then
    generate "$BIG_ROWS" "$TMP/big"
    CB=$(text_campaign "$TMP/big" "text-c$CONCURRENCY" "$CONCURRENCY")
fi
"$BIN" --state "$TMP/state" init >/dev/null

# --- check ----------------------------------------------------------------------------
if ((CHECK_ROWS > 0)); then
    # check_one CAMPAIGN EXPECTED_EXIT: sets wall, rss and cpu (user + sys seconds)
    check_one() {
        local name=$1 want=$2 rc=0
        say "tact check $name, $CHECK_ROWS rows"
        /usr/bin/time -v -o "$TMP/check.time" "$BIN" --state "$TMP/state" --now "$NOW" \
            check "$TMP/check/campaigns/$name.toml" >"$TMP/check.out" 2>"$TMP/check.err" || rc=$?
        sed -n '2p' "$TMP/check.out"
        [[ $rc -eq $want ]] || { cat "$TMP/check.err" >&2; die "tact check $name exited $rc (expected $want)"; }
        wall=$(time_wall "$TMP/check.time")
        rss=$(time_rss_mb "$TMP/check.time")
        cpu=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.2f", s }' "$TMP/check.time")
        echo "wall $wall s; CPU (user + sys) $cpu s; peak RSS $rss MB"
    }
    check_one winter-sale 0
    check_wall=$wall check_rss=$rss check_cpu=$cpu
    check_one birthday-treat 3
    bday_wall=$wall bday_rss=$rss bday_cpu=$cpu
fi

# --- dry run against mailmerge ----------------------------------------------------------
# time_preview CAMPAIGN NAME: median wall time of RUNS previews; leaves $OUT/NAME behind
time_preview() {
    local campaign=$1 name=$2 t=() i a b
    for ((i = 1; i <= RUNS; i++)); do
        rm -rf -- "${OUT:?}/$name"
        a=$(now_ns)
        tact preview "$campaign" --out "$OUT/$name" >"$TMP/$name.log" 2>&1 || { cat "$TMP/$name.log" >&2; die "tact preview failed"; }
        b=$(now_ns)
        t+=("$(secs "$a" "$b")")
    done
    echo "  tact runs (s): ${t[*]}" >&2
    median "${t[@]}"
}

# time_mailmerge TEMPLATE DATABASE NAME: median wall time of RUNS dry runs; output in $OUT/NAME.out
time_mailmerge() {
    local template=$1 database=$2 name=$3 t=() i a b
    for ((i = 1; i <= RUNS; i++)); do
        a=$(now_ns)
        "$MAILMERGE" --template "$template" --database "$database" --config "$TMP/mailmerge_dry.conf" \
            --dry-run --no-limit --output-format raw >"$OUT/$name.out"
        b=$(now_ns)
        t+=("$(secs "$a" "$b")")
    done
    echo "  mailmerge runs (s): ${t[*]}" >&2
    median "${t[@]}"
}

# race CAMPAIGN MAILMERGE_TEMPLATE NAME: sets msgs, tact_s, mm_s
race() {
    local campaign=$1 template=$2 name=$3
    tact_s=$(time_preview "$campaign" "$name")
    msgs=$(find "$OUT/$name" -name 'line-*.eml' | wc -l)
    grep -o 'wrote [0-9]* message(s)' "$TMP/$name.log" >&2
    python3 "$BENCHES/mailmerge/make_database.py" "$OUT/$name" "$TMP/preview/customers.csv" "$TMP/$name.csv"
    mm_s=$(time_mailmerge "$template" "$TMP/$name.csv" "$name")
    python3 "$BENCHES/mailmerge/same_messages.py" "$OUT/$name" "$OUT/$name.out" >&2
}

if ((PREVIEW_ROWS > 0)); then
    # Required even for a dry run; never used.
    printf '[smtp_server]\nhost = 127.0.0.1\nport = 25\n' >"$TMP/mailmerge_dry.conf"

    say "dry run: tact preview vs mailmerge --dry-run, text + HTML ($PREVIEW_ROWS rows, median of $RUNS)"
    race "$TMP/preview/campaigns/winter-sale.toml" "$BENCHES/mailmerge/winter-sale.txt" multipart
    mp_msgs=$msgs mp_tact=$tact_s mp_mm=$mm_s

    say "dry run: text only ($PREVIEW_ROWS rows, median of $RUNS)"
    race "$TMP/preview/campaigns/winter-sale-text.toml" "$BENCHES/mailmerge/winter-sale-text.txt" text
    tx_msgs=$msgs tx_tact=$tact_s tx_mm=$mm_s

    say "context: mailmerge's own --sample template (3 short lines), $PREVIEW_ROWS messages"
    mkdir -p "$TMP/sample"
    (cd "$TMP/sample" && "$MAILMERGE" --sample >/dev/null)
    python3 - "$PREVIEW_ROWS" "$TMP/sample/mailmerge_database.csv" <<'PY'
import csv, sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["email", "name", "number"])
    for i in range(n):
        w.writerow([f"person{i}@example.com", f"Person {i}", i])
PY
    sm_mm=$(time_mailmerge "$TMP/sample/mailmerge_template.txt" "$TMP/sample/mailmerge_database.csv" sample)
    rm -rf -- "${OUT:?}"/*
fi

# --- real sends to one smtp-sink ---------------------------------------------------------
if ((need_sink)); then
    # A free port, and a sink that discards: the senders are measured, not the disk.
    PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    sink_user=()
    [[ $(id -u) -eq 0 ]] && sink_user=(-u nobody) # smtp-sink will not run as root
    "$SINK" "${sink_user[@]}" 127.0.0.1:"$PORT" 1024 >"$TMP/sink.log" 2>&1 &
    SINK_PID=$!
    python3 - "$PORT" <<'PY' || die "smtp-sink did not start: $(cat "$TMP/sink.log")"
import socket, sys, time
deadline = time.time() + 5
while time.time() < deadline:
    try:
        with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
            if s.recv(3) == b"220":
                sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
PY
    SMTP=smtp://127.0.0.1:$PORT
    # What smtp-source adds to its -l payload: From, To, Date, Message-Id and the blank
    # line (postfix 3.7's smtp-source.c), CRLF line ends; the id is "xxxx.xxxx.xxxx@host".
    source_headers=$((96 + ${#FROM} + ${#TO} + ${#HOSTNAME}))
fi

# tact_send CAMPAIGN NAME: fresh state, one send; prints "messages seconds"
tact_send() {
    local c=$1 name=$2 a b n
    rm -rf "$TMP/state-$name"
    "$BIN" --state "$TMP/state-$name" init >/dev/null
    a=$(now_ns)
    "$BIN" --state "$TMP/state-$name" --now "$NOW" send "$c" --smtp "$SMTP" --json >"$TMP/$name.json" 2>"$TMP/$name.err" \
        || { cat "$TMP/$name.err" >&2; die "tact send exited non-zero"; }
    b=$(now_ns)
    n=$(json_summary "$TMP/$name.json" sent) || die "no summary in tact's --json output"
    echo "$n $(secs "$a" "$b")"
}
# source_send CONNECTIONS MESSAGES BYTES: prints seconds
source_send() {
    local a b
    a=$(now_ns)
    "$SOURCE" -d -s "$1" -m "$2" -l "$(($3 > source_headers ? $3 - source_headers : 0))" \
        -f "$FROM" -t "$TO" 127.0.0.1:"$PORT" || die "smtp-source failed"
    b=$(now_ns)
    secs "$a" "$b"
}
# mailmerge_send: prints seconds
mailmerge_send() {
    local a b
    a=$(now_ns)
    "$MAILMERGE" --template "$BENCHES/mailmerge/winter-sale-text.txt" --database "$TMP/mm.csv" \
        --config "$TMP/mailmerge_send.conf" --no-dry-run --no-limit --output-format raw >/dev/null \
        || die "mailmerge failed"
    b=$(now_ns)
    secs "$a" "$b"
}

if ((SEND_ROWS > 0)); then
    say "message size (the text-only campaign, $SEND_ROWS rows)"
    tact preview "$CN" --out "$OUT/send-eml" >/dev/null 2>&1 || die "tact preview failed"
    send_msgs=$(find "$OUT/send-eml" -name '*.eml' | wc -l)
    bytes=$(find "$OUT/send-eml" -name '*.eml' -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s / NR }')
    echo "$send_msgs messages, average $bytes bytes; smtp-source -l $((bytes - source_headers)) (+ $source_headers bytes of its own headers)"
    python3 "$BENCHES/mailmerge/make_database.py" "$OUT/send-eml" "$TMP/send/customers.csv" "$TMP/mm.csv"
    printf '[smtp_server]\nhost = 127.0.0.1\nport = %s\nsecurity = Never\n' "$PORT" >"$TMP/mailmerge_send.conf"

    say "sends: $send_msgs messages each, $RUNS rounds (tact c1, smtp-source -s 1, tact c$CONCURRENCY, smtp-source -s $CONCURRENCY, mailmerge)"
    t1=() ts1=() tn=() tsn=() tmm=()
    for ((i = 1; i <= RUNS; i++)); do
        out=$(tact_send "$C1" c1)
        read -r n s <<<"$out"
        [[ $n -eq $send_msgs ]] || die "tact sent $n of $send_msgs messages at 1 connection"
        t1+=("$s")
        s=$(source_send 1 "$send_msgs" "$bytes")
        ts1+=("$s")
        out=$(tact_send "$CN" "c$CONCURRENCY")
        read -r n s <<<"$out"
        [[ $n -eq $send_msgs ]] || die "tact sent $n of $send_msgs messages at $CONCURRENCY connections"
        tn+=("$s")
        s=$(source_send "$CONCURRENCY" "$send_msgs" "$bytes")
        tsn+=("$s")
        s=$(mailmerge_send)
        tmm+=("$s")
        echo "  round $i (s): tact c1 ${t1[-1]}, smtp-source -s 1 ${ts1[-1]}, tact c$CONCURRENCY ${tn[-1]}, smtp-source -s $CONCURRENCY ${tsn[-1]}, mailmerge ${tmm[-1]}"
    done
    r1=$(rate "$send_msgs" "$(median "${t1[@]}")")
    rs1=$(rate "$send_msgs" "$(median "${ts1[@]}")")
    rn=$(rate "$send_msgs" "$(median "${tn[@]}")")
    rsn=$(rate "$send_msgs" "$(median "${tsn[@]}")")
    rmm=$(rate "$send_msgs" "$(median "${tmm[@]}")")
    echo "messages/s (median): tact c1 $r1, smtp-source -s 1 $rs1, tact c$CONCURRENCY $rn, smtp-source -s $CONCURRENCY $rsn, mailmerge $rmm"
    rm -rf -- "${OUT:?}/send-eml"
fi

if ((BIG_ROWS > 0)); then
    say "send to the big audience: $BIG_ROWS rows, $CONCURRENCY connections"
    if [[ -z ${bytes:-} ]]; then
        # Without the small send, take the size from the big campaign's first thousand rows.
        head -n 1001 "$TMP/big/customers.csv" >"$TMP/big-head.csv"
        sed "s|^audience = .*|audience = \"$TMP/big-head.csv\"|" "$CB" >"$TMP/big/campaigns/size.toml"
        tact preview "$TMP/big/campaigns/size.toml" --out "$OUT/size-eml" >/dev/null 2>&1 || die "tact preview failed"
        bytes=$(find "$OUT/size-eml" -name '*.eml' -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s / NR }')
    fi
    "$BIN" --state "$TMP/state-big" init >/dev/null
    /usr/bin/time -v -o "$TMP/big.time" "$BIN" --state "$TMP/state-big" --now "$NOW" send "$CB" --smtp "$SMTP" --json \
        >"$TMP/big.json" 2>"$TMP/big.err" || { tail "$TMP/big.err" >&2; die "the big send failed"; }
    big_sent=$(json_summary "$TMP/big.json" sent)
    big_loop=$(awk -v r="$(json_summary "$TMP/big.json" rate_per_second)" 'BEGIN { printf "%.0f", r }')
    big_wall=$(time_wall "$TMP/big.time")
    big_rate=$(rate "$big_sent" "$big_wall")
    big_rss=$(time_rss_mb "$TMP/big.time")
    echo "$big_sent sent; wall $big_wall s ($big_rate/s); the send loop $big_loop/s; peak RSS $big_rss MB"
    say "smtp-source -d -s $CONCURRENCY, $big_sent messages of $bytes bytes"
    big_ss=$(source_send "$CONCURRENCY" "$big_sent" "$bytes")
    big_srate=$(rate "$big_sent" "$big_ss")
    echo "$big_ss s: $big_srate/s"
fi

# --- the table ----------------------------------------------------------------------------
read -r load_end _ </proc/loadavg
say "results"
echo "Machine: $facts."
echo "Date: $started; tact $commit; load average $load_start at the start, $load_end at the end."
echo "Command: \`$command_line\`"
echo
echo "| measurement | tact | peer | ratio | target | result |"
echo "| --- | ---: | --- | ---: | --- | --- |"
row() { printf '| %s | %s | %s | %s | %s | %s |\n' "$@"; }
if ((CHECK_ROWS > 0)); then
    for c in "winter-sale:$check_wall:$check_cpu:$check_rss" "birthday-treat:$bday_wall:$bday_cpu:$bday_rss"; do
        IFS=: read -r name w u m <<<"$c"
        row "check $name, $(thousands "$CHECK_ROWS") rows: wall" "$w s" "" "" "< 7 s" "$(pass 'w < 7' w="$w")"
        row "check $name: CPU (user + sys)" "$u s" "" "" "context" ""
        row "check $name: peak RSS" "$m MB" "" "" "< 1024 MB" "$(pass 'm < 1024' m="$m")"
    done
fi
if ((PREVIEW_ROWS > 0)); then
    mp_tr=$(rate "$mp_msgs" "$mp_tact") mp_mr=$(rate "$mp_msgs" "$mp_mm")
    tx_tr=$(rate "$tx_msgs" "$tx_tact") tx_mr=$(rate "$tx_msgs" "$tx_mm")
    sm_mr=$(rate "$PREVIEW_ROWS" "$sm_mm")
    row "dry run, text + HTML, $(thousands "$mp_msgs") messages" "$(per_s "$mp_tr")" "mailmerge --dry-run $(per_s "$mp_mr")" "$(ratio "$mp_tr" "$mp_mr")x" ">= 2x" "$(pass 'a >= 2 * b' a="$mp_tr" b="$mp_mr")"
    row "dry run, text only, $(thousands "$tx_msgs") messages" "$(per_s "$tx_tr")" "mailmerge --dry-run $(per_s "$tx_mr")" "$(ratio "$tx_tr" "$tx_mr")x" ">= 2x" "$(pass 'a >= 2 * b' a="$tx_tr" b="$tx_mr")"
    row "dry run, text + HTML, vs mailmerge's --sample template" "$(per_s "$mp_tr")" "mailmerge --dry-run $(per_s "$sm_mr")" "$(ratio "$mp_tr" "$sm_mr")x" "context" ""
fi
if ((SEND_ROWS > 0)); then
    row "send, 1 connection, $(thousands "$send_msgs") messages of $bytes B" "$(per_s "$r1")" "" "" ">= 2000/s" "$(pass 'r >= 2000' r="$r1")"
    row "send, 1 connection" "$(per_s "$r1")" "smtp-source -d -s 1 $(per_s "$rs1")" "$(ratio "$r1" "$rs1")x" "context" ""
    row "send, 1 connection" "$(per_s "$r1")" "mailmerge $(per_s "$rmm")" "$(ratio "$r1" "$rmm")x" "context" ""
    row "send, $CONCURRENCY connections" "$(per_s "$rn")" "mailmerge $(per_s "$rmm")" "$(ratio "$rn" "$rmm")x" ">= 3x" "$(pass 'a >= 3 * b' a="$rn" b="$rmm")"
    row "send, $CONCURRENCY connections" "$(per_s "$rn")" "smtp-source -d -s $CONCURRENCY $(per_s "$rsn")" "$(ratio "$rn" "$rsn")x" ">= 0.5x" "$(pass 'a >= 0.5 * b' a="$rn" b="$rsn")"
fi
if ((BIG_ROWS > 0)); then
    row "send, $(thousands "$big_sent") recipients, $CONCURRENCY connections, whole command" "$(per_s "$big_rate")" "smtp-source -d -s $CONCURRENCY $(per_s "$big_srate")" "$(ratio "$big_rate" "$big_srate")x" ">= 0.5x" "$(pass 'a >= 0.5 * b' a="$big_rate" b="$big_srate")"
    row "send, $(thousands "$big_sent") recipients: the send loop alone" "$(per_s "$big_loop")" "smtp-source -d -s $CONCURRENCY $(per_s "$big_srate")" "$(ratio "$big_loop" "$big_srate")x" "context" ""
    row "send, $(thousands "$big_sent") recipients: peak RSS" "$big_rss MB" "" "" "< 300 MB" "$(pass 'm < 300' m="$big_rss")"
fi
