"""Group profile sources: `sites add/update/remove`, the config edit that keeps comments, `sites check`,
and `sites show --origin` naming the group and personal layers.

Git sources are real repositories made in tmp_path (git is installed wherever the tests run).
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from hpcjupyter import sharing
from hpcjupyter.cli_sites import sites_app
from hpcjupyter.profiles import ProfileSet, load_user_config
from sandbox import Sandbox

GROUP_PROFILE = """\
extends = "archer2"
description = "Our group on ARCHER2"
[job]
partition = "standard"
qos = "short"
hours = 0.25
"""

CONFIG = """\
# My hpcjupyter settings.
# Kept by hand: every comment here must survive.

[sites.archer2]
ssh.user = "me"     # my login
job.account = "e123"

# trailing comment
"""


def cli(*args: str) -> Result:
    """``hpcjupyter sites ARGS`` in-process; ``output`` holds stdout and stderr."""
    app = typer.Typer()
    app.add_typer(sites_app, name="sites")
    return CliRunner().invoke(app, ["sites", *args])


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout


def group_repo(root: Path, files: dict[str, str]) -> tuple[Path, Path]:
    """A working repository with ``files`` committed, and a bare clone of it (what a group hosts)."""
    work = root / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    for name, text in files.items():
        (work / name).write_text(text)
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "group profiles")
    bare = root / "profiles.git"
    git(root, "clone", "-q", "--bare", str(work), str(bare))
    git(work, "remote", "add", "origin", str(bare))
    return work, bare


def profile_path() -> list[str]:
    return load_user_config(sharing.paths.config_file()).profile_path


# ---- pure helpers --------------------------------------------------------------------------


@pytest.mark.parametrize("source, expected", [
    ("https://github.com/grp/hpc-profiles.git", True),
    ("https://gitlab.example.org/grp/hpc-profiles", True),
    ("git@github.com:grp/hpc-profiles.git", True),
    ("file:///srv/git/profiles", True),
    ("/srv/git/profiles.git", True),
    ("relative/dir", False),
])
def test_what_is_a_git_source(source: str, expected: bool) -> None:
    assert sharing.is_git_source(source) is expected


def test_a_bare_repository_directory_is_a_git_source_and_a_checkout_is_a_directory(tmp_path: Path) -> None:
    work, bare = group_repo(tmp_path, {"g.toml": GROUP_PROFILE})
    renamed = bare.rename(tmp_path / "bare-without-suffix")
    assert sharing.is_git_source(str(renamed))
    assert not sharing.is_git_source(str(work))


@pytest.mark.parametrize("source, name", [
    ("git@github.com:grp/hpc-profiles.git", "hpc-profiles"),
    ("https://example.org/grp/profiles/", "profiles"),
    ("file:///srv/git/My Group.git", "My-Group"),
    ("host:", "profiles"),
])
def test_clone_names_come_from_the_source(source: str, name: str) -> None:
    assert sharing.source_name(source) == name


def test_profile_path_is_inserted_after_the_file_header_before_any_table() -> None:
    edited = sharing.set_profile_path(CONFIG, ["/g"])
    assert edited == CONFIG.replace("\n\n[sites", '\n\nprofile_path = [\n  "/g",\n]\n\n[sites', 1)


def test_profile_path_goes_at_the_top_of_a_file_without_a_header_and_into_an_empty_file() -> None:
    assert sharing.set_profile_path("[sites.x]\na = 1\n", []) == "profile_path = []\n\n[sites.x]\na = 1\n"
    assert sharing.set_profile_path("", ["/a"]) == 'profile_path = [\n  "/a",\n]\n'


def test_an_existing_multiline_assignment_is_replaced_keeping_what_follows() -> None:
    text = textwrap.dedent("""\
        # head
        profile_path = [
          "/a",  # the group's [old] dir, with ] and # in a comment
          "/b]#",
        ]   # after the array
        [sites.x]
        a = 1
    """)
    edited = sharing.set_profile_path(text, ["/c"])
    assert edited == '# head\nprofile_path = [\n  "/c",\n]   # after the array\n[sites.x]\na = 1\n'


def test_a_profile_path_key_inside_a_table_is_not_mistaken_for_the_top_level_one() -> None:
    text = '[sites.x]\nprofile_path = "not ours"\n'
    assert sharing.set_profile_path(text, ["/a"]).endswith(text)


# ---- add -----------------------------------------------------------------------------------


def test_add_directory_appends_its_absolute_path_and_keeps_every_comment(sandbox: Sandbox, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox.config.write_text(CONFIG)
    group = tmp_path / "shared" / "grp-profiles"
    sandbox.profile("grp", GROUP_PROFILE, group)
    monkeypatch.chdir(tmp_path / "shared")
    result = cli("add", "grp-profiles")
    assert result.exit_code == 0, result.output
    assert profile_path() == [str(group)]
    assert f"sites from {group}: grp (new)" in result.output
    text = sandbox.config.read_text()
    assert text.replace(f'profile_path = [\n  "{group}",\n]\n\n', "") == CONFIG
    origin_of = ProfileSet.discover().load("grp")[1]
    assert origin_of["job.qos"] == str(group / "grp.toml")


def test_add_creates_the_config_if_missing_and_a_second_directory_goes_after_the_first(
        sandbox: Sandbox, tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir(), second.mkdir()
    assert cli("add", str(first)).exit_code == 0
    assert cli("add", str(second)).exit_code == 0
    assert profile_path() == [str(first), str(second)]


def test_add_warns_about_each_invalid_profile_it_brings(sandbox: Sandbox, tmp_path: Path) -> None:
    group = tmp_path / "grp"
    sandbox.profile("good", GROUP_PROFILE, group)
    sandbox.profile("typo", 'scheduler = "slrum"\n', group)
    result = cli("add", str(group))
    assert result.exit_code == 0
    assert "warning: site 'typo' is invalid" in result.output
    assert "Did you mean 'slurm'?" in result.output
    assert "site 'good'" not in result.output


@pytest.mark.parametrize("args, message", [
    (["add", "/no/such/dir"], "/no/such/dir is not a directory, nor a git URL"),
    (["add", "/tmp", "--name", "x"], "--name applies to git sources"),
])
def test_add_refuses_what_is_not_a_source(sandbox: Sandbox, args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.exit_code == 1
    assert message in result.output
    assert not sandbox.config.exists()


def test_add_the_same_directory_twice_is_an_error(sandbox: Sandbox, tmp_path: Path) -> None:
    assert cli("add", str(tmp_path)).exit_code == 0
    result = cli("add", str(tmp_path) + "/")
    assert result.exit_code == 1
    assert "is in profile_path already" in result.output


def test_add_git_url_clones_into_the_data_dir_and_its_sites_load(sandbox: Sandbox, tmp_path: Path) -> None:
    _, bare = group_repo(tmp_path, {"grp.toml": GROUP_PROFILE})
    result = cli("add", f"file://{bare}")
    assert result.exit_code == 0, result.output
    clone = tmp_path / "data" / "profiles" / "profiles"
    assert (clone / "grp.toml").is_file()
    assert profile_path() == [str(clone)]
    assert "sites from" in result.output and "grp (new)" in result.output
    assert ProfileSet.discover().load("grp")[0].job.partition == "standard"


def test_add_bare_repository_path_with_a_name(sandbox: Sandbox, tmp_path: Path) -> None:
    _, bare = group_repo(tmp_path, {"grp.toml": GROUP_PROFILE})
    assert cli("add", str(bare), "--name", "ours").exit_code == 0
    assert profile_path() == [str(tmp_path / "data" / "profiles" / "ours")]


def test_add_git_refuses_a_name_taken(sandbox: Sandbox, tmp_path: Path) -> None:
    _, bare = group_repo(tmp_path, {"grp.toml": GROUP_PROFILE})
    assert cli("add", f"file://{bare}").exit_code == 0
    result = cli("add", f"file://{bare}")
    assert result.exit_code == 1
    assert "the name 'profiles' is taken" in result.output and "--name" in result.output


def test_add_shows_gits_own_message_when_the_clone_fails(sandbox: Sandbox, tmp_path: Path) -> None:
    result = cli("add", f"file://{tmp_path}/missing.git")
    assert result.exit_code == 1
    assert f"git clone of file://{tmp_path}/missing.git failed; git said:" in result.output
    assert "does not appear to be a git repository" in result.output or "not found" in result.output
    assert not sandbox.config.exists()
    assert not (tmp_path / "data" / "profiles" / "missing").exists()


def test_add_without_git_says_so(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sharing.shutil, "which", lambda name: None)
    result = cli("add", "https://example.org/grp/profiles.git")
    assert result.exit_code == 1
    assert "git is not installed" in result.output


# ---- update, remove ------------------------------------------------------------------------


def test_update_pulls_a_new_commit(sandbox: Sandbox, tmp_path: Path) -> None:
    work, bare = group_repo(tmp_path, {"grp.toml": GROUP_PROFILE})
    assert cli("add", f"file://{bare}").exit_code == 0
    assert "second" not in ProfileSet.discover().names()
    (work / "second.toml").write_text(GROUP_PROFILE)
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "a second site")
    git(work, "push", "-q", "origin", "main")
    result = cli("update")
    assert result.exit_code == 0, result.output
    assert "✓ profiles: updated, at" in result.output and "a second site" in result.output
    assert "second" in ProfileSet.discover().names()
    again = cli("update", "profiles")
    assert "already up to date" in again.output


def test_update_of_a_plain_directory_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    (tmp_path / "grp").mkdir()
    assert cli("add", str(tmp_path / "grp")).exit_code == 0
    result = cli("update", "grp")
    assert result.exit_code == 1
    assert "added as a directory, not cloned" in result.output


def test_update_reports_a_failed_pull_and_exits_1(sandbox: Sandbox, tmp_path: Path) -> None:
    _, bare = group_repo(tmp_path, {"grp.toml": GROUP_PROFILE})
    assert cli("add", f"file://{bare}").exit_code == 0
    subprocess.run(["rm", "-rf", str(bare)], check=True)
    result = cli("update")
    assert result.exit_code == 1
    assert "✗ profiles" in result.output and "git said" in result.output


def test_remove_takes_out_the_entry_deletes_our_clone_and_keeps_comments(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.config.write_text(CONFIG)
    _, bare = group_repo(tmp_path, {"grp.toml": GROUP_PROFILE})
    group = tmp_path / "grp"
    group.mkdir()
    assert cli("add", f"file://{bare}").exit_code == 0
    assert cli("add", str(group)).exit_code == 0
    clone = tmp_path / "data" / "profiles" / "profiles"
    result = cli("remove", "profiles")
    assert result.exit_code == 0 and "deleted the clone" in result.output
    assert not clone.exists()
    assert profile_path() == [str(group)]
    assert cli("remove", str(group)).exit_code == 0
    assert group.is_dir()  # a shared directory is never deleted
    assert sandbox.config.read_text() == CONFIG.replace("\n\n[sites", "\n\nprofile_path = []\n\n[sites", 1)


def test_remove_unknown_lists_what_there_is(sandbox: Sandbox, tmp_path: Path) -> None:
    (tmp_path / "grp").mkdir()
    cli("add", str(tmp_path / "grp"))
    result = cli("remove", "nope")
    assert result.exit_code == 1
    assert "no group profile source named 'nope'. Added ones: grp." in result.output


# ---- check, show --origin ------------------------------------------------------------------


def test_check_reports_every_problem_at_once_and_exits_1(sandbox: Sandbox) -> None:
    sandbox.profile("typo", 'scheduler = "slrum"\n')
    sandbox.profile("unknownkey", 'extends = "cirrus"\n[job]\nparition = "x"\n')
    sandbox.profile("fine", GROUP_PROFILE)
    result = cli("check")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert "✗ typo" in lines and "✗ unknownkey" in lines
    assert "✓ fine" in lines and "✓ archer2" in lines and "✓ local" in lines
    assert "Did you mean 'slurm'?" in result.output and "Did you mean 'partition'?" in result.output


def test_check_one_site(sandbox: Sandbox) -> None:
    sandbox.profile("typo", 'scheduler = "slrum"\n')
    assert cli("check", "archer2").output == "✓ archer2\n"
    assert cli("check", "archer2").exit_code == 0
    assert cli("check", "typo").exit_code == 1
    assert "no site profile named 'nosuch'" in cli("check", "nosuch").output


def test_show_origin_names_the_group_layer_and_the_personal_layer(sandbox: Sandbox, tmp_path: Path) -> None:
    group = tmp_path / "grp"
    sandbox.profile("grp", GROUP_PROFILE, group)
    assert cli("add", str(group)).exit_code == 0
    with sandbox.config.open("a") as config:
        config.write('\n[sites.grp]\njob.account = "e123"\n')
    result = cli("show", "grp", "--origin", "--files")
    assert result.exit_code == 0, result.output
    line = {row.split("=")[0].strip(): row for row in result.output.splitlines() if "=" in row}
    assert str(group / "grp.toml") in line["qos"]
    assert f"{sandbox.config} [sites.grp]" in line["account"]
    assert str(sharing.paths.builtin_profiles_dir() / "archer2.toml") in line["host"]
