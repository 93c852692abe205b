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

logs=$(mktemp -d)
install=0
if [ "${CI:-}" = "true" ] || [[ " $* " == *" --install "* ]]; then
  # the install check is mostly pip waiting on the network: it runs beside the notebooks, its log is shown at the end
  install=1; bash tools/test_install.sh > "$logs/install.log" 2>&1 & install_pid=$!
fi
# the from-scratch Stable Diffusion stacks (35-49 need them) train once in the background while the
# earlier notebooks run; a notebook that needs a stack first waits for it (build_once's file lock)
python -c "from miniai.latent import pretrained_stack; pretrained_stack('small'); pretrained_stack('small', data='fashion')" \
  > "$logs/stacks.log" 2>&1 & stacks_pid=$!

step "notebooks in quick mode (nbdev_test)"
n_nbs=$(find nbs -name '[!_.]*.ipynb' | wc -l)
if [ "$n_nbs" -eq 0 ]; then echo "FAIL: no notebooks found"; fail=1; failed=$((failed+1))
elif nbdev_test --n_workers "${MINIAI_TEST_WORKERS:-2}" --timing --do_print; then
  echo "ok: $n_nbs notebooks"; passed=$((passed+n_nbs))
else echo "FAIL: nbdev_test"; fail=1; failed=$((failed+1)); fi

step "Stable Diffusion stacks built in the background"
if wait $stacks_pid; then echo "ok"; else echo "(the stack build failed; the notebooks that need it say why)"; tail -20 "$logs/stacks.log"; fi

if [ -d tests ]; then
  step "pytest tests/"
  python -m pytest -q -p no:cacheprovider tests; rc=$?
  if [ $rc -eq 5 ]; then echo "FAIL: pytest collected no tests"; fail=1; failed=$((failed+1))
  elif [ $rc -ne 0 ]; then echo "FAIL: pytest"; fail=1; failed=$((failed+1))
  else passed=$((passed+1)); fi
fi

if [ $install -eq 1 ]; then
  step "the wheel beside fastai in a fresh venv (tools/test_install.sh, run beside the notebooks)"
  if wait $install_pid; then cat "$logs/install.log"; passed=$((passed+1))
  else cat "$logs/install.log"; echo "FAIL: install check"; fail=1; failed=$((failed+1)); fi
fi
rm -rf "$logs"

echo
echo "checks: $passed passed, $failed failed"
exit $fail
