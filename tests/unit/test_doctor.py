"""`doctor`: each check on a fake login node, one broken profile per check, and the pure parsers.

The login node is a `FakeLogin` answering by command; the jupyter check also runs its real
script with bash on this machine (the `local` site), since that script is what it checks.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
from pathlib import Path
from typing import Any, Sequence

import pytest
import typer
from typer.testing import CliRunner

from hpcjupyter import doctor
from hpcjupyter.schedulers import slurm
from hpcjupyter.cli_doctor import doctor as doctor_command
from hpcjupyter.doctor import CheckResult, Context, run_checks
from hpcjupyter.errors import ProfileError
from hpcjupyter.transports.base import Result, unreachable_error
from hpcjupyter.schedulers import get_scheduler
from hpcjupyter.schema import Profile
from hpcjupyter.site import Site
from sandbox import Sandbox

OK = Result(0, "", "")
NAMES = [name for name, _ in doctor.CHECKS]


def healthy_slurm() -> dict[str, Result]:
    """What a working Slurm login node answers, by a fragment of each command."""
    return {
        "for c in": OK,  # the commands that must exist: none missing
        "sinfo -h -o %P": Result(0, "serial*\nstandard\nstandard\n", ""),
        "sinfo -h -N -o %N": Result(0, "node1\nnode1\nnode2\n", ""),
        "sacctmgr": Result(0, "e123|serial,short\ne456|standard\n", ""),
        "id -un": Result(0, "hpcuser\n", ""),
        "mkdir -p": OK,
        doctor.MARK: Result(0, f"motd chatter\n{doctor.MARK}/work/venv/bin/jupyter-lab\n", ""),
        "ssh -o BatchMode=yes": OK,
    }


class FakeLogin:
    """A login node: the first answer whose fragment is in the command line (or its stdin) wins."""

    def __init__(self, answers: dict[str, Result], prompts: int = 0, refuse: Exception | None = None) -> None:
        self.answers = answers
        self.prompts = prompts
        self.refuse = refuse
        self.calls: list[str] = []

    def connect(self) -> int:
        if self.refuse:
            raise self.refuse
        return self.prompts

    def run(self, argv: Sequence[str], stdin: str | None = None, timeout: float | None = None) -> Result:
        line = shlex.join(argv) + (f"\n{stdin}" if stdin else "")
        self.calls.append(line)
        return next((r for fragment, r in self.answers.items() if fragment in line),
                    Result(127, "", f"{argv[0]}: command not found"))

    def close(self) -> None:
        pass


def profile(**tables: Any) -> Profile:
    data: dict[str, Any] = {
        "name": "tb", "scheduler": "slurm",
        "ssh": {"host": "tb-login"},
        "job": {"partition": "serial", "qos": "serial", "account": "e123"},
        "env": {"remote_dir": "/work/{account}/{user}/hpcj", "venv": "/work/venv"},
    }
    for key, value in tables.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    return Profile.model_validate(data)


def diagnose(prof: Profile, login: FakeLogin, mocker: Any) -> list[CheckResult]:
    mocker.patch("hpcjupyter.transports.make_remote", return_value=login)
    site = Site(profile=prof, origins={}, scheduler=get_scheduler(prof.scheduler))
    results: list[CheckResult] = []
    run_checks(Context(prof.name, lambda name: site), results.append)
    return results


def failed_at(results: list[CheckResult]) -> str:
    assert not results[-1].ok and all(r.ok for r in results[:-1]), results
    return results[-1].name


# ---- a healthy site ------------------------------------------------------------------------


def test_a_healthy_slurm_site_passes_every_check_in_order(mocker: Any) -> None:
    login = FakeLogin(healthy_slurm(), prompts=2)
    results = diagnose(profile(job={"qos": "short"}), login, mocker)
    assert [r.name for r in results] == NAMES and all(r.ok for r in results)
    detail = {r.name: r.detail for r in results}
    assert detail["ssh"] == "tb-login reached; 2 prompts answered"
    assert detail["account/partition/qos"] == "partition serial exists; account e123 is yours; QoS short allowed"
    assert detail["remote_dir"].startswith("/work/e123/hpcuser/hpcj writable from the login node; not checked")
    assert detail["jupyter"] == "/work/venv/bin/jupyter-lab on the login node (compute nodes may differ)"
    assert detail["tunnel"].startswith("forward:")
    assert all(r.seconds >= 0 for r in results)


def test_sinfo_is_asked_once_and_commands_are_the_schedulers(mocker: Any) -> None:
    login = FakeLogin(healthy_slurm())
    diagnose(profile(), login, mocker)
    assert sum("sinfo -h -o %P" in c for c in login.calls) == 1
    assert "sbatch squeue scancel sacct" in next(c for c in login.calls if "for c in" in c)
    assert "'mkdir -p -- \"$1\"" in next(c for c in login.calls if "mkdir" in c)
    assert next(c for c in login.calls if "mkdir" in c).endswith(" hpcj-doctor /work/e123/hpcuser/hpcj")
    # the jupyter check's script goes on stdin of a login shell, so no login shell has to parse it
    assert any(c.startswith("bash -l -s\nhpcj_fail()") and "/bin/activate" in c for c in login.calls)


# ---- one broken profile per check ----------------------------------------------------------


def test_bad_profile_fails_the_first_check(sandbox: Sandbox) -> None:
    sandbox.profile("broken", 'scheduler = "slrum"\n')
    from hpcjupyter.cli_common import open_site_for
    from hpcjupyter.ui import UI

    results: list[CheckResult] = []
    assert not run_checks(Context("broken", lambda name: open_site_for(name, UI())), results.append)
    assert failed_at(results) == "profile"
    assert "key 'scheduler'" in results[0].detail and "Did you mean 'slurm'?" in results[0].detail


def test_a_profile_without_the_account_the_site_requires_fails_the_first_check(mocker: Any) -> None:
    results = diagnose(profile(job={"account": None, "account_required": True}), FakeLogin(healthy_slurm()), mocker)
    assert failed_at(results) == "profile"
    assert "needs a budget account" in results[0].detail


def test_unreachable_host_fails_at_ssh(mocker: Any) -> None:
    login = FakeLogin({}, refuse=unreachable_error("tb-nosuch", "No route to host"))
    results = diagnose(profile(ssh={"host": "tb-nosuch"}), login, mocker)
    assert failed_at(results) == "ssh"
    assert "Cannot reach tb-nosuch (No route to host)" in results[-1].detail
    assert "VPN" in results[-1].detail  # what to do


def test_missing_scheduler_command_fails_at_scheduler(mocker: Any) -> None:
    answers = {**healthy_slurm(), "for c in": Result(0, "sacct\n", "")}
    results = diagnose(profile(), FakeLogin(answers), mocker)
    assert failed_at(results) == "scheduler"
    assert "not found on the login node: sacct" in results[-1].detail


def test_a_scheduler_that_does_not_answer_fails_at_scheduler(mocker: Any) -> None:
    answers = {**healthy_slurm(), "sinfo -h -o %P": Result(1, "", "sinfo: error: Unable to contact slurm controller")}
    results = diagnose(profile(), FakeLogin(answers), mocker)
    assert failed_at(results) == "scheduler"
    assert "Unable to contact slurm controller" in results[-1].detail and "status page" in results[-1].detail


def test_unknown_partition_fails_at_resources(mocker: Any) -> None:
    results = diagnose(profile(job={"partition": "gpu"}), FakeLogin(healthy_slurm()), mocker)
    assert failed_at(results) == "account/partition/qos"
    assert "partition 'gpu' does not exist on tb (partitions: serial, standard)" in results[-1].detail


@pytest.mark.parametrize("job, message", [
    ({"account": "z99"}, "account 'z99' is not one of yours (yours: e123, e456)"),
    ({"qos": "standard"}, "QoS 'standard' is not allowed for account 'e123' (allowed: serial, short)"),
])
def test_an_account_or_qos_not_the_users_fails_at_resources(mocker: Any, job: dict, message: str) -> None:
    results = diagnose(profile(job=job), FakeLogin(healthy_slurm()), mocker)
    assert failed_at(results) == "account/partition/qos"
    assert message in results[-1].detail


def test_without_accounting_the_account_cannot_be_told_and_passes(mocker: Any) -> None:
    answers = {**healthy_slurm(), "sacctmgr": Result(1, "", "You are not running a supported accounting_storage "
                                                           "plugin\nOnly 'accounting_storage/slurmdbd' is supported.")}
    results = diagnose(profile(job={"partition": None}), FakeLogin(answers), mocker)
    assert all(r.ok for r in results)
    assert results[3].detail == ("default partition serial; account and QoS: cannot tell (You are not running a "
                                 "supported accounting_storage plugin)")


def test_unwritable_remote_dir_fails_at_remote_dir(mocker: Any) -> None:
    answers = {**healthy_slurm(), "mkdir -p": Result(1, "", "mkdir: cannot create directory '/proc/x': No such file")}
    results = diagnose(profile(env={"remote_dir": "/proc/x"}), FakeLogin(answers), mocker)
    assert failed_at(results) == "remote_dir"
    assert results[-1].detail.startswith("/proc/x is not writable: mkdir: cannot create directory")
    assert "env.remote_dir" in results[-1].detail


def test_venv_without_jupyter_lab_fails_at_jupyter(mocker: Any) -> None:
    answers = {**healthy_slurm(), doctor.MARK: Result(5, f"{doctor.MARK}jupyter-lab not found in the venv /v\n", "")}
    results = diagnose(profile(env={"venv": "/v"}), FakeLogin(answers), mocker)
    assert failed_at(results) == "jupyter"
    assert results[-1].detail.startswith("jupyter-lab not found in the venv /v on the login node")
    assert "pip install jupyterlab" in results[-1].detail


def test_jump_without_ssh_to_nodes_fails_at_tunnel(mocker: Any) -> None:
    answers = {**healthy_slurm(), "ssh -o BatchMode=yes": Result(255, "", "node1: Permission denied (publickey).")}
    login = FakeLogin(answers)
    results = diagnose(profile(ssh={"tunnel": "jump"}), login, mocker)
    assert failed_at(results) == "tunnel"
    assert "ssh from the login node to compute node node1 failed (node1: Permission denied" in results[-1].detail
    assert 'tunnel = "forward"' in results[-1].detail
    assert login.calls[-1] == "ssh -o BatchMode=yes -o ConnectTimeout=5 node1 true"


@pytest.mark.parametrize("answers, detail", [
    ({"ssh -o BatchMode=yes": Result(1, "", "Access denied by pam_slurm_adopt: you have no active jobs on this node")},
     "jump: cannot check until a job runs (node1 admits ssh only to users with a job there)"),
    ({"sinfo -h -N -o %N": Result(0, "", "")}, "jump: cannot check until a job runs (no compute node can be named"),
    ({}, "jump: ssh from the login node to node1 works"),
])
def test_jump_checks_what_it_can(mocker: Any, answers: dict, detail: str) -> None:
    results = diagnose(profile(ssh={"tunnel": "jump"}), FakeLogin({**healthy_slurm(), **answers}), mocker)
    assert all(r.ok for r in results)
    assert results[-1].detail.startswith(detail)


# ---- PBS -----------------------------------------------------------------------------------


def pbs_profile(queue: str | None, tunnel: str = "forward") -> Profile:
    return profile(scheduler="pbs", job={"partition": None, "qos": None, "queue": queue}, ssh={"tunnel": tunnel})


def pbs_answers(queue: str, answer: Result) -> dict[str, Result]:
    """A PBS login node; ``qstat -Q QUEUE`` answers ``answer`` (listed before plain ``qstat -Q``)."""
    return {f"qstat -Q {queue}": answer, "qstat -Q": OK, **healthy_slurm()}


def test_pbs_commands_and_an_unknown_queue(mocker: Any) -> None:
    login = FakeLogin(pbs_answers("nosuch", Result(170, "", "qstat: Unknown queue destination nosuch\n")))
    results = diagnose(pbs_profile("nosuch"), login, mocker)
    assert failed_at(results) == "account/partition/qos"
    assert "queue 'nosuch' does not exist on tb" in results[-1].detail
    assert "qsub qstat qdel" in login.calls[0] and login.calls[1] == "qstat -Q"


@pytest.mark.parametrize("queue, answer, detail", [
    (None, OK, "no queue named: the site's routing queues place the job"),
    ("v1_small72", OK, "queue v1_small72 exists"),
    ("v1_small72", Result(1, "", "qstat: cannot connect to server\n"), "queue v1_small72: cannot tell"),
])
def test_pbs_queue_passes_when_it_exists_or_cannot_be_told(mocker: Any, queue: str | None, answer: Result,
                                                            detail: str) -> None:
    results = diagnose(pbs_profile(queue, tunnel="jump"), FakeLogin(pbs_answers(str(queue), answer)), mocker)
    assert all(r.ok for r in results)
    assert results[3].detail.startswith(detail)
    assert results[-1].detail.startswith("jump: cannot check until a job runs")


# ---- the local site: the jupyter script runs for real --------------------------------------


def local_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: Any) -> list[CheckResult]:
    monkeypatch.setenv("HPCJUPYTER_STATE_DIR", str(tmp_path / "state"))
    prof = Profile.model_validate({"name": "local", "scheduler": "local", "ssh": {"transport": "local"},
                                   "env": {"remote_dir": "{state_dir}/jobs", **env}})
    site = Site(profile=prof, origins={}, scheduler=get_scheduler("local"))
    results: list[CheckResult] = []
    run_checks(Context("local", lambda name: site), results.append)
    return results


def fake_venv(root: Path, with_jupyter: bool) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "activate").write_text(f'PATH="{root}/bin:$PATH"\n')
    if with_jupyter:
        program = root / "bin" / "jupyter-lab"
        program.write_text("#!/bin/sh\n")
        program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return root


def test_local_site_checks_that_do_not_apply_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = fake_venv(tmp_path / "venv", with_jupyter=True)
    results = local_site(tmp_path, monkeypatch, venv=str(venv))
    assert all(r.ok for r in results) and [r.name for r in results] == NAMES
    detail = {r.name: r.detail for r in results}
    for name in ("ssh", "scheduler", "account/partition/qos", "tunnel"):
        assert detail[name].startswith("does not apply"), name
    assert detail["remote_dir"] == f"{tmp_path}/state/jobs writable"
    assert detail["jupyter"] == f"{venv}/bin/jupyter-lab"


@pytest.mark.parametrize("made, message, code", [
    (False, "no venv at {venv} (bin/activate does not exist)", "Create it, or fix env.venv"),
    (True, "jupyter-lab not found in the venv {venv}", "pip install jupyterlab"),
])
def test_the_jupyter_script_tells_a_missing_venv_from_one_without_jupyter(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, made: bool, message: str, code: str) -> None:
    venv = fake_venv(tmp_path / "venv", with_jupyter=False) if made else tmp_path / "nothing"
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no jupyter-lab of the test run's own
    results = local_site(tmp_path, monkeypatch, venv=str(venv))
    assert failed_at(results) == "jupyter"
    assert results[-1].detail.startswith(message.format(venv=venv) + ".")
    assert code in results[-1].detail


def test_the_jupyter_script_reports_a_module_that_does_not_load(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    results = local_site(tmp_path, monkeypatch, setup=["module() { return 1; }"], modules=["cray-python"])
    assert failed_at(results) == "jupyter"
    assert results[-1].detail.startswith("module load cray-python failed.")
    assert "module avail" in results[-1].detail


def test_the_jupyter_script_reports_a_failing_setup_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The job (set -e) would end at the failing line: doctor says which, before any job is queued."""
    results = local_site(tmp_path, monkeypatch, setup=["true", "test -d /nonexistent-hpcj", "true"])
    assert failed_at(results) == "jupyter"
    assert results[-1].detail.startswith("env.setup failed (exit status 1): test -d /nonexistent-hpcj.")
    assert "Fix or remove that env.setup line" in results[-1].detail


def test_the_jupyter_script_is_valid_bash_with_every_part() -> None:
    from hpcjupyter.render import render_jupyter_check
    from hpcjupyter.request import build_request
    from hpcjupyter.schema import Profile

    profile = Profile.model_validate({
        "name": "x", "scheduler": "slurm", "ssh": {"host": "h"},
        "env": {"remote_dir": "/r", "setup": ["module restore"], "modules": ["cray-python"],
                "conda": "~/miniforge3", "conda_env": "my env", "venv": "~/v x", "variables": {"A": "b c"}},
    })
    script = render_jupyter_check(profile, build_request(profile, {}), "u", mark=doctor.MARK,
                                  program="jupyter-lab", within="in the venv ~/v x")
    assert '[ -x "$HOME"/miniforge3/bin/conda ]' in script and "conda activate 'my env'" in script
    assert "source \"$HOME\"/'v x'/bin/activate" in script
    assert "export A='b c'" in script  # the job's variables too: doctor sees the job's environment
    assert os.system(f"bash -n -c {shlex.quote(script)}") == 0


# ---- pure parsers and the output -----------------------------------------------------------


def test_parsers() -> None:
    assert slurm.partitions("serial*\nstandard\nstandard\n") == (["serial", "standard"], "serial")
    assert slurm.associations("E123|a,b\ne123|c\nx|\n") == {"e123": {"a", "b", "c"}, "x": set()}
    assert slurm.association_problem("E123", "c", {"e123": {"c"}}) == ""
    assert slurm.association_problem(None, "d", {"e1": {"c"}, "e2": {"d"}}) == ""
    assert doctor.first_node("") is None and doctor.first_node("n1\nn2") == "n1"
    assert doctor.marked(f"{doctor.MARK}a\nnoise\n{doctor.MARK}b \n") == "b"


def test_format_result_marks_and_indents_what_to_do() -> None:
    good = CheckResult("ssh", True, "tb-login reached", 0.0123)
    bad = CheckResult("ssh", False, "Cannot reach x.\nCheck that you are online.", 1.5)
    assert doctor.format_result(good) == "✓ ssh (12 ms)  tb-login reached"
    assert doctor.format_result(bad) == "✗ ssh (1500 ms)  Cannot reach x.\n    Check that you are online."


def test_the_command_prints_json_and_exits_1_at_the_first_failure(sandbox: Sandbox) -> None:
    sandbox.profile("broken", 'scheduler = "slrum"\n')
    app = typer.Typer()
    app.command()(doctor_command)
    result = CliRunner().invoke(app, ["--site", "broken", "--json"])
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert [set(r) for r in rows] == [{"name", "ok", "detail", "seconds"}]
    assert rows[0]["name"] == "profile" and rows[0]["ok"] is False
    text = CliRunner().invoke(app, ["--site", "broken"])
    assert text.exit_code == 1 and text.stdout.startswith("✗ profile (")


def test_profile_errors_are_failures_not_crashes() -> None:
    def refuse(name: str) -> Site:
        raise ProfileError("x.toml: bad.")

    results: list[CheckResult] = []
    assert run_checks(Context("x", refuse), results.append) is False
    assert results == [CheckResult("profile", False, "x.toml: bad.", results[0].seconds)]


# ---- env.install: the site's own recipe when jupyter is missing ----------------------------

SITE_WAY = "module load cray-python; PYTHONUSERBASE=/work/{project}/{project}/{user}/.local pip install --user jupyterlab"


def test_missing_jupyter_shows_the_sites_install_line_with_the_users_paths(mocker: Any) -> None:
    answers = {**healthy_slurm(), "id -un": Result(0, "alice\n", ""), "sacctmgr": Result(0, "t01-test|serial\n", ""),
               doctor.MARK: Result(5, f"{doctor.MARK}jupyter-lab not found after module load cray-python\n", "")}
    prof = profile(job={"account": "t01-test"}, env={"venv": None, "modules": ["cray-python"], "install": SITE_WAY})
    results = diagnose(prof, FakeLogin(answers), mocker)
    assert failed_at(results) == "jupyter"
    assert results[-1].detail.splitlines()[1:] == [
        "Install JupyterLab the site's documented way (env.install), on the login node:",
        "  module load cray-python; PYTHONUSERBASE=/work/t01/t01/alice/.local pip install --user jupyterlab",
    ]


def test_a_venv_without_jupyter_is_told_its_own_pip_then_the_sites_way(mocker: Any) -> None:
    answers = {**healthy_slurm(), doctor.MARK: Result(5, f"{doctor.MARK}jupyter-lab not found in the venv /v\n", "")}
    results = diagnose(profile(env={"venv": "/v", "install": SITE_WAY}), FakeLogin(answers), mocker)
    hint = results[-1].detail.splitlines()[1:]
    assert hint[0] == "Install JupyterLab into the venv the job activates (env.venv): /v/bin/pip install jupyterlab."
    assert hint[1] == "Or remove env.venv and install it the site's documented way (env.install), on the login node:"
    assert hint[2].startswith("  module load cray-python; PYTHONUSERBASE=/work/e123/e123/hpcuser/.local")


def test_a_missing_conda_env_is_told_how_the_site_creates_one(mocker: Any) -> None:
    recipe = "module load miniforge/3; miniforge-setup; conda create -n jupyter jupyterlab"
    answers = {**healthy_slurm(), doctor.MARK: Result(4, f"{doctor.MARK}conda activate jupyter failed\n", "")}
    prof = profile(env={"venv": None, "conda": "~/miniforge3", "conda_env": "jupyter", "install": recipe})
    results = diagnose(prof, FakeLogin(answers), mocker)
    assert failed_at(results) == "jupyter"
    assert results[-1].detail.endswith(f"To create one with JupyterLab, the site's documented way (env.install), "
                                       f"on the login node:\n  {recipe}")
