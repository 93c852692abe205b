#!/usr/bin/env bash
# The test command (README step 3). Checks that the library is what the notebooks export, that the
# notebooks are clean, runs every notebook in quick mode, then the pytest suite. With --install (and
# always under CI=true) it also installs the wheel beside fastai in a fresh venv (tools/test_install.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
# one thread per notebook: nbdev_test runs two notebooks at once on two cores, and oversubscribed
# torch threads are 5-10x slower than one thread each
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
export MINIAI_QUICK=1 MPLBACKEND=Agg HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
fail=0; passed=0; failed=0

step() { echo; echo "== $*"; }

state() { git status --porcelain --untracked-files=all -- miniai nbs 2>/dev/null; git diff -- miniai nbs 2>/dev/null | md5sum; }

step "library in sync with notebooks (nbdev_export changes nothing)"
before=$(state)
nbdev_export
if [ "$(state)" != "$before" ]; then
  echo "FAIL: nbdev_export changed miniai/. Run nbdev_export and commit the result:"; git status --short -- miniai
  fail=1; failed=$((failed+1))
else echo "ok"; passed=$((passed+1)); fi

step "notebooks clean (nbdev_clean changes nothing)"
before=$(state)
nbdev_clean
if [ "$(state)" != "$before" ]; then
  echo "FAIL: nbdev_clean changed notebooks. Run nbdev_clean and commit the result:"; git status --short -- nbs
  fail=1; failed=$((failed+1))
else echo "ok"; passed=$((passed+1)); fi

step "README.md in sync with nbs/index.ipynb"
if python tools/readme.py --check; then passed=$((passed+1)); else fail=1; failed=$((failed+1)); fi

step "notebooks in quick mode (nbdev_test)"
n_nbs=$(find nbs -name '[!_.]*.ipynb' | wc -l)
if [ "$n_nbs" -eq 0 ]; then echo "FAIL: no notebooks found"; fail=1; failed=$((failed+1))
elif nbdev_test --n_workers "${MINIAI_TEST_WORKERS:-2}" --timing --do_print; then
  echo "ok: $n_nbs notebooks"; passed=$((passed+n_nbs))
else echo "FAIL: nbdev_test"; fail=1; failed=$((failed+1)); fi

if [ "${CI:-}" = "true" ] || [[ " $* " == *" --install "* ]]; then
  step "the wheel beside fastai in a fresh venv (tools/test_install.sh)"
  if bash tools/test_install.sh; then passed=$((passed+1)); else echo "FAIL: install check"; fail=1; failed=$((failed+1)); fi
fi

if [ -d tests ]; then
  step "pytest tests/"
  python -m pytest -q -p no:cacheprovider tests; rc=$?
  if [ $rc -eq 5 ]; then echo "FAIL: pytest collected no tests"; fail=1; failed=$((failed+1))
  elif [ $rc -ne 0 ]; then echo "FAIL: pytest"; fail=1; failed=$((failed+1))
  else passed=$((passed+1)); fi
fi

echo
echo "checks: $passed passed, $failed failed"
exit $fail
