"""The documentation site: built offline from the notebooks by scripts/build_docs.py (the same nbdev-processed pages the
Quarto site renders), every notebook has a page, API pages carry `show_doc` output, links resolve, GPU cells never run
during a docs build, and a headless Chromium screenshot shows rendered pages."""
import json, os, re, shutil, subprocess, sys, tempfile
from pathlib import Path
from urllib.parse import unquote

import pytest, yaml

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
SCRIPT = ROOT/'scripts'/'build_docs.py'
sys.path.insert(0, str(SCRIPT.parent))
import build_docs  # noqa: E402

bs4 = pytest.importorskip('bs4')

def _build(*args, timeout=600, **env):
    r = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, 'MPLBACKEND': 'Agg', 'HF_HUB_OFFLINE': '1', **env})
    return r, r.stdout[-4000:] + '\n' + r.stderr[-4000:]

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "The offline site of the project's notebooks, built once for this module (no execution, as in CI)."
    out, proc = tmp_path_factory.mktemp('site'), tmp_path_factory.mktemp('proc')
    r, log = _build('--out', out, '--proc', proc, '--jobs', 2)
    assert r.returncode == 0, f'build_docs.py failed:\n{log}'
    return out

def _soup(p:Path): return bs4.BeautifulSoup(p.read_text(), 'html.parser')

def _title(nb:Path) -> str:
    "The notebook's H1, which nbdev turns into the page title."
    cells = json.loads(nb.read_text())['cells']
    md = next(''.join(c['source']) for c in cells if c['cell_type'] == 'markdown')
    return re.search(r'^#\s+(.+?)\s*$', md, re.M).group(1)

NOTEBOOKS = build_docs.find_notebooks(NBS)

# --------------------------------------------------------------------------------------------------------------------
# configuration

def test_sidebar_in_pipeline_order():
    nav = build_docs.read_sidebar(NBS/'sidebar.yml')
    listed = [it for _, items in nav for it in items]
    test_missing = [r.as_posix() for r in NOTEBOOKS if r.as_posix() not in listed]
    assert not test_missing, f'notebooks missing from nbs/sidebar.yml (custom_sidebar = true): {test_missing}'
    assert listed[0] == 'index.ipynb', 'the home page comes first'
    sections = dict(nav[1:])
    pipeline = sections['Pipeline (API)']
    assert pipeline == sorted(pipeline, key=lambda p: int(p.split('_')[0])), 'pipeline pages in numeric (pipeline) order'
    assert {'00_env.ipynb', '01_recipe.ipynb', '10_quantization.ipynb', '90_cli.ipynb'} <= set(pipeline)
    top = sorted(r.as_posix() for r in NOTEBOOKS if re.match(r'^\d+_', r.name) and len(r.parts) == 1)
    assert [p for p in pipeline if p in top] == top, 'every numbered notebook is in the pipeline section, in order'
    assert {'tutorials/quickstart.ipynb', 'tutorials/troubleshooting.ipynb'} <= set(sections['Tutorials'])
    assert len(listed) == len(set(listed)), 'no page listed twice'

def test_quarto_config_matches_nbdev():
    q = yaml.safe_load((NBS/'_quarto.yml').read_text())
    assert q['project']['type'] == 'website'
    assert q['metadata-files'] == ['nbdev.yml', 'sidebar.yml'], 'nbdev-docs writes nbdev.yml; the sidebar is ours'
    assert (NBS/q['format']['html']['css']).exists()
    listed = {it for _, items in build_docs.read_sidebar(NBS/'sidebar.yml') for it in items}
    for item in q['website']['navbar'].get('left', []): assert item['href'] in listed, item
    wf = yaml.safe_load((ROOT/'.github/workflows/docs.yml').read_text())
    steps = ' '.join(str(s) for job in wf['jobs'].values() for s in job['steps'])
    assert 'build_docs.py' in steps and '--quarto' in steps and 'deploy-pages' in steps

def test_quarto_mode_stages_what_nbdev_docs_renders(tmp_path):
    "--quarto (what the Pages workflow runs) stages nbdev-processed pages plus the Quarto config, then calls quarto."
    fake = tmp_path/'bin'/'quarto'; fake.parent.mkdir()
    fake.write_text(f"""#!{sys.executable}
import os, sys, pathlib
pathlib.Path({str(tmp_path/'calls')!r}).open('a').write(os.getcwd() + ' ' + ' '.join(sys.argv[1:]) + chr(10))
out = pathlib.Path(sys.argv[sys.argv.index('--output-dir') + 1]); out.mkdir(parents=True, exist_ok=True)
(out/'index.html').write_text('<html>rendered</html>')
""")
    fake.chmod(0o755)
    proc, out = tmp_path/'proc', tmp_path/'docs'
    r, log = _build('--quarto', '--only', r'^(index|01_recipe)\.', '--jobs', 1, '--proc', proc, '--out', out, timeout=300,
                    PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    assert r.returncode == 0, log
    calls = (tmp_path/'calls').read_text().split()
    assert calls[0] == str(proc) and 'render' in calls and (out/'index.html').exists()
    for f in ('_quarto.yml', 'sidebar.yml', 'styles.css', 'nbdev.yml'): assert (proc/f).exists(), f
    nbdev_yml = yaml.safe_load((proc/'nbdev.yml').read_text())
    assert nbdev_yml['website']['repo-url'].startswith('https://github.com/') and nbdev_yml['project']['output-dir'] == 'docs'
    staged = yaml.safe_load((proc/'sidebar.yml').read_text())['website']['sidebar']['contents']
    assert staged == ['index.ipynb', {'section': 'Pipeline (API)', 'contents': ['01_recipe.ipynb']}], 'unwritten pages pruned'
    nb = json.loads((proc/'01_recipe.ipynb').read_text())
    assert 'output-file: recipe.html' in ''.join(nb['cells'][0]['source'])
    md = [''.join(o['data']['text/markdown']) for c in nb['cells'] for o in c.get('outputs', []) if 'text/markdown' in o.get('data', {})]
    assert any('### load_recipe' in m for m in md), 'show_doc rendered by nbdev'

# --------------------------------------------------------------------------------------------------------------------
# the built pages

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[r.as_posix() for r in NOTEBOOKS])
def test_every_notebook_has_a_page(site, nb):
    page = site/build_docs.page_name(nb)
    assert page.exists(), f'{nb} has no page {page.name}'
    s = _soup(page)
    assert s.find('h1', class_='title').get_text(strip=True) == _title(NBS/nb)
    active = s.select('nav.sidebar a.active')
    assert len(active) == 1 and active[0]['href'] == Path(build_docs.page_name(nb)).name, 'page is current in the sidebar'
    main = s.find('main')
    assert len(main.get_text(' ', strip=True)) > 200, 'page has content'
    for pre in main.find_all('pre'):  # directives are stripped from shown code
        assert not re.search(r'^\s*#\s*\|', pre.get_text(), re.M), f'directive left in {page.name}:\n{pre.get_text()[:300]}'
    for c in main.find_all(['code', 'pre']): c.decompose()
    prose = main.get_text('\n')
    for leak in (r'\{target=', r'^\s*:::', r'\{\.callout'):  # pandoc/Quarto markup that nbconvert would show as text
        assert not re.search(leak, prose, re.M), f'Quarto syntax {leak!r} leaked into {page.name}'

def test_sidebar_links_follow_pipeline(site):
    nav = [a['href'] for a in _soup(site/'index.html').select('nav.sidebar a')]
    want = [build_docs.page_name(it) for _, items in build_docs.read_sidebar(NBS/'sidebar.yml') for it in items
            if (NBS/it).exists()]
    assert nav[:len(want)] == want

def test_api_pages_show_docs(site):
    "Every public function/class the package exports has its show_doc entry (an anchor and a signature) on its page."
    from qlora_nb._modidx import d
    pages, missing, n = {}, [], 0
    for mod, syms in d['syms'].items():
        for full, (link, _) in syms.items():
            short = full[len(mod)+1:]
            if '.' in short or short.startswith('_'): continue
            page, frag = link.split('#')
            if not (site/page).exists():
                if f'{page} (page of {mod})' not in missing: missing.append(f'{page} (page of {mod})')
                continue
            if page not in pages:  # (ids, {heading text: [text of the code block after it]})
                s, heads = _soup(site/page), {}
                for h in s.find_all(['h2', 'h3', 'h4']):
                    nxt = h.find_next('pre')
                    heads.setdefault(h.get_text().rstrip('#').strip(), []).append(nxt.get_text() if nxt else '')
                pages[page] = ({e['id'] for e in s.find_all(id=True)}, heads)
            ids, heads = pages[page]
            shown = any(re.search(rf'\b(def|class)\s+{re.escape(short)}\b', sig) for sig in heads.get(short, []))
            if frag not in ids or not shown: missing.append(link)
            n += 1
    assert n > 20 and not missing, f'show_doc entries missing: {missing}'

@pytest.fixture(scope='module')
def parsed(site):
    "Every page of the site: {path: (ids, [(tag, url)])}, parsed once."
    res = {}
    for page in sorted(site.rglob('*.html')):
        s = _soup(page)
        ids = {e['id'] for e in s.find_all(id=True)} | {e['name'] for e in s.find_all('a', attrs={'name': True})}
        links = [(el.name, el[attr]) for el in s.find_all(['a', 'img', 'link', 'script'])
                 for attr in ('href', 'src') if el.get(attr)]
        res[page.resolve()] = (ids, links)
    return res

def _links(parsed):
    for page, (_, links) in parsed.items():
        for tag, url in links: yield page, tag, url

def test_internal_links_resolve(parsed):
    "Every relative link points to a file in the site, and its #fragment to an element of that page."
    bad, n = [], 0
    def _ids(p): return parsed[p][0] if p in parsed else {e['id'] for e in _soup(p).find_all(id=True)}
    for page, tag, url in _links(parsed):
        if re.match(r'^[a-z][a-z0-9+.-]*:', url): continue  # http(s), mailto, data
        path, _, frag = url.partition('#')
        target = (page.parent/unquote(path)).resolve() if path else page
        n += 1
        if not target.is_file(): bad.append(f'{page.name}: {url} (no file)'); continue
        if frag and target.suffix == '.html' and unquote(frag) not in _ids(target): bad.append(f'{page.name}: {url} (no #{frag})')
    assert n > 50 and not bad, '\n'.join(bad)

def test_offline_and_self_contained(parsed):
    "Pages load nothing from the network, and nbdev's links to the hosted docs were made relative."
    from nbdev.config import get_config
    host = get_config(ROOT).doc_host
    for page, tag, url in _links(parsed):
        if tag in ('img', 'link', 'script'): assert not re.match(r'^https?:', url), f'{page.name} loads {url}'
        if host: assert not url.startswith(host), f'{page.name} links to the hosted site: {url}'

# --------------------------------------------------------------------------------------------------------------------
# GPU cells never run while docs are built

def _nb(*cells, meta=None):
    import nbformat.v4 as v4
    nb = v4.new_notebook(metadata={'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}})
    nb.cells = [v4.new_markdown_cell(c[3:]) if c.startswith('md:') else v4.new_raw_cell(c[4:]) if c.startswith('raw:')
                else v4.new_code_cell(c) for c in cells]
    return nb

def test_gpu_cells_and_skip_exec_never_run(tmp_path):
    "With --execute: flagged cells, skip_exec notebooks and import+lesson cells do not run; others show outputs."
    import nbformat
    nbs = tmp_path/'nbs'; (nbs/'tutorials').mkdir(parents=True)
    boom = "raise RuntimeError('a GPU cell ran during the docs build')"
    nbformat.write(_nb('md:# Fixture\n> A CPU notebook with a GPU cell.',
                       '#| export\ndef double(x:int, # a number\n          )->int:\n    "Twice `x`."\n    return 2*x',
                       'y = 21',
                       f'#| gpu\nimport os\n{boom}',
                       'import math\nz = double(y)\nz',                      # imports + lesson code: nbdev must not run it
                       'print(f"sqrt={math.sqrt(16.0)}")'), nbs/'00_fixture.ipynb')
    nbformat.write(_nb('raw:---\nskip_exec: true\n---', 'md:# GPU only\n> Needs a GPU.',
                       f'import torch\n{boom}'), nbs/'tutorials'/'gpu_only.ipynb')
    (nbs/'sidebar.yml').write_text('website:\n  sidebar:\n    contents:\n      - 00_fixture.ipynb\n'
                                   '      - section: Tutorials\n        contents:\n          - tutorials/gpu_only.ipynb\n')
    out = tmp_path/'site'
    r, log = _build('--nbs', nbs, '--out', out, '--proc', tmp_path/'proc', '--jobs', 1, '--execute', timeout=300)
    assert r.returncode == 0, log
    assert 'a GPU cell ran' not in log
    page = (out/'fixture.html').read_text()
    main = _soup(out/'fixture.html').find('main')
    assert main.find(id='double') is not None, 'show_doc rendered for the exported function'
    assert 'Twice' in main.get_text()
    assert boom.split("'")[1] in main.get_text(), 'the GPU cell is shown'
    outs = ' '.join(o.get_text(' ', strip=True) for o in main.select('.output_area'))
    assert '42' in outs and 'sqrt=4.0' in outs, f'executed outputs shown: {outs!r}'
    assert 'a GPU cell ran' not in outs
    gp = _soup(out/'tutorials'/'gpu_only.html')
    assert gp.find('h1', class_='title').get_text(strip=True) == 'GPU only' and not gp.select('.output_area')
    assert 'href="tutorials/gpu_only.html"' in page, 'sidebar links into the tutorials folder'

# --------------------------------------------------------------------------------------------------------------------
# what a reader sees

def _chromium():
    for name in ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'):
        if p := shutil.which(name): return p
    return '/usr/bin/chromium' if Path('/usr/bin/chromium').exists() else None

def _screenshot(url:str, png:Path):
    exe = _chromium()
    if exe is None:
        msg = 'Chromium is not installed: apt-get update && apt-get install -y chromium'
        if os.environ.get('CI'): pytest.fail(msg)
        pytest.skip(msg)
    with tempfile.TemporaryDirectory() as prof:
        r = subprocess.run([exe, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                            '--disable-background-networking', '--disable-component-update', '--disable-sync',
                            '--disable-dev-shm-usage', '--hide-scrollbars', f'--user-data-dir={prof}',
                            f'--screenshot={png}', '--window-size=1280,1600', url],
                           capture_output=True, text=True, timeout=120)
    assert png.exists() and png.stat().st_size > 0, f'no screenshot of {url}:\n{r.stderr[-2000:]}'

def _check_png(png:Path):
    "A rendered page, not a blank or error page: ink on a meaningful fraction, many colours, the styled top bar."
    import numpy as np
    from PIL import Image
    a = np.asarray(Image.open(png).convert('RGB')).astype(int)
    test_h, test_w, _ = a.shape
    assert (test_h, test_w) == (1600, 1280)
    nonwhite = (a.min(axis=2) < 235).mean()
    colours = len(np.unique(a.reshape(-1, 3) // 8, axis=0))
    assert nonwhite > 0.05, f'{png.name}: only {nonwhite:.1%} of pixels are not white'
    assert colours > 40, f'{png.name}: only {colours} distinct colours'
    bar = a[5:30, 600:700].reshape(-1, 3).mean(0)          # the top bar: site.css loaded
    assert abs(bar - [44, 111, 187]).max() < 25, f'{png.name}: top bar colour {bar}'
    body = a[300:1500, 300:1000]                           # the main column holds text
    assert (body.min(axis=2) < 150).mean() > 0.01, f'{png.name}: no text in the main column'
    return nonwhite, colours

@pytest.mark.parametrize('page', ['index.html', 'recipe.html'])
def test_screenshot_shows_rendered_page(site, page, tmp_path):
    png = tmp_path/(Path(page).stem + '.png')
    _screenshot((site/page).as_uri(), png)
    _check_png(png)
    if os.environ.get('DOCS_SCREENSHOT_DIR'):  # keep them to look at
        shutil.copy2(png, Path(os.environ['DOCS_SCREENSHOT_DIR'])/png.name)
