#!/usr/bin/env bash
# Installs the Debian/Ubuntu system libraries Qt needs to run offscreen (and, with --xvfb,
# in a real window under Xvfb), poppler-utils when pdftoppm is missing, and the desktop-entry
# and AppStream validators the packaging tests use. Does nothing
# when they are all present, so it is cheap to call from every set-up and test command.
set -euo pipefail

pkgs=(libglib2.0-0 libgl1 libegl1 libx11-6 libdbus-1-3 libfontconfig1 libxkbcommon0)
if [[ "${1:-}" == "--xvfb" ]]; then
  pkgs+=(xvfb xauth libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
         libxcb-render-util0 libxcb-render0 libxcb-shape0 libxcb-util1 libxcb-xkb1
         libxkbcommon-x11-0)
fi
# tests/test_report_pdf.py turns the PDF report's pages into PNG with poppler's pdftoppm.
command -v pdftoppm >/dev/null 2>&1 || pkgs+=(poppler-utils)
# tests/test_packaging_linux.py validates the desktop entry and the AppStream metainfo.
command -v desktop-file-validate >/dev/null 2>&1 || pkgs+=(desktop-file-utils)
command -v appstreamcli >/dev/null 2>&1 || pkgs+=(appstream)

command -v dpkg-query >/dev/null 2>&1 || { echo "system-deps: not a Debian/Ubuntu system; install Qt's libraries (${pkgs[*]}) yourself" >&2; exit 0; }

missing=()
for p in "${pkgs[@]}"; do
  # Debian 13 / Ubuntu 24.04 renamed libglib2.0-0 to libglib2.0-0t64: either counts.
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" && continue
  dpkg-query -W -f='${Status}' "${p}t64" 2>/dev/null | grep -q "ok installed" && continue
  missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "system-deps: installing ${missing[*]}" >&2
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
if ! $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
  # Newer releases carry some of these under a t64 name only.
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]/%/t64}" || {
    echo "system-deps: could not install ${missing[*]}" >&2; exit 1; }
fi
