"""Slurm adapter on real recorded outputs (each test names the fixture it reads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcjupyter.errors import SchedulerError
from hpcjupyter.transports.base import Result
from hpcjupyter.schedulers.base import JobState, Outcome, QueryFailed, classify
from hpcjupyter.schedulers.slurm import (
    SACCT_FIELDS,
    SQUEUE_FORMAT,
    Slurm,
    first_host,
    parse_rows,
    parse_sacct,
    parse_scontrol,
    parse_squeue,
    row_status,
)

P, R, E, U = JobState.PENDING, JobState.RUNNING, JobState.ENDED, JobState.UNKNOWN
slurm = Slurm()


def ok(stdout: str) -> Result:
    return Result(0, stdout, "")


def failed(stderr: str, rc: int = 1) -> Result:
    return Result(rc, "", stderr)


# --- state table: every code issue 3 lists; dropping one fails here -----------------------------

ISSUE_3_CODES = {
    P: "PD CF RQ REQUEUED RH RF RD S ST",
    R: "R CG SI SO",
    E: "CD CA F TO NF BF OOM DL PR RV SE",
}


@pytest.mark.parametrize("code,state", [(c, s) for s, codes in ISSUE_3_CODES.items() for c in codes.split()])
def test_state_table_covers_issue_3(code: str, state: JobState) -> None:
    assert Slurm.states[code] is state


@pytest.mark.parametrize("full,compact", [("PENDING", "PD"), ("COMPLETING", "CG"), ("OUT_OF_MEMORY", "OOM"),
                                          ("CANCELLED", "CA"), ("NODE_FAIL", "NF"), ("SPECIAL_EXIT", "SE")])
def test_full_names_map_like_compact_codes(full: str, compact: str) -> None:
    assert Slurm.states[full] is Slurm.states[compact]


@pytest.mark.parametrize("text,state", [("CANCELLED+", E), ("CANCELLED by 123", E), ("running", R),
                                        ("RESIZING", U), ("", U)])
def test_states_tolerate_decorations_and_unknown_codes(text: str, state: JobState) -> None:
    assert classify(slurm.states, text)[1] is state


# --- submit --------------------------------------------------------------------------------------

def test_submit_argv() -> None:
    assert slurm.submit_argv("/w/job.sh", "hpcj-1a2b") == ["sbatch", "--parsable", "--job-name=hpcj-1a2b", "/w/job.sh"]
    assert slurm.submit_argv("/w/job.sh") == ["sbatch", "--parsable", "/w/job.sh"]


def test_parse_submit_parsable(fixture) -> None:
    """slurm-sbatch-parsable.txt: ``49``."""
    assert slurm.parse_submit(ok(fixture("slurm-sbatch-parsable.txt"))) == "49"


def test_parse_submit_cluster_suffix_and_banners(fixture) -> None:
    """slurm-sbatch-parsable.txt's id as a multi-cluster site prints it (``JOBID;CLUSTER``, per its
    source note and sbatch(1)), between banner lines: the id before ``;``."""
    job_id = fixture("slurm-sbatch-parsable.txt").strip()
    out = f"Welcome to ARCHER2 (job limits apply)\n{job_id};archer2\nsbatch: note: 2 GPUs per node\n"
    assert slurm.parse_submit(ok(out)) == "49"


def test_parse_submit_plain_sbatch_line(fixture) -> None:
    """slurm-sbatch-submitted.txt: a site wrapper that drops --parsable still gives the id."""
    assert slurm.parse_submit(ok(fixture("slurm-sbatch-submitted.txt"))) == "12345"


def test_refused_submission_carries_slurms_words(fixture) -> None:
    """slurm-sbatch-error-invalid-partition.txt (stderr, exit 1)."""
    with pytest.raises(SchedulerError) as info:
        slurm.parse_submit(failed(fixture("slurm-sbatch-error-invalid-partition.txt")))
    assert "Batch job submission failed: Invalid partition name specified" in info.value.message
    assert "invalid partition specified: abcd" in info.value.message


def test_numbers_inside_messages_are_not_job_ids(fixture) -> None:
    """slurm-salloc-granted-archer2-serial.txt: salloc's lines mention 523113 but none is an id
    alone. We never run salloc; this shows banner lines with numbers are not mistaken for ids."""
    with pytest.raises(SchedulerError, match="no job id"):
        slurm.parse_submit(ok(fixture("slurm-salloc-granted-archer2-serial.txt")))


# --- squeue --------------------------------------------------------------------------------------

def test_squeue_argv_one_query_for_all_ids() -> None:
    queue = slurm.status_queries(["11", "12"])[0]
    assert queue.argv == ["squeue", "-h", "-t", "all", "-j", "11,12", "-o", "%i|%T|%r|%B|%N|%M|%l|%S|%j"]
    assert queue.job_ids == ("11", "12")


def test_squeue_Format_pipe_by_field_names(fixture) -> None:
    """slurm-squeue-Format-pipe.txt (firecrest's --Format; ``Cluster:||`` and ``EndTime:||`` print an
    empty column, named "" here). Parsed by the same field-name converter as our own format."""
    fields = ("JobID NumNodes Cluster - GroupName Account Name NodeList Partition PriorityLong State Reason "
              "TimeUsed SubmitTime StartTime EndTime - TimeLimit UserName WorkDir").split()
    jobs = parse_rows(fixture("slurm-squeue-Format-pipe.txt"), fields)
    job = jobs["1"]
    assert (job.state, job.native_state, job.node) == (R, "RUNNING", "localhost")
    assert (job.time_used, job.time_limit, job.name, job.reason) == ("0:07", "5-00:00:00", "SbatchTestXYZ", "")


def test_squeue_our_format_pending(fixture) -> None:
    """slurm-squeue-long-pending.txt's job 3084 (PENDING, reason Priority, limit 14-00:00:00) in our
    own format. The fixture itself is a padded table with truncated names (``hello_wo``) and a date
    line, which is why we never parse that format: only its values are reused here."""
    table = fixture("slurm-squeue-long-pending.txt").splitlines()
    job_id, _, name, _, state, used, limit, _, reason = table[2].split()
    line = f"{job_id}|{state}|{reason.strip('()')}|n/a||{used}|{limit}|2021-01-01T10:00:00|{name}"
    job = parse_squeue(ok(line))[job_id]
    assert (job.state, job.reason, job.node, job.name) == (P, "Priority", "", "hello_wo")
    assert (job.time_used, job.time_limit, job.start_estimate) == ("0:00", "14-00:00:00", "2021-01-01T10:00:00")


def test_squeue_our_format_running_uses_batch_host(fixture) -> None:
    """slurm-squeue-format-custom.txt's jobs 6 and 27 (compact state R on c4-n10) in our format;
    the job name keeps a ``|`` because it is the last field."""
    rows = [line.split() for line in fixture("slurm-squeue-format-custom.txt").splitlines()[1:]]
    text = "\n".join(f"{r[0]}|{r[1]}|None|{r[8]}|{r[8]}|1:00|1:00:00|{r[7]}|{r[3]}|x" for r in rows)
    jobs = parse_squeue(ok(text))
    assert sorted(jobs) == ["27", "6"]
    job = jobs["6"]
    assert (job.state, job.native_state, job.node, job.reason, job.start_estimate) == (R, "R", "c4-n10", "", "")
    assert job.name == "SHEH_201-testing|x"


def test_squeue_compact_codes_of_custom_format(fixture) -> None:
    """slurm-squeue-format-custom.txt: ``%t`` compact codes map through the same table."""
    rows = [line.split() for line in fixture("slurm-squeue-format-custom.txt").splitlines()[1:]]
    assert [(r[0], classify(slurm.states, r[1])[1]) for r in rows] == [("6", R), ("27", R)]


def test_squeue_purged_single_id_is_not_a_failure() -> None:
    """``squeue -j <purged id>`` exits 1: the job is just not in the queue; history decides."""
    assert parse_squeue(failed("slurm_load_jobs error: Invalid job id specified\n")) == {}


@pytest.mark.parametrize("result", [
    failed("slurm_load_jobs error: Socket timed out on send/recv operation\n"),
    failed("ssh: connect to host login.archer2.ac.uk port 22: Connection timed out\n", rc=255),
    failed("", rc=1),
    failed("slurm_load_jobs error: Invalid job id specified\nsqueue: error: Unable to contact slurm controller\n"),
])
def test_squeue_failure_raises(result: Result) -> None:
    with pytest.raises(QueryFailed):
        parse_squeue(result)


# --- sacct ---------------------------------------------------------------------------------------

def test_sacct_argv_and_fields() -> None:
    sacct = slurm.status_queries(["11", "12"])[1]
    assert sacct.argv == ["sacct", "-X", "-P", "-n", "-j", "11,12", "-o",
                          "JobID,State,ExitCode,NodeList,Elapsed,Timelimit,Start,JobName"]
    assert SACCT_FIELDS[-1] == "JobName"  # the free-text field goes last


def test_sacct_parsable2_by_field_names(fixture) -> None:
    """slurm-sacct-parsable2.txt, with the field list its source line names."""
    fields = ("JobID,AllocNodes,Cluster,ExitCode,Group,Account,JobName,NodeList,Partition,Priority,State,"
              "Reason,ElapsedRaw,Submit,Start,End,Suspended,TimelimitRaw,User,WorkDir").split(",")
    job = parse_rows(fixture("slurm-sacct-parsable2.txt"), fields)["1"]
    assert (job.state, job.native_state, job.exit_status, job.node) == (E, "COMPLETED", "0", "localhost")
    assert (job.name, job.reason, job.start_estimate) == ("SbatchTest", "", "")


def test_sacct_our_format() -> None:
    """slurm-sacct-parsable2.txt's job in our field order (its raw seconds and epoch as sacct prints them)."""
    line = "1|COMPLETED|0:0|localhost|00:01:40|02:00:00|2025-06-18T07:47:39|SbatchTest"
    job = parse_sacct(ok(line))["1"]
    assert (job.state, job.exit_status, job.node) == (E, "0", "localhost")
    assert (job.time_used, job.time_limit) == ("00:01:40", "02:00:00")


def test_sacct_default_table_states_and_exit_codes(fixture) -> None:
    """slurm-sacct-default.txt: plain sacct pads and truncates (``2458483.bat+``, ``longeval-+``),
    which is why we always ask ``-X -P``. Its State and ExitCode columns still read right."""
    rows = [line.split() for line in fixture("slurm-sacct-default.txt").splitlines()[2:]]
    allocation = rows[0]
    job = row_status({"JobID": allocation[0], "State": allocation[-2], "ExitCode": allocation[-1]})
    assert (job.job_id, job.state, job.native_state, job.exit_status) == ("2458483", E, "FAILED", "2")
    assert {r[-2]: classify(slurm.states, r[-2])[1] for r in rows} == {"FAILED": E, "COMPLETED": E}
    assert rows[1][0] == "2458483.bat+"


def test_sacct_cancelled_by_uid_keeps_who_in_reason() -> None:
    job = row_status({"JobID": "7", "State": "CANCELLED by 1234", "ExitCode": "0:15", "Reason": "None"})
    assert (job.state, job.native_state, job.reason, job.exit_status) == (E, "CANCELLED", "CANCELLED by 1234", "0:15")


def test_sacct_accounting_disabled_knows_nothing() -> None:
    assert parse_sacct(failed("Slurm accounting storage is disabled\n")) == {}
    assert parse_sacct(failed("SLURM accounting storage is disabled\n")) == {}


def test_sacct_database_down_is_a_failure() -> None:
    with pytest.raises(QueryFailed, match="Connection refused"):
        parse_sacct(failed("sacct: error: Problem talking to the database: Connection refused\n"))


# --- scontrol ------------------------------------------------------------------------------------

def test_scontrol_is_per_id_after_sacct() -> None:
    chain = slurm.status_queries(["11", "12"])
    assert [q.argv for q in chain[2:]] == [["scontrol", "show", "job", "11"], ["scontrol", "show", "job", "12"]]
    assert [q.job_ids for q in chain[2:]] == [("11",), ("12",)]


def test_scontrol_running(fixture) -> None:
    """slurm-scontrol-show-job-dd-running.txt."""
    job = parse_scontrol(ok(fixture("slurm-scontrol-show-job-dd-running.txt")))["354191"]
    assert (job.state, job.native_state, job.node, job.name) == (R, "RUNNING", "c4-n37", "hi-there.sh")
    assert (job.time_used, job.time_limit, job.reason, job.exit_status) == ("00:00:08", "00:02:00", "", "")


def test_scontrol_pending(fixture) -> None:
    """slurm-scontrol-show-job-pending.txt: no BatchHost, NodeList=(null), StartTime=Unknown."""
    job = parse_scontrol(ok(fixture("slurm-scontrol-show-job-pending.txt")))["134238037"]
    assert (job.state, job.reason, job.node, job.start_estimate) == (P, "AssocGrpCpuLimit", "", "")
    assert (job.time_limit, job.name) == ("1-00:00:00", "wrap")


def test_scontrol_several_records_and_spaces_in_names(fixture) -> None:
    """Both scontrol fixtures as one output (blank line between records), one name with a space."""
    text = fixture("slurm-scontrol-show-job-dd-running.txt").replace("JobName=hi-there.sh", "JobName=hi there.sh")
    jobs = parse_scontrol(ok(text + "\n" + fixture("slurm-scontrol-show-job-pending.txt")))
    assert sorted(jobs) == ["134238037", "354191"]
    assert jobs["354191"].name == "hi there.sh"


def test_scontrol_purged_id_is_an_answer() -> None:
    assert parse_scontrol(failed("slurm_load_jobs error: Invalid job id specified\n")) == {}


# --- helpers, cancel, find by name ---------------------------------------------------------------

@pytest.mark.parametrize("nodelist,host", [("c4-n37", "c4-n37"), ("nid[001234-001237,001300]", "nid001234"),
                                           ("dvn01,dvn02", "dvn01"), ("gpu[3,5]-ib", "gpu3-ib"), ("", "")])
def test_first_host(nodelist: str, host: str) -> None:
    assert first_host(nodelist) == host


def test_cancel() -> None:
    assert slurm.cancel_argv(["11", "12"]) == ["scancel", "11", "12"]
    assert slurm.cancel_ok(Result(0, "", ""))
    kill_error = "scancel: error: Kill job error on job id 11: "
    assert slurm.cancel_ok(failed(kill_error + "Job/step already completing or completed\n"))
    assert slurm.cancel_ok(failed(kill_error + "Invalid job id specified\n"))
    assert not slurm.cancel_ok(failed(kill_error + "Access/permission denied\n"))


def test_find_by_name() -> None:
    query = slurm.find_by_name_query("hpcj-1a2b3c4d")
    assert query.argv == ["squeue", "-h", "-t", "all", "-n", "hpcj-1a2b3c4d", "-o", SQUEUE_FORMAT]
    job = query.parse(ok("77|PENDING|Resources|n/a||0:00|1:00:00|N/A|hpcj-1a2b3c4d"), ())["77"]
    assert (job.state, job.reason, job.name) == (P, "Resources", "hpcj-1a2b3c4d")


def test_every_slurm_fixture_is_read_here(fixture_dir: Path) -> None:
    source = Path(__file__).read_text()
    assert [f.name for f in sorted(fixture_dir.glob("slurm-*")) if f.name not in source] == []


# ---- how a job ended, and pending reasons that never clear ----------------------------------


@pytest.mark.parametrize("state, code, outcome", [
    ("COMPLETED", "0:0", Outcome.COMPLETED),
    ("CD", "0:0", Outcome.COMPLETED),
    ("COMPLETED", "2:0", Outcome.FAILED),
    ("FAILED", "3:0", Outcome.FAILED),
    ("CANCELLED by 1000", "0:15", Outcome.CANCELLED),
    ("TIMEOUT", "0:15", Outcome.TIMED_OUT),
    ("OUT_OF_MEMORY", "0:125", Outcome.FAILED),
    ("NODE_FAIL", "0:0", Outcome.FAILED),
])
def test_outcome_of_an_ended_job(state: str, code: str, outcome: Outcome) -> None:
    row = {"JobID": "7", "State": state, "ExitCode": code}
    assert row_status(row).outcome is outcome
    assert row_status({"JobID": "7", "State": "RUNNING"}).outcome is None


@pytest.mark.parametrize("reason, hint", [
    ("PartitionTimeLimit", "fewer --hours"),
    ("QOSMaxWallDurationPerJobLimit", "--qos that allows longer"),
    ("AssocMaxWallDurationPerJobLimit", "fewer --hours"),
    ("PartitionNodeLimit", "--partition"),
    ("BadConstraints", "ask for less"),
    ("InvalidAccount", "--account"),
    ("InvalidQOS", "--qos"),
])
def test_reasons_that_never_clear_say_what_to_change(reason: str, hint: str) -> None:
    status = row_status({"JobID": "7", "State": "PENDING", "Reason": reason})
    assert hint in (Slurm().why_never_starts(status) or "")


@pytest.mark.parametrize("reason", ["Priority", "Resources", "QOSMaxCpuPerUserLimit", "ReqNodeNotAvail", "None"])
def test_reasons_that_clear_when_other_jobs_end_are_waited_out(reason: str) -> None:
    assert Slurm().why_never_starts(row_status({"JobID": "7", "State": "PENDING", "Reason": reason})) is None
