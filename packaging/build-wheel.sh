#!/usr/bin/env bash
# Builds the sdist and the wheel into dist/ (or OUT=DIR) and checks both with twine.
#
#   bash packaging/build-wheel.sh                   # isolated build (fetches setuptools)
#   bash packaging/build-wheel.sh --no-isolation    # offline: uses this environment's setuptools
#
# Extra arguments go to `python -m build`. PYTHON picks the interpreter (default: .venv's,
# else python3); it needs `build` and `twine` (pip install 'cardfit[dist]', or setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

py=${PYTHON:-}
if [[ -z $py ]]; then
  if [[ -x .venv/bin/python ]]; then py=.venv/bin/python; else py=python3; fi
fi
out=${OUT:-dist}
"$py" -c 'import build, twine' 2>/dev/null || {
  echo "build-wheel: $py lacks build/twine: $py -m pip install build twine" >&2; exit 1; }

# Only this version's files: an old wheel beside it would pass twine but ship stale code.
version=$("$py" -c 'import ast, pathlib
src = pathlib.Path("__init__.py").read_text()
print(next(n.value.value for n in ast.parse(src).body if isinstance(n, ast.Assign)
           and getattr(n.targets[0], "id", "") == "__version__"))')
mkdir -p "$out"
rm -f "$out/cardfit-$version.tar.gz" "$out/cardfit-$version-"*.whl

# sdist first, then the wheel built from the unpacked sdist (build's default), so a file
# missing from the sdist shows up as a file missing from the wheel.
"$py" -m build --outdir "$out" "$@" .
"$py" -m twine check --strict "$out/cardfit-$version.tar.gz" "$out/cardfit-$version-"*.whl
echo "build-wheel: $(ls "$out"/cardfit-"$version"* | tr '\n' ' ')"
