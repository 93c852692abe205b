#!/usr/bin/env bash
# Installs the wheel the way a practitioner would, beside fastai, in a fresh virtual environment with
# no nbs/ in sight, and checks that it works there: `pip check` passes, every miniai module imports,
# the Learner fits one epoch on a slice, and the console scripts run.
# Called by tools/test.sh when CI=true or with --install. Exit 0 = all good.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/miniai-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "-- building the wheel"
python -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" . >/dev/null
whl=$(ls "$work"/dist/*.whl)
echo "   $(basename "$whl")"
case "$(basename "$whl")" in miniai_course-*) ;; *) echo "FAIL: the wheel is not named miniai_course-*"; exit 1;; esac
echo "-- fresh venv: pip install fastai + the wheel"
python -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install -q fastai "$whl"
"$py" -m pip check
"$py" -m pip list 2>/dev/null | grep -iE '^(fastai|fastcore|miniai-course|torch) '
cd "$work"   # away from the repo: only the installed wheel can be imported
MINIAI_QUICK=1 "$py" - <<'PY'
import importlib, pkgutil, miniai, fastai, fastcore
from pathlib import Path
assert 'site-packages' in miniai.__file__, miniai.__file__
mods = [m.name for m in pkgutil.iter_modules(miniai.__path__) if not m.name.startswith('_')]
for m in mods: importlib.import_module(f'miniai.{m}')
print(f'imported {len(mods)} miniai modules next to fastai {fastai.__version__} (fastcore {fastcore.__version__})')
import torch.nn.functional as F
from torch import nn
from miniai.core import set_seed
from miniai.datasets import DataLoaders
from miniai.learner import TrainLearner, DeviceCB, MetricsCB
from torcheval.metrics import MulticlassAccuracy
set_seed(42)
dls = DataLoaders.fashion(batch_size=256, n_train=1000, seed=42)
model = nn.Sequential(nn.Flatten(), nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10))
learn = TrainLearner(model, dls, F.cross_entropy, lr=0.2, cbs=[DeviceCB(), MetricsCB(accuracy=MulticlassAccuracy())])
learn.fit(1)
assert len(learn.history) == 2, learn.history
print('Learner fit one epoch:', learn.history[-1])
PY
for s in $(python -c "
import configparser; c=configparser.ConfigParser(delimiters=['=']); c.read('$root/settings.ini')
print(' '.join(x.split('=')[0] for x in c['DEFAULT'].get('console_scripts','').split()))"); do
  "$work/venv/bin/$s" --help >/dev/null && echo "console script ok: $s --help"
done
echo "install check: ok"
