#!/usr/bin/env bash
# Serve web/ on 127.0.0.1 only (PORT, default 8000). Static files; nothing is uploaded anywhere.
set -euo pipefail
cd "$(dirname "$0")/../web"
PORT=${PORT:-8000}
echo "open http://127.0.0.1:$PORT/  (Ctrl-C to stop)"
exec python3 -m http.server "$PORT" --bind 127.0.0.1
