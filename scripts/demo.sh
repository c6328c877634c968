#!/usr/bin/env bash
# The README's first command: install, then run the demo (quick preset unless PRESET=full).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/advrm demo --preset "${PRESET:-quick}" --out "${OUT:-runs/demo-${PRESET:-quick}}" "$@"
