"""PBS Pro adapter on real recorded outputs (each test names the fixture it reads)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hpcjupyter.errors import SchedulerError
from hpcjupyter.transports.base import Result
from hpcjupyter.schedulers.base import JobState, Outcome, QueryFailed, classify
from hpcjupyter.schedulers.pbs import PBS, job_status, parse_qselect, parse_qstat

P, R, E, U = JobState.PENDING, JobState.RUNNING, JobState.ENDED, JobState.UNKNOWN
pbs = PBS()


def ok(stdout: str) -> Result:
    return Result(0, stdout, "")


def jobs_of(text: str) -> dict:
    return json.loads(text)["Jobs"]


# --- state table: every code issue 3 lists; dropping one fails here -----------------------------

ISSUE_3_CODES = {P: "Q H W T M S U", R: "R B E", E: "F X"}


@pytest.mark.parametrize("code,state", [(c, s) for s, codes in ISSUE_3_CODES.items() for c in codes.split()])
def test_state_table_covers_issue_3(code: str, state: JobState) -> None:
    assert PBS.states[code] is state


def test_state_table_has_nothing_else() -> None:
    assert sorted(PBS.states) == sorted(" ".join(ISSUE_3_CODES.values()).split())


def test_qstat_default_tables_state_column(fixture) -> None:
    """pbspro-qstat-default-imperial.txt: the S column's codes map; ids keep the server suffix.
    We never parse these tables (names truncated to ``hello_wor*``, two layouts): we ask JSON."""
    rows = [line.split() for line in fixture("pbspro-qstat-default-imperial.txt").splitlines()
            if line.split() and line.split()[0].endswith(".pbs-7")]
    first = {r[0]: classify(pbs.states, r[4])[1] for r in rows[:3]}  # qstat: Job id, Name, User, Time Use, S, Queue
    assert first == {"1.pbs-7": R, "2.pbs-7": R, "3.pbs-7": P}
    assert {r[0]: classify(pbs.states, r[-2])[1] for r in rows[3:]} == {"1.pbs-7": R, "3.pbs-7": P}  # qstat -u: S is next to last


# --- submit --------------------------------------------------------------------------------------

def test_submit_argv() -> None:
    assert pbs.submit_argv("/w/job.pbs", "hpcj-1a2b") == ["qsub", "-N", "hpcj-1a2b", "/w/job.pbs"]
    assert pbs.submit_argv("/w/job.pbs") == ["qsub", "/w/job.pbs"]


def test_parse_submit_keeps_server_suffix(fixture) -> None:
    """pbspro-qsub-output.txt: ``1.pbs``."""
    assert pbs.parse_submit(ok(fixture("pbspro-qsub-output.txt"))) == "1.pbs"


def test_parse_submit_ignores_banners(fixture) -> None:
    """pbspro-qsub-output.txt's id after a site banner, and Imperial's ``1234.pbs-7`` form."""
    banner = "Note: jobs over 72h go to the long queue\n"
    assert pbs.parse_submit(ok(banner + fixture("pbspro-qsub-output.txt"))) == "1.pbs"
    assert pbs.parse_submit(ok("1234.pbs-7\n")) == "1234.pbs-7"


def test_refused_submission_carries_pbs_words() -> None:
    """Typed, not recorded (no PBS refusal fixture): qsub's wording for a walltime over the queue's."""
    with pytest.raises(SchedulerError, match="exceeds queue resource limits"):
        pbs.parse_submit(Result(188, "", "qsub: Job exceeds queue resource limits\n"))


# --- qstat -f -F json -x -------------------------------------------------------------------------

def test_status_argv() -> None:
    (query,) = pbs.status_queries(["1.pbs", "1004.pbs"])
    assert query.argv == ["qstat", "-f", "-F", "json", "-x", "1.pbs", "1004.pbs"]
    assert query.job_ids == ("1.pbs", "1004.pbs")


def test_qstat_running(fixture) -> None:
    """pbspro-qstat-f-json-running.txt (with its leading blank line)."""
    job = parse_qstat(ok(fixture("pbspro-qstat-f-json-running.txt")))["1.pbs"]
    assert (job.state, job.native_state, job.node, job.name) == (R, "R", "pbs", "hello_pbs")
    assert (job.time_used, job.time_limit, job.reason, job.exit_status) == ("00:00:10", "00:05:00", "", "")


def test_qstat_history(fixture) -> None:
    """pbspro-qstat-xf-json-history.txt: two finished jobs (``Exit_status`` a number) and one running."""
    jobs = parse_qstat(ok(fixture("pbspro-qstat-xf-json-history.txt")))
    assert {i: (j.state, j.native_state, j.exit_status) for i, j in jobs.items()} == {
        "1004.pbs": (E, "F", "0"), "1005.pbs": (E, "F", "0"), "1006.pbs": (R, "R", "")}
    assert jobs["1004.pbs"].reason.endswith("and finished")
    assert (jobs["1006.pbs"].name, jobs["1006.pbs"].node, jobs["1006.pbs"].time_used) == ("hi_pbs", "pbs", "00:00:10")


def test_held_job_shown_as_held(fixture) -> None:
    """pbspro-qstat-f-json-running.txt's job, put on hold."""
    attrs = jobs_of(fixture("pbspro-qstat-f-json-running.txt"))["1.pbs"]
    job = job_status("1.pbs", {**attrs, "job_state": "H", "comment": "job held, too many failed attempts to run"})
    assert (job.state, job.reason) == (P, "held: job held, too many failed attempts to run")
    assert job_status("1.pbs", {**attrs, "job_state": "H", "comment": ""}).reason == "held"


def test_queued_job_estimate_and_multinode_exec_host(fixture) -> None:
    """pbspro-qstat-f-json-running.txt's job, queued with an estimate; and on two nodes."""
    attrs = jobs_of(fixture("pbspro-qstat-f-json-running.txt"))["1.pbs"]
    comment = "Not Running: Insufficient amount of resource: ncpus"
    queued = job_status("1.pbs", {**attrs, "job_state": "Q", "comment": comment,
                                  "estimated": {"start_time": "Fri Jun 20 09:00:00 2025"}})
    assert (queued.state, queued.start_estimate) == (P, "Fri Jun 20 09:00:00 2025")
    assert queued.reason == comment
    assert job_status("1.pbs", {**attrs, "exec_host": "cx3-1-2/0*8+cx3-1-3/0*8"}).node == "cx3-1-2"


def test_qstat_error_lines(fixture) -> None:
    """pbspro-qstat-errors-stderr.txt's qstat lines on stderr: finished means ended; unknown is not
    listed (so `lookup` calls it ended once nothing else knows it)."""
    recorded = fixture("pbspro-qstat-errors-stderr.txt").splitlines()
    qstat_lines = "\n".join(line for line in recorded if line.startswith("qstat"))
    jobs = parse_qstat(Result(35, "", qstat_lines))
    assert list(jobs) == ["1008.c2cf5fbe1102"]
    assert (jobs["1008.c2cf5fbe1102"].state, jobs["1008.c2cf5fbe1102"].reason) == (E, "finished")


def test_qstat_known_and_unknown_ids_together(fixture) -> None:
    """pbspro-qstat-xf-json-history.txt on stdout and the unknown-id line of
    pbspro-qstat-errors-stderr.txt on stderr, as qstat prints for a mixed list of ids."""
    unknown = fixture("pbspro-qstat-errors-stderr.txt").splitlines()[0]
    jobs = parse_qstat(Result(153, fixture("pbspro-qstat-xf-json-history.txt"), unknown))
    assert sorted(jobs) == ["1004.pbs", "1005.pbs", "1006.pbs"]


@pytest.mark.parametrize("result", [
    Result(2, "", "Connection refused\nqstat: cannot connect to server pbs (errno=15010)\n"),
    Result(153, "", "qstat: Unknown Job Id 1.pbs\nqstat: cannot connect to server pbs (errno=15010)\n"),
    Result(0, "{\"Jobs\": {", ""),
    Result(255, "", "kex_exchange_identification: Connection closed by remote host\n"),
])
def test_qstat_failure_raises(result: Result) -> None:
    with pytest.raises(QueryFailed):
        parse_qstat(result)


def test_qstat_nothing_known() -> None:
    assert parse_qstat(Result(153, "", "qstat: Unknown Job Id 5.pbs\n")) == {}


# --- cancel, find by name ------------------------------------------------------------------------

def test_cancel_finished_or_unknown_is_ok(fixture) -> None:
    """pbspro-qstat-errors-stderr.txt's qdel lines."""
    qdel = [line for line in fixture("pbspro-qstat-errors-stderr.txt").splitlines() if line.startswith("qdel")]
    assert pbs.cancel_argv(["1004", "100"]) == ["qdel", "1004", "100"]
    assert all(pbs.cancel_ok(Result(35, "", line)) for line in qdel)
    assert pbs.cancel_ok(Result(35, "", "\n".join(qdel)))
    assert not pbs.cancel_ok(Result(1, "", "qdel: Unauthorized Request  1004.pbs\n"))


def test_find_by_name() -> None:
    query = pbs.find_by_name_query("hpcj-1a2b3c4d")
    assert query.argv == ["qselect", "-N", "hpcj-1a2b3c4d"]
    jobs = query.parse(ok("1234.pbs-7\n"), ())
    assert (jobs["1234.pbs-7"].state, jobs["1234.pbs-7"].name) == (U, "hpcj-1a2b3c4d")
    assert parse_qselect(ok("")) == {}


def test_every_pbspro_fixture_is_read_here(fixture_dir: Path) -> None:
    source = Path(__file__).read_text()
    assert [f.name for f in sorted(fixture_dir.glob("pbspro-*")) if f.name not in source] == []


# ---- how a job ended, on a real OpenPBS 23.06 server's outputs ----------------------------


def recorded(fixture, name: str) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    """An openpbs-* recording: (what the command printed, its exit status from the last line)."""
    text, _, rc = fixture(name).rstrip("\n").rpartition("\nrc=")
    return text, int(rc)


def text_attrs(text: str) -> dict[str, str]:
    """``qstat -f`` text: ``key = value`` lines, continuation lines (``\\n\\t``) joined."""
    joined = text.replace("\n\t", "")
    return dict(m.groups() for m in re.finditer(r"^\s+(\w+) = (.*)$", joined, re.MULTILINE))


@pytest.mark.parametrize("name, outcome, exit_status", [
    ("openpbs-qstat-xf-json-completed.txt", Outcome.COMPLETED, "0"),
    ("openpbs-qstat-xf-json-exit3.txt", Outcome.FAILED, "3"),
    ("openpbs-qstat-xf-json-qdel.txt", Outcome.CANCELLED, "271"),
])
def test_outcome_of_a_finished_job(fixture, name: str, outcome: Outcome, exit_status: str) -> None:  # type: ignore[no-untyped-def]
    text, rc = recorded(fixture, name)
    (job,) = parse_qstat(Result(rc, text, "")).values()
    assert (job.state, job.outcome, job.exit_status) == (JobState.ENDED, outcome, exit_status)
    if outcome is Outcome.CANCELLED:
        assert job.reason == "terminated by pbsuser@pbshost"  # shown as cancelled, by whom


@pytest.mark.parametrize("name, outcome", [
    ("openpbs-qstat-xf-walltime-exceeded.txt", Outcome.TIMED_OUT),
    ("openpbs-qstat-xf-qdel-queued.txt", Outcome.CANCELLED),  # deleted while queued: no Exit_status
    ("openpbs-qstat-xf-completed.txt", Outcome.COMPLETED),
    ("openpbs-qstat-xf-exit3.txt", Outcome.FAILED),
])
def test_outcome_from_text_qstat(fixture, name: str, outcome: Outcome) -> None:  # type: ignore[no-untyped-def]
    text, _ = recorded(fixture, name)
    attrs = text_attrs(text)
    assert attrs["job_state"] == "F"
    assert job_status("1.pbshost", attrs).outcome is outcome


def test_a_job_that_can_never_run_is_recognised(fixture) -> None:  # type: ignore[no-untyped-def]
    text, _ = recorded(fixture, "openpbs-qstat-f-queued-never-run.txt")
    status = job_status("7.pbshost", text_attrs(text))
    assert status.state is JobState.PENDING and status.reason.startswith("Can Never Run: Insufficient amount")
    assert "fewer --cpus" in (PBS().why_never_starts(status) or "")
    queued = job_status("8.pbshost", {"job_state": "Q", "comment": "Not Running: Insufficient amount of resource"})
    assert PBS().why_never_starts(queued) is None  # waits for other jobs: it can start later
