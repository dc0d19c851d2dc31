#!/usr/bin/env bash
# tact's speed benchmarks (foundation issue): measurement and documentation, NOT run by CI.
#
#   benches/compare.sh              # release build, then about 2-3 minutes
#   KEEP=1 benches/compare.sh       # keep the temporary directory for a look afterwards
#
# Targets, on a 2-core machine:
#   1. `tact check` over a generated 1,000,000-row audience: under 30 s wall and under
#      1 GB peak RSS.
#   2. `tact preview --out` of a 10,000-row audience: at least 2x the messages/s of the
#      Python `mailmerge` CLI's dry run rendering the SAME messages from the same rows
#      and the same campaign (headers, text part, HTML part).
#
# How the comparison is kept fair:
#   * both get the same recipients: mailmerge cannot segment, check consent or seal
#     unsubscribe tokens, so its database is built from tact's own preview output
#     (benches/mailmerge/make_database.py): one row per message tact wrote;
#   * both render the same campaign: benches/mailmerge/winter-sale.txt is templates/
#     winter-sale.{txt,html}.tera as Jinja2, and benches/mailmerge/same_messages.py
#     proves, message by message, that To, Subject and the decoded parts are identical;
#   * both write to tmpfs (/dev/shm when writable): on ext4, creating thousands of
#     files right after deleting thousands (the previous run) makes the kernel's inode
#     allocator crawl (`recently_deleted`), which measures the disk, not the program;
#   * wall time of the whole command, process start to exit, median of $RUNS runs.
# It also times the text-only variant (no HTML part: mailmerge's fast path, as it parses
# every HTML part with html5lib) and mailmerge's own `--sample` template, the trivial
# one behind the often quoted ~9,000 messages/s.
#
# Environment: CHECK_ROWS (1000000), PREVIEW_ROWS (10000), RUNS (3),
#              MAILMERGE_SPEC (mailmerge==2.3.0), KEEP (unset), TMPDIR.

set -euo pipefail

CHECK_ROWS=${CHECK_ROWS:-1000000}
PREVIEW_ROWS=${PREVIEW_ROWS:-10000}
RUNS=${RUNS:-3}
MAILMERGE_SPEC=${MAILMERGE_SPEC:-mailmerge==2.3.0}
NOW=2026-11-23T12:00:00Z

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCHES=$REPO/benches
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tact-bench.XXXXXX")
if [[ -w /dev/shm ]]; then OUT=$(mktemp -d /dev/shm/tact-bench.XXXXXX); else OUT=$TMP/out; mkdir -p "$OUT"; fi
cleanup() {
    if [[ -n ${KEEP:-} ]]; then
        echo "kept: $TMP $OUT"
    else
        rm -rf -- "$TMP" "$OUT"
    fi
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }
die() { printf 'compare.sh: error: %s\n' "$*" >&2; exit 1; }
now_ns() { date +%s%N; }
# seconds between two now_ns readings, 3 decimals
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
verdict() { awk -v ok="$1" 'BEGIN { print (ok ? "PASS" : "FAIL") }'; }

# --- tools --------------------------------------------------------------------------
command -v python3 >/dev/null || die "python3 is required"
command -v cargo >/dev/null || die "cargo is required"
if [[ ! -x /usr/bin/time ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "installing GNU time (Debian package 'time') for peak RSS..."
        apt-get install -y -qq time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
    else
        die "/usr/bin/time (GNU time) is required: apt-get install time"
    fi
fi

say "machine"
echo "$(nproc) cores; $(uname -sr); $(python3 --version)"
read -r load1 _ < /proc/loadavg
echo "load average (1 min): $load1"
if awk -v l="$load1" 'BEGIN { exit !(l > 0.5) }'; then
    echo "warning: something else is using the CPU; the figures below will be noisy (rerun on an idle machine)"
fi
echo "scratch: $TMP; message output: $OUT"

say "cargo build --release"
(cd "$REPO" && cargo build --release --quiet)
BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/tact
[[ -x $BIN ]] || die "no binary at $BIN"
tact() { "$BIN" --state "$TMP/state" --now "$NOW" "$@"; }

# --- 1. check over CHECK_ROWS rows ----------------------------------------------------
say "generate $CHECK_ROWS rows"
python3 "$BENCHES/gen_audience.py" "$CHECK_ROWS" "$TMP/big"
"$BIN" --state "$TMP/state" init >/dev/null

say "tact check, $CHECK_ROWS rows"
rc=0
/usr/bin/time -v -o "$TMP/check.time" "$BIN" --state "$TMP/state" --now "$NOW" \
    check "$TMP/big/campaigns/winter-sale.toml" >"$TMP/check.out" 2>"$TMP/check.err" || rc=$?
sed -n '2p' "$TMP/check.out"
[[ $rc -eq 0 ]] || { cat "$TMP/check.err" >&2; die "tact check exited $rc (expected 0)"; }
check_wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.2f", s }' "$TMP/check.time")
check_rss_kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$TMP/check.time")
check_user=$(awk -F': ' '/User time/ { print $2 }' "$TMP/check.time")
check_sys=$(awk -F': ' '/System time/ { print $2 }' "$TMP/check.time")
check_cpu=$(awk -F': ' '/Percent of CPU/ { print $2 }' "$TMP/check.time")
check_rss_mb=$(awk -v k="$check_rss_kb" 'BEGIN { printf "%.0f", k / 1024 }')
echo "wall ${check_wall} s; peak RSS ${check_rss_mb} MB; CPU user ${check_user} s + sys ${check_sys} s (${check_cpu} of one core)"

# --- 2. preview of PREVIEW_ROWS rows vs mailmerge -------------------------------------
say "generate $PREVIEW_ROWS rows, and a text-only copy of the campaign"
python3 "$BENCHES/gen_audience.py" "$PREVIEW_ROWS" "$TMP/small"
cp -r "$REPO/templates" "$TMP/templates-text"
rm "$TMP/templates-text/winter-sale.html.tera"
sed "s|^templates = .*|templates = \"$TMP/templates-text\"|" \
    "$TMP/small/campaigns/winter-sale.toml" >"$TMP/small/campaigns/winter-sale-text.toml"
grep -q "templates-text" "$TMP/small/campaigns/winter-sale-text.toml" || die "could not point the text-only campaign at its templates"

say "install $MAILMERGE_SPEC into a venv"
python3 -m venv "$TMP/venv"
"$TMP/venv/bin/pip" install --quiet --disable-pip-version-check "$MAILMERGE_SPEC"
MAILMERGE=$TMP/venv/bin/mailmerge
echo "$("$MAILMERGE" --version)"
# Required even for a dry run; never used.
printf '[smtp_server]\nhost = 127.0.0.1\nport = 25\n' >"$TMP/mailmerge_server.conf"

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
        "$MAILMERGE" --template "$template" --database "$database" --config "$TMP/mailmerge_server.conf" \
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
    python3 "$BENCHES/mailmerge/make_database.py" "$OUT/$name" "$TMP/small/customers.csv" "$TMP/$name.csv"
    mm_s=$(time_mailmerge "$template" "$TMP/$name.csv" "$name")
    python3 "$BENCHES/mailmerge/same_messages.py" "$OUT/$name" "$OUT/$name.out" >&2
}

say "preview vs mailmerge: winter-sale, text + HTML ($PREVIEW_ROWS rows, median of $RUNS)"
race "$TMP/small/campaigns/winter-sale.toml" "$BENCHES/mailmerge/winter-sale.txt" multipart
mp_msgs=$msgs mp_tact=$tact_s mp_mm=$mm_s

say "preview vs mailmerge: winter-sale, text only ($PREVIEW_ROWS rows, median of $RUNS)"
race "$TMP/small/campaigns/winter-sale-text.toml" "$BENCHES/mailmerge/winter-sale-text.txt" text
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

# --- summary --------------------------------------------------------------------------
mp_tr=$(rate "$mp_msgs" "$mp_tact") mp_mr=$(rate "$mp_msgs" "$mp_mm")
tx_tr=$(rate "$tx_msgs" "$tx_tact") tx_mr=$(rate "$tx_msgs" "$tx_mm")
sm_mr=$(rate "$PREVIEW_ROWS" "$sm_mm")
say "summary"
printf 'tact check, %d rows:   wall %s s (target < 30 s: %s), peak RSS %s MB (target < 1024 MB: %s), %s of one core\n' \
    "$CHECK_ROWS" "$check_wall" "$(verdict "$(awk -v w="$check_wall" 'BEGIN { print (w < 30) }')")" \
    "$check_rss_mb" "$(verdict "$(awk -v m="$check_rss_mb" 'BEGIN { print (m < 1024) }')")" "$check_cpu"
printf '\n%-34s %9s %10s %12s\n' "preview, $PREVIEW_ROWS rows" messages "wall s" "messages/s"
printf '%-34s %9d %10s %12s\n' "tact preview, text + HTML" "$mp_msgs" "$mp_tact" "$mp_tr"
printf '%-34s %9d %10s %12s\n' "mailmerge --dry-run, text + HTML" "$mp_msgs" "$mp_mm" "$mp_mr"
printf '%-34s %9d %10s %12s\n' "tact preview, text only" "$tx_msgs" "$tx_tact" "$tx_tr"
printf '%-34s %9d %10s %12s\n' "mailmerge --dry-run, text only" "$tx_msgs" "$tx_mm" "$tx_mr"
printf '%-34s %9d %10s %12s\n' "mailmerge --dry-run, --sample tpl" "$PREVIEW_ROWS" "$sm_mm" "$sm_mr"
printf '\nratio tact / mailmerge, same messages: text + HTML %sx, text only %sx (target >= 2x: %s)\n' \
    "$(ratio "$mp_tr" "$mp_mr")" "$(ratio "$tx_tr" "$tx_mr")" \
    "$(verdict "$(awk -v a="$(ratio "$mp_tr" "$mp_mr")" -v b="$(ratio "$tx_tr" "$tx_mr")" 'BEGIN { print (a >= 2 && b >= 2) }')")"
printf 'tact (text + HTML) against mailmerge on its trivial --sample template: %sx\n' "$(ratio "$mp_tr" "$sm_mr")"
