#!/usr/bin/env bash
# Builds the standalone one-folder bundle with PyInstaller: dist/cardfit/ (or OUT=DIR/cardfit)
# holding the `cardfit` executable (CLI; with no command it opens the app), the GUI and the
# engine, without torch. Then checks that it starts: `cardfit --version`.
#
#   bash packaging/build-bundle.sh            # -> dist/cardfit/cardfit
#   OUT=/tmp/b bash packaging/build-bundle.sh # -> /tmp/b/cardfit/cardfit
#
# PYTHON picks the interpreter that has cardfit's dependencies and PyInstaller (default:
# .venv's, made by packaging/setup.sh). The bundle runs on Linux machines with a glibc at
# least as new as the build machine's.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

py=${PYTHON:-}
if [[ -z $py ]]; then
  if [[ -x .venv/bin/python ]]; then py=.venv/bin/python; else py=python3; fi
fi
out=${OUT:-dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)
"$py" -c 'import PyInstaller' 2>/dev/null || {
  echo "build-bundle: $py lacks PyInstaller: $py -m pip install pyinstaller" >&2; exit 1; }

# The repository root is the package: PyInstaller finds `cardfit` through a folder whose
# only entry is a link named cardfit pointing at the root.
work=$(mktemp -d "${TMPDIR:-/tmp}/cardfit-bundle.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
ln -s "$repo" "$work/src/cardfit"

CARDFIT_REPO="$repo" CARDFIT_SRC="$work/src" PYTHONPATH="$work/src" \
  "$py" -m PyInstaller --noconfirm --clean --log-level "${LOG_LEVEL:-WARN}" \
  --distpath "$out" --workpath "$work/build" packaging/bundle/cardfit.spec

bin="$out/cardfit/cardfit"
"$bin" --version
echo "build-bundle: $bin ($(du -sh "$out/cardfit" | cut -f1))"
