#!/usr/bin/env bash
# Fetch the offline datasets from Debian packages into data/ (idempotent).
#   data/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz  (Debian dataset-fashion-mnist)
#   data/fortunes/<topic>                                               (Debian fortunes)
# The packages are unpacked with dpkg-deb -x; nothing is installed system-wide.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/data"
mkdir -p "$dest"
if [ -f "$dest/fashion-mnist/t10k-labels-idx1-ubyte.gz" ] && [ -f "$dest/fortunes/science" ]; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
if ! apt-get download dataset-fashion-mnist fortunes >/dev/null 2>&1; then
  apt-get update >/dev/null
  apt-get download dataset-fashion-mnist fortunes >/dev/null
fi
for d in *.deb; do dpkg-deb -x "$d" unpacked/; done
mkdir -p "$dest/fashion-mnist" "$dest/fortunes"
cp unpacked/usr/share/datasets/fashion-mnist/*.gz "$dest/fashion-mnist/"
find unpacked/usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' \
  -exec cp {} "$dest/fortunes/" \;
echo "data ready in $dest"
