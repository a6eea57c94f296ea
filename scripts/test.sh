#!/usr/bin/env bash
# Run every check: the alert rules (promtool check and test), formatting, clippy, the docs (warnings
# denied), unit tests, and the lab tests in
# network namespaces (as root; without root they skip with a message).
# Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/deps.sh

ensure_rust
ensure_packages "${TG_PACKAGES[@]}" "${TG_TEST_PACKAGES[@]}"
ensure_promtool
if ensure_quickfix; then
  export TAILGATE_QUICKFIX_PYTHON=$QUICKFIX_PYTHON
else
  echo "test.sh: QuickFIX could not be installed: the tests against it will skip" >&2
fi

if [[ $(id -u) == 0 ]]; then
  # As root the lab tests must run, not skip.
  export TAILGATE_REQUIRE_LAB=1
  # Namespaces left by an interrupted test run (fixtures are named tgt<pid><n>g/c/x).
  for ns in $(ip netns list | awk '{print $1}' | grep -E '^tgt[0-9]+[gcx]$' || true); do
    ip netns del "$ns" 2>/dev/null || true
  done
else
  echo "test.sh: not root: the lab tests will skip" >&2
fi

echo "== promtool check rules, promtool test rules (deploy/prometheus)"
"$PROMTOOL" check rules deploy/prometheus/tailgate-rules.yml
(cd deploy/prometheus && "$PROMTOOL" test rules tailgate-rules.test.yml)
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet
echo "== cargo build --examples"
cargo build --examples --quiet
echo "== cargo test"
cargo test --all-targets --quiet
cargo test --doc --quiet
if [[ $(id -u) == 0 ]]; then
  # The in-process stack tests need no network: prove it in a namespace
  # with no interfaces at all (not even loopback up).
  echo "== cargo test --test stack --test recovery --test conn --test defence, inside unshare -n"
  unshare -n cargo test --test stack --test recovery --test conn --test defence --quiet
fi
echo "== all tests passed"
