"""The import rules that the module docstrings claim, checked on the source (ast, no import).

- Only `roger_cluster/broker/` imports aio_pika / aiormq / pamqp (the AMQP libraries).
- Only `roger_cluster/cluster/` imports aetcd / grpc (the etcd client).
- Only the HTTP modules (`web.py`, `health.py`, `management.py`, `dashboard/`) import aiohttp.
- `client.py`, `sync_client.py`, `environment.py` and `config.py` import nothing of `roger_cluster.runtime`.
- Nothing inside the package imports a name from the package `__init__` (it
  imports the client and the node: a module below them reading `__version__`
  from it pulls in everything). `from roger_cluster import control` is fine:
  it binds the submodule, which `import roger_cluster.control` would too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import roger_cluster

PACKAGE = Path(roger_cluster.__file__).parent

# Library -> the one part of the package allowed to import it.
CONTAINED = {
    "aio_pika": "broker",
    "aiormq": "broker",
    "pamqp": "broker",
    "aetcd": "cluster",
    "grpc": "cluster",
}


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(("roger_cluster", *parts)), path


def imports(name: str, path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, absolute module, names imported from it) for every import of a module,
    wherever it is (also inside functions and `if TYPE_CHECKING:`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield node.lineno, module, [alias.name for alias in node.names]


def is_submodule(name: str) -> bool:
    return (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name / "__init__.py").is_file()


def where(name: str) -> str:
    """The top-level part of the package a module belongs to ('broker', 'cluster', 'client', ...)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_modules_are_found() -> None:
    found = {name for name, _ in modules()}
    assert {"roger_cluster.broker", "roger_cluster.cluster.etcd", "roger_cluster.client"} <= found


def test_each_client_library_is_imported_by_its_own_part_of_the_package_only() -> None:
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}"
        for name, path in modules()
        for line, module, _ in imports(name, path)
        if (owner := CONTAINED.get(module.split(".")[0])) is not None and where(name) != owner
    ]
    assert wrong == []


HTTP_PARTS = {"web", "health", "management", "dashboard"}


def test_aiohttp_is_imported_by_the_http_modules_only() -> None:
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}"
        for name, path in modules()
        for line, module, _ in imports(name, path)
        if module.split(".")[0] in ("aiohttp", "yarl") and where(name) not in HTTP_PARTS
    ]
    assert wrong == []


def test_the_client_and_the_configuration_do_not_import_the_runtime() -> None:
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}"
        for name, path in modules()
        if name
        in (
            "roger_cluster.client",
            "roger_cluster.sync_client",
            "roger_cluster.environment",
            "roger_cluster.config",
        )
        for line, module, names in imports(name, path)
        if module.startswith("roger_cluster.runtime") or (module == "roger_cluster" and "runtime" in names)
    ]
    assert wrong == []


def test_nothing_in_the_package_imports_the_package_init() -> None:
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports from roger_cluster itself: {', '.join(names)}"
        for name, path in modules()
        if name != "roger_cluster"
        for line, module, names in imports(name, path)
        if module == "roger_cluster"
        for names in [[n for n in names if not is_submodule(n)]]
        if names
    ]
    assert wrong == []
