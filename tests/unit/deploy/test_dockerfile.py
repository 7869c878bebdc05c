"""The image is small, non-root and pinned, and its build context holds only what it needs."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instructions(name: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    return [
        line.split(None, 1)[1]
        for line in joined.splitlines()
        if line.strip() and line.split(None, 1)[0].upper() == name
    ]


def test_base_images_are_pinned_to_an_exact_python_patch_release() -> None:
    bases = [f.split()[0] for f in _instructions("FROM")]
    assert bases, "no FROM"
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base), base


def test_the_final_stage_runs_as_a_numeric_non_root_user() -> None:
    final = DOCKERFILE.rsplit("\nFROM ", 1)[1]
    users = re.findall(r"^USER\s+(\S+)", final, re.M)
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000


def test_the_entrypoint_is_the_hub_command() -> None:
    assert _instructions("ENTRYPOINT") == ['["hub"]']


def test_the_product_is_installed_from_the_lock_file_without_extras() -> None:
    copied = {c.split()[0] for c in _instructions("COPY") if not c.startswith("--from")}
    assert {"src", "requirements/runtime.lock", "pyproject.toml"} <= copied
    runs = " ".join(_instructions("RUN"))
    assert "-r requirements/runtime.lock" in runs
    # `pip install .`: a wheel, not an editable install, and no extras (`.[...]`).
    assert re.search(r"pip install [^&]*--no-deps \.(\s|$)", runs), runs
    assert "-e ." not in runs


def _ignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    ignored = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern + "/*"):
            ignored = not negate
    return ignored


def test_the_build_context_excludes_tests_venv_git_and_caches() -> None:
    for path in (
        ".venv/bin/python",
        ".git/config",
        "tests/conftest.py",
        "src/pim_hub/cli/__pycache__/x.pyc",
    ):
        assert _ignored(path), f"{path} would be sent to the build"
    for path in (
        "src/pim_hub/cli/main.py",
        "pyproject.toml",
        "requirements/runtime.lock",
        "src/pim_hub/runtime/migrations/0001_initial.sql",
    ):
        assert not _ignored(path), f"{path} would be missing from the build"


def test_the_local_stack_and_the_sandboxes_stay_out_of_the_image() -> None:
    for path in (
        "src/pim_hub/devstack/embedded.py",
        "src/pim_hub/sandbox/magento/app.py",
        "src/pim_hub/sandbox/specs/magento/admin-schema-2.4.9.yaml",
    ):
        assert _ignored(path), f"{path} would be built into the image"
