"""Docs that cannot go stale: every relative link in README.md and docs/*.md resolves (file and
#anchor), and every srlab-train / -eval / -upscale / -export / -prepare command line in their
code blocks composes with the real configs. Training commands also pass srlab-train's whole
pre-flight check (types, unknown keys, ranges, existing data folders, a readable ckpt_path),
which is what `--cfg job` cannot catch.

Placeholders are filled here: `<run>` is a run directory holding a real checkpoint,
`<date>_<time>` a multirun, and every folder or image a command names is made, with tiny
images, in a scratch working directory. A command that needs a file no test can make (ImageNet
weights) carries `# docs-test: needs-file <name>` in its page, and is skipped visibly here.
"""
import os
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from PIL import Image

from srlab.config.compose import compose_config, validate_train_config
from tests.conftest import write_images

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LEGACY_RUN = ROOT / "tests" / "fixtures" / "legacy_v0_1" / "run"
COMMAND = re.compile(r"^(?:\.venv/bin/)?srlab-(train|eval|upscale|export|prepare)\b(.*)$")
CONFIG_OF = {"train": "train", "eval": "eval", "upscale": "upscale", "export": "export", "prepare": "prepare"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
PATH_KEYS = ("data.train_dir", "data.val_dir", "data.train_lr_dir", "data.val_lr_dir", "input", "lr_input", "eval.sets",
             "eval.lr_dirs", "ckpt_path", "approach.init_from")


def code_lines(page: Path):
    """(line number, text) of each line inside a fenced code block."""
    inside = False
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            inside = not inside
        elif inside:
            yield number, line.strip()


def doc_commands():
    for page in PAGES:
        for number, line in code_lines(page):
            found = COMMAND.match(line)
            if found:
                yield pytest.param(found.group(1), line, id=f"{page.relative_to(ROOT)}:{number}")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(line.lstrip("#")) for _, line in [(0, x) for x in page.read_text().splitlines()]
            if line.startswith("#")}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not ours to check offline
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.name}: broken links {broken}"


def test_every_page_is_listed_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [p.name for p in PAGES[1:] if f"docs/{p.name}" not in readme]
    assert not missing, f"README's table of docs pages lacks {missing}"


def make_image_or_folder(path: Path) -> None:
    if path.exists():
        return
    if path.suffix.lower() in IMAGE_SUFFIXES:
        path.parent.mkdir(parents=True, exist_ok=True)
        rgb = np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(path)
    elif path.suffix in (".ckpt", ".pt"):
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(LEGACY_RUN / "checkpoints" / "last.ckpt", path)
    elif path.suffix != ".pth":  # authors' weights: only composed, never read here
        write_images(path, 2, size=(48, 48))


def first_of_sweeps(overrides: list[str]) -> list[str]:
    """A multirun's job 0: `loss=mse,l1` -> `loss=mse` (lists like eval.sets=[a,b] are kept)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    out = []
    for text, override in zip(overrides, parsed):
        if override.is_sweep_override() and not override.is_hydra_override():
            choice = next(iter(override.sweep_string_iterator()))
            text = f"{override.get_key_element()}={choice}"
        out.append(text)
    return out


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    run = tmp_path / "outputs" / "train" / "runs" / "2026-01-01_00-00-00"
    shutil.copytree(LEGACY_RUN, run)
    shutil.copy(run / "checkpoints" / "last.ckpt", run / "checkpoints" / "best.ckpt")
    return tmp_path, run


@pytest.mark.parametrize("command, line", list(doc_commands()))
def test_documented_command_composes(command, line, scratch):
    tmp_path, run = scratch
    code, _, comment = line.partition(" #")
    needs = re.search(r"docs-test: needs-file (\S+)", comment)
    if needs:
        pytest.skip(f"needs {needs.group(1)}, which tests cannot make: {code.strip()}")
    code = code.replace("outputs/train/runs/<run>", str(run)).replace("<run>", str(run))
    args = shlex.split(os.path.expandvars(code))[1:]  # $HOME as the shell would
    assert not any("<" in a for a in args), f"unfilled placeholder in {args}"
    flags, overrides, takes_value = [], [], False
    for a in args:  # Hydra's flags; --cfg/-c, --package/-p take a value
        if takes_value or a.startswith("-"):
            flags.append(a)
            takes_value = a in ("--cfg", "-c", "--package", "-p") and not takes_value
        else:
            overrides.append(a)
    if "-m" in flags or "--multirun" in flags:
        overrides = first_of_sweeps(overrides)
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key in PATH_KEYS and value and not (command == "prepare" and key == "output"):
            for part in value.strip("[]").split(","):
                make_image_or_folder(Path(part).expanduser())
    cfg = compose_config(CONFIG_OF[command], overrides, tmp_path / "run")
    if command == "train":
        validate_train_config(cfg)
