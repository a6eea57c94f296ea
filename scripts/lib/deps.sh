# Sourced by scripts/demo.sh and scripts/test.sh: install missing Debian
# packages (idempotent, quiet) and check the Rust toolchain.

# Packages the build (clang etc. compile bpf/redirect.bpf.c) and the lab need.
# tcpdump reads back the captures of --pcap (tests/xdp.rs); tshark dissects our SoupBinTCP
# (tests/venue_tshark.rs), a check of the framing by code we did not write.
# python3 runs the bench's helpers (scripts/lib/*.py).
TG_PACKAGES=(iproute2 ethtool sockperf iputils-ping procps tcpdump tshark nftables clang llvm libelf-dev zlib1g-dev pkg-config make python3)
# The suite only: chromium renders report --plot's SVG (tests/plot.rs); python3-venv holds QuickFIX
# (ensure_quickfix).
TG_TEST_PACKAGES=(chromium python3-venv)

ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  if [[ $(id -u) != 0 ]]; then
    echo "deps: missing packages ${missing[*]} and not root: install them with apt-get" >&2
    return 1
  fi
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_rust() {
  if ! command -v cargo >/dev/null && [[ -x $HOME/.cargo/bin/cargo ]]; then
    export PATH=$HOME/.cargo/bin:$PATH
  fi
  command -v cargo >/dev/null || { echo "deps: cargo not found (install a Rust toolchain)" >&2; return 1; }
}

# promtool checks the alert rules in deploy/prometheus (scripts/test.sh). It
# comes from Debian's prometheus package, but only the binary is taken:
# the package is downloaded and unpacked into a cache, never installed
# (installing it would start a Prometheus server on the host). Sets PROMTOOL.
ensure_promtool() {
  if command -v promtool >/dev/null; then
    PROMTOOL=$(command -v promtool)
    return 0
  fi
  local dir=${XDG_CACHE_HOME:-$HOME/.cache}/tailgate/promtool
  if [[ ! -x $dir/promtool ]]; then
    local tmp
    tmp=$(mktemp -d)
    if ! (cd "$tmp" && { apt-get download prometheus >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get download prometheus >/dev/null 2>&1; }; }); then
      rm -rf "$tmp"
      echo "deps: cannot download Debian's prometheus package (for promtool)" >&2
      return 1
    fi
    dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x" && mkdir -p "$dir" && install -m 0755 "$tmp/x/usr/bin/promtool" "$dir/promtool"
    local rc=$?
    rm -rf "$tmp"
    ((rc == 0)) || { echo "deps: cannot unpack promtool from Debian's prometheus package" >&2; return 1; }
  fi
  PROMTOOL=$dir/promtool
}

# QuickFIX checks our FIX 4.4 encoding against its FIX44 data dictionary (tests/fix_wire.rs):
# the PyPI wheel quickfix-ssl, which ships FIX44.xml and needs no compiler, installed into a
# virtual environment of its own in the cache, never into the host's Python. Sets QUICKFIX_PYTHON.
ensure_quickfix() {
  local dir=${XDG_CACHE_HOME:-$HOME/.cache}/tailgate/quickfix
  if ! "$dir/bin/python" -c 'import quickfix' 2>/dev/null; then
    rm -rf "$dir"
    if ! { python3 -m venv "$dir" >/dev/null 2>&1 &&
      "$dir/bin/python" -m pip install -q --disable-pip-version-check quickfix-ssl==1.15.1.post4 >/dev/null 2>&1; }; then
      rm -rf "$dir"
      echo "deps: cannot install QuickFIX (pip: quickfix-ssl 1.15.1.post4 into a virtual environment)" >&2
      return 1
    fi
  fi
  QUICKFIX_PYTHON=$dir/bin/python
}
