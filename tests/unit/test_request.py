"""Request: profile defaults < user config < flags, memory units, walltime, and the site limits."""

from __future__ import annotations

import pytest
from sandbox import Sandbox

from hpcjupyter.errors import RequestError
from hpcjupyter.request import build_request, parse_memory_mb, walltime


@pytest.mark.parametrize(
    "text, megabytes",
    [("512M", 512), ("16G", 16384), ("16g", 16384), ("16gb", 16384), ("16GiB", 16384),
     ("1T", 1048576), ("1.5G", 1536), ("2048k", 2), (" 8 G ", 8192)],
)
def test_memory_units(text: str, megabytes: int) -> None:
    assert parse_memory_mb(text) == megabytes


@pytest.mark.parametrize("text", ["16X", "abc", "-1G", "16b", "", "1e3G", "16 GG", "0G", "1k", "512", "16"])
def test_malformed_memory_is_refused_with_examples(text: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_memory_mb(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize("hours, text", [(2, "02:00:00"), (0.5, "00:30:00"), (1 / 3, "00:20:00"), (168, "168:00:00"),
                                         (0.3333, "00:20:00"), (1.0001, "01:00:00")])
def test_walltime_is_hh_mm_ss(hours: float, text: str) -> None:
    assert walltime(hours) == text


def test_flags_override_config_which_overrides_profile(sandbox: Sandbox) -> None:
    profile = sandbox.personal("archer2", 'job.account = "e123"\njob.cpus = 8\nenv.conda = "/work/e123/conda"\n')
    request = build_request(profile, {"cpus": None, "qos": "standard", "partition": "standard", "hours": 3})
    assert (request.account, request.cpus, request.qos, request.hours) == ("e123", 8, "standard", 3.0)
    assert (request.partition, request.memory_mb) == ("standard", 8192)  # memory from the built-in profile
    request = build_request(profile, {"account": "e999", "cpus": 2, "memory": "4G", "conda_env": "ml"})
    assert (request.account, request.cpus, request.memory_mb, request.conda_env) == ("e999", 2, 4096, "ml")


def test_session_id_names_the_job(sandbox: Sandbox) -> None:
    request = build_request(sandbox.personal("local"), {}, session_id="20260101-000000-abcdef")
    assert request.job_name == "hpcj-20260101-000000-abcdef"
    generated = build_request(sandbox.personal("local"), {}).session_id
    assert generated != build_request(sandbox.personal("local"), {}).session_id
    with pytest.raises(RequestError, match="session id"):
        build_request(sandbox.personal("local"), {}, session_id="../x")


def test_qos_limit_is_per_qos_and_compared_as_the_scheduler_does(sandbox: Sandbox) -> None:
    profile = sandbox.personal("archer2", 'job.account = "e123"\n')
    standard = {"partition": "standard"}  # qos long and short need it (qos_rules)
    assert build_request(profile, {"qos": "long", "hours": 96, **standard}).walltime == "96:00:00"
    assert build_request(profile, {"qos": "short", "hours": 1 / 3, **standard}).walltime == "00:20:00"
    with pytest.raises(RequestError) as caught:
        build_request(profile, {"qos": "short", "hours": 0.5, **standard})
    assert "limit of 0.3333 h (00:20:00) for qos 'short'" in str(caught.value)
    with pytest.raises(RequestError) as caught:
        build_request(profile, {"qos": "nosuch", "hours": 30})
    assert "limit of 24 h (24:00:00) for site 'archer2' (qos 'nosuch')" in str(caught.value)


def test_pbs_limit_names_the_routing(sandbox: Sandbox) -> None:
    with pytest.raises(RequestError) as caught:
        build_request(sandbox.personal("imperial-cx3"), {"hours": 9})
    assert "over the limit of 8 h (08:00:00) for site 'imperial-cx3'" in str(caught.value)
    assert "choose a queue" in str(caught.value)


def test_memory_is_dropped_nowhere_silently(sandbox: Sandbox) -> None:
    """Cirrus sizes memory by cores: its request has no memory, and --memory is an error."""
    cirrus = sandbox.personal("cirrus", 'job.account = "t01"\n')
    assert build_request(cirrus, {}).memory_mb is None
    with pytest.raises(RequestError, match="memory comes with the cores"):
        build_request(cirrus, {"memory": "16G"})


def test_gpus_within_the_site_limit(sandbox: Sandbox) -> None:
    archer2 = sandbox.personal("archer2", 'job.account = "e123"\n')
    assert build_request(archer2, {"gpus": 4, "partition": "gpu", "qos": "gpu-exc"}).gpus == 4
    with pytest.raises(RequestError, match="at most 4 GPUs"):
        build_request(archer2, {"gpus": 5})
