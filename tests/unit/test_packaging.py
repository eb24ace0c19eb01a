"""The wheel carries templates/ and site-profiles/ and finds them when installed (not editable)."""

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def unpacked_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Without build isolation when the build backend is at hand (0.9 s instead of 2.4 s here: no
    # fresh environment with hatchling installed into it); the wheel is the same.
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(out),
                            str(REPO)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    wheel = next(out.glob("hpcjupyter-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for expected in ("hpcjupyter/templates/body.sh.j2", "hpcjupyter/templates/slurm.sh.j2",
                     "hpcjupyter/templates/pbs.sh.j2", "hpcjupyter/site-profiles/archer2.toml",
                     "hpcjupyter/site-profiles/imperial-cx3.toml", "hpcjupyter/site-profiles/local.toml"):
        assert expected in names
    target = out / "site"
    zipfile.ZipFile(wheel).extractall(target)
    return target


def run_from(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the unpacked package, with the source tree out of reach (-I: no cwd on sys.path)."""
    code = f"import sys; sys.path.insert(0, {str(directory)!r}); sys.argv[0] = 'hpcjupyter'; " \
           "from hpcjupyter.cli import main; main()"
    return subprocess.run([sys.executable, "-I", "-c", code, *args], capture_output=True, text=True,
                          cwd=directory, timeout=60)


def test_installed_package_lists_the_built_in_sites(unpacked_wheel: Path) -> None:
    result = run_from(unpacked_wheel, "sites", "list")
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["archer2", "cirrus", "imperial-cx3", "local"]
    assert str(REPO) not in run_from(unpacked_wheel, "sites", "show", "archer2", "--origin").stdout


def test_installed_package_renders_a_script(unpacked_wheel: Path) -> None:
    result = run_from(unpacked_wheel, "submit", "--site", "archer2", "--hours", "2", "--account", "e123", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "#SBATCH --time=02:00:00" in result.stdout and "#SBATCH --account=e123" in result.stdout
