"""Bad input through the real command line, table-driven: each case is the files a user has
(profiles, config, session records), the command they type and what the one error paragraph
must say. Every case exits non-zero with one ``error:`` paragraph on stderr, prints nothing on
stdout, shows no traceback, and leaves the session records exactly as they were.

Only fast cases: nothing here reaches a cluster (hosts are ``.invalid`` names that are never
contacted, or 127.0.0.1 on a closed port). The request/profile logic behind many of these is
tested directly in test_bad_input.py; this table proves the CLI turns each into one message.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from clihelpers import Cli

# A remote Slurm site whose login is never reached by these cases.
REMOTE = """scheduler = "slurm"
[ssh]
host = "login.invalid"
transport = "openssh"
[env]
remote_dir = "/scratch/hpcj"
"""
# Login on a closed local port: ssh and paramiko fail at once with "connection refused".
REFUSED = """scheduler = "slurm"
[ssh]
host = "127.0.0.1"
port = 1
config = "{home}/empty_ssh_config"
transport = "{transport}"
[env]
remote_dir = "/scratch/hpcj"
"""
ARCHER2 = '[sites.archer2]\njob.account = "e123"\n'
KNOWN = ("Known sites:", "archer2, cirrus, imperial-cx3, local")
NO_SSH = ("The `ssh` command was not found", 'transport = "fabric"')
PORT_RANGE = ("cannot be used for the tunnel", "between 1024 and 65535")
PORT_BUSY = ("could not be used for the tunnel: something else is listening on it", "Choose another local port")


def record(site: str, job_id: str, session_id: str = "20261123-100000-abcdef", job_dir: str = "") -> dict:
    """A session record as `submit` leaves it (no token: records never hold one)."""
    return {"site": site, "session_id": session_id, "job_dir": job_dir or f"/scratch/hpcj/{session_id}",
            "job_name": f"hpcj-{session_id}", "submitted_at": "2026-11-23T10:00:00+0000", "job_id": job_id,
            "state": "PENDING", "reason": "", "node": "", "local_port": None, "url": "", "ended_at": "",
            "extra": {}}


@dataclass
class Case:
    """Run ``args`` with ``profiles`` (group dir), ``config`` and ``records``; expect ``phrases``
    in stderr. ``{busy}`` in args is a port something listens on; ``{home}`` the test's home."""

    id: str
    args: tuple[str, ...]
    phrases: tuple[str, ...]
    profiles: dict[str, str] = field(default_factory=dict)
    config: str = ""
    records: tuple[dict, ...] = ()
    no_ssh: bool = False
    exit_code: int | None = None  # None: any non-zero (our errors exit 1, usage errors 2)


def case(id: str, args: str, *phrases: str, **kw) -> Case:
    return Case(id, tuple(args.split()), phrases, **kw)


ON_REMOTE = {"profiles": {"tbremote": REMOTE}, "records": (record("tbremote", "4242"),)}
NO_SSH_SITE = {"profiles": {"ossh": REMOTE}, "records": (record("ossh", "5151"),), "no_ssh": True}

CASES = [
    # ---- flags: sites ---------------------------------------------------------------------------
    case("unknown-site-submit", "submit --site archer --dry-run", "no site profile named 'archer'", *KNOWN,
         "Did you mean 'archer2'?"),
    case("unknown-site-submit-connect", "submit --site cirus --connect", "no site profile named 'cirus'", *KNOWN,
         "Did you mean 'cirrus'?"),
    case("unknown-site-connect", "connect 123 --site archer", "no site profile named 'archer'", *KNOWN),
    case("unknown-site-status", "status 123 --site nosuchsite", "no site profile named 'nosuchsite'", *KNOWN),
    case("unknown-site-sites-show", "sites show imperial", "no site profile named 'imperial'", *KNOWN,
         "Did you mean 'imperial-cx3'?"),
    # ---- flags: hours ---------------------------------------------------------------------------
    case("hours-zero", "submit --site local --hours 0 --dry-run", "--hours must be more than 0", "--hours 0.5"),
    case("hours-negative", "submit --site local --hours -2 --dry-run", "--hours must be more than 0 (got -2)"),
    case("hours-under-a-minute", "submit --site local --hours 0.001 --dry-run", "under a minute"),
    case("hours-not-a-number", "submit --site local --hours two --dry-run", "--hours 'two' is not a walltime",
         "H:MM (1:30)", "90m"),
    case("hours-over-qos", "submit --site archer2 --account e123 --hours 30 --dry-run",
         "over the limit of 24 h", "for qos 'serial'"),
    case("hours-over-short-qos", "submit --site archer2 --qos short --hours 1 --dry-run",
         "over the limit of 0.3333 h (00:20:00)", "for qos 'short'", config=ARCHER2),
    case("hours-over-pbs-site", "submit --site imperial-cx3 --hours 12 --dry-run", "over the limit of 8 h",
         "site 'imperial-cx3'"),
    case("hours-over-before-login", "submit --site archer2 --hours 48 --connect", "over the limit of 24 h",
         "qos 'serial'", config=ARCHER2),
    # ---- flags: memory, cpus, gpus --------------------------------------------------------------
    case("memory-unit", "submit --site local --memory 16X --dry-run", "memory '16X' is not understood",
         "--memory 16G"),
    case("memory-word", "submit --site local --memory lots --dry-run", "memory 'lots' is not understood"),
    case("memory-not-accepted", "submit --site cirrus --account t01 --memory 16G --dry-run",
         "does not accept a memory request", "--cpus"),
    case("cpus-negative", "submit --site local --cpus -4 --dry-run", "--cpus must be at least 1 (got -4)"),
    case("cpus-zero", "submit --site local --cpus 0 --dry-run", "--cpus must be at least 1 (got 0)"),
    case("cpus-not-integer", "submit --site local --cpus 1.5 --dry-run", "Invalid value for '--cpus'",
         exit_code=2),
    case("gpus-on-cirrus", "submit --site cirrus --account t01 --gpus 1 --dry-run", "site 'cirrus' has no GPUs",
         "Drop --gpus"),
    case("gpus-on-local", "submit --site local --gpus 2 --dry-run", "site 'local' has no GPUs (asked for 2)"),
    case("gpus-negative", "submit --site local --gpus -1 --dry-run", "--gpus cannot be negative"),
    # ---- flags: job ids -------------------------------------------------------------------------
    case("unknown-job-connect", "connect 999", "no session with job id 999", "--site NAME", "hpcjupyter ls"),
    case("unknown-job-cancel", "cancel 999", "no session with job id 999", "--site NAME"),
    case("unknown-job-logs", "logs 999", "no session with job id 999", "--site NAME"),
    case("unknown-job-on-site", "connect 999 --site local", "job 999 on local was not started by hpcjupyter",
         "no longer known"),
    case("unknown-job-status", "status 999 --site local", "job 999 is not known to the scheduler on local"),
    case("other-site-connect", "connect 4242 --site local", "recorded on site tbremote, not on local",
         "leave out --site", **ON_REMOTE),
    case("other-site-cancel", "cancel 4242 --site local", "recorded on site tbremote, not on local", **ON_REMOTE),
    case("other-site-logs", "logs 4242 --site local", "recorded on site tbremote, not on local", **ON_REMOTE),
    # ---- flags: --local-port (checked before any login, wait or submission) ---------------------
    case("local-port-privileged-connect", "connect 4242 --local-port 80", "Local port 80", *PORT_RANGE,
         **ON_REMOTE),
    case("local-port-too-high", "connect 4242 --local-port 70000", "--local-port 70000 is not a port number",
         "from 1 to 65535", **ON_REMOTE),
    case("local-port-privileged-submit", "submit --site tbremote --connect --local-port 443", "Local port 443",
         *PORT_RANGE, **ON_REMOTE),
    case("local-port-in-use-connect", "connect 4242 --local-port {busy}", "Local port {busy}", *PORT_BUSY,
         **ON_REMOTE),
    case("local-port-in-use-submit", "submit --site local --connect --local-port {busy}", "Local port {busy}",
         *PORT_BUSY),
    # ---- environment: no ssh on this machine (transport openssh) --------------------------------
    case("no-ssh-submit", "submit --site ossh", *NO_SSH, **NO_SSH_SITE),
    case("no-ssh-connect", "connect 5151", *NO_SSH, **NO_SSH_SITE),
    case("no-ssh-cancel", "cancel 5151", *NO_SSH, **NO_SSH_SITE),
    case("no-ssh-logs", "logs 5151", *NO_SSH, **NO_SSH_SITE),
    case("no-ssh-adopt", "connect 6000 --site ossh", *NO_SSH, **NO_SSH_SITE),
    case("no-ssh-status", "status 6000 --site ossh", *NO_SSH, **NO_SSH_SITE),
    # ---- environment: login host refuses connections (clear at once, not after retries) ---------
    case("unreachable-openssh", "submit --site refused", "Cannot reach 127.0.0.1 (port 1)", "Connection refused",
         "try again", profiles={"refused": REFUSED.replace("{transport}", "openssh")}),
    case("unreachable-fabric", "submit --site refused", "Cannot reach 127.0.0.1 (port 1)", "refused",
         profiles={"refused": REFUSED.replace("{transport}", "fabric")}),
    case("unreachable-connect", "connect 31", "Cannot reach 127.0.0.1 (port 1)",
         profiles={"refused": REFUSED.replace("{transport}", "openssh")}, records=(record("refused", "31"),)),
    # ---- environment: the job log is missing ----------------------------------------------------
    case("job-log-missing", "logs 777", "job 777 has no log yet", "/job.log", "--follow",
         records=(record("local", "777", job_dir="{home}/nowhere/x"),)),
    # ---- profiles and config: malformed TOML, unknown keys --------------------------------------
    case("toml-malformed-submit", "submit --site bad --dry-run", "{home}/profiles/bad.toml", "not valid TOML",
         "line 2, column 9", profiles={"bad": "[job]\nhours = two\n"}),
    case("toml-malformed-sites-show", "sites show bad", "bad.toml", "not valid TOML", "line 3",
         profiles={"bad": 'scheduler = "slurm"\n\n[ssh\n'}),
    case("toml-malformed-connect", "connect 4242", "bad.toml", "not valid TOML",
         profiles={"bad": 'scheduler = "slurm\n'}, records=(record("bad", "4242"),)),
    case("toml-malformed-config", "submit --site local --dry-run", "config.toml", "not valid TOML", "line 1",
         config="[sites.local\n"),
    case("unknown-key-top", "submit --site typo --dry-run", "typo.toml", "unknown key 'descripton'",
         "Did you mean 'description'?", profiles={"typo": 'extends = "local"\ndescripton = "x"\n'}),
    case("unknown-key-job", "submit --site typo --dry-run", "typo.toml", "unknown key 'job.cpu'",
         "Did you mean 'cpus'?", profiles={"typo": 'extends = "local"\n[job]\ncpu = 2\n'}),
    case("unknown-key-config-site", "submit --site local --dry-run", "config.toml [sites.local]",
         "unknown key 'job.hour'", "Did you mean 'hours'?", config="[sites.local]\njob.hour = 1\n"),
    case("unknown-key-config-top", "sites list", "config.toml", "unknown key 'profile_paths'",
         "Did you mean 'profile_path'?", config='profile_paths = ["/x"]\n'),
]


def test_table_is_large_and_ids_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 30


def _records(cli: Cli) -> dict[str, bytes]:
    directory = cli.state / "sessions"
    return {p.name: p.read_bytes() for p in directory.glob("*.json")} if directory.is_dir() else {}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_bad_input(cli: Cli, tmp_path: Path, case: Case) -> None:
    home = str(cli.home)
    (cli.home / "empty_ssh_config").write_text("")
    for name, text in case.profiles.items():
        cli.write_profile(name, text.replace("{home}", home))
    if case.config:
        (cli.home / "config.toml").write_text(case.config)
    sessions = cli.state / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    for rec in case.records:
        rec = {**rec, "job_dir": rec["job_dir"].replace("{home}", home)}
        (sessions / f"{rec['site']}--{rec['session_id']}.json").write_text(json.dumps(rec, indent=2))
    if case.no_ssh:
        empty = tmp_path / "bin-without-ssh"
        empty.mkdir()
        cli.env["PATH"] = str(empty)
    before = _records(cli)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        args = [a.replace("{busy}", port) for a in case.args]
        result = cli.run(*args, timeout=60)
    out, err = result.stdout, result.stderr
    assert "Traceback" not in err + out, err
    if case.exit_code is not None:
        assert result.returncode == case.exit_code, err
    else:
        assert result.returncode == 1, f"exit {result.returncode}\nstdout: {out}\nstderr: {err}"
    assert out == "", f"nothing on stdout when a command fails, got: {out!r}"
    first_words = [line for line in err.splitlines() if line.lower().startswith("error:")]
    assert len(first_words) == 1, f"one error paragraph, got:\n{err}"
    for phrase in case.phrases:
        assert phrase.replace("{busy}", port).replace("{home}", home) in err, err
    # Nothing recorded by a refused command, nothing changed in the records that were there.
    assert _records(cli) == before
