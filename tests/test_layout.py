"""The package layout is the architecture: srlab/ holds only role folders (plus errors.py and
the `python -m srlab.train` alias), each folder's __init__ says what belongs there, and an
import only points down the roles (no cycles, nothing imports upward)."""
import ast
from pathlib import Path

import pytest

SRLAB = Path(__file__).resolve().parents[1] / "srlab"

# role -> the srlab packages it may import (errors.py is everyone's). Adding a folder means
# adding its row here, which is the point: the reader sees the new arrow.
ALLOWED = {
    "cli": {"config", "approaches", "training", "inference", "evaluation", "nets", "losses", "data", "runs", "ops"},
    "approaches": {"training", "inference", "evaluation", "nets", "losses", "data", "ops"},
    "training": {"data", "inference", "ops"},  # snapshots: spandrel-readable files (inference.interchange)
    "inference": {"nets", "data", "ops"},
    "evaluation": {"losses", "runs", "ops"},
    "nets": {"ops"},
    "data": {"ops"},
    "losses": {"config", "ops"},
    "config": {"runs", "ops"},
    "runs": set(),
    "ops": set(),
}
ROOT_FILES = {"__init__.py", "errors.py", "train.py"}


def srlab_imports(path: Path) -> set[str]:
    """The top-level srlab packages a file imports (lazy imports inside functions count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        found |= {n.split(".")[1] for n in names if n.startswith("srlab.")}
    return found


def test_root_holds_only_role_folders():
    files = {p.name for p in SRLAB.iterdir() if p.is_file() and p.suffix == ".py"}
    folders = {p.name for p in SRLAB.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert files == ROOT_FILES
    assert folders == set(ALLOWED)


@pytest.mark.parametrize("role", sorted(ALLOWED))
def test_each_folder_says_what_belongs_there(role):
    doc = ast.get_docstring(ast.parse((SRLAB / role / "__init__.py").read_text()))
    assert doc and len(doc.split()) >= 25, f"srlab/{role}/__init__.py needs a docstring saying what belongs there"


@pytest.mark.parametrize("role", sorted(ALLOWED))
def test_imports_only_point_down(role):
    wrong = {}
    for path in (SRLAB / role).rglob("*.py"):
        bad = srlab_imports(path) - ALLOWED[role] - {role, "errors"}
        if bad:
            wrong[str(path.relative_to(SRLAB))] = sorted(bad)
    assert not wrong, f"imports against the layout (see ALLOWED): {wrong}"


def test_allowed_arrows_have_no_cycle():
    done, visiting = set(), set()

    def visit(role, trail):
        assert role not in visiting, f"import cycle: {' -> '.join(trail + [role])}"
        if role not in done:
            visiting.add(role)
            for dep in ALLOWED[role]:
                visit(dep, trail + [role])
            visiting.discard(role)
            done.add(role)

    for role in ALLOWED:
        visit(role, [])


def test_python_m_srlab_train_still_runs():
    """`python -m srlab.train` (job scripts use it) runs srlab/train.py, which runs the console
    script's own function (the CLI itself is tested in test_train.py and test_faults.py)."""
    import importlib.util

    import srlab.cli.train
    import srlab.train

    assert importlib.util.find_spec("srlab.train") is not None
    assert srlab.train.cli is srlab.cli.train.cli
    assert 'if __name__ == "__main__":\n    cli()' in (SRLAB / "train.py").read_text()
