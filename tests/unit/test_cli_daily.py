"""Issue 13, daily use: each defect through the real command line (no cluster is contacted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clihelpers import Cli

REFUSED = """scheduler = "slurm"
[ssh]
host = "127.0.0.1"
port = 1
config = "{home}/empty_ssh_config"
transport = "openssh"
[env]
remote_dir = "/scratch/hpcj"
"""


def record(cli: Cli, site: str, job_id: str, state: str = "PENDING", session_id: str = "20261123-100000-abcdef",
           submitted_at: str = "2026-11-23T10:00:00+0000") -> Path:
    """A session record as `submit` leaves it."""
    data = {"site": site, "session_id": session_id, "job_dir": f"/scratch/hpcj/{session_id}",
            "job_name": f"hpcj-{session_id}", "submitted_at": submitted_at, "job_id": job_id,
            "state": state, "reason": "", "node": "", "local_port": None, "url": "", "ended_at": "", "extra": {}}
    directory = cli.state / "sessions"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{site}--{session_id}.json"
    path.write_text(json.dumps(data))
    return path


def json_lines(text: str) -> list:
    """Every stdout line is JSON (json.loads line by line, as scripts read it)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ---- 11: -v/-q on every command; -v on a failing login shows the ssh command ---------------------


def test_quiet_and_verbose_are_accepted_after_the_command(cli: Cli) -> None:
    for args in (("ls", "-v"), ("ls", "--quiet"), ("sites", "list", "-q"), ("sites", "show", "local", "-v")):
        result = cli.run(*args)
        assert result.returncode == 0, (args, result.stderr)
    assert cli.run("ls", "-q").stderr == ""  # quiet: not even "no sessions"


def test_verbose_on_a_failing_login_shows_the_exact_ssh_command(cli: Cli) -> None:
    (cli.home / "empty_ssh_config").write_text("")
    cli.write_profile("refused", REFUSED.replace("{home}", str(cli.home)))
    result = cli.run("status", "4242", "--site", "refused", "-v", timeout=60)
    assert result.returncode != 0
    assert "[verbose] refused: login with: " in result.stderr and "ssh -F " in result.stderr
    assert "-p 1" in result.stderr and "127.0.0.1" in result.stderr


# ---- 17: usage lines and whole sentences in the command list --------------------------------------


def test_usage_names_job_id_and_the_command_list_has_whole_sentences(cli: Cli) -> None:
    for command in ("connect", "cancel", "logs", "status", "url"):
        usage = cli.run(command, "--help").stdout
        assert "{job_id}" not in usage and "[JOB_ID]" in usage, usage
    top = cli.run("--help").stdout
    commands = top.split("Commands:", 1)[1]
    assert "..." not in commands
    assert "Check a site before a job burns queue time." in commands


# ---- 4: --json prints only JSON -----------------------------------------------------------------


def test_dry_run_json_is_json(cli: Cli) -> None:
    result = cli.run("submit", "--site", "local", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    [data] = json_lines(result.stdout)
    assert data["site"] == "local" and data["script"].startswith("#!") and data["job_dir"]


@pytest.mark.parametrize("args", [("ls",), ("sites", "list"), ("sites", "show", "local")])
def test_json_outputs_parse_line_by_line(cli: Cli, args: tuple[str, ...]) -> None:
    result = cli.run(*args, "--json")
    assert result.returncode == 0, result.stderr
    assert len(json_lines(result.stdout)) == 1


# ---- 8 and 7: connect-only flags; the reason for a bad port --------------------------------------


def test_connect_only_flags_without_connect_are_refused(cli: Cli) -> None:
    result = cli.run("submit", "--site", "local", "--local-port", "8080", "--no-browser", "--timeout", "5")
    assert result.returncode == 1 and result.stdout == ""
    assert "--no-browser, --local-port, --timeout only apply with --connect" in result.stderr
    assert cli.run("submit", "--site", "local", "--cancel-on-exit").stderr.count("--connect") >= 1
    assert not (cli.state / "sessions").exists() or not list((cli.state / "sessions").glob("*.json"))


def test_an_impossible_port_is_not_called_privileged(cli: Cli) -> None:
    result = cli.run("submit", "--site", "local", "--connect", "--local-port", "70000")
    assert "not a port number" in result.stderr and "administrator" not in result.stderr


# ---- 12: dry-run user name -----------------------------------------------------------------------


def test_dry_run_shows_a_placeholder_user_and_says_so(cli: Cli) -> None:
    result = cli.run("submit", "--site", "archer2", "--account", "t01", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "/work/t01/t01/CLUSTER_USER/" in result.stdout
    assert "CLUSTER_USER where your cluster user name goes" in result.stderr
    Path(cli.env["HPCJUPYTER_CONFIG"]).write_text('[sites.archer2]\nssh.user = "alice"\njob.account = "t01"\n')
    result = cli.run("submit", "--site", "archer2", "--dry-run")
    assert "/work/t01/t01/alice/" in result.stdout and "from ssh.user (alice)" in result.stderr


# ---- 13: walltime formats -------------------------------------------------------------------------


@pytest.mark.parametrize("given,walltime", [("1:30", "01:30:00"), ("1:30:15", "01:30:15"), ("90m", "01:30:00"),
                                            ("2h", "02:00:00"), ("1.5", "01:30:00"), ("1h30m", "01:30:00")])
def test_walltime_formats(cli: Cli, given: str, walltime: str) -> None:
    result = cli.run("submit", "--site", "archer2", "--account", "t01", "--hours", given, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"#SBATCH --time={walltime}" in result.stdout


@pytest.mark.parametrize("given", ["1:75", "2 days", "h", "1:30:00:00"])
def test_bad_walltime_names_the_formats(cli: Cli, given: str) -> None:
    result = cli.run("submit", "--site", "local", "--hours", given, "--dry-run")
    assert result.returncode == 1
    assert "is not a walltime" in result.stderr and "H:MM (1:30)" in result.stderr
    assert "pydantic" not in result.stderr and "Input should be" not in result.stderr


# ---- 18: the effective request is checked ---------------------------------------------------------


def test_a_lower_limit_with_an_inherited_default_is_checked_after_the_flags(cli: Cli) -> None:
    cli.write_profile("short", 'extends = "local"\n[job]\nmax_hours = 4\nhours = 8\n')
    assert cli.run("submit", "--site", "short", "--hours", "4", "--dry-run").returncode == 0
    assert cli.run("sites", "check", "short").returncode == 0
    refused = cli.run("submit", "--site", "short", "--dry-run")
    assert refused.returncode == 1
    assert "the default walltime (job.hours = 8) is over the limit of 4 h" in refused.stderr
    assert "--origin --files" in refused.stderr


# ---- 2: doctor takes the placement flags ----------------------------------------------------------


def test_doctor_takes_the_placement_flags_submit_takes(cli: Cli) -> None:
    help_text = cli.run("doctor", "--help").stdout
    for flag in ("--account", "--partition", "--qos", "--queue", "--conda-env", "--hours"):
        assert flag in help_text
    result = cli.run("doctor", "--site", "archer2", "--account", "t01", "--hours", "99")
    assert "No such option" not in result.stderr
    assert "over the limit" in result.stdout + result.stderr  # the flags reach the request doctor checks


# ---- 5: a misspelled [sites.NAME] ----------------------------------------------------------------


def test_a_misspelled_site_table_is_warned_about_and_fails_sites_check(cli: Cli) -> None:
    Path(cli.env["HPCJUPYTER_CONFIG"]).write_text('[sites.cirus]\njob.account = "t01"\n')
    listed = cli.run("sites", "list")
    assert "no site 'cirus'; did you mean 'cirrus'?" in listed.stderr
    checked = cli.run("sites", "check")
    assert checked.returncode == 1
    assert "did you mean 'cirrus'?" in checked.stdout + checked.stderr


# ---- 14: sites show --origin and sites check ----------------------------------------------------


def test_show_origin_labels_layers_and_files_on_request(cli: Cli) -> None:
    cli.write_profile("mine", 'extends = "archer2"\n[job]\ncpus = 4\n')
    Path(cli.env["HPCJUPYTER_CONFIG"]).write_text('[sites.mine]\njob.account = "t01"\n')
    shown = cli.run("sites", "show", "mine", "--origin").stdout
    lines: dict[str, str] = {}
    for row in shown.splitlines():
        if "=" in row and not row.startswith("#"):
            lines.setdefault(row.split("=")[0].strip(), row)  # the first: [job] comes before its rule tables
    assert lines["host"].endswith("# built-in")
    assert lines["cpus"].endswith(f"# group {cli.profiles.name}")
    assert lines["account"].endswith("# config")
    assert lines["name"].endswith("# site name")
    assert "site-packages" not in "\n".join(lines.values())
    files = cli.run("sites", "show", "mine", "--origin", "--files").stdout
    assert str(cli.profiles / "mine.toml") in files


def test_sites_check_on_a_fresh_template_reports_every_problem_at_once(cli: Cli) -> None:
    assert cli.run("sites", "init", "fresh").returncode == 0
    result = cli.run("sites", "check", "fresh")
    assert result.returncode == 1
    out = result.stdout
    assert "key 'scheduler'" in out and "key 'ssh.host' is empty" in out and "'env.remote_dir' is empty" in out
    assert "'ssh.host' is missing" not in out


def test_unknown_site_error_does_not_promise_files_in_sites_list(cli: Cli) -> None:
    result = cli.run("submit", "--site", "nosuch", "--dry-run")
    assert "'sites list --json' shows their files" in result.stderr


# ---- expected: default site -------------------------------------------------------------------------


def test_default_site_from_env_config_or_the_only_personal_site(cli: Cli) -> None:
    none = cli.run("submit", "--dry-run")
    assert none.returncode == 1 and "no default site is set" in none.stderr
    cli.env["HPCJUPYTER_SITE"] = "local"
    assert cli.run("submit", "--dry-run").returncode == 0
    del cli.env["HPCJUPYTER_SITE"]
    config = Path(cli.env["HPCJUPYTER_CONFIG"])
    config.write_text('default_site = "local"\n')
    assert cli.run("submit", "--dry-run").returncode == 0
    config.write_text('[sites.archer2]\njob.account = "t01"\n')
    result = cli.run("submit", "--dry-run")
    assert result.returncode == 0 and "#SBATCH --account=t01" in result.stdout


# ---- expected: config get/set/unset ------------------------------------------------------------------


def test_config_set_keeps_comments_and_is_validated(cli: Cli) -> None:
    config = Path(cli.env["HPCJUPYTER_CONFIG"])
    config.write_text("# my settings\n\n[sites.archer2]  # the reference\njob.cpus = 2 # two\n")
    assert cli.run("config", "set", "sites.archer2.job.account", "t01").returncode == 0
    text = config.read_text()
    assert "# my settings" in text and "# the reference" in text and "# two" in text
    assert cli.run("config", "get", "sites.archer2.job.account").stdout.strip() == "t01"
    result = cli.run("submit", "--site", "archer2", "--dry-run")
    assert "#SBATCH --account=t01" in result.stdout
    bad = cli.run("config", "set", "sites.archer2.job.acount", "x")
    assert bad.returncode == 1 and "Did you mean 'account'?" in bad.stderr
    assert "acount" not in config.read_text()
    typo = cli.run("config", "set", "sites.cirus.job.account", "x")
    assert typo.returncode == 1 and "Did you mean 'cirrus'?" in typo.stderr
    assert cli.run("config", "set", "sites.archer2.job.cpus", "8").returncode == 0
    assert cli.run("config", "get", "sites.archer2.job.cpus").stdout.strip() == "8"
    assert cli.run("config", "unset", "sites.archer2.job.account").returncode == 0
    assert "account" not in config.read_text() and "# my settings" in config.read_text()
    assert cli.run("config", "set", "default_site", "local").returncode == 0
    assert cli.run("submit", "--dry-run").returncode == 0


def test_config_edit_checks_the_result(cli: Cli) -> None:
    editor = cli.home / "editor.sh"
    editor.write_text('#!/bin/sh\nprintf "[sites.archer2]\\njob.acount = 1\\n" > "$1"\n')
    editor.chmod(0o755)
    cli.env["EDITOR"] = str(editor)
    result = cli.run("config", "edit")
    assert result.returncode == 1 and "was saved but is not valid" in result.stderr


# ---- expected: forget / ls --prune / newest session ---------------------------------------------


def test_forget_and_prune_remove_only_ended_records(cli: Cli) -> None:
    ended = record(cli, "archer2", "111", state="ENDED", session_id="20261123-100000-aaaaaa")
    live = record(cli, "archer2", "222", state="PENDING", session_id="20261123-100001-bbbbbb")
    refused = cli.run("forget", "222")
    assert refused.returncode == 1 and "may still be running" in refused.stderr and live.exists()
    assert cli.run("forget", "111").returncode == 0 and not ended.exists()
    assert cli.run("forget", "222", "--force").returncode == 0 and not live.exists()
    record(cli, "local", "local-1-aaaa", state="ENDED", session_id="20261123-100002-cccccc")
    record(cli, "local", "local-2-bbbb", state="FAILED", session_id="20261123-100003-dddddd")
    result = cli.run("ls", "--prune", "--json")
    assert result.returncode == 0, result.stderr
    assert "forgot 2 ended sessions" in result.stderr
    assert cli.json("ls", "--all") == []


def test_no_job_id_means_the_newest_running_session(cli: Cli) -> None:
    none = cli.run("cancel")
    assert none.returncode == 1 and "no running session" in none.stderr
    record(cli, "archer2", "300", state="ENDED", session_id="20261123-100000-aaaaaa",
           submitted_at="2026-11-23T12:00:00+0000")
    record(cli, "archer2", "100", session_id="20261123-090000-bbbbbb", submitted_at="2026-11-23T09:00:00+0000")
    record(cli, "archer2", "200", session_id="20261123-100001-cccccc", submitted_at="2026-11-23T10:00:01+0000")
    Path(cli.env["HPCJUPYTER_CONFIG"]).write_text('[sites.archer2]\nssh.host = "login.invalid"\n')
    result = cli.run("status", timeout=60)
    assert "using job 200 on archer2 (your newest running session)" in result.stderr


# ---- expected: completion --------------------------------------------------------------------------


def test_shell_completion_of_sites_and_job_ids(cli: Cli) -> None:
    record(cli, "archer2", "4242")
    env = dict(cli.env, _HPCJUPYTER_COMPLETE="complete_bash")
    import subprocess

    def complete(words: str, cword: str) -> list[str]:
        done = subprocess.run(cli.argv(), env=dict(env, COMP_WORDS=words, COMP_CWORD=cword),
                              capture_output=True, text=True, timeout=60)
        return done.stdout.split()

    assert "archer2" in complete("hpcjupyter submit --site arc", "3")
    assert "4242" in complete("hpcjupyter cancel 42", "2")


def test_clean_parses_ages() -> None:
    from hpcjupyter.cleaning import parse_age
    from hpcjupyter.errors import HpcJupyterError

    assert parse_age("30d") == 30 * 86400 and parse_age("12h") == 43200 and parse_age("2w") == 14 * 86400
    with pytest.raises(HpcJupyterError, match="not an age"):
        parse_age("30 days")


def test_piped_progress_prints_state_changes_and_a_heartbeat(capsys, monkeypatch) -> None:
    from hpcjupyter import ui as ui_module

    clock = [0.0]
    monkeypatch.setattr(ui_module.time, "monotonic", lambda: clock[0])
    shown = ui_module.UI()
    shown.live = False
    for second in range(60):
        clock[0] = float(second)
        shown.status(f"job 7: pending, waited {second}s")
        if second == 10:
            shown.status("job 7: running, starting Jupyter, waited 10s")
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["job 7: pending, waited 0s", "job 7: running, starting Jupyter, waited 10s",
                     "job 7: pending, waited 11s", "job 7: pending, waited 41s"]


# ---- 16: ls detail ---------------------------------------------------------------------------------


def test_ls_detail_shows_time_left_and_no_stale_url(sandbox) -> None:
    import socket

    from hpcjupyter import listing, sessions

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # closed once the block ends: nothing listens there
    session = sessions.Session(site="archer2", session_id="20261123-100000-abcdef", job_dir="/x", job_name="hpcj-x",
                               submitted_at=sessions.stamp(), job_id="7", state=sessions.SessionState.RUNNING,
                               url=f"http://127.0.0.1:{port}/lab", local_port=port,
                               extra={"time_limit": "02:00:00", "time_used": "00:30:00", "time_read": sessions.stamp()})
    assert listing.detail(session).startswith(("1h29m", "1h30m")) and "left (not connected)" in listing.detail(session)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        session.local_port = listening.getsockname()[1]
        session.url = f"http://127.0.0.1:{session.local_port}/lab"
        assert listing.detail(session) == session.url


# ---- 10: no browser ---------------------------------------------------------------------------------


def test_a_browser_that_cannot_be_opened_is_said(capsys, monkeypatch) -> None:
    import webbrowser

    from hpcjupyter import cli as cli_module
    from hpcjupyter.ui import UI

    monkeypatch.setattr(webbrowser, "open", lambda url: False)
    cli_module._open_browser("http://127.0.0.1:1/lab?token=t", UI())
    assert "could not open a web browser here" in capsys.readouterr().err
