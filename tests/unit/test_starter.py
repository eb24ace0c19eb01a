"""`sites init`: the starter profile is read off the schema, loads once filled, and loads as is with --from."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner, Result

from hpcjupyter.cli_sites import sites_app
from hpcjupyter.errors import ProfileError
from hpcjupyter.profiles import ProfileSet
from hpcjupyter.schema import EnvSection, JobSection, Profile, SshSection
from hpcjupyter.starter import required_keys, starter_text, write_starter
from sandbox import Sandbox

SECTIONS = {"ssh": SshSection, "job": JobSection, "env": EnvSection}


def cli(*args: str) -> Result:
    app = typer.Typer()
    app.add_typer(sites_app, name="sites")
    return CliRunner().invoke(app, ["sites", *args])


def comparable(profile: Profile) -> dict:
    """A profile's values apart from what names or describes it."""
    return profile.model_dump(exclude={"name", "description", "extends"})


def test_required_keys_are_read_off_the_schema() -> None:
    assert required_keys() == ["scheduler", "ssh.host", "env.remote_dir"]


def test_every_key_of_the_schema_is_in_the_starter_with_its_description() -> None:
    text = starter_text("mysite")
    for section, model in SECTIONS.items():
        assert f"\n[{section}]\n# {model.__doc__.strip().splitlines()[0]}\n" in text
        body = text.split(f"[{section}]")[1].split("\n[")[0]
        for key, field in model.model_fields.items():
            assert re.search(rf"^(# )?{key} = ", body, re.MULTILINE), f"{section}.{key} missing"
            if field.description:
                assert f"# {field.description}" in body
    assert "# one of: slurm, pbs, local; REQUIRED\nscheduler = \"\"\n" in text
    assert "# one of: auto, openssh, fabric, local\n# transport = \"auto\"\n" in text
    assert "\nname = " not in text and "extends" not in text


def test_init_writes_a_file_that_loads_once_the_required_keys_are_filled(sandbox: Sandbox) -> None:
    result = cli("init", "newsite")
    assert result.exit_code == 0, result.output
    path = sandbox.user_sites / "newsite.toml"
    assert result.stdout.strip() == str(path)
    assert "hpcjupyter sites check newsite" in result.output and "hpcjupyter doctor --site newsite" in result.output
    with pytest.raises(ProfileError, match="key 'scheduler'"):
        ProfileSet.discover().load("newsite")
    text = path.read_text()
    for key, value in (("scheduler", "slurm"), ("host", "login.example.org"), ("remote_dir", "/work/{user}/hpcj")):
        text = text.replace(f'\n{key} = ""\n', f'\n{key} = "{value}"\n')
    path.write_text(text)
    profile, origins = ProfileSet.discover().load("newsite")
    assert profile.ssh.host == "login.example.org" and profile.env.remote_dir == "/work/{user}/hpcj"
    assert profile.job == JobSection() and origins["job.hours"] == "default"


def test_uncommenting_any_key_keeps_the_file_loadable(sandbox: Sandbox) -> None:
    """The commented values are the defaults, in valid TOML of the right type."""
    path = write_starter("grp", base="cirrus")
    for key in ("tunnel", "hours", "qos_max_hours", "allow_memory", "directives", "setup", "variables", "bind"):
        path.write_text(re.sub(rf"^# ({key} = )", r"\1", path.read_text(), flags=re.MULTILINE))
    assert comparable(ProfileSet.discover().load("grp", personal=False)[0]) == comparable(
        ProfileSet.discover().load("cirrus", personal=False)[0])


@pytest.mark.parametrize("base", ["archer2", "cirrus", "imperial-cx3", "local"])
def test_init_from_a_site_loads_as_is_and_equals_it(sandbox: Sandbox, base: str) -> None:
    assert cli("init", "grp", "--from", base).exit_code == 0
    text = (sandbox.user_sites / "grp.toml").read_text()
    assert f'\nextends = "{base}"\n' in text
    found = ProfileSet.discover()
    assert comparable(found.load("grp", personal=False)[0]) == comparable(found.load(base, personal=False)[0])


def test_init_shows_the_base_values_but_not_the_users_personal_ones(sandbox: Sandbox) -> None:
    sandbox.write(sandbox.config, '[sites.archer2]\njob.account = "e123"\n')
    path = write_starter("grp", base="archer2")
    text = path.read_text()
    assert '# host = "login.archer2.ac.uk"' in text and "e123" not in text


def test_init_of_an_existing_site_layers_over_it(sandbox: Sandbox) -> None:
    path = write_starter("cirrus")
    assert "layered over the existing profile 'cirrus'" in path.read_text()
    assert "extends" not in path.read_text()
    assert ProfileSet.discover().load("cirrus")[0].ssh.host == "login.cirrus.ac.uk"


def test_init_refuses_to_overwrite_without_force(sandbox: Sandbox) -> None:
    path = write_starter("grp", base="archer2")
    path.write_text("# mine\n")
    result = cli("init", "grp")
    assert result.exit_code == 1 and "exists already" in result.output and "--force" in result.output
    assert path.read_text() == "# mine\n"
    assert cli("init", "grp", "--from", "cirrus", "--force").exit_code == 0
    assert 'extends = "cirrus"' in path.read_text()


@pytest.mark.parametrize("args, message", [
    (["init", "../evil"], "cannot name a site"),
    (["init", "grp", "--from", "nosuch"], "no site profile named 'nosuch'"),
    (["init", "archer2", "--from", "archer2"], "cannot extend itself"),
])
def test_init_errors(sandbox: Sandbox, args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.exit_code == 1
    assert message in result.output
    assert not sandbox.user_sites.exists() or not list(sandbox.user_sites.iterdir())
