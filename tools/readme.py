"""Write README.md from nbs/index.ipynb (nbdev_readme needs quarto, which these machines lack).

    python tools/readme.py          # rewrite README.md
    python tools/readme.py --check  # exit 1 if README.md is out of date
"""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent

def render():
    nb = json.loads((root/'nbs'/'index.ipynb').read_text())
    out = []
    for c in nb['cells']:
        src = ''.join(c['source']).strip()
        if not src or src.startswith('#|'): continue
        if c['cell_type'] == 'markdown': out.append(src)
        else: out.append('```python\n' + src + '\n```')
    return '\n\n'.join(out) + '\n'

if __name__ == '__main__':
    text = render()
    if '--check' in sys.argv:
        if (root/'README.md').read_text() != text:
            print('README.md is out of date with nbs/index.ipynb: run python tools/readme.py'); sys.exit(1)
        print('ok')
    else: (root/'README.md').write_text(text)
