"""The folders are layers (hiercls/__init__.py lists them): a module imports only from its
own layer and the layers listed before it, lazily imported names included."""

import ast
from pathlib import Path

import hiercls

PACKAGE = Path(hiercls.__file__).parent

#: The layers in the order of hiercls/__init__.py's docstring.
LAYERS = ["exceptions", "validation", "data", "nn", "features", "estimator", "evaluation",
          "persistence", "reporting", "slides", "cli"]
#: exceptions and validation are one layer.
RANK = {name: (0 if name in ("exceptions", "validation") else i - 1) for i, name in enumerate(LAYERS)}


def _layer(parts):
    return parts[0].removesuffix(".py") if parts else None


def _imports(path):
    """(line, the hiercls layer it imports) for every import in the module, at any depth."""
    module = path.relative_to(PACKAGE).with_suffix("").parts
    package = module[:-1]  # the module's own package ("__init__" is a module of it too)
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = [*base, *(node.module.split(".") if node.module else [])]
                if not target:  # "from .. import x": x are subpackages of hiercls
                    for alias in node.names:
                        yield node.lineno, alias.name
                    continue
                yield node.lineno, target[0]
            elif node.module and node.module.split(".")[0] == "hiercls":
                parts = node.module.split(".")[1:]
                if parts:
                    yield node.lineno, parts[0]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "hiercls" and len(parts) > 1:
                    yield node.lineno, parts[1]


def test_the_layer_list_names_every_folder_and_module_of_the_package():
    children = {p.stem for p in PACKAGE.iterdir()
                if (p.is_dir() and (p / "__init__.py").exists())
                or (p.suffix == ".py" and p.stem not in ("__init__", "__main__"))}
    assert children == set(LAYERS)
    for name in LAYERS:
        assert f"hiercls.{name}" in hiercls.__doc__


def test_no_module_imports_from_a_later_layer():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = _layer(path.relative_to(PACKAGE).parts)
        if own in ("__init__", "__main__"):
            continue  # the package's lazy names reach every layer by design
        for line, target in _imports(path):
            if target in RANK and RANK[target] > RANK[own]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({own}) imports {target}")
    assert not upward, "\n".join(upward)
