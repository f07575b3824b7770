"""Write README.md from nbs/index.ipynb without Quarto (nbdev-readme needs Quarto, which cannot be installed here).
Markdown cells are copied; code cells become ```python blocks; hidden cells and nbdev directives are dropped."""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def cell_src(c): return ''.join(c['source']) if isinstance(c['source'], list) else c['source']

def render(nb_path:Path) -> str:
    nb = json.loads(nb_path.read_text())
    out = []
    for c in nb['cells']:
        src = cell_src(c).rstrip()
        if not src: continue
        if c['cell_type'] == 'markdown':
            out.append(src)
        elif c['cell_type'] == 'code':
            lines = src.splitlines()
            directives = [l for l in lines if re.match(r'\s*#\s*\|', l)]
            if any(re.search(r'\|\s*(hide|default_exp|export|eval:\s*false)', d) for d in directives): continue
            code = '\n'.join(l for l in lines if l not in directives).strip()
            if code: out.append(f'```python\n{code}\n```')
    head = '<!-- Generated from nbs/index.ipynb by scripts/make_readme.py: edit the notebook, not this file. -->\n\n'
    return head + '\n\n'.join(out) + '\n'

if __name__ == '__main__':
    txt = render(ROOT/'nbs'/'index.ipynb')
    (ROOT/'README.md').write_text(txt)
    print(f'README.md: {len(txt.splitlines())} lines')
