"""Finding Jupyter from what the job wrote: our marker, Jupyter's own log lines, connection.json."""

import json

import pytest

from hpcjupyter.discover import (Endpoint, fatal_error, parse_connection_file, parse_jupyter_log,
                                 parse_marker, tail)
from hpcjupyter.errors import HpcJupyterError

# (fixture, host, port, token or None when Jupyter masks it, base)
STARTUP_LOGS = [
    ("jupyter-notebook6-full.txt", "127.0.0.1", 8888, "3bf94daea7b735bb796af59ea4a31e9c8061b47632600af8"),
    ("jupyter-server2.13-notebook7-c4.txt", "127.0.0.1", 44214, "8e37f8d62fca6a1c9b2da429f27df5ebcec706a808c3a8f2"),
    ("jupyter-server2.21-lab-generated.txt", "127.0.0.1", 18888, "9e826cde6e97ac6005fa3429bd69f879a1dfb7c1f5c82a90"),
    ("jupyter-server2.21-notebook7-generated.txt", "127.0.0.1", 18892, "117280573b4ae51104fb79165d7addf7e9a213b8d0fcee30"),
    ("jupyter-server2.21-lab-explicit-token-generated.txt", "127.0.0.1", 18890, None),
    ("jupyter-server2.21-lab-port0-envtoken-generated.txt", "127.0.0.1", 42089, None),
]


@pytest.mark.parametrize("name,host,port,token", STARTUP_LOGS)
def test_jupyter_startup_lines_across_versions(fixture, name: str, host: str, port: int, token: str | None) -> None:
    found = parse_jupyter_log(fixture(name))
    assert found == Endpoint(host=host, port=port, base_url="/", token=token)


def test_the_port_jupyter_moved_to_wins_over_the_port_asked_for(fixture) -> None:
    log = fixture("jupyter-server2.21-lab-port-retry-generated.txt")
    assert "18888" in log  # the port asked for, already in use
    found = parse_jupyter_log(log)
    assert found is not None and found.port == 18889


def test_a_port_in_use_failure_has_no_endpoint_and_a_fatal_line(fixture) -> None:
    log = fixture("jupyter-server2.21-lab-port-in-use-error-generated.txt")
    assert parse_marker(log) is None and parse_jupyter_log(log) is None
    assert fatal_error(log) == "ERROR: the Jupyter server could not be started because port 18888 is not available."


def test_the_last_marker_counts(fixture) -> None:
    log = fixture("jupyter-server2.21-lab-port0-envtoken-generated.txt")
    log += "HPCJUPYTER_READY host=nid001 port=1 node=nid001 base_url=/ job=9\n"
    log += "HPCJUPYTER_READY host=nid002 port=41234 node=nid002 base_url=/ job=9\n"
    assert parse_marker(log) == Endpoint(host="nid002", port=41234, base_url="/", node="nid002")


def test_a_broken_marker_is_ignored() -> None:
    assert parse_marker("HPCJUPYTER_READY host=x port=notanumber\n") is None


def test_connection_file_written_by_the_job() -> None:
    text = json.dumps({"host": "127.0.0.1", "node": "node1", "port": 40000, "token": "t0k", "base_url": "/"})
    assert parse_connection_file(text, "/j/connection.json") == Endpoint("127.0.0.1", 40000, "/", "node1", "t0k")


@pytest.mark.parametrize("text", ["", "{", '{"host": "x"}', '{"host": "x", "port": "abc", "token": "t"}', "[]"])
def test_a_malformed_connection_file_is_a_clear_error(text: str) -> None:
    with pytest.raises(HpcJupyterError, match="not a valid hpcjupyter connection file"):
        parse_connection_file(text, "/j/connection.json")


def test_runtime_file_fields_match_what_the_job_script_reads(fixture) -> None:
    """The job script copies hostname/port/base_url/pid/version out of jpserver-<pid>.json."""
    runtime = json.loads(fixture("jupyter-server2.21-runtime-jpserver.json.txt"))
    assert {"hostname", "port", "base_url", "pid", "version", "token"} <= set(runtime)


def test_tail_keeps_the_last_lines() -> None:
    assert tail("\n".join(str(n) for n in range(100)), 3) == "97\n98\n99"
