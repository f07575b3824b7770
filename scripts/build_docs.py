"""Build qlora_nb's documentation site from the notebooks, with or without Quarto.

    python scripts/build_docs.py                # offline site in _site_offline/ (no Quarto needed)
    python scripts/build_docs.py --execute      # same, after running the notebooks (gpu/slow/notest cells skipped)
    python scripts/build_docs.py --quarto       # the Quarto site in _docs/ (what the GitHub Pages workflow publishes)

Both sites are made from the same staged pages. Staging is nbdev's own notebook processing
(`nbdev.processors.FilterDefaults`, what `nbdev-proc-nbs`/`nbdev-docs` run): front matter from the H1 and `>` summary,
`show_doc` rendered for every exported function and class, nbdev directives stripped, `#| hide` and `#| export`
cells dropped, backticked names linked to their API pages. Two guards are added first, so that nothing that needs a
GPU runs while docs are built: cells flagged with a test flag (`tst_flags`: gpu, slow, notest) get `#| eval: false`
(nbdev would otherwise run any of them that contains an import), and notebooks whose front matter says
`skip_exec: true` get `skip_showdoc: true` too.

Execution. By default nothing is executed beyond what nbdev's processing runs to render `show_doc` (imports and
exported definitions): pages show the code, the API docs and the outputs saved in the notebooks, exactly what
`nbdev-docs` + Quarto (which does not execute .ipynb files) publish. That takes well under a minute on 2 cores, so CI
builds and checks every page on every change, while running the notebooks stays the job of tests/test_notebooks.py.
`--execute` first runs each notebook as `nbdev-test` does (same skip flags, `skip_exec` respected, working directory
= the notebook's folder) on a copy, so pages show fresh outputs; the notebooks in nbs/ are never modified.

The offline site turns each staged notebook into HTML with nbconvert and wraps it in a page with a sidebar in the
order of nbs/sidebar.yml (the same file Quarto reads). Pages are named as Quarto names them (`10_quantization.ipynb` ->
`quantization.html`), links that nbdev points at the hosted site are made relative, and `.ipynb` links become `.html`.
"""
from __future__ import annotations
import argparse, html, json, os, re, shutil, subprocess, sys, time, warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
SKIP_DIRS = ('.ipynb_checkpoints', 'runs', '__pycache__')  # plus any folder starting with '_' or '.'

# --------------------------------------------------------------------------------------------------------------------
# Finding notebooks and reading the sidebar

def find_notebooks(nbs:Path=NBS) -> list[Path]:
    "Every notebook under `nbs` that nbdev documents (folders starting with `_` or `.` are skipped), relative to `nbs`."
    res = []
    for p in sorted(nbs.rglob('*.ipynb')):
        rel = p.relative_to(nbs)
        if any(o.startswith(('_', '.')) or o in SKIP_DIRS for o in rel.parts[:-1]) or rel.name.startswith(('_', '.')): continue
        res.append(rel)
    return res

def page_name(rel) -> str:
    "The HTML page Quarto writes for notebook `rel` (nbdev strips the numeric prefix: `10_quantization.ipynb` -> `quantization.html`)."
    rel = Path(rel)
    return (rel.parent/(re.sub(r'^\d+[a-zA-Z0-9]*_', '', rel.name.lower()))).with_suffix('.html').as_posix()

def read_sidebar(path:Path) -> list:
    "nbs/sidebar.yml as a list of `(section title or None, [notebook paths])`, in order."
    import yaml
    contents = yaml.safe_load(path.read_text())['website']['sidebar']['contents']
    res, loose = [], []
    def _href(o): return o if isinstance(o, str) else o.get('href')
    for o in contents:
        if isinstance(o, dict) and 'section' in o:
            if loose: res.append((None, loose)); loose = []
            items = [_href(x) for x in o.get('contents', []) if _href(x)]
            if o.get('href'): items.insert(0, o['href'])
            res.append((o['section'], items))
        elif _href(o): loose.append(_href(o))
    if loose: res.append((None, loose))
    return res

# --------------------------------------------------------------------------------------------------------------------
# Staging: (optionally execute, then) process each notebook with nbdev

def _flag_re(flags):
    return re.compile(r'^\s*#\s*\|\s*(' + '|'.join(map(re.escape, flags)) + r')\s*$', re.MULTILINE)

_SHOW_DIRS = {'export', 'exports', 'exporti', 'exec_doc'}
_re_dir = re.compile(r'^\s*#\s*\|\s*([\w-]+)', re.MULTILINE)

def _top_imports(src:str):
    "(top-level import statements, whether the cell also has other code or nested imports) of a lesson cell, or None."
    import ast
    code = '\n'.join('' if re.match(r'^\s*[%!]', l) else l for l in src.splitlines())
    try: tree = ast.parse(code)
    except SyntaxError: return None
    if not any(isinstance(o, (ast.Import, ast.ImportFrom)) for o in ast.walk(tree)): return None
    imps = [o for o in tree.body if isinstance(o, (ast.Import, ast.ImportFrom))]
    mixed = len(imps) < len(tree.body) or len(imps) < sum(isinstance(o, (ast.Import, ast.ImportFrom)) for o in ast.walk(tree))
    return ['\n'.join(ast.get_source_segment(code, o).splitlines()) for o in imps], mixed

def guard_notebook(nb, flags) -> dict:
    """Keep nbdev's docs processing to what `show_doc` needs: no flagged cell, no lesson code.
    nbdev runs every cell that contains an import (besides exported cells and show_doc): a `#| gpu` cell, or a lesson
    cell that imports something and then uses names from earlier cells, would run out of context (NameError, or minutes
    of training). Flagged cells and such mixed lesson cells get `#| eval: false` (a Quarto option: shown, not run);
    a mixed cell's top-level imports are run from a hidden cell just before it, so later show_docs still see them.
    `skip_exec` notebooks get `skip_showdoc: true`. Returns counts."""
    from fastcore.nbio import mk_cell as _mk, nb_frontmatter
    from fastcore.basics import str2bool, AttrDict
    def mk_cell(text, cell_type='code'): return _mk(text, cell_type, metadata=AttrDict())
    rx, n, nmixed, cells = _flag_re(flags), 0, 0, []
    for c in nb.cells:
        if c.cell_type == 'code' and not re.search(r'^#\|\s*eval:\s*false', c.source or '', re.M):
            if rx.search(c.source or ''):
                c.source = '#| eval: false\n' + c.source; n += 1
            elif not (set(_re_dir.findall(c.source or '')) & _SHOW_DIRS) and (ti := _top_imports(c.source or '')) and ti[1]:
                if ti[0]: cells.append(mk_cell('#| hide\n' + '\n'.join(ti[0])))
                c.source = '#| eval: false\n' + c.source; nmixed += 1
        cells.append(c)
    nb.cells = cells
    fm = nb_frontmatter(nb)
    # nbdev's exec_show_docs reads skip_showdoc only from front matter cells, so restate it there
    skipped = str2bool(fm.get('skip_exec', False)) or str2bool(fm.get('skip_showdoc', False))
    if skipped: nb.cells.insert(0, mk_cell('---\nskip_showdoc: true\n---', 'raw'))
    return dict(flagged=n, mixed=nmixed, skip_showdoc=skipped)

def _execute(src:Path, flags, cell_timeout):
    "Run notebook `src` the way `nbdev-test` does (skipping `flags`, honouring `skip_exec`); returns (nb, error or None)."
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    from nbdev.process import NBProcessor
    from nbdev.test import _skip_cell
    from fastcore.nbio import nb_frontmatter
    from fastcore.basics import str2bool
    from fastcore.nbio import read_nb
    nb = NBProcessor(src, rm_directives=False, process=True).nb
    if str2bool(nb_frontmatter(nb).get('skip_exec', False)): return read_nb(src), None
    k = CaptureShell(src)
    err = None
    try:
        with working_directory(src.parent):
            k.run_all(nb, exc_stop=True, preproc=_skip_cell(nb, flags), cell_timeout=cell_timeout)
    except Exception as e: err = f'{type(e).__name__}: {e}'
    # the notebook as `nbdev-test --save` would write it, read back: outputs in the shape nbdev's processors expect
    import tempfile
    from fastcore.nbio import write_nb
    with tempfile.TemporaryDirectory() as d:
        write_nb(nb, Path(d)/src.name)
        res = read_nb(Path(d)/src.name)
    return res, err

def stage_one(rel:str, nbs:str, proc:str, execute:bool, flags:list, cell_timeout:int, doc_prefix:str|None=None) -> dict:
    """Stage notebook `nbs/rel` into `proc/rel` (optional execution, the GPU guards, nbdev's docs processing); convert
    it to an HTML page body too unless `doc_prefix` is None."""
    os.environ['IN_TEST'] = '1'  # as nbdev's docs processing sets it: notebooks may skip heavy work under it
    warnings.filterwarnings('ignore', message='Found cells containing imports')
    from fastcore.nbio import read_nb, write_nb
    from nbdev.processors import FilterDefaults
    src, dst = Path(nbs)/rel, Path(proc)/rel
    t0, err = time.time(), None
    if execute: nb, err = _execute(src, flags, cell_timeout)
    else: nb = read_nb(src)
    nb.path_ = str(src)
    info = guard_notebook(nb, flags)
    cwd = os.getcwd()
    os.chdir(ROOT)  # nbdev-docs processes from the project root
    try: FilterDefaults()(nb)
    except Exception as e: return dict(rel=rel, ok=False, staged=False, error=f'nbdev processing failed: {e}', secs=time.time()-t0)
    finally: os.chdir(cwd)
    dst.parent.mkdir(parents=True, exist_ok=True)
    write_nb(nb, dst)
    res = dict(rel=rel, ok=err is None, staged=True, error=err and f'execution stopped: {err}', **info)
    if doc_prefix is not None:
        try: res['conv'] = convert_body(rel, json.loads(dst.read_text()), doc_prefix)
        except Exception as e: res.update(ok=False, staged=False, error=f'HTML conversion failed: {type(e).__name__}: {e}')
    return dict(res, secs=time.time()-t0)

def copy_assets(nbs:Path, proc:Path):
    "Copy the non-notebook files of `nbs` (images, data, the Quarto config) into `proc`, as nbdev's `proc_nbs` does."
    for p in nbs.rglob('*'):
        rel = p.relative_to(nbs)
        if not p.is_file() or p.suffix == '.ipynb' or any(o.startswith('.') or o in SKIP_DIRS or o in ('_proc', '_docs', '_site')
                                                          for o in rel.parts): continue
        d = proc/rel
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, d)

def stage(nbs:Path, proc:Path, rels, execute=False, jobs=2, cell_timeout=900, doc_prefix=None) -> list[dict]:
    "Stage all notebooks `rels` in parallel (one process per job, spawned: each has its own interpreter state)."
    from nbdev.config import get_config
    flags = str(get_config(ROOT).get('tst_flags', '')).split()
    proc.mkdir(parents=True, exist_ok=True)
    copy_assets(nbs, proc)
    args = [(str(r), str(nbs), str(proc), execute, flags, cell_timeout, doc_prefix) for r in rels]
    if jobs <= 1: return [stage_one(*a) for a in args]
    import multiprocessing as mp
    # big notebooks first, so the two workers finish together
    args.sort(key=lambda a: -(Path(a[1])/a[0]).stat().st_size)
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context('spawn')) as ex:
        futs = [ex.submit(stage_one, *a) for a in args]
        res = [f.result() for f in futs]
    order = {str(r): i for i, r in enumerate(rels)}
    return sorted(res, key=lambda r: order[r['rel']])

# --------------------------------------------------------------------------------------------------------------------
# Quarto site (GitHub Pages)

def quarto_site(proc:Path, out:Path, jobs:int):
    "Render the staged pages with Quarto, as `nbdev-docs` does, into `out`."
    from nbdev.config import get_config
    from nbdev.quarto import _nbdev_yml, _fix_quarto_nav
    from nbdev.quarto_render import render_quarto
    if not shutil.which('quarto'): sys.exit('quarto is not installed: see https://quarto.org/docs/get-started/ (or build the offline site without --quarto)')
    cfg = get_config(ROOT)
    vals = {k: cfg[k] for k in ['title', 'description', 'branch', 'git_url', 'doc_host', 'doc_baseurl']}
    vals['doc_path'] = out.name
    (proc/'nbdev.yml').write_text(_nbdev_yml.format(**vals))  # nbdev-docs writes this to nbs/; we keep nbs/ untouched
    # pages listed in sidebar.yml / the navbar but not written yet are left out of the staged copies
    import yaml
    def _exists(h): return not isinstance(h, str) or not h.endswith('.ipynb') or (proc/h).exists()
    def _prune(items):
        res = []
        for o in items:
            if isinstance(o, dict) and 'contents' in o:
                o = dict(o, contents=_prune(o['contents']))
                if o['contents'] or o.get('href'): res.append(o)
            elif _exists(o if isinstance(o, str) else o.get('href')): res.append(o)
        return res
    sb = proc/'sidebar.yml'
    if sb.exists():
        y = yaml.safe_load(sb.read_text())
        y['website']['sidebar']['contents'] = _prune(y['website']['sidebar']['contents'])
        sb.write_text(yaml.dump(y, sort_keys=False))
    qy = yaml.safe_load((proc/'_quarto.yml').read_text())
    nav = qy.get('website', {}).get('navbar', {})
    for side in ('left', 'right'):
        if side in nav: nav[side] = [o for o in nav[side] if _exists(o.get('href') if isinstance(o, dict) else o)]
    (proc/'_quarto.yml').write_text(yaml.dump(qy, sort_keys=False))
    render_quarto(proc, out, n_workers=jobs)
    _fix_quarto_nav(out)

# --------------------------------------------------------------------------------------------------------------------
# Offline site: nbconvert + a sidebar

_re_quarto_opt = re.compile(r'^#\|\s*([\w-]+)\s*:\s*(.*?)\s*$')
_re_link_attrs = re.compile(r'\[([^\]\n]*)\]\(([^)\s]*)\)\{([^}\n]*)\}')  # [text](url){target="_blank" style=".."}
_re_head_attrs = re.compile(r'^(#{1,6}\s.*?)\s*\{([^}\n]*)\}\s*$', re.MULTILINE)  # ## Title {#id .cls}
_re_fence_div = re.compile(r'^:::+.*$\n?', re.MULTILINE)                           # Quarto's ::: {.callout-note} divs

def _link_attrs(m):
    "A pandoc link with attributes as an HTML link, when its text is plain; else the bare markdown link."
    text, url, attrs = m.groups()
    if re.search(r'[`*_\[<]', text): return f'[{text}]({url})'
    kv = ' '.join(f'{k}="{html.escape(v)}"' for k, v in re.findall(r'([\w-]+)="([^"]*)"', attrs) if k in ('target', 'style', 'title'))
    return f'<a href="{html.escape(url)}" {kv}>{html.escape(text)}</a>'

def _clean_md(s:str) -> str:
    "Markdown written for Quarto/pandoc, made readable by nbconvert's mistune."
    s = _re_link_attrs.sub(_link_attrs, s)
    def _head(m):
        ids = re.findall(r'#([\w.:-]+)', m.group(2))
        return m.group(1) + (f' <a id="{ids[0]}"></a>' if ids else '')
    s = _re_head_attrs.sub(_head, s)
    return _re_fence_div.sub('', s)

def _src(x): return ''.join(x) if isinstance(x, list) else (x or '')

def prepare_for_nbconvert(nb:dict) -> tuple[dict, dict]:
    "Split off the front matter and turn Quarto cell options into nbconvert tags; returns (notebook, front matter)."
    import yaml
    fm, cells = {}, []
    for c in nb['cells']:
        src = _src(c.get('source'))
        if c['cell_type'] == 'raw':
            m = re.match(r'^---\s*\n(.*?)\n---\s*$', src.strip()+'\n', re.DOTALL)
            if m:
                fm.update(yaml.safe_load(m.group(1)) or {}); continue
        if c['cell_type'] == 'markdown':
            src = _clean_md(src)
            if not src.strip() or src.strip().startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED'): continue
        if c['cell_type'] == 'code':
            lines, opts = src.splitlines(), {}
            while lines and (m := _re_quarto_opt.match(lines[0])):
                opts[m.group(1)] = m.group(2).strip('"\''); lines.pop(0)
            src = '\n'.join(lines).strip('\n')
            tags = set(c.setdefault('metadata', {}).get('tags', []))
            if opts.get('echo') == 'false': tags.add('remove_input')
            if opts.get('include') == 'false': continue
            if opts.get('output') == 'false': tags.add('remove_output')
            if 'code-fold' in opts: tags.add('code_fold')
            if not src.strip(): tags.add('remove_input')
            outs = []
            for o in c.get('outputs', []):
                d = o.get('data', {})
                for k, v in d.items():  # multi-line strings may be stored as lists of lines; nbconvert wants str
                    if isinstance(v, list) and not k.endswith('json'): d[k] = ''.join(v)
                if isinstance(o.get('text'), list): o['text'] = ''.join(o['text'])
                if 'text/markdown' in d: d['text/markdown'] = _clean_md(_src(d['text/markdown']))
                if 'application/vnd.jupyter.widget-view+json' in d and len(d) > 1: d.pop('application/vnd.jupyter.widget-view+json')
                outs.append(o)
            c['outputs'] = outs
            if 'remove_input' in tags and not outs: continue
            c['metadata']['tags'] = sorted(tags)
        c['source'] = src
        c.get('metadata', {}).pop('execution', None)  # execnb's timings are floats; nbformat's schema wants strings
        keep = {'cell_type', 'id', 'metadata', 'source', 'attachments'} | ({'outputs', 'execution_count'} if c['cell_type'] == 'code' else set())
        cells.append({k: v for k, v in c.items() if k in keep})
    nb['cells'] = cells
    nb.get('metadata', {}).pop('widgets', None)
    return nb, fm

def _exporter():
    from nbconvert import HTMLExporter
    from traitlets.config import Config
    c = Config()
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_input_tags = ('remove_input',)
    c.TagRemovePreprocessor.remove_all_outputs_tags = ('remove_output',)
    c.TagRemovePreprocessor.remove_cell_tags = ('remove_cell',)
    c.HTMLExporter.exclude_input_prompt = True
    c.HTMLExporter.exclude_output_prompt = True
    return HTMLExporter(config=c, template_name='basic')

def slug(text:str) -> str:
    "Pandoc's (and so Quarto's) heading identifier: lowercase, punctuation except `_-.` dropped, spaces -> `-`."
    s = ''.join(ch for ch in text.strip().lower() if ch.isalnum() or ch in '_-. ')
    s = re.sub(r'\s+', '-', s)
    s = re.sub(r'^[^a-z]+', '', s)
    return s or 'section'

# TeX math: no MathJax offline, so matplotlib's mathtext draws each formula as an inline SVG (TeX source as fallback)
_re_math = re.compile(r'\$\$(.+?)\$\$|(?<![\\$\w])\$(?=\S)([^$\n]+?)(?<=\S)\$(?![\d$])', re.DOTALL)
_mt_cache = {}

def _math_svg(tex:str, display:bool):
    "Inline SVG markup for `tex`, or None when mathtext cannot parse it."
    key = (tex, display)
    if key in _mt_cache: return _mt_cache[key]
    import io, base64, matplotlib
    matplotlib.use('Agg')
    from matplotlib import mathtext
    from matplotlib.font_manager import FontProperties
    t = re.sub(r'\\text\{([^}]*)\}', r'\\mathrm{\1}', tex.strip())
    t = t.replace(r'\,', r'\ ').replace(r'\!', '').replace(r'\;', r'\ ').replace(r'\|', r'\Vert ')
    buf = io.BytesIO()
    try:
        with matplotlib.rc_context({'svg.fonttype': 'path', 'mathtext.fontset': 'cm'}):
            mathtext.math_to_image(f'${t}$', buf, prop=FontProperties(size=16 if display else 14), format='svg', dpi=72)
    except Exception: res = None
    else:
        svg = buf.getvalue().decode()
        svg = re.sub(r'<\?xml[^>]*>\s*|<!DOCTYPE[^>]*>\s*|<metadata>.*?</metadata>\s*', '', svg, flags=re.DOTALL)
        b64 = base64.b64encode(svg.encode()).decode()
        cls = 'math display' if display else 'math'
        res = f'<img class="{cls}" alt="{html.escape(tex)}" src="data:image/svg+xml;base64,{b64}">'
    _mt_cache[key] = res
    return res

def render_math(soup):
    "Replace `$...$` / `$$...$$` in text (not code) with drawn formulas."
    from bs4 import NavigableString, BeautifulSoup
    for node in list(soup.find_all(string=_re_math)):
        if node.find_parent(['code', 'pre', 'script', 'style', 'a']) or not isinstance(node, NavigableString): continue
        s, out, pos = str(node), [], 0
        for m in _re_math.finditer(s):
            tex, disp = (m.group(1), True) if m.group(1) is not None else (m.group(2), False)
            img = _math_svg(tex, disp)
            out.append(html.escape(s[pos:m.start()]))
            out.append(img if img else f'<code class="math">{html.escape(tex)}</code>')
            pos = m.end()
        out.append(html.escape(s[pos:]))
        node.replace_with(BeautifulSoup(''.join(out), 'html.parser'))

def _rel_url(target:str, page:str) -> str:
    "URL of site path `target` relative to site page `page`."
    return os.path.relpath(target, os.path.dirname(page) or '.').replace(os.sep, '/')

def convert_body(rel:str, nb:dict, doc_prefix:str) -> dict:
    "A staged notebook's page body (nbconvert HTML with Quarto's heading ids and working links), title and contents."
    import nbformat
    from bs4 import BeautifulSoup
    nb, fm = prepare_for_nbconvert(nb)
    page = page_name(rel)
    body, _ = _exporter().from_notebook_node(nbformat.from_dict(nb))
    soup = BeautifulSoup(body, 'html.parser')
    # heading ids as Quarto makes them, so links like `recipe.html#load_recipe` resolve
    seen = set()
    for h in soup.find_all(['h1', 'h2', 'h3', 'h4', 'h5', 'h6']):
        for a in h.find_all('a', class_='anchor-link'): a.decompose()
        base = slug(h.get_text()); i, sid = 0, base
        while sid in seen: i += 1; sid = f'{base}-{i}'
        seen.add(sid); h['id'] = sid
        a = soup.new_tag('a', href=f'#{sid}'); a['class'] = 'anchor-link'; a.string = '#'
        h.append(a)
    # links: hosted docs -> relative; notebook links -> their pages
    for tag, attr in (('a', 'href'), ('img', 'src')):
        for el in soup.find_all(tag):
            url = el.get(attr)
            if not url: continue
            if doc_prefix and url.startswith(doc_prefix):
                path, _, frag = url[len(doc_prefix):].partition('#')
                path = path.lstrip('/') or 'index.html'
                if path.endswith('.html.md'): path = path[:-3]
                if path.endswith('/'): path += 'index.html'
                el[attr] = _rel_url(path, page) + (f'#{frag}' if frag else '')
            elif not re.match(r'^[a-z][a-z0-9+.-]*:|^#|^/', url):
                path, _, frag = url.partition('#')
                if path.endswith(('.ipynb', '.qmd')):
                    target = os.path.normpath(os.path.join(os.path.dirname(rel), path)).replace(os.sep, '/')
                    el[attr] = _rel_url(page_name(target), page) + (f'#{frag}' if frag else '')
    # exported source, which Quarto shows in a fold
    for cell in soup.select('div.celltag_code_fold'):
        inp = cell.find('div', class_='input')
        if inp is None: continue
        det = soup.new_tag('details'); det['class'] = 'code-fold'; det['open'] = ''
        summ = soup.new_tag('summary'); summ.string = 'Exported source'
        inp.wrap(det); det.insert(0, summ)
    render_math(soup)
    toc = [(h.name, h['id'], h.get_text().rstrip('#').strip()) for h in soup.find_all(['h2', 'h3'])]
    return dict(fm=fm, body=str(soup), toc=toc)

_CSS = """
:root { --accent:#2c6fbb; --muted:#5f6b7a; --border:#dde3ea; --code-bg:#f6f8fa; }
* { box-sizing:border-box; }
body { margin:0; font:16px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; color:#1f2933; background:#fff; }
a { color:var(--accent); text-decoration:none; } a:hover { text-decoration:underline; }
.topbar { background:var(--accent); color:#fff; padding:.7rem 1.4rem; display:flex; gap:1rem; align-items:baseline; }
.topbar a { color:#fff; font-weight:600; font-size:1.15rem; } .topbar span { opacity:.8; font-size:.85rem; }
.layout { display:grid; grid-template-columns:230px minmax(0,1fr) 200px; gap:2rem; max-width:1400px; margin:0 auto; padding:0 1.2rem; }
nav.sidebar { position:sticky; top:0; align-self:start; max-height:100vh; overflow:auto; padding:1.2rem 0; font-size:.92rem; }
nav.sidebar .section { margin:1rem 0 .3rem; font-weight:700; color:var(--muted); text-transform:uppercase; font-size:.75rem; letter-spacing:.05em; }
nav.sidebar ul { list-style:none; margin:0; padding:0; }
nav.sidebar li a { display:block; padding:.22rem .6rem; border-left:3px solid transparent; color:#2f3b48; }
nav.sidebar li a.active { border-left-color:var(--accent); background:#eef4fb; color:var(--accent); font-weight:600; }
nav.sidebar li.missing { padding:.22rem .6rem; color:#9aa5b1; font-style:italic; }
main.content { padding:1.2rem 0 4rem; min-width:0; }
aside.toc { position:sticky; top:0; align-self:start; padding:1.2rem 0; font-size:.85rem; max-height:100vh; overflow:auto; }
aside.toc .toc-title { font-weight:700; color:var(--muted); margin-bottom:.3rem; }
aside.toc ul { list-style:none; margin:0; padding-left:.6rem; border-left:1px solid var(--border); }
aside.toc li.l3 { padding-left:.8rem; }
.page-header h1.title { margin:.6rem 0 .2rem; font-size:2.1rem; }
.page-header .description { color:var(--muted); font-size:1.1rem; margin:0 0 1.2rem; font-style:italic; }
h1,h2,h3,h4 { line-height:1.25; } h2 { border-bottom:1px solid var(--border); padding-bottom:.2rem; margin-top:2rem; }
a.anchor-link { visibility:hidden; margin-left:.3rem; font-size:.8em; } h1:hover a.anchor-link,h2:hover a.anchor-link,h3:hover a.anchor-link { visibility:visible; }
pre, code { font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace; font-size:.86rem; }
:not(pre) > code { background:var(--code-bg); padding:.08rem .3rem; border-radius:4px; }
img.math { vertical-align:middle; } img.math.display { display:block; margin:.6rem auto; }
.cell { margin:0 0 1rem; }
.input_area, .highlight { background:var(--code-bg); border-radius:6px; }
.input_area pre, .highlight pre { margin:0; padding:.7rem .9rem; overflow:auto; }
.output_area pre { margin:.2rem 0 0 .8rem; padding:.3rem .8rem; border-left:2px solid lightsalmon; overflow:auto; background:none; }
.output_area .output_stderr pre { border-left-color:#e66; background:#fff5f5; }
.output_area img { max-width:100%; }
main table { border-collapse:collapse; margin:.6rem 0; font-size:.9rem; }
main th, main td { border:1px solid var(--border); padding:.25rem .55rem; text-align:left; vertical-align:top; }
main thead th { background:#f2f5f8; }
.output_markdown hr:first-child { border:none; border-top:1px solid var(--border); margin:1.4rem 0 .4rem; }
.output_markdown h3 { margin-top:.4rem; font-family:"DejaVu Sans Mono",Menlo,monospace; color:#123a66; }
blockquote { margin:.5rem 0; padding:.1rem 1rem; border-left:3px solid var(--border); color:var(--muted); }
details.code-fold > summary { cursor:pointer; color:var(--muted); font-size:.9rem; margin:.2rem 0; }
.prompt { display:none; }
@media (max-width:1000px) { .layout { grid-template-columns:190px minmax(0,1fr); } aside.toc { display:none; } }
"""

def _md_inline(s:str) -> str:
    from nbconvert.filters import markdown2html
    h = markdown2html(s or '').strip()
    return re.sub(r'^<p>(.*)</p>$', r'\1', h, flags=re.DOTALL)

def render_page(rel:str, conv:dict, nav, titles:dict, site_title:str) -> str:
    "One complete page: top bar, sidebar in pipeline order, title and summary, the body, on-page contents."
    page, fm = page_name(rel), conv['fm']
    title, desc = fm.get('title') or Path(rel).stem, fm.get('description', '')
    up = _rel_url('.', page)
    up = '' if up == '.' else up + '/'
    nav_html = []
    for sec, items in nav:
        if sec: nav_html.append(f'<div class="section">{html.escape(sec)}</div>')
        nav_html.append('<ul>')
        for it in items:
            if it in titles:
                cls = ' class="active"' if it == rel else ''
                nav_html.append(f'<li><a{cls} href="{_rel_url(page_name(it), page)}">{html.escape(titles[it])}</a></li>')
            else:  # listed in sidebar.yml, not written yet: shown, not linked
                nav_html.append(f'<li class="missing" title="{html.escape(it)}: not written yet">{html.escape(Path(it).stem)}</li>')
        nav_html.append('</ul>')
    toc_html = ''
    if conv['toc']:
        toc_html = ('<aside class="toc"><div class="toc-title">On this page</div><ul>' +
                    ''.join(f'<li class="{"l3" if n == "h3" else "l2"}"><a href="#{i}">{html.escape(t)}</a></li>' for n, i, t in conv['toc']) +
                    '</ul></aside>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} – {html.escape(site_title)}</title>
<meta name="description" content="{html.escape(re.sub('<[^>]+>', '', _md_inline(desc)))}">
<link rel="stylesheet" href="{up}site.css"><link rel="stylesheet" href="{up}pygments.css"><link rel="stylesheet" href="{up}styles.css">
</head><body>
<header class="topbar"><a href="{up}index.html">{html.escape(site_title)}</a><span>documentation (offline build)</span></header>
<div class="layout">
<nav class="sidebar">{''.join(nav_html)}</nav>
<main class="content"><header class="page-header"><h1 class="title">{html.escape(title)}</h1>
<div class="description">{_md_inline(desc)}</div></header>
{conv['body']}
</main>
{toc_html}
</div></body></html>
"""

_re_autolink = re.compile(r'<a href="([^"#:]*)#([^"]+)"><code>(.*?)</code></a>')

def unlink_dangling(out:Path):
    "nbdev links every backticked name in the module index, private helpers too; unlink those with no doc entry."
    ids = {p: set(re.findall(r'\sid="([^"]+)"', p.read_text())) for p in out.rglob('*.html')}
    for p in ids:
        txt = p.read_text()
        def _fix(m):
            tgt = (p.parent/m.group(1)).resolve() if m.group(1) else p
            if tgt in ids and m.group(2) not in ids[tgt]:
                print(f'  note: {p.relative_to(out)}: `{m.group(3)}` has no doc entry on {tgt.name}: left unlinked')
                return f'<code>{m.group(3)}</code>'
            return m.group(0)
        new = _re_autolink.sub(_fix, txt)
        if new != txt: p.write_text(new)

def offline_site(results:list, out:Path, nav, nbs:Path, site_title:str):
    "Write the static site `out` from the converted bodies in `results` (one per notebook)."
    from pygments.formatters import HtmlFormatter
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    (out/'site.css').write_text(_CSS)
    (out/'pygments.css').write_text(HtmlFormatter(style='default').get_style_defs('.highlight'))
    css = nbs/'styles.css'
    (out/'styles.css').write_text(css.read_text() if css.exists() else '')
    convs = {r['rel']: r['conv'] for r in results if r.get('conv')}
    titles = {rel: c['fm'].get('title') or Path(rel).stem for rel, c in convs.items()}
    listed = {it for _, items in nav for it in items}
    extra = [r for r in convs if r not in listed]
    if extra: nav = list(nav) + [('Other', extra)]
    for rel, conv in convs.items():
        dst = out/page_name(rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(render_page(rel, conv, nav, titles, site_title))
    unlink_dangling(out)
    # files the pages link to (images, data) that live beside the notebooks
    for page in out.rglob('*.html'):
        for url in re.findall(r'(?:href|src)="([^"#?:]+)[^"]*"', page.read_text()):
            tgt = (page.parent/url).resolve()
            if tgt.exists() or not tgt.is_relative_to(out.resolve()): continue
            src = nbs/tgt.relative_to(out.resolve())
            if src.is_file() and src.suffix != '.ipynb':
                tgt.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(src, tgt)

# --------------------------------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', help='output folder (default: _site_offline, or _docs with --quarto)')
    ap.add_argument('--proc', default=str(ROOT/'_proc'), help="staging folder for processed notebooks (nbdev's _proc)")
    ap.add_argument('--nbs', default=str(NBS), help='notebook folder')
    ap.add_argument('--sidebar', help='sidebar.yml to order pages by (default: NBS/sidebar.yml)')
    ap.add_argument('--execute', action='store_true', help='run the notebooks first (gpu/slow/notest cells skipped)')
    ap.add_argument('--quarto', action='store_true', help='render the Quarto site instead of the offline one')
    ap.add_argument('--jobs', type=int, default=min(os.cpu_count() or 1, 4), help='parallel workers')
    ap.add_argument('--only', default='', help='regex: build only notebooks whose path matches')
    ap.add_argument('--cell-timeout', type=int, default=900)
    a = ap.parse_args(argv)
    t0 = time.time()
    from nbdev.config import get_config
    cfg = get_config(ROOT)
    nbs, proc = Path(a.nbs).resolve(), Path(a.proc).resolve()
    out = Path(a.out or (ROOT/('_docs' if a.quarto else '_site_offline'))).resolve()
    sidebar = Path(a.sidebar) if a.sidebar else nbs/'sidebar.yml'
    rels = [r for r in find_notebooks(nbs) if re.search(a.only, r.as_posix())]
    if not rels: sys.exit(f'no notebooks found in {nbs}')
    if proc.exists(): shutil.rmtree(proc)
    doc_prefix = (cfg.doc_host.rstrip('/') + '/' + cfg.doc_baseurl.strip('/')).rstrip('/') + '/' if cfg.doc_host else ''
    res = stage(nbs, proc, rels, execute=a.execute, jobs=a.jobs, cell_timeout=a.cell_timeout,
                doc_prefix=None if a.quarto else doc_prefix)
    for r in res:
        extra = f" ({r.get('flagged', 0)} flagged, {r.get('mixed', 0)} import+lesson cell(s) not run by nbdev)"
        print(f"  {'ok ' if r['ok'] else 'ERR'} {r['rel']:<40} {r['secs']:5.1f}s{extra}" + (f"\n      {r['error']}" if r['error'] else ''))
    bad = [r for r in res if not r['ok']]
    if any(not r.get('staged') for r in bad): sys.exit(f'{len(bad)} notebook(s) failed')
    if a.quarto: quarto_site(proc, out, a.jobs)
    else:
        nav = read_sidebar(sidebar) if sidebar.exists() else [(None, [r.as_posix() for r in rels])]
        offline_site(res, out, nav, nbs, cfg.title)
    print(f'{len(rels)} pages -> {out} in {time.time()-t0:.0f}s')
    if bad: sys.exit(f'{len(bad)} notebook(s) had errors (pages were still written)')

if __name__ == '__main__':
    # run as the importable module `build_docs`: worker processes unpickle `build_docs.stage_one`, since IPython's
    # shell (used by nbdev to render show_doc) replaces `__main__` in the worker
    sys.path.insert(0, str(Path(__file__).parent))
    import build_docs
    build_docs.main()
