#!/usr/bin/env bash
# One command for a fresh clone: the Fashion-MNIST files (where apt exists), then miniai with its dev
# tools. `.ci/run` calls this too, so the README's install step is exactly what CI checks.
#   bash tools/setup.sh           # data + `pip install -e ".[dev]"`
#   bash tools/setup.sh --no-dev  # data + the library alone
set -euo pipefail
cd "$(dirname "$0")/.."
data=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -f "$data" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo=sudo
    echo "== Fashion-MNIST: apt-get install dataset-fashion-mnist"
    ($sudo apt-get update -qq || true) && $sudo apt-get install -y -qq dataset-fashion-mnist \
      || echo "apt could not install dataset-fashion-mnist; miniai will look in \$MINIAI_DATA, its cache, then download"
  else
    echo "== no apt here: miniai will look for Fashion-MNIST in \$MINIAI_DATA and its cache, then download it once"
  fi
fi
extra='[dev]'; [ "${1:-}" = "--no-dev" ] && extra=''
echo "== pip install -e .$extra"
python -m pip install -q -e ".$extra"
python -m pip check
