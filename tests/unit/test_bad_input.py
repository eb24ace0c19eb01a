"""Bad input, table-driven: each case is files and/or flags, the error type, and phrases the
message must hold (the file, the key, the limit, the fix). Every failure is an HpcJupyterError
(one clear paragraph in the CLI), never a traceback. CLI and e2e cases are added elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from sandbox import Sandbox

from hpcjupyter.errors import HpcJupyterError, ProfileError, RequestError
from hpcjupyter.request import build_request

# A valid minimal remote site that cases extend (the built-in 'local' is the default base).
REMOTE = 'scheduler = "slurm"\n[ssh]\nhost = "login.example.org"\n[env]\nremote_dir = "/scratch/{user}/hpcj"\n'


@dataclass
class Case:
    """Profiles (group-dir files, by site name) and user config, then load ``site`` and, if
    ``flags`` is given, build a request from it; expect ``error`` whose text has ``phrases``.
    A ``{file}`` in a phrase stands for the path of the case's ``site`` file."""

    id: str
    site: str
    error: type[HpcJupyterError]
    phrases: tuple[str, ...]
    files: dict[str, str] = field(default_factory=dict)
    config: str = ""
    flags: dict[str, Any] | None = None


def bad(id: str, toml: str, *phrases: str, base: str = 'extends = "local"\n') -> Case:
    """A case where site 'bad' (``base`` + ``toml``) fails to load; site 'remote' exists to extend."""
    return Case(id, "bad", ProfileError, ("{file}",) + phrases, files={"remote": REMOTE, "bad": base + toml})


ON_REMOTE = 'extends = "remote"\n'


def flags(id: str, site: str, given: dict[str, Any], *phrases: str, config: str = "") -> Case:
    """A case where a request for ``site`` with ``given`` flags is refused."""
    return Case(id, site, RequestError, phrases, config=config, flags=given)


ARCHER2 = '[sites.archer2]\njob.account = "e123"\n'
CIRRUS = '[sites.cirrus]\njob.account = "t01"\n'

CASES = [
    # ---- profiles ----------------------------------------------------------------------------
    bad("toml-syntax", "[job]\nhours = two\n", "not valid TOML", "line 3", "column"),
    bad("toml-duplicate-key", "[job]\ncpus = 1\ncpus = 2\n", "not valid TOML", "line"),
    bad("unknown-top-key", 'descripton = "x"\n', "unknown key 'descripton'", "Did you mean 'description'?"),
    bad("unknown-ssh-key", '[ssh]\nhots = "x"\n', "unknown key 'ssh.hots'", "Did you mean 'host'?"),
    bad("unknown-job-key", "[job]\nmax_hour = 2\n", "unknown key 'job.max_hour'", "Did you mean 'max_hours'?"),
    bad("unknown-env-key", '[env]\ncondaenv = "x"\n', "unknown key 'env.condaenv'", "Did you mean 'conda_env'?"),
    bad("wrong-type-int", '[job]\ncpus = "4"\n', "key 'job.cpus'", "valid integer", "got '4'"),
    bad("wrong-type-list", '[env]\nmodules = "cray-python"\n', "key 'env.modules'", "valid list"),
    bad("wrong-type-table", 'ssh = "login"\n', "key 'ssh'", "got 'login'"),
    bad("wrong-choice", 'scheduler = "slrum"\n', "key 'scheduler'", "Did you mean 'slurm'?"),
    bad("tunnel-choice", '[ssh]\ntunnel = "jumps"\n', "key 'ssh.tunnel'", "Did you mean 'jump'?"),
    bad("hours-not-positive", "[job]\nhours = 0\n", "key 'job.hours'", "greater than 0"),
    Case("default-hours-over-max", "bad", RequestError,
         ("the default walltime (job.hours = 200) is over the limit of 168 h", "--origin --files"),
         files={"bad": 'extends = "local"\n[job]\nhours = 200.0\n'}, flags={}),
    bad("bad-memory", '[job]\nmemory = "16X"\n', "key 'job.memory'", "not understood", "16G"),
    bad("memory-not-allowed", '[job]\nmemory = "16G"\nallow_memory = false\n', "key 'job.memory'", "'job.allow_memory' is false"),
    bad("unknown-extends", "", "key 'extends'", "no site profile named 'archer3'", "Known sites:", "archer2",
        "Did you mean 'archer2'?", base='extends = "archer3"\n'),
    bad("extends-not-text", "", "key 'extends' must be a site name", base="extends = 3\n"),
    Case("extends-cycle", "a", ProfileError, ("cycle: a -> b -> a", "b.toml"),
         files={"a": 'extends = "b"\n', "b": 'extends = "a"\n'}),
    Case("missing-scheduler", "bad", ProfileError, ("{file}", "required key 'scheduler' is missing"),
         files={"bad": '[env]\nremote_dir = "/x"\n'}),
    bad("missing-ssh-host", "[ssh]\nport = 22\n", "required key 'ssh.host' is missing",
        base='scheduler = "slurm"\n[env]\nremote_dir = "/x"\n'),
    bad("missing-remote-dir", "", "required key 'env.remote_dir' is missing",
        base='scheduler = "pbs"\n[ssh]\nhost = "h"\n'),
    bad("remote-dir-placeholder", '[env]\nremote_dir = "/scratch/{usr}"\n', "unknown placeholder '{usr}'", "{user}"),
    bad("remote-dir-state-dir-remote", '[env]\nremote_dir = "{state_dir}/jobs"\n', "unknown placeholder '{state_dir}'",
        base=ON_REMOTE),
    bad("remote-dir-relative", '[env]\nremote_dir = "scratch/{user}"\n', "key 'env.remote_dir': must be an absolute path"),
    bad("remote-dir-space", '[env]\nremote_dir = "/my scratch/{user}"\n', "scheduler directive", base=ON_REMOTE),
    bad("variable-name", '[env]\nvariables = { "MY-VAR" = "1" }\n', "env.variables.MY-VAR",
        "not a valid environment variable name"),
    bad("variable-reserved", '[env]\nvariables = { JUPYTER_TOKEN = "x" }\n', "sets JUPYTER_TOKEN itself"),
    bad("variable-not-text", "[env]\nvariables = { N = 1 }\n", "key 'env.variables.N'", "valid string"),
    bad("jupyter-token-arg", '[env]\njupyter_args = ["--IdentityProvider.token=abc"]\n', "is set by hpcjupyter"),
    bad("jupyter-port-arg", '[env]\njupyter_args = ["--port", "8888"]\n', "'--port' is set by hpcjupyter"),
    bad("forward-loopback", '[env]\nbind = "loopback"\n', "cannot be reached through a forward tunnel", base=ON_REMOTE),
    bad("conda-env-without-conda", '[env]\nconda_env = "ml"\n', "key 'env.conda_env': needs 'env.conda'"),
    bad("venv-relative", '[env]\nvenv = "venvs/jl"\n', "key 'env.venv': must be an absolute path or start with ~/"),
    bad("newline-in-module", '[env]\nmodules = ["a\\nb"]\n', "key 'env.modules.0'", "must be one line"),
    bad("newline-in-directive", '[job]\ndirectives = ["--a\\n--b"]\n', "key 'job.directives.0'", "one line"),
    bad("hostile-ssh-user", "[ssh]\nuser = \"x'; touch /tmp/P; '\"\n", "key 'ssh.user'", "not a valid user name"),
    bad("ssh-host-option", '[ssh]\nhost = "-oProxyCommand=touch P"\n', "key 'ssh.host'", "not starting with -",
        base=ON_REMOTE),
    bad("hostile-account", '[job]\naccount = "$(touch P)"\n', "key 'job.account'", "not a valid scheduler name"),
    bad("negative-gpus", "[job]\ngpus = -1\n", "key 'job.gpus'", "greater than or equal to 0"),
    bad("ssh-port-range", "[ssh]\nport = 70000\n", "key 'ssh.port'", "less than or equal to 65535"),
    Case("self-extends", "archer2", ProfileError, ("{file}", "extends itself", "layered on each other already"),
         files={"archer2": 'extends = "archer2"\n'}),
    Case("unknown-site", "archer", ProfileError, ("no site profile named 'archer'", "Known sites:",
                                                  "archer2, cirrus, imperial-cx3, local", "Did you mean 'archer2'?")),
    Case("config-unknown-key", "local", ProfileError, ("config.toml", "unknown key 'profile_paths'",
                                                       "Did you mean 'profile_path'?"),
         config='profile_paths = ["/x"]\n'),
    Case("config-profile-path-type", "local", ProfileError, ("config.toml: key 'profile_path'", "valid list"),
         config='profile_path = "/x"\n'),
    Case("config-site-unknown-key", "archer2", ProfileError,
         ("config.toml [sites.archer2]: unknown key 'job.acount'", "Did you mean 'account'?"),
         config='[sites.archer2]\njob.acount = "e123"\n'),
    Case("config-site-wrong-type", "archer2", ProfileError,
         ("config.toml [sites.archer2]: key 'job.cpus'", "valid integer"), config='[sites.archer2]\njob.cpus = "8"\n'),
    # ---- flags -------------------------------------------------------------------------------
    flags("hours-zero", "local", {"hours": 0}, "--hours must be more than 0", "--hours 0.5"),
    flags("hours-negative", "local", {"hours": -2}, "--hours must be more than 0"),
    flags("hours-nan", "local", {"hours": float("nan")}, "--hours must be more than 0"),
    flags("hours-under-a-minute", "local", {"hours": 0.001}, "under a minute"),
    flags("hours-not-a-number", "local", {"hours": "two"}, "--hours must be a number"),
    flags("hours-over-qos", "archer2", {"hours": 30}, "limit of 24 h", "qos 'serial'", config=ARCHER2),
    flags("hours-over-short-qos", "archer2", {"hours": 1, "qos": "short"}, "limit of 0.3333 h (00:20:00)",
          "qos 'short'", config=ARCHER2),
    flags("hours-over-site", "imperial-cx3", {"hours": 12}, "limit of 8 h", "site 'imperial-cx3'"),
    flags("memory-unit", "local", {"memory": "16X"}, "memory '16X' is not understood", "16G"),
    flags("memory-word", "local", {"memory": "abc"}, "memory 'abc' is not understood"),
    flags("memory-negative", "local", {"memory": "-1G"}, "memory '-1G' is not understood"),
    flags("memory-zero", "local", {"memory": "0G"}, "at least 1M"),
    flags("cpus-negative", "local", {"cpus": -1}, "--cpus must be at least 1", "got -1"),
    flags("cpus-zero", "local", {"cpus": 0}, "--cpus must be at least 1"),
    flags("gpus-negative", "local", {"gpus": -1}, "--gpus cannot be negative"),
    flags("gpus-without-gpus", "cirrus", {"gpus": 1}, "site 'cirrus' has no GPUs", "Drop --gpus", config=CIRRUS),
    flags("memory-on-cirrus", "cirrus", {"memory": "16G"}, "does not accept a memory request", "--cpus",
          config=CIRRUS),
    flags("account-missing", "archer2", {}, "site 'archer2' needs a budget account", "--account CODE",
          "[sites.archer2]"),
    flags("account-for-path", "local", {}, "needs an account", "--account",
          config='[sites.local]\nenv.remote_dir = "/tmp/{account}/jobs"\n'),
    flags("newline-account", "archer2", {"account": "e123\nx"}, "--account must be one line"),
    flags("newline-workdir", "local", {"workdir": "/tmp/a\ntouch P"}, "--workdir must be one line"),
    flags("hostile-account-flag", "archer2", {"account": "x'; touch /tmp/P; '"}, "not a valid account name"),
    flags("hostile-partition", "archer2", {"partition": "a;touch P"}, "not a valid partition name", config=ARCHER2),
    flags("hostile-qos", "archer2", {"qos": "$(touch P)"}, "not a valid qos name", config=ARCHER2),
    flags("hostile-queue", "imperial-cx3", {"queue": "`touch P`"}, "not a valid queue name"),
    flags("queue-on-slurm", "archer2", {"queue": "small24"}, "--queue does not apply", "--partition, --qos",
          config=ARCHER2),
    flags("qos-on-pbs", "imperial-cx3", {"qos": "standard"}, "--qos does not apply", "--queue"),
    flags("partition-on-local", "local", {"partition": "debug"}, "--partition does not apply", "this machine"),
    flags("conda-env-flag-without-conda", "archer2", {"conda_env": "ml"}, "--conda-env needs conda", "env.conda",
          config=ARCHER2),
    flags("workdir-relative", "local", {"workdir": "project"}, "--workdir must be an absolute path", "~/project"),
]


def test_table_is_large_and_ids_unique() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 30


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(sandbox: Sandbox, case: Case) -> None:
    for name, text in case.files.items():
        sandbox.profile(name, text)
    if case.config:
        sandbox.write(sandbox.config, case.config)
    with pytest.raises(HpcJupyterError) as caught:
        profile, _ = sandbox.load(case.site)
        if case.flags is not None:
            build_request(profile, case.flags)
    assert type(caught.value) is case.error, str(caught.value)
    message = str(caught.value)
    for phrase in case.phrases:
        assert phrase.replace("{file}", str(sandbox.group / f"{case.site}.toml")) in message, message
