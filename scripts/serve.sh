#!/usr/bin/env bash
# One command: set up (idempotent) and run the tile service with an embedded Redis on http://127.0.0.1:8000/.
set -euo pipefail
cd "$(dirname "$0")/.."
SKIP_APT=1 bash scripts/setup.sh
exec .venv/bin/infinitygan serve "$@"
