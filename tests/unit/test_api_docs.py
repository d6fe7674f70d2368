"""The API reference is complete: every public name has a docstring (read the way
pdoc, which builds the reference, reads them), every value the client returns is
importable from the package, and the documented examples pass `mypy --strict`."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path

import pdoc.doc

import roger_cluster
from roger_cluster.broker import Broker
from roger_cluster.cluster.etcd import Etcd

ROOT = Path(__file__).parents[2]


def undocumented(module: pdoc.doc.Module) -> Iterator[str]:
    """Names in the module's __all__, and the public members of its classes that
    come from roger_cluster, with no docstring (inherited ones count)."""
    for name in module.obj.__all__:
        doc = module.get(name)
        assert doc is not None, f"{name} is in __all__ but pdoc cannot find it"
        if not doc.docstring.strip() and not name.startswith("__"):  # __version__ speaks for itself
            yield name
        if isinstance(doc, pdoc.doc.Class):
            for member in doc.members.values():
                if member.name.startswith("_") or not member.taken_from[0].startswith("roger_cluster"):
                    continue
                if not member.docstring.strip():
                    yield f"{name}.{member.name}"


@typing.no_type_check
def test_every_public_name_and_member_has_a_docstring() -> None:
    missing = list(undocumented(pdoc.doc.Module(roger_cluster)))
    assert not missing, f"no docstring: {', '.join(missing)}"


def test_the_test_kit_documents_every_name_it_exports() -> None:
    import roger_cluster.testing

    missing = list(undocumented(pdoc.doc.Module(roger_cluster.testing)))
    assert not missing, f"no docstring: {', '.join(missing)}"


def classes_in(hint: object) -> Iterator[type]:
    """The classes a type hint names, through X | None, list[X], Sequence[X]..."""
    if isinstance(hint, type) and not typing.get_args(hint):
        yield hint
    for arg in typing.get_args(hint):
        yield from classes_in(arg)


# `Client.broker()` and `Client.etcd()` hand out the connections themselves, for
# code that goes below the client (the dashboard, the tests): not the user API.
LOWER_LAYERS = {Broker, Etcd}
PACKAGE = "roger_cluster"


def returned_classes(cls: type) -> set[type]:
    """The roger_cluster classes the public methods of `cls` return, and the
    dataclasses those hold in their fields."""
    found: set[type] = set()
    for name, method in vars(cls).items():
        if name.startswith("_") or not callable(method):
            continue
        # The package's names too: a module may import a return type only under TYPE_CHECKING.
        names = {**vars(roger_cluster), **vars(sys.modules[method.__module__])}
        hint = typing.get_type_hints(method, globalns=names).get("return")
        found |= {c for c in classes_in(hint) if c.__module__.startswith(PACKAGE)}
    for value in list(found):
        if dataclasses.is_dataclass(value):
            hints = typing.get_type_hints(value)
            for field in dataclasses.fields(value):
                if not field.name.startswith("_"):
                    found |= {
                        c for c in classes_in(hints[field.name]) if c.__module__.startswith("roger_cluster")
                    }
    return found - LOWER_LAYERS


def test_what_the_clients_return_is_exported_from_the_package() -> None:
    clients = [getattr(roger_cluster, n) for n in roger_cluster.__all__ if n.endswith("Client")]
    assert roger_cluster.Client in clients
    returned = set().union(*(returned_classes(c) for c in clients))
    assert roger_cluster.PartitionInfo in returned and roger_cluster.RunningJob in returned
    exported = {getattr(roger_cluster, n) for n in roger_cluster.__all__}
    missing = sorted(c.__qualname__ for c in returned - exported)
    assert not missing, f"returned by the client but not in roger_cluster.__all__: {missing}"


def test_names_users_need_are_exported() -> None:
    for name in ("TlsFiles", "JobContext", "DrainTimeout", "DrainAbandoned", "Delay", "RemoteError"):
        assert name in roger_cluster.__all__
    assert isinstance(roger_cluster.Delay, types.UnionType)


FENCE = re.compile(r"```python\n(.*?)```", re.S)


def documented_programs() -> dict[str, str]:
    """The ```python blocks of README.md and docs/*.md that are whole programs:
    those starting with an import. A fragment (a method, a few calls) must not
    start with one; these are type-checked as they are."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    programs = {}
    for page in pages:
        for index, block in enumerate(FENCE.findall(page.read_text())):
            if block.lstrip().startswith(("import ", "from ")):
                programs[f"{page.stem.replace('-', '_')}_{index}.py"] = block
    return programs


def test_the_documented_examples_pass_mypy_strict(tmp_path: Path) -> None:
    programs = documented_programs()
    assert {"README_0.py", "jobs_0.py", "quickstart_1.py", "testing_0.py"} <= set(programs)
    # A canary that must fail: proves mypy read roger_cluster's types, not Any.
    programs["canary.py"] = "from roger_cluster import Job\nwrong: int = Job.create({}).context\n"
    for name, code in programs.items():
        (tmp_path / name).write_text(code)
    # The app's own modules (`myapp.jobs`) are not here: they are read as Any.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--ignore-missing-imports",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            *sorted(programs),
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "MYPYPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert [e.split(":")[0] for e in errors] == ["canary.py"], done.stdout + done.stderr
    assert '"JobContext"' in errors[0]


def test_job_context_is_typed_and_says_when_it_is_missing() -> None:
    job = roger_cluster.Job.create({})
    assert not job.has_context
    try:
        job.context  # noqa: B018
    except roger_cluster.JobError as e:
        assert "set just before perform()" in str(e)
    else:
        raise AssertionError("context outside perform must raise")
    job.context = roger_cluster.JobContext("p", "default", "n")
    assert job.has_context and job.context.partition == "p"
    context: roger_cluster.JobContext = job.context  # typed without `is not None`
    assert context.retry_count == 0
