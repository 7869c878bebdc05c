"""infra/ensure-debian-packages.sh and its callers, against stand-ins for dpkg-query, id, sudo
and apt-get.

The stand-ins record their calls: nothing is installed, and the script's three paths (all
installed, missing as a user with sudo, missing as a user without sudo) are each run, then
the two callers on a machine without their tool.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "infra" / "ensure-debian-packages.sh"
INSTALLED = ("dash", "coreutils")


def _stubs(tmp_path: Path, *, sudo: bool, provides: tuple[str, ...] = ()) -> Path:
    """A bin directory of stand-ins: a user (uid 1000), dpkg knowing INSTALLED, and apt-get,
    whose `install` puts the commands `provides` on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "sh").symlink_to("/bin/sh")
    log = tmp_path / "calls"
    made = " ".join(f"{bin_dir}/{name}" for name in provides)
    install = (
        f'if [ "$1" = install ]; then for c in {made}; do : > "$c"; /bin/chmod +x "$c"; done; fi\n'
    )
    scripts = {
        "id": "echo 1000\n",
        "dpkg-query": (
            'for last in "$@"; do :; done\n'
            f'case "$last" in {"|".join(INSTALLED)}) printf "install ok installed";; '
            "*) exit 1;; esac\n"
        ),
        "apt-get": f'echo "apt-get $*" >> {log}\n' + (install if provides else ""),
        "dirname": 'echo "${1%/*}"\n',
    }
    if sudo:
        scripts["sudo"] = f'echo "sudo $*" >> {log}\nshift\n"$@"\n'
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}")
        path.chmod(0o755)
    return bin_dir


def _run(
    tmp_path: Path,
    *args: str,
    sudo: bool = True,
    script: Path = SCRIPT,
    provides: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    bin_dir = _stubs(tmp_path, sudo=sudo, provides=provides)
    # Only the stand-ins on PATH (the shell's builtins do the rest): no real apt-get or sudo.
    env = {**os.environ, "PATH": str(bin_dir)}
    return subprocess.run(
        ["/bin/sh", str(script), *args], env=env, capture_output=True, text=True, timeout=30
    )


def _calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls"
    return log.read_text().splitlines() if log.exists() else []


def test_installed_packages_need_no_apt(tmp_path: Path) -> None:
    done = _run(tmp_path, *INSTALLED)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
    assert _calls(tmp_path) == []


def test_missing_packages_are_installed_through_sudo(tmp_path: Path) -> None:
    done = _run(tmp_path, "--no-install-recommends", "dash", "pkg-a", "pkg-b")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # callers (ensure-chromium.sh) print their own result there
    assert "installing the Debian packages pkg-a pkg-b" in done.stderr
    assert _calls(tmp_path) == [
        "sudo -n apt-get update -qq",
        "apt-get update -qq",
        "sudo -n apt-get install -y -qq --no-install-recommends pkg-a pkg-b",
        "apt-get install -y -qq --no-install-recommends pkg-a pkg-b",
    ]


def test_a_user_without_sudo_is_told_what_to_install(tmp_path: Path) -> None:
    done = _run(tmp_path, "pkg-a", sudo=False)
    assert done.returncode == 1
    assert "apt-get install pkg-a" in done.stderr
    assert _calls(tmp_path) == []


def test_no_package_is_a_usage_error(tmp_path: Path) -> None:
    done = _run(tmp_path)
    assert done.returncode == 2
    assert "usage:" in done.stderr


def test_ensure_prometheus_installs_the_package_without_recommends(tmp_path: Path) -> None:
    script = ROOT / "infra" / "prometheus" / "ensure-prometheus.sh"
    done = _run(tmp_path, script=script, provides=("promtool", "prometheus"))
    assert done.returncode == 0, done.stderr
    assert _calls(tmp_path)[-1] == "apt-get install -y -qq --no-install-recommends prometheus"
    again = _run(tmp_path / "again", script=script, provides=())
    assert again.returncode == 1  # the package installed no promtool: said, not skipped
    assert "installed no promtool" in again.stderr


def test_ensure_chromium_installs_and_prints_the_browser(tmp_path: Path) -> None:
    script = ROOT / "infra" / "chromium" / "ensure-chromium.sh"
    done = _run(tmp_path, script=script, provides=("chromium",))
    assert done.returncode == 0, done.stderr
    assert _calls(tmp_path)[-1] == "apt-get install -y -qq chromium chromium-driver"
    assert done.stdout == f"{tmp_path / 'bin' / 'chromium'}\n"
