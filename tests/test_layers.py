"""The package's house rules, read from the source: layers point down (core <- viz <- tools) and no module
reaches into another module's underscore names."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "iadtutor"
MODULES = sorted(PACKAGE.rglob("*.py"))


def layer_of(module: str) -> str:
    """``core`` / ``viz`` / ``tools`` for a dotted name inside iadtutor, ``outside`` otherwise."""
    parts = module.split(".")
    if parts[0] != "iadtutor":
        return "outside"
    return parts[1] if len(parts) > 1 and parts[1] in ("viz", "tools") else "core"


def dotted_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, list[str], int]]:
    """Every import of the file, also inside functions: ``(module, imported names, line)``."""
    here = dotted_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.append((base, [alias.name for alias in node.names], node.lineno))
    return found


ALLOWED = {"core": {"core"}, "viz": {"core", "viz"}, "tools": {"core", "viz", "tools"}}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layers_point_down(path):
    layer = layer_of(dotted_name(path))
    for module, names, line in imports_of(path):
        targets = [module] + [f"{module}.{name}" for name in names] if module == "iadtutor" else [module]
        for target in targets:
            if target == "iadtutor" or layer_of(target) == "outside":
                continue
            assert layer_of(target) in ALLOWED[layer], (
                f"{path.relative_to(PACKAGE)}:{line} ({layer}) imports {target} ({layer_of(target)})")


def test_the_layer_check_catches_an_upward_import(tmp_path):
    """A hand-made core module that imports the viz layer is caught (the check above can fail)."""
    bad = PACKAGE / "_layer_probe.py"
    try:
        bad.write_text("def f():\n    from iadtutor.viz import core\n    from .tools import runs\n")
        found = [(m, n) for m, n, _ in imports_of(bad)]
        assert ("iadtutor.viz", ["core"]) in found and ("iadtutor.tools", ["runs"]) in found
        assert layer_of(dotted_name(bad)) == "core"
    finally:
        bad.unlink()


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_reaches_into_another_modules_private_names(path):
    tree = ast.parse(path.read_text())
    iadtutor_aliases = set()
    for module, names, line in imports_of(path):
        if module.startswith("iadtutor"):
            private = [name for name in names if name.startswith("_") and name != "__version__"]
            assert not private, f"{path.relative_to(PACKAGE)}:{line} imports private {private} from {module}"
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                full = f"{getattr(node, 'module', '') or ''}.{alias.name}"
                if "iadtutor" in full or (isinstance(node, ast.ImportFrom) and node.level):
                    iadtutor_aliases.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name) and node.value.id in iadtutor_aliases):
            raise AssertionError(f"{path.relative_to(PACKAGE)}:{node.lineno} uses {node.value.id}.{node.attr}")


def own_private_names(tree: ast.AST) -> set[str]:
    """Underscore names the module defines itself: functions, classes, methods and ``self._x`` attributes."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name.startswith("_"):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and node.attr.startswith("_"):
            names.add(node.attr)
    return names


# efficientnet-lite-pytorch exposes its layers only under underscore names; backbones.py must use them.
THIRD_PARTY = {"model._conv_stem", "model._bn0", "model._swish", "model._blocks", "model._global_params"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_reaches_into_another_classes_private_names(path):
    """``obj._name`` is allowed only when this module defines ``_name`` (its own class's helper)."""
    tree = ast.parse(path.read_text())
    own = own_private_names(tree)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and node.attr not in own):
            target = ast.unparse(node.value)
            protocol = node.attr.startswith(("_repr_", "_ipython_")) and node.attr.endswith("_")  # IPython display
            if protocol or f"{target}.{node.attr}" in THIRD_PARTY or node.attr == "_bn2" and target.startswith("blocks["):
                continue
            assert target in ("self", "cls"), f"{path.relative_to(PACKAGE)}:{node.lineno} uses {target}.{node.attr}"


TAUGHT = [p for p in MODULES if "tools" not in p.parts and p.name != "__init__.py"]


@pytest.mark.parametrize("path", TAUGHT, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_public_name_says_which_notebook_teaches_it(path):
    """d2l-style back-references: a reader of the package finds the chapter."""
    missing = [node.name for node in ast.parse(path.read_text()).body
               if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")
               and "notebook" not in (ast.get_docstring(node) or "").lower()]
    assert not missing, f"{path.relative_to(PACKAGE)}: no notebook named in the docstring of {missing}"
