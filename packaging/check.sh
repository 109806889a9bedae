#!/usr/bin/env bash
# What a new user gets from `pip install nbvene`: build the wheel and sdist, check what the wheel
# holds, install it into a fresh venv with no extras and no constraints file (torch pinned only,
# to stay on the CPU build these machines hold), then run the README's first examples verbatim
# and a first %%intervene cell typed into a real IPython terminal.
#   bash packaging/check.sh            (run by .ci/run; make package)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORK=$(mktemp -d -t nbvene-package-XXXX)
trap 'rm -rf "$WORK"' EXIT

echo "-- build: wheel and sdist into $WORK/dist"
"$PY" -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; exit 1; }
ls -l "$WORK/dist"
"$PY" packaging/wheel_contents.py "$WORK"/dist/nbvene-*.whl "$WORK"/dist/nbvene-*.tar.gz

echo "-- a fresh venv with the wheel alone (no extras, no constraints file; torch pinned)"
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
"$WORK/venv/bin/python" -m pip install -q "$WORK"/dist/nbvene-*.whl "torch==2.13.0" 2>&1 \
  | grep -v "^WARNING: Location" || true
"$WORK/venv/bin/python" -m pip list 2>/dev/null \
  | grep -iE "^(torch|transformers|accelerate|pandas|ipython|ipywidgets|anywidget|altair) "
if "$WORK/venv/bin/python" -m pip list 2>/dev/null | grep -iE "^(pyvene|pytest|vl-convert-python) "; then
  echo "a test-only or optional package came with the plain install" >&2
  exit 1
fi

echo "-- the README's Ten lines and ROME example, verbatim (outside the checkout)"
mkdir -p "$WORK/packaging"
cp README.md "$WORK/"
cp packaging/readme_examples.py packaging/first_cell.ipy "$WORK/packaging/"
(cd "$WORK" && "$WORK/venv/bin/python" packaging/readme_examples.py)

echo "-- %load_ext nbvene and a %%intervene cell in a real IPython terminal"
out=$(cd "$WORK" && "$WORK/venv/bin/ipython" --simple-prompt --no-banner --colors=nocolor \
  <packaging/first_cell.ipy 2>&1)
echo "$out" | tail -5
if ! grep -q "SHAPE (2,) AXES \['layer'\]" <<<"$out" || grep -qE "Traceback|Error" <<<"$out"; then
  echo "$out" >&2
  echo "the %%intervene cell did not give its result" >&2
  exit 1
fi
echo "packaging check: ok"
