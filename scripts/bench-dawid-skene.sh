#!/usr/bin/env bash
# Dawid-Skene on the same ~1M synthetic votes: our Rust EM against crowd-kit.
# Prints both times, their ratio and how many task labels agree.
#
# Usage: scripts/bench-dawid-skene.sh [VOTES] [SEED]
# Python: $SPOTCHECK_PYTHON, else .venv/bin/python (crowd-kit is installed
# into .venv when missing, as scripts/test.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."

votes="${1:-1000000}"
seed="${2:-7}"
python="${SPOTCHECK_PYTHON:-.venv/bin/python}"

if ! "$python" -c 'import crowdkit.aggregation' >/dev/null 2>&1; then
    if [ -n "${SPOTCHECK_PYTHON:-}" ]; then
        echo "$python lacks crowd-kit: pip install 'crowd-kit==1.4.2'" >&2
        exit 1
    fi
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check 'crowd-kit==1.4.2'
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo build --release --quiet -p spotcheck-bench
bench="${CARGO_TARGET_DIR:-target}/release/spotcheck-bench"

echo "== Rust (spotcheck-bench dawid-skene)"
"$bench" dawid-skene --votes "$votes" --seed "$seed" \
    --csv-out "$work/votes.csv" --labels-out "$work/rust.json" | tee "$work/rust.txt"

echo "== crowd-kit (tests/py/dawid_skene_reference.py)"
"$python" tests/py/dawid_skene_reference.py "$work/votes.csv" \
    --labels-out "$work/crowdkit.json" --timing 2>&1 | tee "$work/crowdkit.txt"

"$python" - "$work" <<'PY'
import json, re, sys
work = sys.argv[1]
rust_s = float(re.search(r"rust dawid-skene: ([0-9.]+) s", open(f"{work}/rust.txt").read()).group(1))
ck_s = float(re.search(r"DawidSkene: ([0-9.]+) s", open(f"{work}/crowdkit.txt").read()).group(1))
ours = json.load(open(f"{work}/rust.json"))
theirs = json.load(open(f"{work}/crowdkit.json"))
same = sum(1 for task, label in theirs.items() if ours.get(task) == label)
print("== summary")
print(f"rust      {rust_s:8.3f} s")
print(f"crowd-kit {ck_s:8.3f} s")
print(f"ratio     {ck_s / rust_s:8.1f}x faster")
print(f"agreement {same}/{len(theirs)} tasks ({100.0 * same / len(theirs):.3f}%)")
PY
