#!/usr/bin/env bash
# Replay the Binder image build: a fresh venv from binder/requirements.txt (its CPU torch line
# swapped for the torch these machines hold, since the PyTorch index is not reachable here),
# then binder/postBuild as Binder runs it, then the first tutorial executed in that venv.
#   bash packaging/binder.sh            (run by .ci/run; make package)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d -t nbvene-binder-XXXX)
trap 'rm -rf "$WORK"' EXIT

grep -vE "^--extra-index-url|^torch==" binder/requirements.txt >"$WORK/requirements.txt"
echo "torch==2.13.0" >>"$WORK/requirements.txt"
python3 -m venv "$WORK/venv"
export PATH="$WORK/venv/bin:$PATH"
echo "-- pip install -r binder/requirements.txt (torch==2.13.0)"
python -m pip install -q -r "$WORK/requirements.txt" 2>&1 | grep -v "^WARNING: Location" || true
echo "-- binder/postBuild"
bash binder/postBuild
echo "-- notebooks/01_getting_started.ipynb, executed in the Binder venv"
jupyter nbconvert --to notebook --execute --output-dir "$WORK" \
  --ExecutePreprocessor.timeout=1200 notebooks/01_getting_started.ipynb
echo "binder replay: ok"
