"""Execute notebooks in place so that their committed outputs (plots, numbers) are what the code makes.

    python tools/outputs.py nbs/13_resnet.ipynb [more.ipynb ...]   # quick mode (MINIAI_QUICK=1)
    python tools/outputs.py --full nbs/08_autoencoder.ipynb         # full size (for a GPU machine)
    python tools/outputs.py --all                                   # every numbered notebook

Each notebook runs top to bottom in its own folder, like `nbdev_test`; a failing cell stops it and
leaves the file untouched. Figures are saved as small PNGs, then `nbdev_clean` strips metadata.
"""
import os, sys, time, subprocess
from pathlib import Path

root = Path(__file__).resolve().parent.parent
args = sys.argv[1:]
full = '--full' in args
if not full: os.environ['MINIAI_QUICK'] = '1'
else: os.environ.pop('MINIAI_QUICK', None)
for k,v in dict(MPLBACKEND='Agg', HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', OMP_NUM_THREADS='1',
                MKL_NUM_THREADS='1').items(): os.environ.setdefault(k, v)
nbs = sorted((root/'nbs').glob('[0-9]*.ipynb')) if '--all' in args else [Path(a).resolve() for a in args if not a.startswith('--')]
if not nbs: sys.exit(__doc__)

from execnb.shell import CaptureShell as _Shell   # imported after the environment is set

class CaptureShell(_Shell):
    "execnb drops the printed output of a cell whose code ends with ';'. Jupyter only hides its value, so do that."
    def _run(self, raw_cell, *args, **kwargs):
        if raw_cell.rstrip().endswith(';'): raw_cell = raw_cell.rstrip() + '\npass'
        return super()._run(raw_cell, *args, **kwargs)
# small figures: the repo must stay small, and GitHub shows them at this size anyway
inject = "import matplotlib as _mpl; _mpl.rcParams['figure.dpi'] = 60; _mpl.rcParams['savefig.dpi'] = 60"
failed = []
for nb in nbs:
    t = time.time()
    os.chdir(nb.parent)
    tmp = nb.with_name(f'.{nb.stem}.out.ipynb')
    try:
        sh = CaptureShell(path=nb.parent, mpl_format='png')
        sh.run(inject)
        sh.execute(nb, tmp, exc_stop=True)
        os.replace(tmp, nb)
        subprocess.run(['nbdev_clean', '--fname', str(nb)], check=True, cwd=root)
        print(f'ok   {nb.name}  {time.time()-t:.0f}s  {nb.stat().st_size/1e3:.0f} kB', flush=True)
    except Exception as e:
        tmp.unlink(missing_ok=True)
        failed.append(nb.name); print(f'FAIL {nb.name}: {type(e).__name__}: {str(e)[:2000]}', flush=True)
sys.exit(1 if failed else 0)
