#!/usr/bin/env bash
# Sets up everything forgeline needs on a fresh machine, then builds the nodes. Idempotent:
# each step checks first and does nothing when its work is already done.
#
#   scripts/setup.sh            # venv + Python tools + system packages + release build
#   FORGELINE_SKIP_BUILD=1 ...  # everything but the cargo build
#
# Installs: a Python venv in .venv (Python >= 3.11) with the pinned packages of
# tools/requirements.txt (dora CLI 1.1.0, ONNX Runtime, training and test tools) and, as root,
# the Debian packages the tests need. Fails with a message naming what is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# --- toolchains -------------------------------------------------------------------------------
command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (https://rustup.rs), then rerun"
PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install Python >= 3.11 (or set PYTHON=/path/to/python3.11)"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || die "$("$PYTHON" --version 2>&1) is too old: forgeline needs Python >= 3.11 (set PYTHON=...)"

# --- system packages (Debian) -----------------------------------------------------------------
APT_PACKAGES=(mosquitto mosquitto-clients openssl minisign)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The broker is started by the tests themselves, on loopback ports of their own.
    (systemctl disable --now mosquitto >/dev/null 2>&1 || service mosquitto stop >/dev/null 2>&1 || true)
  else
    die "missing Debian packages: ${missing[*]} (run: sudo apt-get install ${missing[*]})"
  fi
fi

# --- Python venv --------------------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv .venv
fi
# Every pinned requirements file of the project: the tools' own, then each crate's test peers.
REQ_FILES=(tools/requirements.txt)
for f in tools/python/requirements*.txt operators/*/requirements-test.txt nodes/*/requirements-test.txt; do
  [ -f "$f" ] && REQ_FILES+=("$f")
done
stamp=.venv/.forgeline-requirements.sha256
want=$(cat "${REQ_FILES[@]}" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing Python packages from ${REQ_FILES[*]}"
  args=()
  for f in "${REQ_FILES[@]}"; do args+=(-r "$f"); done
  .venv/bin/pip install -q --disable-pip-version-check "${args[@]}" \
    || die "pip install failed (is PyPI reachable?)"
  echo "$want" > "$stamp"
fi
.venv/bin/dora --version >/dev/null 2>&1 || die "the dora CLI did not install into .venv (pip install dora-rs-cli==1.1.0)"

# --- build ----------------------------------------------------------------------------------
if [ -z "${FORGELINE_SKIP_BUILD:-}" ]; then
  say "building the nodes (cargo build --release -p forgeline)"
  cargo build --release --locked -p forgeline
fi
say "ready"
