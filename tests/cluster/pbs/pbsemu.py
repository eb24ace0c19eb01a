#!/usr/bin/python3
"""A small PBS Pro *emulator* for the hpcjupyter test bed. It is not PBS.

It gives the login host `qsub`, `qstat`, `qdel` and `qrls` that accept what real PBS Pro
accepts for the batch scripts hpcjupyter renders, and print what real PBS Pro (OpenPBS 23.06)
prints: job ids `N.server`, `qstat` tables, `qstat -f` (text and `-F json`), `-x` history,
`job_state` Q/H -> R -> E -> F with `Exit_status`, and the real error lines and exit codes
(`qstat: Unknown Job Id N.server` exit 153, `... Job has finished, use -x or -H ...` exit 35).

How it works (no daemon): `qsub` stores the job in a spool directory and starts a detached
"runner" process for it on the login host. The runner plays server and scheduler for that one
job: it waits while the job is held, picks a node with free ncpus/mem/ngpus (bookkeeping over
the running jobs), then opens `ssh NODE pbsemu.py mom JOBID`. The "mom" side on the compute node
creates $TMPDIR, starts the job script in a new session as a login shell with cwd = $TMPDIR
(as at Imperial), writes stdout/stderr to its node-local spool and copies them to -o/-e at the
end (PBS's default stage-out; `-k oed` writes them directly). Closing the mom's stdin kills the
job: SIGTERM to the job's session, SIGKILL after kill_delay. That is how `qdel` and the walltime
limit end a job.

Usage inside the test bed: qsub/qstat/qdel/qrls are thin executables calling main_*() below;
`pbsemu.py runner ID` and `pbsemu.py mom ID` are internal.
"""

import fcntl
import getopt
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.realpath(__file__))
# The bed writes config.json beside this file; unit tests point PBSEMU_CONFIG at their own.
with open(os.environ.get("PBSEMU_CONFIG") or os.path.join(HERE, "config.json")) as _f:
    CFG = json.load(_f)
# Emulated seconds per real second for walltime limits (tests use > 1 to stay fast).
TIME_SCALE = float(CFG.get("time_scale", 1))
# Real seconds a job must run before its mom reports session_id and resource use to the
# server; a job ending sooner has neither, as with a real MOM (openpbs-qstat-xf-exit3.txt).
STATUS_DELAY = float(CFG.get("status_delay", 0.5))

SERVER = CFG["server"]
SPOOL = CFG["spool"]
JOBS = os.path.join(SPOOL, "jobs")

# PBS error numbers (pbs_error.h); commands exit with the number modulo 256.
PBSE_UNKJOBID = 15001   # -> exit 153
PBSE_HISTJOBID = 15139  # -> exit 35
PBSE_UNKQUE = 15018
PBSE_UNKRESC = 15035    # -> exit 187
PBSE_BADATVAL = 15014   # -> exit 166
PBSE_INVALJOBRESC = 15109  # -> exit 5

JOB_EXEC_FAIL1 = -1
JOB_EXEC_KILL_WALLTIME = -29


# ------------------------------------------------------------------------------------------
# spool
# ------------------------------------------------------------------------------------------
class Lock:
    """Exclusive lock over the whole spool (server state). While it is held the umask is the
    server's (group-shared spool), not the submitting user's: a real PBS server is a daemon of its
    own, and hpcjupyter submits under `umask 077`, which would lock other users out of the spool."""

    def __enter__(self):
        self.umask = os.umask(0o002)
        self.f = open(os.path.join(SPOOL, "lock"), "a+")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()
        os.umask(self.umask)


def job_path(seq, ext="json"):
    return os.path.join(JOBS, f"{seq}.{ext}")


def load(seq):
    try:
        with open(job_path(seq)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def save(job):
    job["mtime"] = int(time.time())
    tmp = job_path(job["seq"], "json.tmp")
    with open(tmp, "w") as f:
        json.dump(job, f, indent=1)
    os.replace(tmp, job_path(job["seq"]))


def all_jobs():
    out = []
    for name in os.listdir(JOBS):
        if name.endswith(".json") and name[:-5].isdigit():
            j = load(int(name[:-5]))
            if j:
                out.append(j)
    return sorted(out, key=lambda j: j["seq"])


def next_seq():
    p = os.path.join(SPOOL, "seq")
    with open(p) as f:
        seq = int(f.read().strip() or "1")
    with open(p + ".tmp", "w") as f:
        f.write(f"{seq + 1}\n")
    os.replace(p + ".tmp", p)
    return seq


def full_id(seq):
    return f"{seq}.{SERVER}"


def parse_jobid(text):
    """'12', '12.pbs-tb', '12.pbs-tb.domain' -> 12; anything else -> None."""
    m = re.fullmatch(r"(\d+)(?:\.([A-Za-z0-9_.-]+))?", text)
    if not m:
        return None
    server = m.group(2)
    if server and server.split(".")[0] != SERVER:
        return None
    return int(m.group(1))


def operand_full_id(text):
    """What real qstat prints for an operand: the id with the server name appended."""
    m = re.fullmatch(r"(\d+)(\.[^@]*)?", text)
    if m and not m.group(2):
        return f"{m.group(1)}.{SERVER}"
    return text


# ------------------------------------------------------------------------------------------
# values
# ------------------------------------------------------------------------------------------
def hms(seconds):
    seconds = max(0, int(seconds))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def parse_walltime(text):
    """PBS duration: [[HH:]MM:]SS[.ms] or plain seconds."""
    if not re.fullmatch(r"\d+(:\d+){0,2}(\.\d+)?", text):
        raise ValueError(text)
    parts = [float(p) for p in text.split(":")]
    secs = 0.0
    for p in parts:
        secs = secs * 60 + p
    return int(secs)


SIZE_RE = re.compile(r"(\d+)([kmgtp]?)(b|w)?", re.I)
SIZE_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50}


def parse_size(text):
    m = SIZE_RE.fullmatch(text)
    if not m:
        raise ValueError(text)
    n = int(m.group(1)) << SIZE_SHIFT[m.group(2).lower()]
    if (m.group(3) or "b").lower() == "w":
        n *= 8
    return n


def norm_size(text):
    """'8GB' -> '8gb' (PBS keeps the given magnitude, lower case)."""
    m = SIZE_RE.fullmatch(text)
    if not m:
        raise ValueError(text)
    return f"{int(m.group(1))}{m.group(2).lower()}{(m.group(3) or 'b').lower()}"


def kb(nbytes):
    return f"{(nbytes + 1023) // 1024}kb"


def cnv_size(text):
    """qstat -a memory column (cnv_size in qstat.c without -M/-G)."""
    m = SIZE_RE.fullmatch(text)
    if not m:
        return text
    letters = " kmgtp?"
    nval = int(m.group(1))
    out = letters.index(m.group(2).lower() or " ")
    while nval > 9999:
        nval = (nval + 1023) >> 10
        out += 1
    return f"{nval}{letters[out].strip()}b"


def is_numeric(value):
    return isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value) is not None


def jsonish(value):
    """pbs_json prints values that look like numbers without quotes."""
    if is_numeric(value):
        return float(value) if "." in value else int(value)
    return value


def ctime(epoch):
    return time.ctime(epoch)


# ------------------------------------------------------------------------------------------
# attributes as PBS shows them
# ------------------------------------------------------------------------------------------
def resource_list(job):
    r = dict(job["resources"])
    out = {}
    for k, v in r.items():
        out[k] = str(v)
    out["nodect"] = "1"
    out["place"] = job.get("place", "free")
    out["select"] = job["select"]
    out["walltime"] = hms(job["walltime_s"])
    return dict(sorted(out.items()))


def resources_used(job, now):
    """Zero until the mom has reported (a job ending sooner keeps zeros, as with real PBS)."""
    end = job.get("obittime") or now
    reported = job.get("session_id") is not None
    return {
        "cpupercent": "0",
        "cput": hms(job.get("cput_s", 0) if reported else 0),
        "mem": f"{job.get('maxrss_kb', 0) if reported else 0}kb",
        "ncpus": str(job["resources"]["ncpus"]),
        "vmem": f"{job.get('maxrss_kb', 0) if reported else 0}kb",
        "walltime": hms((end - job["stime"]) * TIME_SCALE if reported else 0),
    }


def exec_vnode(job):
    r = job["resources"]
    parts = [f"{job['node']}:ncpus={r['ncpus']}"]
    if "mem" in r:
        parts.append(f"mem={parse_size(r['mem']) // 1024}kb")
    if int(r.get("ngpus", 0)):
        parts.append(f"ngpus={r['ngpus']}")
    return "(" + ":".join(parts) + ")"


def job_attributes(job, now):
    """Ordered (name, value) pairs; value is a str or a dict of str (Resource_List etc.)."""
    st = job["state"]
    ran = job.get("stime") is not None
    a = [("Job_Name", job["name"]), ("Job_Owner", job["owner"])]
    if ran:
        a.append(("resources_used", resources_used(job, now)))
    a += [("job_state", st), ("queue", job["queue"]), ("server", SERVER)]
    if job.get("account"):
        a.append(("Account_Name", job["account"]))
    a += [("Checkpoint", "u"), ("ctime", ctime(job["ctime"])), ("Error_Path", job["err_path"])]
    if ran and job.get("node"):
        a += [("exec_host", job["exec_host"]), ("exec_vnode", exec_vnode(job))]
    a += [
        ("Hold_Types", job["hold"]),
        ("Join_Path", job["join"]),
        ("Keep_Files", job["keep"]),
        ("Mail_Points", job.get("mail_points", "a")),
    ]
    if job.get("mail_users"):
        a.append(("Mail_Users", job["mail_users"]))
    a += [
        ("mtime", ctime(job["mtime"])),
        ("Output_Path", job["out_path"]),
        ("Priority", str(job.get("priority", 0))),
        ("qtime", ctime(job["qtime"])),
        ("Rerunable", "True" if job.get("rerunable", True) else "False"),
        ("Resource_List", resource_list(job)),
    ]
    if ran:
        a.append(("stime", ctime(job["stime"])))
    if st == "F" and job.get("obittime"):
        a.append(("obittime", ctime(job["obittime"])))
    if job.get("session_id"):
        a.append(("session_id", str(job["session_id"])))
    if ran and job.get("jobdir"):
        a.append(("jobdir", job["jobdir"]))
    if job.get("shell"):
        a.append(("Shell_Path_List", job["shell"]))
    a.append(("substate", str(job["substate"])))
    a.append(("Variable_List", dict(job["variables"])))
    if job.get("comment"):
        a.append(("comment", job["comment"]))
    if job.get("etime"):
        a.append(("etime", ctime(job["etime"])))
    if job.get("run_count"):
        a.append(("run_count", str(job["run_count"])))
    if st == "F" and ran:
        a.append(("Stageout_status", "1"))
    if st == "F" and job.get("exit_status") is not None:
        a.append(("Exit_status", str(job["exit_status"])))
    a.append(("Submit_arguments", job["submit_args"]))
    if job.get("exec_argv"):
        # `qsub -- cmd args` stores the command as JSDL, as real PBS does
        argv = job["exec_argv"]
        a.append(("executable", f"<jsdl-hpcpa:Executable>{argv[0]}</jsdl-hpcpa:Executable>"))
        if argv[1:]:
            a.append(("argument_list",
                      "".join(f"<jsdl-hpcpa:Argument>{x}</jsdl-hpcpa:Argument>" for x in argv[1:])))
    if st == "F":
        a.append(("history_timestamp", str(job.get("obittime") or job["mtime"])))
    a += [("project", job.get("project") or "_pbs_project_default"), ("Submit_Host", job["submit_host"])]
    return a


def job_json(job, now):
    out = {}
    for name, value in job_attributes(job, now):
        if isinstance(value, dict):
            out[name] = {k: jsonish(v) for k, v in value.items()}
        else:
            out[name] = jsonish(value)
    return out


def prt_attr(name, resource, value):
    """qstat.c prt_attr(): wrap long values at commas, continuation lines start with a tab."""
    out = f"    {name}" + (f".{resource}" if resource else "") + " = "
    start = len(name) + 7 + (len(resource) + 1 if resource else 0)
    first = True
    pieces = [p for p in value.split(",") if p != ""] if value else []
    for i, piece in enumerate(pieces):
        if len(piece) + start < 78:
            out += piece
            start += len(piece)
        else:
            if not first:
                out += "\n\t"
                start = 9
            for ch in piece:
                out += ch
                start += 1
                if start > 78:
                    start = 8
                    out += "\n\t"
        if i + 1 < len(pieces):
            first = False
            out += ","
    return out


def job_text_full(job, now):
    lines = [f"Job Id: {full_id(job['seq'])}"]
    for name, value in job_attributes(job, now):
        if name == "Variable_List":
            lines.append(prt_attr(name, None, ",".join(f"{k}={v}" for k, v in value.items())))
        elif isinstance(value, dict):
            for k, v in value.items():
                lines.append(prt_attr(name, k, v))
        else:
            lines.append(prt_attr(name, None, value))
    return "\n".join(lines) + "\n\n"


def trunc(value, width):
    return value if len(value) <= width else value[: width - 1] + "*"


def job_row(job, now, wide=False):
    jid = full_id(job["seq"])
    user = job["owner"].split("@")[0]
    cput = hms(job.get("cput_s", 0)) if job.get("stime") is not None else "0"
    if wide:
        return f"{trunc(jid, 30):<30} {trunc(job['name'], 15):<15} {trunc(user, 15):<15}  {cput:>8} {job['state']:>1} {trunc(job['queue'], 15):<15}"
    return f"{trunc(jid, 17):<17} {trunc(job['name'], 16):<16} {trunc(user, 16):<16}  {cput:>8} {job['state']:>1} {trunc(job['queue'], 16):<16}"


TABLE_HEADER = (
    "Job id            Name             User              Time Use S Queue\n"
    "----------------  ---------------- ----------------  -------- - -----\n"
)
TABLE_HEADER_WIDE = (
    "Job id                         Name            User             Time Use S Queue\n"
    "-----------------------------  --------------- ---------------  -------- - ---------------\n"
)


def alt_header():
    return (
        f"\n{SERVER}: \n"
        + f"{'':60s}{'Req' + chr(39) + 'd':<7s}{'Req' + chr(39) + 'd':<8s}Elap\n"
        + "Job ID          Username Queue    Jobname    SessID NDS TSK Memory Time  S Time\n"
        + "--------------- -------- -------- ---------- ------ --- --- ------ ----- - -----\n"
    )


def alt_row(job, now):
    blank = " -- "
    r = job["resources"]
    sess = str(job["session_id"]) if job.get("session_id") else blank
    mem = cnv_size(r["mem"]) if "mem" in r else blank
    ran = job.get("stime") is not None
    elap = hms((job.get("obittime") or now) - job["stime"]) if ran else blank
    return (
        f"{trunc(full_id(job['seq']), 15):<15.15} {trunc(job['owner'].split('@')[0], 8):<8.8} "
        f"{trunc(job['queue'], 8):<8.8} {trunc(job['name'], 10):<10.10} {trunc(sess, 6):>6.6} "
        f"{'1':>3.3} {str(r['ncpus']):>3.3} {mem:>6.6} {hms(job['walltime_s']):>5.5} "
        f"{job['state']:1.1} {elap:>5.5}"
    )


# ------------------------------------------------------------------------------------------
# qsub
# ------------------------------------------------------------------------------------------
QSUB_OPTS = "a:A:c:C:e:fhIj:J:k:l:m:M:N:o:p:P:q:r:R:S:u:v:VW:Xz"
QSUB_USAGE = """usage: qsub [-a date_time] [-A account_string] [-c interval]
\t[-C directive_prefix] [-e path] [-f ] [-h ] [-I [-X]] [-j oe|eo] [-J X-Y[:Z]]
\t[-k keep] [-l resource_list] [-m mail_options] [-M user_list]
\t[-N jobname] [-o path] [-p priority] [-P project] [-q queue] [-r y|n]
\t[-R o|e|oe] [-S path] [-u user_list] [-W otherattributes=value...]
\t[-S path] [-u user_list] [-W otherattributes=value...]
\t[-v variable_list] [-V ] [-z] [script | -- command [arg1 ...]]
       qsub --version
"""


class QsubError(Exception):
    def __init__(self, msg, code=2):
        super().__init__(msg)
        self.code = code


def apply_opt(req, opt, val):
    o = opt[1]
    if o in "aIJX":
        raise QsubError(f"qsub: option -{o} is not supported by the hpcjupyter test-bed PBS emulator")
    if o == "A":
        req["account"] = val
    elif o == "e":
        req["err"] = val
    elif o == "o":
        req["out"] = val
    elif o == "h":
        req["hold"] = "u"
    elif o == "j":
        if val not in ("oe", "eo", "n"):
            raise QsubError("qsub: illegal -j value")
        req["join"] = val
    elif o == "k":
        if not re.fullmatch(r"n|[oed]{1,3}", val):
            raise QsubError("qsub: illegal -k value")
        req["keep"] = val
    elif o == "l":
        for item in split_resources(val):
            if "=" not in item:
                raise QsubError(f"qsub: illegal -l value\n{QSUB_USAGE}")
            k, v = item.split("=", 1)
            req["l"][k] = v
    elif o == "m":
        req["mail_points"] = val
    elif o == "M":
        req["mail_users"] = val
    elif o == "N":
        if not val or any(c.isspace() for c in val) or len(val) > 236:
            raise QsubError("qsub: illegal -N value")
        req["name"] = val
    elif o == "p":
        req["priority"] = int(val)
    elif o == "P":
        req["project"] = val
    elif o == "q":
        req["queue"] = val.split("@")[0]
    elif o == "r":
        req["rerunable"] = val.lower().startswith("y")
    elif o == "S":
        req["shell"] = val
    elif o == "v":
        for item in val.split(","):
            if item:
                req["v"].append(item)
    elif o == "V":
        req["V"] = True
    elif o == "W":
        key, _, value = val.strip().partition("=")
        if key == "depend" and not valid_depend(value):
            # qsub.c handle_attribute_errors(): an ECL error on a -W attribute is
            # "qsub: illegal -W value", exit 2
            raise QsubError("qsub: illegal -W value", 2)
        req["W"].append(val)
    elif o == "z":
        req["z"] = True
    elif o == "C":
        req["prefix"] = val
    # -c, -f, -R, -u: accepted, no effect here


DEPEND_TYPES = ("on", "synccount", "after", "afterok", "afternotok", "afterany", "before",
                "beforeok", "beforenotok", "beforeany", "syncwith", "runone")


def valid_depend(value):
    """parse_depend.c (OpenPBS 23.06): comma-separated `type:value[:value...]` with a known
    type, at least one value and no empty value (`on`/`synccount` take a count, others job ids)."""
    if not value:
        return False
    for item in value.split(","):
        parts = re.split(r"(?<!\\):", item.strip())
        if parts[0] not in DEPEND_TYPES or len(parts) < 2 or "" in parts:
            return False
    return True


def split_resources(val):
    """Split '-l a=b,c=d' at commas (select chunks use ':' and '+', never commas)."""
    return [p for p in val.split(",") if p]


def parse_directives(script_text, prefix):
    args = []
    for line in script_text.splitlines():
        s = line.strip()
        if s.startswith(prefix):
            rest = s[len(prefix):]
            if rest and not rest[0].isspace():
                continue
            try:
                args += shlex.split(rest, comments=False)
            except ValueError as e:
                raise QsubError(f"qsub: directive error: {line.strip()} ({e})")
            continue
        if s == "" or s.startswith("#"):
            continue
        break  # first executable line ends the directives
    return args


def parse_select(spec, req_res, known):
    """'1:ncpus=4:mem=8gb:ngpus=1' -> resources; only one chunk is supported."""
    if "+" in spec:
        raise QsubError("qsub: the test-bed PBS emulator supports a single select chunk only")
    parts = spec.split(":")
    count = 1
    if parts and parts[0].isdigit():
        count = int(parts.pop(0))
    if count != 1:
        raise QsubError("qsub: the test-bed PBS emulator supports select=1:... only")
    for p in parts:
        if "=" not in p:
            raise QsubError("qsub: Illegal attribute or resource value Resource_List.select",
                            PBSE_BADATVAL % 256)
        k, v = p.split("=", 1)
        if k not in known:
            # req_quejob.c validate_select: PBSE_UNKRESC, "Unknown resource: NAME" (exit 187)
            raise QsubError(f"qsub: Unknown resource: {k}", PBSE_UNKRESC % 256)
        req_res[k] = v
    return "1:" + ":".join(parts) if parts else "1"


def build_job(args, stdin_text, env, cwd):
    req = {"l": {}, "v": [], "W": [], "hold": "n", "join": "n", "keep": "n", "V": False, "z": False,
           "prefix": "#PBS"}
    submit_args = " ".join(args)
    exec_argv = None
    if "--" in args:
        i = args.index("--")
        args, exec_argv = args[:i], args[i + 1:]
        if not exec_argv:
            raise QsubError(QSUB_USAGE)
    try:
        cmd_opts, rest = getopt.getopt(args, QSUB_OPTS)
    except getopt.GetoptError as e:
        raise QsubError(f"qsub: {e.msg}\n{QSUB_USAGE}")
    for o, v in cmd_opts:
        if o == "-C":
            req["prefix"] = v
    if exec_argv is not None:
        if rest:
            raise QsubError(QSUB_USAGE)
        script = "#!/bin/sh\n" + " ".join(shlex.quote(a) for a in exec_argv) + "\n"
        default_name = os.path.basename(exec_argv[0])
    elif rest:
        if len(rest) > 1:
            raise QsubError(QSUB_USAGE)
        path = rest[0]
        try:
            with open(path, errors="surrogateescape") as f:
                script = f.read()
        except OSError:
            raise QsubError("qsub: script file:: No such file or directory", 2)
        default_name = os.path.basename(path)
    else:
        script = stdin_text()
        default_name = "STDIN"
    # directives first, then the command line (the command line wins)
    try:
        dir_opts, dir_rest = getopt.getopt(parse_directives(script, req["prefix"]), QSUB_OPTS)
    except getopt.GetoptError as e:
        raise QsubError(f"qsub: directive error: {e.msg}")
    for o, v in dir_opts + cmd_opts:
        apply_opt(req, o, v)

    res = {}
    select = None
    walltime_s = parse_walltime(CFG["default_walltime"])
    place = None
    chunk_resources = ("ncpus", "mem", "ngpus", "mpiprocs", "ompthreads")
    job_wide = []      # -l ncpus=... style resources: the server refuses them beside select
    for k, v in req["l"].items():
        if k == "select":
            select = v
        elif k == "walltime":
            try:
                walltime_s = parse_walltime(v)
            except ValueError:
                raise QsubError("qsub: Illegal attribute or resource value Resource_List.walltime",
                                PBSE_BADATVAL % 256)
        elif k == "place":
            place = v
        elif k in chunk_resources:
            res[k] = v
            job_wide.append(k)
        else:
            raise QsubError(f"qsub: Unknown resource Resource_List.{k}", PBSE_UNKRESC % 256)

    # what the server checks, once the command's own checks passed
    queue = req.get("queue") or CFG["default_queue"]
    if queue not in CFG["queues"]:
        raise QsubError("qsub: Unknown queue", PBSE_UNKQUE % 256)
    if select is not None:
        if job_wide:
            # req_quejob.c: PBSE_INVALJOBRESC with the resource's name (reply_send.c adds ": name")
            raise QsubError('qsub: "-lresource=" cannot be used with "select" or "place", '
                            f"resource is: {job_wide[0]}", PBSE_INVALJOBRESC % 256)
        select = parse_select(select, res, chunk_resources)
    # a job without select gets one built from its resources, placed "pack" (server default)
    place = place or ("free" if select is not None else "pack")
    for k in list(res):
        if k in ("ncpus", "ngpus", "mpiprocs", "ompthreads"):
            if not res[k].isdigit():
                raise QsubError(f"qsub: Illegal attribute or resource value Resource_List.{k}")
            res[k] = int(res[k])
        elif k == "mem":
            try:
                res[k] = norm_size(res[k])
            except ValueError:
                raise QsubError("qsub: Illegal attribute or resource value Resource_List.mem")
    res.setdefault("ncpus", 1)
    if select is None:
        chunk = [f"ncpus={res['ncpus']}"] + [f"{k}={res[k]}" for k in ("mem", "ngpus") if k in res]
        select = "1:" + ":".join(chunk)

    user = pwd.getpwuid(os.getuid())
    submit_host = CFG["submit_host"]
    # qsub.c: PBS_O_HOME (or "/"), then LANG, LOGNAME, PATH, MAIL, SHELL, TZ when set
    variables = [("PBS_O_HOME", env.get("HOME", "/"))]
    for name in ("LANG", "LOGNAME", "PATH", "MAIL", "SHELL", "TZ"):
        if name in env:
            variables.append((f"PBS_O_{name}", env[name]))
    variables += [
        ("PBS_O_WORKDIR", workdir(env, cwd)),
        ("PBS_O_SYSTEM", os.uname().sysname),
        ("PBS_O_QUEUE", queue),
        ("PBS_O_HOST", submit_host),
    ]
    extra = []
    if req["V"]:
        extra += [(k, v) for k, v in env.items() if not k.startswith("PBS_O_")]
    for item in req["v"]:
        if "=" in item:
            k, v = item.split("=", 1)
        else:
            k, v = item, env.get(item, "")
        extra.append((k, v))
    seen = {k for k, _ in variables}
    for k, v in extra:
        if k not in seen:
            variables.append((k, v))
            seen.add(k)

    now = int(time.time())
    job = {
        "name": req.get("name") or default_name,
        "owner": f"{user.pw_name}@{submit_host}",
        "user": user.pw_name,
        "queue": queue,
        "account": req.get("account"),
        "project": req.get("project"),
        "ctime": now, "qtime": now, "mtime": now,
        "etime": None if req["hold"] != "n" else now,
        "stime": None, "obittime": None,
        "state": "H" if req["hold"] != "n" else "Q",
        "substate": 20 if req["hold"] != "n" else 10,
        "hold": req["hold"],
        "join": req["join"],
        "keep": req["keep"],
        "mail_points": req.get("mail_points", "a"),
        "mail_users": req.get("mail_users"),
        "priority": req.get("priority", 0),
        "rerunable": req.get("rerunable", True),
        "shell": req.get("shell"),
        "resources": res,
        "select": select,
        "place": place,
        "walltime_s": walltime_s,
        "variables": variables,
        "submit_args": submit_args,
        "submit_host": submit_host,
        "workdir": workdir(env, cwd),
        "exec_argv": exec_argv,
        "out_req": req.get("out"),
        "err_req": req.get("err"),
        "W": req["W"],
        "z": req["z"],
        "exit_status": None,
        "session_id": None,
        "run_count": 0,
        "delete_requested": False,
        "comment": None,
    }
    return job, script


def workdir(env, cwd):
    """qsub.c: $PWD when it names the current directory (automounter friendly), else getcwd."""
    pwd_env = env.get("PWD")
    try:
        if pwd_env and os.path.samefile(pwd_env, cwd):
            return pwd_env
    except OSError:
        pass
    return cwd


def resolve_path(spec, job, kind):
    """-o/-e value -> 'host:/abs/path' as PBS stores it (Output_Path / Error_Path)."""
    seq = job["seq"]
    default = f"{job['name']}.{kind}{seq}"
    host = job["submit_host"]
    if not spec:
        return f"{host}:{os.path.join(job['workdir'], default)}"
    if ":" in spec and not spec.startswith("/"):
        host, spec = spec.split(":", 1)
    path = spec if os.path.isabs(spec) else os.path.join(job["workdir"], spec)
    if os.path.isdir(path) or spec.endswith("/"):
        path = os.path.join(path, default)
    return f"{host}:{os.path.normpath(path)}"


def start_runner(seq):
    log = open(job_path(seq, "runner.log"), "ab")
    subprocess.Popen(
        [CFG["python"], CFG["pbsemu"], "runner", str(seq)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True, close_fds=True, cwd="/",
    )


def main_qsub(argv):
    if argv[:1] == ["--version"]:
        print(f"pbs_version = {CFG['pbs_version']}")
        return 0
    try:
        job, script = build_job(argv, lambda: sys.stdin.read(), dict(os.environ), os.getcwd())
    except QsubError as e:
        print(str(e).rstrip("\n"), file=sys.stderr)
        return e.code
    with Lock():
        seq = next_seq()
        job["seq"] = seq
        job["out_path"] = resolve_path(job.pop("out_req"), job, "o")
        job["err_path"] = resolve_path(job.pop("err_req"), job, "e")
        with open(job_path(seq, "SC"), "w", errors="surrogateescape") as f:
            f.write(script)
        save(job)
    start_runner(seq)
    if not job["z"]:
        print(full_id(seq))
    return 0


# ------------------------------------------------------------------------------------------
# qstat
# ------------------------------------------------------------------------------------------
QSTAT_USAGE = """usage: 
qstat [-f] [-J] [-p] [-t] [-x] [-E] [-F format | -w] [-D delim] [ job_identifier... | destination... ]
qstat [-a|-i|-r|-H|-T] [-J] [-t] [-u user] [-n] [-s] [-G|-M] [-1] [-w]
\t[ job_identifier... | destination... ]
qstat -Q [-f] [-F format] [-D delim] [ destination... ]
qstat -q [-G|-M] [ destination... ]
qstat -B [-f] [-F format] [-D delim] [ server_name... ]
qstat --version
"""


def main_qstat(argv):
    if argv[:1] == ["--version"]:
        print(f"pbs_version = {CFG['pbs_version']}")
        return 0
    try:
        opts, operands = getopt.getopt(argv, "afF:D:xwu:HEtJpns1irGMTQ")
    except getopt.GetoptError:
        sys.stderr.write(QSTAT_USAGE)
        return 2
    if any(o == "-Q" for o, _ in opts):
        return qstat_queues(opts, operands)
    full = False
    fmt = "default"
    history = False
    wide = False
    alt = False
    users = None
    only_hist = False
    for o, v in opts:
        if o == "-f":
            full = True
        elif o == "-F":
            if v.lower() not in ("json", "default"):
                sys.stderr.write("qstat: the test-bed PBS emulator supports -F json only\n")
                return 2
            fmt = v.lower()
        elif o == "-x":
            history = True
        elif o == "-H":
            history = only_hist = alt = True
        elif o == "-w":
            wide = True
        elif o == "-u":
            users = set(v.split(","))
            alt = True
        elif o in ("-a", "-n", "-s", "-1", "-i", "-r", "-G", "-M", "-T"):
            alt = True
    if fmt == "json" and not full:
        sys.stderr.write("qstat: conflicting options.\n" + QSTAT_USAGE)
        return 2
    if wide and fmt == "json":
        sys.stderr.write("qstat: option w cannot be used with -F\n" + QSTAT_USAGE)
        return 2

    now = int(time.time())
    shown = []     # jobs to display, in order
    rc = 0
    errors = []
    with Lock():
        jobs = all_jobs()
    by_seq = {j["seq"]: j for j in jobs}

    def visible(j):
        if users is not None and j["user"] not in users:
            return False
        if only_hist:
            return j["state"] == "F"
        return history or j["state"] != "F"

    if not operands:
        shown = [j for j in jobs if visible(j)]
    for op in operands:
        if op[:1].isdigit():
            seq = parse_jobid(op)
            j = by_seq.get(seq) if seq is not None else None
            if j is None:
                errors.append(f"qstat: Unknown Job Id {operand_full_id(op)}")
                rc = PBSE_UNKJOBID
            elif j["state"] == "F" and not history:
                errors.append(
                    f"qstat: {operand_full_id(op)} Job has finished, use -x or -H to obtain historical job information"
                )
                rc = PBSE_HISTJOBID
            else:
                shown.append(j)
        else:
            queue = op.split("@")[0]
            if queue and queue not in CFG["queues"]:
                errors.append(f"qstat: Unknown queue destination {op}")
                rc = PBSE_UNKQUE
                continue
            shown += [j for j in jobs if visible(j) and (not queue or j["queue"] == queue)]

    out = []
    if fmt == "json":
        doc = {"timestamp": now, "pbs_version": CFG["pbs_version"], "pbs_server": SERVER}
        if shown:
            doc["Jobs"] = {full_id(j["seq"]): job_json(j, now) for j in shown}
        out.append(json.dumps(doc, indent=4, separators=(",", ":"), ensure_ascii=False) + "\n")
    elif full:
        out += [job_text_full(j, now) for j in shown]
    elif alt:
        if shown:
            out.append(alt_header())
            out += [alt_row(j, now) + "\n" for j in shown]
    else:
        if shown:
            out.append(TABLE_HEADER_WIDE if wide else TABLE_HEADER)
            out += [job_row(j, now, wide) + "\n" for j in shown]
    for e in errors:
        sys.stderr.write(e + "\n")
    sys.stdout.write("".join(out))
    sys.stdout.flush()
    return rc % 256


QUEUE_HEADER = (
    "Queue              Max   Tot Ena Str   Que   Run   Hld   Wat   Trn   Ext Type\n"
    "---------------- ----- ----- --- --- ----- ----- ----- ----- ----- ----- ----\n"
)


def queue_attributes(name, jobs):
    """Ordered attributes of an execution queue, as `qstat -Qf` shows them (no limits set)."""
    mine = [j for j in jobs if j["queue"] == name and j["state"] != "F"]
    count = {s: sum(1 for j in mine if j["state"] == s) for s in "QHRE"}
    running = [j for j in mine if j["state"] in ("R", "E")]
    mem = sum(parse_size(j["resources"]["mem"]) for j in running if "mem" in j["resources"])
    return [
        ("queue_type", "Execution"),
        ("total_jobs", str(len(mine))),
        ("state_count", f"Transit:0 Queued:{count['Q']} Held:{count['H']} Waiting:0 "
                        f"Running:{count['R']} Exiting:{count['E']} Begun:0 "),
        ("resources_assigned", {
            "mem": kb(mem) if mem else "0mb",
            "ncpus": str(sum(int(j["resources"]["ncpus"]) for j in running)),
            "nodect": str(len(running)),
        }),
        ("enabled", "True"),
        ("started", "True"),
    ]


def queue_row(name, attrs):
    """display_statque() in qstat.c: %-16s then ten %5s/%3s columns and the type cut to 4."""
    a = dict(attrs)
    counts = dict(item.split(":") for item in a["state_count"].split())
    qtype = trunc(a["queue_type"], 4)
    return (f"{trunc(name, 16):<16} {'0':>5} {a['total_jobs']:>5} {'yes':>3} {'yes':>3} "
            f"{counts['Queued']:>5} {counts['Running']:>5} {counts['Held']:>5} "
            f"{counts['Waiting']:>5} {counts['Transit']:>5} {counts['Exiting']:>5} {qtype:<4}\n")


def qstat_queues(opts, operands):
    """`qstat -Q [-f] [-F json] [queue...]`; an unknown queue is PBSE_UNKQUE (exit 170)."""
    full = any(o == "-f" for o, _ in opts)
    fmt = next((v.lower() for o, v in opts if o == "-F"), "default")
    with Lock():
        jobs = all_jobs()
    rc = 0
    shown = []
    for op in operands or CFG["queues"]:
        name = op.split("@")[0]
        if name not in CFG["queues"]:
            # qstat.c: "qstat: %s " (the server's message) then the queue name
            sys.stderr.write(f"qstat: Unknown queue {op}\n")
            rc = PBSE_UNKQUE
            continue
        shown.append((name, queue_attributes(name, jobs)))
    out = []
    if fmt == "json":
        doc = {"timestamp": int(time.time()), "pbs_version": CFG["pbs_version"], "pbs_server": SERVER,
               "Queue": {n: {k: ({r: jsonish(x) for r, x in v.items()} if isinstance(v, dict) else jsonish(v))
                             for k, v in attrs} for n, attrs in shown}}
        out.append(json.dumps(doc, indent=4, separators=(",", ":"), ensure_ascii=False) + "\n")
    elif full:
        for name, attrs in shown:
            lines = [f"Queue: {name}"]
            for k, v in attrs:
                if isinstance(v, dict):
                    lines += [prt_attr(k, r, x) for r, x in v.items()]
                else:
                    lines.append(prt_attr(k, None, v))
            out.append("\n".join(lines) + "\n\n")
    elif shown:
        out.append(QUEUE_HEADER)
        out += [queue_row(name, attrs) for name, attrs in shown]
    sys.stdout.write("".join(out))
    sys.stdout.flush()
    return rc % 256


# ------------------------------------------------------------------------------------------
# qselect
# ------------------------------------------------------------------------------------------
QSELECT_USAGE = """usage: qselect [-a [op]date_time] [-A account_string] [-c [op]interval]
\t[-h hold_list] [-H] [-J] [-l resource_list] [-N name] [-p [op]priority]
\t[-q destination] [-r y|n] [-s states] [-t subopt[op]date_time] [-T] [-P project_name]
\t[-x] [-u user_name]
       qselect --version
"""


def main_qselect(argv):
    """`qselect [-N name] [-u user] [-q queue] [-s states] [-x|-H]`: matching job ids, one a
    line (qselect.c prints pbs_selectjob's list); history jobs only with -x/-H."""
    if argv[:1] == ["--version"]:
        print(f"pbs_version = {CFG['pbs_version']}")
        return 0
    try:
        opts, operands = getopt.getopt(argv, "a:A:c:h:HJl:N:p:q:r:s:t:Tu:xP:")
    except getopt.GetoptError:
        sys.stderr.write(QSELECT_USAGE)
        return 2
    if operands:
        sys.stderr.write(QSELECT_USAGE)
        return 2
    o = dict(opts)
    history = "-x" in o or "-H" in o
    with Lock():
        jobs = all_jobs()
    for j in jobs:
        if (j["state"] == "F" and not history) or ("-H" in o and j["state"] != "F"):
            continue
        if "-N" in o and j["name"] != o["-N"]:
            continue
        if "-u" in o and j["user"] not in o["-u"].split(","):
            continue
        if "-q" in o and j["queue"] != o["-q"].split("@")[0]:
            continue
        if "-s" in o and j["state"] not in o["-s"]:
            continue
        print(full_id(j["seq"]))
    return 0


# ------------------------------------------------------------------------------------------
# qdel / qrls
# ------------------------------------------------------------------------------------------
def main_qdel(argv):
    try:
        opts, ids = getopt.getopt(argv, "W:x")
    except getopt.GetoptError:
        ids = []
        opts = [("?", "")]
    if any(o == "?" for o, _ in opts) or not ids:
        sys.stderr.write("usage:\n\tqdel [-W force|suppress_email=X] [-x] job_identifier...\n\tqdel --version\n")
        return 2
    purge_history = any(o == "-x" for o, _ in opts)
    rc = 0
    with Lock():
        for op in ids:
            seq = parse_jobid(op) if op[:1].isdigit() else None
            j = load(seq) if seq is not None else None
            if seq is None and not op[:1].isdigit():
                sys.stderr.write(f"qdel: illegally formed job identifier: {op}\n")
                rc = 1
                continue
            if j is None:
                sys.stderr.write(f"qdel: Unknown Job Id {op}\n")
                rc = PBSE_UNKJOBID
                continue
            if j["state"] == "F":
                if purge_history:
                    for ext in ("json", "SC", "runner.log"):
                        try:
                            os.unlink(job_path(seq, ext))
                        except FileNotFoundError:
                            pass
                    continue
                sys.stderr.write(f"qdel: Job has finished {op}\n")
                rc = PBSE_HISTJOBID
                continue
            j["delete_requested"] = True
            j["deleted_by"] = f"{pwd.getpwuid(os.getuid()).pw_name}@{CFG['submit_host']}"
            save(j)
    return rc % 256


def main_qrls(argv):
    try:
        opts, ids = getopt.getopt(argv, "h:")
    except getopt.GetoptError:
        ids = []
    if not ids:
        sys.stderr.write("usage: qrls [-h hold_list] job_identifier ...\n       qrls --version\n")
        return 2
    rc = 0
    with Lock():
        for op in ids:
            seq = parse_jobid(op)
            j = load(seq) if seq is not None else None
            if j is None:
                sys.stderr.write(f"qrls: Unknown Job Id {operand_full_id(op)}\n")
                rc = PBSE_UNKJOBID
                continue
            if j["state"] == "F":
                sys.stderr.write(f"qrls: Job has finished {operand_full_id(op)}\n")
                rc = PBSE_HISTJOBID
                continue
            if j["hold"] != "n":
                j["hold"] = "n"
                if j["state"] == "H":
                    j["state"], j["substate"] = "Q", 10
                    j["etime"] = int(time.time())
                save(j)
    return rc % 256


# ------------------------------------------------------------------------------------------
# runner: server + scheduler for one job (login host, as the job owner)
# ------------------------------------------------------------------------------------------
def node_free(jobs, node):
    cap = CFG["nodes"][node]
    used = {"ncpus": 0, "mem": 0, "ngpus": 0}
    slots = set()
    for j in jobs:
        if j["state"] in ("R", "E") and j.get("node") == node:
            r = j["resources"]
            used["ncpus"] += int(r["ncpus"])
            used["mem"] += parse_size(r["mem"]) if "mem" in r else 0
            used["ngpus"] += int(r.get("ngpus", 0))
            slots.add(j.get("slot", 0))
    free = {
        "ncpus": cap["ncpus"] - used["ncpus"],
        "mem": parse_size(cap["mem"]) - used["mem"],
        "ngpus": cap["ngpus"] - used["ngpus"],
    }
    slot = 0
    while slot in slots:
        slot += 1
    return free, slot


def schedule(job):
    """Pick a node for the job or return (None, comment)."""
    jobs = all_jobs()
    want = {
        "ncpus": int(job["resources"]["ncpus"]),
        "mem": parse_size(job["resources"]["mem"]) if "mem" in job["resources"] else 0,
        "ngpus": int(job["resources"].get("ngpus", 0)),
    }
    totals = {k: 0 for k in want}
    avail = {k: 0 for k in want}
    for node in CFG["nodes"]:
        cap = CFG["nodes"][node]
        free, slot = node_free(jobs, node)
        for k in want:
            totals[k] += parse_size(cap[k]) if k == "mem" else cap[k]
            avail[k] += max(0, free[k])
        if all(free[k] >= want[k] for k in want):
            return node, slot, None
    for k in ("ncpus", "mem", "ngpus"):
        biggest = max((parse_size(c[k]) if k == "mem" else c[k]) for c in CFG["nodes"].values())
        if want[k] > biggest:
            # judged against empty nodes, so available = total: those of the biggest node
            # (openpbs-qstat-f-queued-never-run.txt: "ncpus (R: 64 A: 2 T: 2)" on a 2-cpu host)
            return None, None, (
                f"Can Never Run: Insufficient amount of resource: {k} "
                f"(R: {fmt_res(k, want[k])} A: {fmt_res(k, biggest)} T: {fmt_res(k, biggest)})"
            )
    for k in ("ncpus", "mem", "ngpus"):
        if want[k] > 0:
            return None, None, (
                f"Not Running: Insufficient amount of resource: {k} "
                f"(R: {fmt_res(k, want[k])} A: {fmt_res(k, avail[k])} T: {fmt_res(k, totals[k])})"
            )
    return None, None, "Not Running: Insufficient resources"


def fmt_res(k, v):
    return kb(v) if k == "mem" else str(v)


def finish(seq, exit_status, killed=None, cput_s=0, maxrss_kb=0):
    """The job ran and ended: substate and comment suffix as the real server writes them
    (92 "and finished"; 93 "and failed" or "and exceeded resource walltime"; 91 after qdel)."""
    with Lock():
        j = load(seq)
        if killed == "qdel":
            substate, suffix = 91, f" and terminated by {j.get('deleted_by') or j['owner']}"
        elif killed == "walltime":
            substate, suffix = 93, " and exceeded resource walltime"
        elif exit_status == 0:
            substate, suffix = 92, " and finished"
        else:
            substate, suffix = 93, " and failed"
        j["state"], j["substate"] = "F", substate
        j["obittime"] = int(time.time())
        j["exit_status"] = exit_status
        j["cput_s"] = cput_s
        j["maxrss_kb"] = maxrss_kb
        if j.get("comment"):
            j["comment"] = j["comment"] + suffix
        save(j)


def runner(seq):
    sched_delay = float(CFG["sched_delay"])
    node = None
    while True:
        with Lock():
            j = load(seq)
            if j is None:
                return 0
            now = time.time()
            if j["delete_requested"]:
                # deleted before it ran: no obittime, no Exit_status, comment kept + suffix
                j["state"], j["substate"] = "F", 91
                if j.get("comment"):
                    j["comment"] += " and terminated"
                save(j)
                return 0
            if j["hold"] != "n":
                if j["state"] != "H":
                    j["state"], j["substate"] = "H", 20
                    save(j)
            elif j["state"] == "H":
                j["state"], j["substate"] = "Q", 10
                j["etime"] = int(now)
                save(j)
            elif now - j["qtime"] >= sched_delay:
                node, slot, comment = schedule(j)
                if node:
                    r = j["resources"]
                    ncpus = int(r["ncpus"])
                    j.update(
                        state="R", substate=41, node=node, slot=slot, stime=int(now),
                        exec_host=f"{node}/{slot}" + (f"*{ncpus}" if ncpus > 1 else ""),
                        run_count=j.get("run_count", 0) + 1,
                        jobdir=user_home(),   # PBS_JOBDIR: the home
                    )
                    j["comment"] = (
                        time.strftime("Job run at %a %b %d at %H:%M on ", time.localtime(now))
                        + exec_vnode(j)
                    )
                    save(j)
                    break
                if j.get("comment") != comment:
                    j["comment"] = comment
                    save(j)
        time.sleep(0.25)
    return run_job(seq, node)


def run_job(seq, node):
    mom_argv = [CFG["python"], CFG["pbsemu"], "mom", str(seq), node]
    if CFG.get("mom_launch", "ssh") == "local":     # unit tests: the "node" is this machine
        cmd = mom_argv
    else:
        cmd = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-T", node] + mom_argv
    try:
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    except OSError as e:
        print(f"runner: cannot start ssh: {e}", flush=True)
        finish(seq, JOB_EXEC_FAIL1)
        return 1
    lines = []

    def reader():
        for line in p.stdout:
            lines.append(line.strip())

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    killed = None
    started_at = None
    while p.poll() is None:
        time.sleep(0.2)
        with Lock():
            j = load(seq)
        started = next((l for l in lines if l.startswith("STARTED ")), None)
        if started and started_at is None:
            started_at = time.time()
        ended = any(l.startswith("ENDED") for l in lines)
        if (started and not j.get("session_id") and not ended
                and time.time() - started_at >= STATUS_DELAY):
            with Lock():
                j = load(seq)
                j["session_id"] = int(started.split()[1])
                j["substate"] = 42          # PRERUN (41) -> RUNNING once the mom has started it
                save(j)
        if killed:
            continue
        if j["delete_requested"]:
            killed = "qdel"
            send_kill(p, "KILL qdel")
        elif (time.time() - j["stime"]) * TIME_SCALE > j["walltime_s"]:
            killed = "walltime"
            used = max(int((time.time() - j["stime"]) * TIME_SCALE), j["walltime_s"] + 1)
            send_kill(p, f"KILL walltime {used} {j['walltime_s']}")
    t.join(timeout=5)
    ex = next((l for l in lines if l.startswith("EXIT ")), None)
    if ex is None:
        print(f"runner: mom on {node} ended without an exit status (ssh rc {p.returncode})", flush=True)
        finish(seq, JOB_EXEC_FAIL1)
        return 1
    _, status, cput_s, maxrss = ex.split()
    status = int(status)
    ran = next((float(l.split()[1]) for l in lines if l.startswith("ENDED ")), None)
    if ran is not None and ran < STATUS_DELAY and j.get("session_id") is not None:
        # Ended before the mom's first report: the runner's own reading was late (a busy machine),
        # not the job; PBS reports no session id or use for such a job.
        with Lock():
            j = load(seq)
            j.pop("session_id", None)
            save(j)
    if killed == "walltime":
        status = JOB_EXEC_KILL_WALLTIME
    with Lock():
        j = load(seq)
        j["state"], j["substate"] = "E", 51
        save(j)
    finish(seq, status, killed, cput_s=int(float(cput_s)), maxrss_kb=int(maxrss))
    return 0


def send_kill(p, line):
    try:
        p.stdin.write(line + "\n")
        p.stdin.flush()
        p.stdin.close()
    except (BrokenPipeError, ValueError, OSError):
        pass


# ------------------------------------------------------------------------------------------
# mom: runs the job on the compute node (over ssh, as the job owner)
# ------------------------------------------------------------------------------------------
def session_pids(sid):
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) == sid:
                pids.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return pids


def kill_session(sid, sig):
    """SIG once to every process of the job's session: the script's process group (the session
    leader's) at once -- one by one, a busy machine could let bash see its `sleep` die first and
    exit 143 itself, where PBS records 271 (signalled) --, then any process in another group."""
    try:
        os.killpg(sid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in session_pids(sid):
        try:
            if os.getpgid(pid) != sid:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass


def strip_host(path):
    return path.split(":", 1)[1] if ":" in path else path


def user_home():
    """The job owner's home (passwd), or the config's "home": the unit tests run jobs as whoever
    runs them, and a login shell in root's own home would run its .profile (pyenv, ...)."""
    return CFG.get("home") or pwd.getpwuid(os.getuid()).pw_dir


def mom(seq, node=None):
    j = load(seq)
    node = node or socket.gethostname()
    jid = full_id(seq)
    user = pwd.getpwuid(os.getuid())
    spool = CFG["mom_spool"].format(node=node)
    os.makedirs(os.path.join(spool, "aux"), exist_ok=True)
    tmpdir = f"/tmp/pbs.{jid}"
    os.makedirs(tmpdir, mode=0o700, exist_ok=True)
    nodefile = os.path.join(spool, "aux", jid)
    with open(nodefile, "w") as f:
        f.write(f"{node}\n")
    ncpus = int(j["resources"]["ncpus"])
    # -v/-V variables and the PBS_O_* set, then what the mom itself defines
    env = {k: v for k, v in j["variables"]}
    env.setdefault("PATH", "/bin:/usr/bin")
    env.update({
        "HOME": user_home(), "LOGNAME": user.pw_name, "USER": user.pw_name,
        "SHELL": j.get("shell") or user.pw_shell, "MAIL": f"/var/mail/{user.pw_name}",
        "PBS_ENVIRONMENT": "PBS_BATCH", "ENVIRONMENT": "BATCH",
        "PBS_JOBID": jid, "PBS_JOBNAME": j["name"], "PBS_QUEUE": j["queue"],
        "PBS_JOBDIR": tmpdir, "TMPDIR": tmpdir, "PBS_NODEFILE": nodefile,
        "PBS_NODENUM": "0", "PBS_TASKNUM": "1", "PBS_MOMPORT": "15003",
        "NCPUS": str(ncpus), "OMP_NUM_THREADS": str(j["resources"].get("ompthreads", ncpus)),
    })
    if j.get("account"):
        env["PBS_ACCOUNT"] = j["account"]

    keep = j["keep"]
    direct_o = "d" in keep and "o" in keep
    direct_e = "d" in keep and "e" in keep
    out_final = strip_host(j["out_path"])
    err_final = strip_host(j["err_path"])
    out_spool = os.path.join(spool, f"{jid}.OU")
    err_spool = os.path.join(spool, f"{jid}.ER")
    out_file = out_final if direct_o else out_spool
    err_file = err_final if direct_e else err_spool
    outf = open(out_file, "ab", buffering=0)
    if j["join"] == "oe":
        errf = outf
    elif j["join"] == "eo":
        errf = open(err_file, "ab", buffering=0)
        outf.close()
        outf = errf
    else:
        errf = open(err_file, "ab", buffering=0)

    shell = j.get("shell") or user.pw_shell or "/bin/sh"
    script = job_path(seq, "SC")
    child = subprocess.Popen(
        ["-" + os.path.basename(shell), script], executable=shell, cwd=tmpdir, env=env,
        stdin=subprocess.DEVNULL, stdout=outf, stderr=errf, start_new_session=True, close_fds=True,
    )
    sid = child.pid
    print(f"STARTED {sid}", flush=True)
    began = time.monotonic()

    kill_state = {"reason": None}

    def watch_stdin():
        line = sys.stdin.readline()   # a KILL line, or EOF when the runner/ssh goes away
        parts = line.split()
        kill_state["reason"] = parts[1] if len(parts) > 1 else "eof"
        if kill_state["reason"] == "walltime" and len(parts) >= 4:
            msg = f"=>> PBS: job killed: walltime {parts[2]} exceeded limit {parts[3]}\n"
            try:
                errf.write(msg.encode())
            except OSError:
                pass
        kill_session(sid, signal.SIGTERM)
        deadline = time.time() + float(CFG["kill_delay"])
        while time.time() < deadline and session_pids(sid):
            time.sleep(0.2)
        kill_session(sid, signal.SIGKILL)

    threading.Thread(target=watch_stdin, daemon=True).start()
    _, wstatus, ru = os.wait4(child.pid, 0)
    print(f"ENDED {time.monotonic() - began:.3f}", flush=True)  # how long it ran, as the mom saw it
    # whatever the job left behind in its session dies with it
    kill_session(sid, signal.SIGTERM)
    time.sleep(0.2)
    kill_session(sid, signal.SIGKILL)
    if os.WIFSIGNALED(wstatus):
        status = 256 + os.WTERMSIG(wstatus)
    else:
        status = os.WEXITSTATUS(wstatus)
    for f in {outf, errf}:
        f.close()
    # stage out (PBS copies the spooled files back at the end of the job)
    if not direct_o and os.path.exists(out_spool):
        copy_out(out_spool, out_final)
    if not direct_e and os.path.exists(err_spool):
        copy_out(err_spool, err_final)
    shutil.rmtree(tmpdir, ignore_errors=True)
    try:
        os.unlink(nodefile)
    except OSError:
        pass
    cput = ru.ru_utime + ru.ru_stime
    print(f"EXIT {status} {cput:.0f} {ru.ru_maxrss}", flush=True)
    return 0


def copy_out(src, dst):
    try:
        shutil.copyfile(src, dst)
        os.unlink(src)
    except OSError as e:
        # PBS keeps undeliverable output in the user's home, under undelivered/
        home = user_home()
        os.makedirs(os.path.join(home, "undelivered"), exist_ok=True)
        shutil.move(src, os.path.join(home, "undelivered", os.path.basename(src)))
        print(f"mom: stage-out of {dst} failed: {e}", file=sys.stderr, flush=True)


def main(argv):
    if len(argv) >= 2 and argv[0] == "runner":
        return runner(int(argv[1]))
    if len(argv) >= 2 and argv[0] == "mom":
        return mom(int(argv[1]), argv[2] if len(argv) > 2 else None)
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
