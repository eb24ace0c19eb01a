"""Site profiles: the search path and its precedence, extends, origins, and every profile error.

Every test runs in a sandbox: the user config, user profile dir, group dirs and state dir are
all under tmp_path, so the real user's configuration is never read or touched (the ``sandbox``
fixture of conftest.py).
"""

from __future__ import annotations

import sys

import pytest

from hpcjupyter import paths
from hpcjupyter.errors import ProfileError
from hpcjupyter.profiles import ProfileSet
from hpcjupyter.showprofile import format_profile
from sandbox import Sandbox

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BUILTIN = paths.builtin_profiles_dir()




def error_of(sandbox: Sandbox, name: str) -> str:
    with pytest.raises(ProfileError) as caught:
        sandbox.load(name)
    return str(caught.value)


# ---- the search path ----------------------------------------------------------------------


def test_builtin_sites_are_found_and_valid(sandbox: Sandbox) -> None:
    found = ProfileSet.discover()
    assert {"archer2", "cirrus", "imperial-cx3", "local"} <= set(found.names())
    for name in ("archer2", "cirrus", "imperial-cx3", "local"):
        profile, origins = found.load(name)
        assert profile.name == name
        assert origins["scheduler"] == str(BUILTIN / f"{name}.toml")
    assert found.warnings == []


def test_user_dirs_follow_xdg_config_home(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPCJUPYTER_CONFIG")
    xdg = sandbox.root / "xdg-config" / "hpcjupyter"
    assert paths.config_file() == xdg / "config.toml"
    assert sandbox.user_sites == xdg / "sites"
    sandbox.write(xdg / "config.toml", '[sites.local.job]\ncpus = 3\n')
    profile, origins = sandbox.load("local")
    assert profile.job.cpus == 3
    assert origins["job.cpus"] == f"{xdg / 'config.toml'} [sites.local]"


def test_layers_in_precedence_order(sandbox: Sandbox) -> None:
    """built-in < PROFILE_PATH dirs in order < config profile_path < user dir < [sites.X]."""
    config_dir = sandbox.root / "from-config"
    a = sandbox.profile("archer2", '[job]\ncpus = 5\nmemory = "1G"\nqos = "standard"\npartition = "a"\n')
    b = sandbox.profile("archer2", '[job]\nmemory = "2G"\nqos = "long"\npartition = "b"\n', sandbox.group2)
    c = sandbox.profile("archer2", '[job]\nqos = "highmem"\npartition = "c"\n[env]\nmodules = ["c1"]\n', config_dir)
    user = sandbox.profile("archer2", '[job]\npartition = "user"\n[env]\nmodules = ["u1", "u2"]\n', sandbox.user_sites)
    sandbox.write(sandbox.config, f"""
        profile_path = ["{config_dir}"]
        [sites.archer2]
        job.account = "e123"
        env.conda_env = "mine"
        env.conda = "/work/e123/conda"
        """)
    profile, origins = sandbox.load("archer2")
    personal = f"{sandbox.config} [sites.archer2]"
    assert (profile.ssh.host, origins["ssh.host"]) == ("login.archer2.ac.uk", str(BUILTIN / "archer2.toml"))
    assert (profile.job.cpus, origins["job.cpus"]) == (5, str(a))
    assert (profile.job.memory, origins["job.memory"]) == ("2G", str(b))
    assert (profile.job.qos, origins["job.qos"]) == ("highmem", str(c))
    assert (profile.job.partition, origins["job.partition"]) == ("user", str(user))
    assert (profile.env.modules, origins["env.modules"]) == (["u1", "u2"], str(user))  # lists replace
    assert (profile.job.account, origins["job.account"]) == ("e123", personal)
    assert (profile.env.conda_env, origins["env.conda_env"]) == ("mine", personal)
    assert origins["env.jupyter"] == "default"
    assert ProfileSet.discover().files_for("archer2") == [BUILTIN / "archer2.toml", a, b, c, user]


def test_config_profile_path_adds_new_sites(sandbox: Sandbox) -> None:
    shared = sandbox.root / "group-checkout"
    sandbox.profile("ourcluster", """
        scheduler = "slurm"
        [ssh]
        host = "login.example.org"
        [env]
        remote_dir = "/scratch/{user}/hpcj"
        """, shared)
    sandbox.write(sandbox.config, f'profile_path = ["{shared}"]\n')
    assert "ourcluster" in ProfileSet.discover().names()
    profile, _ = sandbox.load("ourcluster")
    assert profile.ssh.host == "login.example.org"


def test_personal_values_without_any_file(sandbox: Sandbox) -> None:
    """The user config alone (no profile file) personalises a built-in site."""
    sandbox.write(sandbox.config, '[sites.archer2]\nssh.user = "alice"\njob.account = "t01"\n')
    profile, origins = sandbox.load("archer2")
    assert (profile.ssh.user, profile.job.account) == ("alice", "t01")
    assert origins["ssh.user"].endswith("[sites.archer2]")
    without, _ = ProfileSet.discover().load("archer2", personal=False)
    assert without.ssh.user is None


# ---- extends ------------------------------------------------------------------------------


def test_extends_merges_tables_key_by_key_through_a_chain(sandbox: Sandbox) -> None:
    group = sandbox.profile("mygroup", """
        extends = "archer2"
        description = "Our group on ARCHER2"
        [job]
        qos_max_hours = { ourqos = 6.0 }
        [env]
        variables = { A = "1", B = "2" }
        """)
    # An override of the base in a higher layer reaches every site that extends it.
    sandbox.profile("archer2", "[job]\ncpus = 16\n", sandbox.user_sites)
    mine = sandbox.profile("mine", """
        extends = "mygroup"
        [env]
        variables = { B = "two", C = "3" }
        [job]
        cpus = 2
        """, sandbox.group2)
    profile, origins = sandbox.load("mine")
    assert profile.scheduler == "slurm" and profile.ssh.host == "login.archer2.ac.uk"
    assert profile.job.qos_max_hours["ourqos"] == 6.0 and profile.job.qos_max_hours["standard"] == 24.0
    assert profile.env.variables == {"A": "1", "B": "two", "C": "3"}
    assert origins["env.variables.A"] == str(group) and origins["env.variables.C"] == str(mine)
    assert origins["job.qos_max_hours.ourqos"] == str(group)
    assert origins["job.qos_max_hours.standard"] == str(BUILTIN / "archer2.toml")
    assert profile.job.cpus == 2
    mygroup, _ = sandbox.load("mygroup")
    assert mygroup.job.cpus == 16
    # A derived site does not borrow its base's description.
    assert profile.description == "" and origins["description"] == "default"
    assert mygroup.description == "Our group on ARCHER2"


def test_extends_errors_name_the_file_and_the_chain(sandbox: Sandbox) -> None:
    a = sandbox.profile("a", 'extends = "b"\n')
    sandbox.profile("b", 'extends = "c"\n')
    sandbox.profile("c", 'extends = "a"\n')
    message = error_of(sandbox, "a")
    assert "cycle: a -> b -> c -> a" in message and "key 'extends'" in message
    assert str(sandbox.group / "c.toml") in message
    sandbox.profile("d", 'extends = "archer3"\n')
    message = error_of(sandbox, "d")
    assert str(sandbox.group / "d.toml") in message and "Known sites:" in message
    assert "Did you mean 'archer2'" in message
    assert a.exists()


def test_same_name_file_extending_itself_explains_layering(sandbox: Sandbox) -> None:
    sandbox.profile("archer2", 'extends = "archer2"\n[job]\ncpus = 2\n')
    message = error_of(sandbox, "archer2")
    assert "extends itself" in message and "layered on each other already" in message


# ---- origins and `sites show` -------------------------------------------------------------


def test_show_with_origins_is_valid_toml_naming_each_source(sandbox: Sandbox) -> None:
    sandbox.write(sandbox.config, '[sites.archer2]\njob.account = "e123"\n')
    profile, origins = sandbox.load("archer2")
    data = profile.model_dump(mode="json")
    text = format_profile(data, origins)
    parsed = tomllib.loads(text)
    assert parsed["job"]["qos_max_hours"] == data["job"]["qos_max_hours"]
    assert parsed["job"]["account"] == "e123"
    lines = {line.split("=")[0].strip(): line for line in text.splitlines() if "=" in line}
    assert lines["account"].endswith(f"# {sandbox.config} [sites.archer2]")
    assert lines["jupyter"].endswith("# default")
    assert lines["host"].endswith(f"# {BUILTIN / 'archer2.toml'}")
    assert "# default" not in format_profile(data, None)


# ---- errors -------------------------------------------------------------------------------


def test_malformed_toml_shows_file_line_and_column(sandbox: Sandbox) -> None:
    bad = sandbox.profile("bad", 'scheduler = "slurm"\n[ssh]\nhost = login\n')
    message = error_of(sandbox, "bad")
    assert str(bad) in message and "line 3" in message and "column" in message


@pytest.mark.parametrize(
    "table, key, suggestion",
    [("", "schedular", "scheduler"), ("ssh", "hots", "host"), ("job", "acount", "account"),
     ("env", "modulse", "modules")],
)
def test_unknown_key_in_every_table_suggests_the_right_one(
    sandbox: Sandbox, table: str, key: str, suggestion: str
) -> None:
    body = f"[{table}]\n{key} = 1\n" if table else f"{key} = 1\n"
    bad = sandbox.profile("bad", 'extends = "local"\n' + body)
    message = error_of(sandbox, "bad")
    dotted = f"{table}.{key}" if table else key
    assert f"{bad}: unknown key '{dotted}'" in message and f"Did you mean '{suggestion}'?" in message


def test_unknown_key_without_a_close_match_lists_the_known_ones(sandbox: Sandbox) -> None:
    sandbox.profile("bad", 'extends = "local"\n[ssh]\nxyzzy = 1\n')
    assert "Known keys here: host, user, port" in error_of(sandbox, "bad")


def test_wrong_types_name_file_key_and_value(sandbox: Sandbox) -> None:
    bad = sandbox.profile("bad", 'extends = "local"\n[job]\ncpus = "four"\nhours = "2"\n')
    message = error_of(sandbox, "bad")
    assert f"{bad}: key 'job.cpus': input should be a valid integer (got 'four')" in message
    assert f"{bad}: key 'job.hours'" in message


def test_missing_scheduler_names_the_file(sandbox: Sandbox) -> None:
    bad = sandbox.profile("bad", '[env]\nremote_dir = "/x"\n')
    assert f"{bad}: required key 'scheduler' is missing" in error_of(sandbox, "bad")


def test_group_or_world_writable_profile_dirs_are_warned_about(sandbox: Sandbox) -> None:
    sandbox.group.chmod(0o775)
    sandbox.group2.chmod(0o757)
    warnings = ProfileSet.discover().warnings
    assert len(warnings) == 2
    assert str(sandbox.group) in warnings[0] and "writable by group or others" in warnings[0]
    assert "chmod go-w" in warnings[1]


def test_user_config_errors_name_the_config_file(sandbox: Sandbox) -> None:
    sandbox.write(sandbox.config, 'profile_pth = ["/x"]\n')
    with pytest.raises(ProfileError, match="Did you mean 'profile_path'") as caught:
        ProfileSet.discover()
    assert str(sandbox.config) in str(caught.value)
    sandbox.write(sandbox.config, 'profile_path = "/x"\n')
    with pytest.raises(ProfileError, match="valid list") as caught:
        ProfileSet.discover()
    assert f"{sandbox.config}: key 'profile_path'" in str(caught.value)


def test_personal_table_cannot_change_extends(sandbox: Sandbox) -> None:
    sandbox.write(sandbox.config, '[sites.archer2]\nextends = "cirrus"\n')
    message = error_of(sandbox, "archer2")
    assert "[sites.archer2]: key 'extends' cannot be set" in message



def test_show_names_every_file_a_merged_table_came_from(sandbox: Sandbox) -> None:
    base = sandbox.profile("base", 'extends = "local"\n[env]\nvariables = { A = "1" }\n')
    top = sandbox.profile("top", 'extends = "base"\n[env]\nvariables = { B = "2" }\n')
    profile, origins = sandbox.load("top")
    line = next(l for l in format_profile(profile.model_dump(mode="json"), origins).splitlines() if "variables" in l)
    assert line.endswith(f"# {base}, {top}")
