#!/usr/bin/env bash
# Runs one example app on 127.0.0.1:3000 and Cloakroom in front of it on
# 127.0.0.1:8080, configured by the example proxy.toml. Open
# http://127.0.0.1:8080/; Ctrl-C stops both.
#
#   examples/run.sh node|python|go
set -euo pipefail
cd "$(dirname "$0")/.."

scratch=""
case "${1:-}" in
  node)
    # express, installed from the committed lock file on the first run.
    [[ -e examples/node/node_modules/.package-lock.json ]] ||
      (cd examples/node && npm ci --no-audit --no-fund)
    app=(node examples/node/app.js)
    ;;
  python)
    app=(python3 examples/python/app.py)
    ;;
  go)
    # Built first, so that stopping the app stops the app (not `go run`).
    scratch="$(mktemp -d)"
    (cd examples/go && go build -o "$scratch/app" .)
    app=("$scratch/app")
    ;;
  *)
    echo "usage: $0 node|python|go" >&2
    exit 64
    ;;
esac

# Build Cloakroom before the app starts, so a slow first build leaves no
# app waiting alone.
cargo build --release

PORT=3000 "${app[@]}" &
app_pid=$!
stop_app() {
  kill "$app_pid" 2>/dev/null || true
  wait "$app_pid" 2>/dev/null || true
  [[ -z $scratch ]] || rm -rf "$scratch"
}
trap stop_app EXIT

# Ctrl-C reaches Cloakroom, which drains and exits; the trap then stops the app.
cargo run --release -- --config proxy.toml
