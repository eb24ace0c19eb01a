"""Each built-in site's documented rules, as `submit --dry-run` would meet them: the script says
what the site documents (exact directive lines), or the request stops before anything is rendered
with an error that names the rule and its source page. The rules are profile data (see
docs/sites/*.md); the last tests show a group's own profile using the same keys.
"""

from __future__ import annotations

from typing import Any

import pytest
from sandbox import Sandbox
from typer.testing import CliRunner

from hpcjupyter.cli import app
from hpcjupyter.errors import ProfileError, RequestError
from hpcjupyter.paths import builtin_profiles_dir
from hpcjupyter.render import job_dir, render, render_jupyter_check
from hpcjupyter.request import build_request
from hpcjupyter.showprofile import format_profile

BUILTIN = builtin_profiles_dir()

SESSION = "20261129-120000-abc123"
USER = "tester"
ARCHER2 = 'job.account = "e123"\n'
CIRRUS = 'job.account = "t01"\n'
CX3 = 'env.conda_env = "jupyter"\n'


def header(sandbox: Sandbox, site: str, overrides: str = "", flags: dict[str, Any] | None = None) -> list[str]:
    """The scheduler directive lines of the script `submit --dry-run` would print."""
    return [line for line in script(sandbox, site, overrides, flags).splitlines() if line.startswith(("#SBATCH", "#PBS"))]


def script(sandbox: Sandbox, site: str, overrides: str = "", flags: dict[str, Any] | None = None) -> str:
    profile = sandbox.personal(site, overrides)
    return render(profile, build_request(profile, flags or {}, SESSION), USER)


def refused(sandbox: Sandbox, site: str, overrides: str, flags: dict[str, Any], *phrases: str) -> str:
    """The request (or the render, for the environment) stops with an error holding ``phrases``."""
    with pytest.raises(RequestError) as caught:
        script(sandbox, site, overrides, flags)
    text = str(caught.value)
    for phrase in phrases:
        assert phrase in text, f"{phrase!r} not in:\n{text}"
    return text


# ---- project directory vs budget (ARCHER2, Cirrus) -----------------------------------------


@pytest.mark.parametrize("site, root", [("archer2", "/work"), ("cirrus", "/epccfs")])
def test_project_directory_is_the_budget_up_to_its_first_dash(sandbox: Sandbox, site: str, root: str) -> None:
    text = header(sandbox, site, 'job.account = "t01-test"\n')
    assert "#SBATCH --account=t01-test" in text  # the budget is charged...
    assert f"#SBATCH --output={root}/t01/t01/{USER}/hpcjupyter/{SESSION}/slurm-%j.out" in text  # ...the project's dir
    profile = sandbox.personal(site, 'job.account = "n01-nceo"\n')
    assert job_dir(profile, build_request(profile, {}, SESSION), USER) == f"{root}/n01/n01/{USER}/hpcjupyter/{SESSION}"


def test_project_can_be_set_where_the_budget_does_not_say_it(sandbox: Sandbox) -> None:
    profile = sandbox.personal("archer2", 'job.account = "x99-other"\njob.project = "e123"\n')
    assert job_dir(profile, build_request(profile, {}, SESSION), USER).startswith("/work/e123/e123/")


def test_sites_show_says_how_the_project_was_derived(sandbox: Sandbox) -> None:
    profile = sandbox.personal("cirrus", 'job.account = "t01-test"\n')
    text = format_profile(profile.model_dump(mode="json"), None)
    assert "# {project} = \"t01\": job.account up to its first '-' (\"t01-test\")" in text
    sandbox.write(sandbox.config, "")
    result = CliRunner().invoke(app, ["sites", "show", "archer2"])
    assert result.exit_code == 0, result.output
    assert "# {project} = job.account up to its first '-' (no account set yet)" in result.output


# ---- pip --user Jupyter on PATH (ARCHER2, Cirrus) ------------------------------------------


@pytest.mark.parametrize("site, account, moved", [("archer2", ARCHER2, "work"), ("cirrus", CIRRUS, "epccfs")])
def test_pip_user_jupyter_is_on_path_after_home_moves(sandbox: Sandbox, site: str, account: str, moved: str) -> None:
    lines = script(sandbox, site, account).splitlines()
    home = lines.index(f'export HOME="${{HOME/home/{moved}}}"')
    base = lines.index('export PYTHONUSERBASE="$HOME/.local"')
    path = lines.index('export PATH="$PYTHONUSERBASE/bin:$PATH"')
    start = next(i for i, line in enumerate(lines) if line.startswith("jupyter "))
    assert home < base < path < start
    # doctor checks the same environment: its script is rendered from the same set-up template
    profile = sandbox.personal(site, account)
    check = render_jupyter_check(profile, build_request(profile, {}, SESSION), USER, mark="M:", program="jupyter-lab",
                                 within="x").splitlines()
    assert check.index('export PYTHONUSERBASE="$HOME/.local"') < check.index('export PATH="$PYTHONUSERBASE/bin:$PATH"')


# ---- ARCHER2 GPUs ---------------------------------------------------------------------------


def test_archer2_gpu_shd_gives_gpus_only(sandbox: Sandbox) -> None:
    text = header(sandbox, "archer2", ARCHER2, {"partition": "gpu", "qos": "gpu-shd", "gpus": 2})
    assert text[2:] == ["#SBATCH --time=02:00:00", "#SBATCH --nodes=1", "#SBATCH --gpus=2", "#SBATCH --account=e123",
                        "#SBATCH --partition=gpu", "#SBATCH --qos=gpu-shd", "#SBATCH --export=none"]


def test_archer2_gpu_exc_is_exclusive_on_one_node(sandbox: Sandbox) -> None:
    text = header(sandbox, "archer2", ARCHER2, {"partition": "gpu", "qos": "gpu-exc", "gpus": 4})
    assert text[2:] == ["#SBATCH --time=02:00:00", "#SBATCH --nodes=1", "#SBATCH --exclusive", "#SBATCH --gpus=4",
                        "#SBATCH --account=e123", "#SBATCH --partition=gpu", "#SBATCH --qos=gpu-exc",
                        "#SBATCH --export=none"]


def test_archer2_gpu_shd_allows_two_gpus(sandbox: Sandbox) -> None:
    refused(sandbox, "archer2", ARCHER2, {"partition": "gpu", "qos": "gpu-shd", "gpus": 3},
            "qos 'gpu-shd' allows at most 2 GPUs (asked for 3)", "user-guide/gpu.md")


def test_archer2_gpus_on_the_serial_partition_say_where_gpus_are(sandbox: Sandbox) -> None:
    refused(sandbox, "archer2", ARCHER2, {"gpus": 1}, "partition 'serial' has no GPUs",
            "user-guide/analysis.md", "give --partition gpu --qos gpu-shd with --gpus")


@pytest.mark.parametrize("flag, value, option", [("cpus", 4, "--cpus-per-task"), ("memory", "16G", "--mem")])
def test_archer2_gpu_job_refuses_cpus_and_memory(sandbox: Sandbox, flag: str, value: Any, option: str) -> None:
    refused(sandbox, "archer2", ARCHER2, {"partition": "gpu", "qos": "gpu-shd", "gpus": 1, flag: value},
            "partition 'gpu' takes no", option, "user-guide/gpu.md")


def test_archer2_gpu_qos_needs_the_gpu_partition(sandbox: Sandbox) -> None:
    refused(sandbox, "archer2", ARCHER2, {"qos": "gpu-shd"}, "qos 'gpu-shd' goes only with partition gpu",
            "(got 'serial')", "user-guide/gpu.md")


# ---- ARCHER2 limits -------------------------------------------------------------------------


def test_archer2_serial_limits(sandbox: Sandbox) -> None:
    assert "#SBATCH --cpus-per-task=32" in header(sandbox, "archer2", ARCHER2, {"cpus": 32, "memory": "125G"})
    refused(sandbox, "archer2", ARCHER2, {"cpus": 33}, "partition 'serial' allows at most 32 cpus",
            "user-guide/analysis.md")
    refused(sandbox, "archer2", ARCHER2, {"memory": "126G"}, "partition 'serial' allows at most 125G",
            "user-guide/analysis.md")


@pytest.mark.parametrize("qos, partition, needed", [("standard", "serial", "standard"), ("short", "serial", "standard"),
                                                    ("serial", "standard", "serial"), ("long", "gpu", "standard")])
def test_archer2_qos_needs_its_partition(sandbox: Sandbox, qos: str, partition: str, needed: str) -> None:
    hours = 24 if qos == "long" else 0.25  # within each qos's walltime limits: only the partition is wrong
    refused(sandbox, "archer2", ARCHER2, {"qos": qos, "partition": partition, "hours": hours},
            f"qos '{qos}' goes only with partition {needed} (got '{partition}')", "user-guide/scheduler.md",
            f"--partition {needed}")


def test_archer2_long_needs_at_least_24_hours(sandbox: Sandbox) -> None:
    refused(sandbox, "archer2", ARCHER2, {"qos": "long", "partition": "standard", "hours": 12},
            "qos 'long' needs at least 24 h (24:00:00)", "user-guide/scheduler.md")
    text = header(sandbox, "archer2", ARCHER2, {"qos": "long", "partition": "standard", "hours": 48})
    assert {"#SBATCH --time=48:00:00", "#SBATCH --partition=standard", "#SBATCH --qos=long"} <= set(text)


# ---- Cirrus ----------------------------------------------------------------------------------


def test_cirrus_turns_smt_off_and_never_asks_for_memory(sandbox: Sandbox) -> None:
    text = header(sandbox, "cirrus", CIRRUS, {"cpus": 288})
    assert "#SBATCH --hint=nomultithread" in text and "#SBATCH --cpus-per-task=288" in text
    assert not any("--mem" in line for line in text)


def test_cirrus_caps_cpus_at_a_node(sandbox: Sandbox) -> None:
    refused(sandbox, "cirrus", CIRRUS, {"cpus": 289}, "site 'cirrus' allows at most 288 cpus per job",
            "user-guide/hardware.md")


# ---- Imperial CX3 ----------------------------------------------------------------------------


def test_cx3_never_activates_conda_base(sandbox: Sandbox) -> None:
    refused(sandbox, "imperial-cx3", "", {}, "names no conda env", "never to use or modify conda 'base'",
            "guides/conda.md", 'env.conda_env = "jupyter"', "--conda-env")
    refused(sandbox, "imperial-cx3", "", {"conda_env": "base"}, "cannot activate conda 'base'")
    lines = script(sandbox, "imperial-cx3", "", {"conda_env": "ml"}).splitlines()
    assert 'eval "$("$HOME"/miniforge3/bin/conda shell.bash hook)" && conda activate ml \\' in lines


def test_cx3_conda_base_in_a_config_names_the_file_and_key(sandbox: Sandbox) -> None:
    with pytest.raises(ProfileError) as caught:
        sandbox.personal("imperial-cx3", 'env.conda_env = "base"\n')
    assert f"{sandbox.config} [sites.imperial-cx3]: key 'env.conda_env'" in str(caught.value)


def test_cx3_a_venv_replaces_conda(sandbox: Sandbox) -> None:
    text = script(sandbox, "imperial-cx3", 'env.venv = "~/venvs/jupyter"\n')
    assert "conda activate" not in text and 'source "$HOME"/venvs/jupyter/bin/activate' in text.splitlines()


def test_cx3_purges_modules_before_the_environment(sandbox: Sandbox) -> None:
    lines = script(sandbox, "imperial-cx3", CX3).splitlines()
    assert lines.index("module purge") < next(i for i, line in enumerate(lines) if "conda shell.bash hook" in line)


def test_cx3_takes_no_account(sandbox: Sandbox) -> None:
    refused(sandbox, "imperial-cx3", CX3, {"account": "p1"}, "takes no account", "no -P project",
            "job-sizing-guidance.md")


@pytest.mark.parametrize("queue", ["jupyter", "jupytergpu", "ood"])
def test_cx3_site_service_queues_are_refused(sandbox: Sandbox, queue: str) -> None:
    refused(sandbox, "imperial-cx3", CX3, {"queue": queue}, f"queue '{queue}' is not for hpcjupyter jobs",
            "job-sizing-guidance.md", "Leave out --queue")


def test_cx3_gpus_and_gpu_type(sandbox: Sandbox) -> None:
    assert "#PBS -l select=1:ncpus=8:mem=32gb:ngpus=2:gpu_type=L40S" in header(sandbox, "imperial-cx3", CX3, {"gpus": 2})
    assert "#PBS -l select=1:ncpus=8:mem=32gb:ngpus=8:gpu_type=A100" in header(
        sandbox, "imperial-cx3", CX3 + 'job.gpu_type = "A100"\n', {"gpus": 8})
    assert "#PBS -l select=1:ncpus=8:mem=32gb" in header(sandbox, "imperial-cx3", CX3)  # no GPUs, no gpu_type
    refused(sandbox, "imperial-cx3", CX3, {"gpus": 9}, "allows at most 8 GPUs per job", "gpu-jobs.md")
    refused(sandbox, "imperial-cx3", CX3, {"gpus": 1, "gpu_type": "H100"}, "no GPU type 'H100'",
            "L40S, RTX6000, A100")
    with pytest.raises(ProfileError, match="key 'job.gpu_type': 'H100' is not one of"):
        sandbox.personal("imperial-cx3", CX3 + 'job.gpu_type = "H100"\n')


def test_cx3_max_hours_is_a_tool_default_not_a_site_limit(sandbox: Sandbox) -> None:
    refused(sandbox, "imperial-cx3", CX3, {"hours": 9}, "limit of 8 h", "hpcjupyter's own default",
            "batch queues allow 72 h", "raise job.max_hours")
    assert "#PBS -l walltime=72:00:00" in header(sandbox, "imperial-cx3", CX3 + "job.max_hours = 72.0\n", {"hours": 72})


def test_cx3_profile_comment_does_not_claim_jump_from_a_laptop() -> None:
    text = (BUILTIN / "imperial-cx3.toml").read_text()
    assert "also\n# works" not in text and "export PBS_JOBID" in text


# ---- memory needs a unit ---------------------------------------------------------------------


def test_bare_memory_number_is_refused_with_the_unit_to_add(sandbox: Sandbox) -> None:
    refused(sandbox, "archer2", ARCHER2, {"memory": "16"}, "memory '16' has no unit", "16G")
    with pytest.raises(ProfileError) as caught:
        sandbox.personal("archer2", ARCHER2 + 'job.memory = "16"\n')
    message = str(caught.value)
    assert f"{sandbox.config} [sites.archer2]: key 'job.memory'" in message and "16G" in message


def test_bare_memory_on_the_command_line(sandbox: Sandbox) -> None:
    sandbox.write(sandbox.config, "[sites.archer2]\n" + ARCHER2)
    result = CliRunner().invoke(app, ["submit", "--site", "archer2", "--memory", "16", "--dry-run"])
    assert result.exit_code != 0
    assert "memory '16' has no unit" in result.output and "16G" in result.output
    assert "#SBATCH" not in result.output


# ---- the same keys in a group's own profile --------------------------------------------------


def test_a_group_profile_uses_the_same_rule_keys(sandbox: Sandbox) -> None:
    sandbox.profile("mygroup", """\
        extends = "cirrus"
        [job]
        account = "t01"
        refused = { debug = "kept for the admins (our wiki)" }
        [job.qos_rules.highpriority]
        partitions = ["standard"]
        max_cpus = 16
        source = "our wiki"
        """)
    profile = sandbox.load("mygroup")[0]
    with pytest.raises(RequestError, match=r"qos 'highpriority' allows at most 16 cpus .*our wiki"):
        build_request(profile, {"qos": "highpriority", "cpus": 32})
    with pytest.raises(RequestError, match="qos 'debug' is not for hpcjupyter jobs"):
        build_request(profile, {"qos": "debug"})


@pytest.mark.parametrize("body, phrase", [
    ('[job.partition_rules.gpu]\npartitions = ["gpu"]\n', "key 'job.partition_rules.gpu.partitions': only a qos rule"),
    ('[sources]\n"job.nosuch" = "x"\n', "key 'sources': 'job.nosuch' is not a profile key"),
    ('[job]\naccount_required = true\naccount_refused = "none here"\n', "key 'job.account_refused'"),
    ('[job.qos_rules.x]\nmax_memory = "12"\n', "key 'job.qos_rules.x.max_memory'"),
])
def test_rule_keys_are_checked_naming_file_and_key(sandbox: Sandbox, body: str, phrase: str) -> None:
    path = sandbox.profile("bad", 'extends = "local"\n' + body)
    with pytest.raises(ProfileError) as caught:
        sandbox.load("bad")
    assert f"{path}: {phrase}" in str(caught.value)
