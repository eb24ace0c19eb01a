"""Interactive logins on a real terminal (pexpect): the key + TOTP host and the password-only host,
with both transports.

openssh: one prompt serves a whole session across separate invocations (submit, connect, ls,
cancel): the first one opens the ControlMaster and every later one reuses it. fabric (paramiko)
has no multiplexing: by design each invocation logs in once, so the same session asks once per
process (four prompts, four logins) -- and never more than that. A wrong answer is asked again,
the way ssh asks. The sshd's own log counts the completed logins: these tests hold the bed
exclusively (`disruptive`) and count only the lines logged after they started.
"""

from __future__ import annotations

import re
import time

import pexpect
import pytest
from clihelpers import port_and_token
from tbcli import control_sockets, laptop_port, master_pid, short_cli
from tbprofiles import profile_text

from hpcjupyter.probe import api_status

pytestmark = pytest.mark.e2e

MFA_PROMPT = r"One-time password \(OATH\) for `hpcuser': "
PW_PROMPT = r"hpcuser@[\w.-]+'s password: "
URL = r"http://127\.0\.0\.1:\d+/\S+\?token=\w+"


class Terminal:
    """Runs hpcjupyter invocations on a pty as a user at a terminal would, counting the prompts."""

    def __init__(self, cli, prompt: str) -> None:
        self.cli, self.prompt = cli, prompt
        self.prompts = 0
        self.transcript = ""

    def spawn(self, *args: str) -> pexpect.spawn:
        return self.cli.spawn(*args)

    def answer_until(self, child: pexpect.spawn, until: str | type, answers: list[str], timeout: float = 180) -> str:
        """Answer prompts (in order, from ``answers``) until ``until`` is seen; returns the match."""
        while True:
            i = child.expect([self.prompt, until], timeout=timeout)
            self.transcript += child.before + (child.after if isinstance(child.after, str) else "")
            if i == 1:
                return child.after if isinstance(child.after, str) else ""
            self.prompts += 1
            assert answers, f"an unexpected prompt; so far:\n{self.transcript}"
            child.sendline(answers.pop(0))

    def run(self, *args: str, answers: tuple[str, ...] = ()) -> tuple[int | None, str]:
        """One invocation to its end: (exit status, what it printed)."""
        start = len(self.transcript)
        child = self.spawn(*args)
        todo = list(answers)
        self.answer_until(child, pexpect.EOF, todo)
        child.close()
        assert not todo, f"prompts not shown: {todo}; output:\n{self.transcript[start:]}"
        return child.exitstatus, self.transcript[start:]


def job_of(output: str) -> str:
    match = re.search(r'"job_id": "([^"]+)"', output)
    assert match, output
    return match.group(1)


def bad_totp(testbed) -> str:
    """A six-digit code no step of pam_oath's window accepts now."""
    now = time.time()
    window = testbed.info["oath_window"] + 1
    valid = {testbed.totp_at(now + 30 * k) for k in range(-window, window + 1)}
    return next(c for c in (f"{n:06d}" for n in range(100000, 999999, 7919)) if c not in valid)


def whole_session(testbed, cli, site: str, which: str, prompt: str, secret, cancel_cmd: str,
                  transport: str = "openssh") -> None:
    """submit -> connect -> ls -> cancel as four invocations: one prompt and one login in all
    (openssh), or one of each per invocation (fabric)."""
    fabric = transport == "fabric"
    term = Terminal(cli, prompt)
    offset = testbed.log_size(which)
    code, out = term.run("submit", "--site", site, "--json", answers=(secret(),))
    assert code == 0, out
    job = job_of(out)
    assert term.prompts == 1, term.transcript
    if fabric:
        assert control_sockets(cli) == [], "fabric must not start an OpenSSH master"
        sock, pid = None, None
    else:
        (sock,) = control_sockets(cli)
        pid = master_pid(sock)
        assert pid is not None
    again = (secret(),) if fabric else ()  # fabric: each process logs in once
    connect = term.spawn("connect", job, "--no-browser")
    try:
        url = term.answer_until(connect, URL, list(again))
        port, token = port_and_token(url)
        assert api_status(port, "/", token) == 200
        assert api_status(port, "/", None) == 403

        code, out = term.run("ls", answers=(secret(),) if fabric else ())
        assert code == 0 and re.search(rf"^{re.escape(job)}\s+{site}\s+RUNNING\s+node\d", out, re.M), out
        code, out = term.run("cancel", job, answers=(secret(),) if fabric else ())
        assert code == 0 and f"cancelled job {job}" in out, out
        term.answer_until(connect, pexpect.EOF, [], timeout=120)  # connect sees the job end (no new login)
        connect.close()
        assert re.search(rf"job {re.escape(job)} on {site} was cancelled", term.transcript), term.transcript[-2000:]
    finally:
        connect.close(force=True)
        testbed.ssh(testbed.login_alias, cancel_cmd.format(job=job))

    logins = 4 if fabric else 1
    assert term.prompts == logins, f"{term.prompts} prompts:\n{term.transcript}"
    assert len(re.findall(prompt, term.transcript)) == logins, term.transcript
    accepted = testbed.accepted_since(which, offset)
    assert len(accepted) == logins, accepted
    if not fabric:
        assert control_sockets(cli) == [sock] and master_pid(sock) == pid, "the master was replaced"
        ours = laptop_port(pid, testbed.ports[which])
        assert ours is not None
        assert f" port {ours} " in accepted[0], accepted
    assert secret.last not in term.transcript  # answers are read without echo


class Answers:
    """The right answer, remembered so the test can check it was never echoed."""

    def __init__(self, make) -> None:
        self.make, self.last = make, ""

    def __call__(self) -> str:
        self.last = self.make()
        return self.last


@pytest.fixture
def cli():
    with short_cli() as c:
        yield c


# fabric: jump only (forward through the same connection is the simpler case of it, and every
# MFA login costs a fresh TOTP step: pam_oath refuses replays).
@pytest.mark.parametrize(("tunnel", "transport"), [("forward", "openssh"), ("jump", "openssh"), ("jump", "fabric")])
def test_mfa_one_prompt_per_login_for_submit_connect_ls_cancel(cli, disruptive, tunnel: str, transport: str) -> None:
    """With jump, the hop to the node is a client of the master (openssh) or a second login inside
    the connection (fabric, key only): no extra login, no extra prompt on the MFA host."""
    testbed = disruptive
    cli.write_profile("tb-mfa", profile_text(testbed, host=testbed.mfa_alias, tunnel=tunnel, transport=transport))
    whole_session(testbed, cli, "tb-mfa", "mfa", MFA_PROMPT, Answers(testbed.totp), "scancel {job}", transport)


@pytest.mark.parametrize("transport", ["openssh", "fabric"])
def test_password_host_one_prompt_per_login_for_submit_connect_ls_cancel(cli, disruptive, transport: str) -> None:
    testbed = disruptive
    cli.write_profile("tb-pw", profile_text(testbed, host=testbed.pw_alias, scheduler="pbs", transport=transport))
    whole_session(testbed, cli, "tb-pw", "pw", PW_PROMPT, Answers(lambda: testbed.password), "qdel {job}",
                  transport)


@pytest.mark.parametrize("transport", ["openssh", "fabric"])
@pytest.mark.parametrize("which", ["mfa", "pw"])
def test_wrong_answer_is_asked_again(cli, disruptive, which: str, transport: str) -> None:
    testbed = disruptive
    alias, prompt = (testbed.mfa_alias, MFA_PROMPT) if which == "mfa" else (testbed.pw_alias, PW_PROMPT)
    wrong = bad_totp(testbed) if which == "mfa" else testbed.password + "-wrong"
    cli.write_profile("tb-ask", profile_text(testbed, host=alias, transport=transport))
    term = Terminal(cli, prompt)
    offset = testbed.log_size(which)
    right = testbed.totp() if which == "mfa" else testbed.password
    code, _ = term.run("status", "987654321", "--site", "tb-ask", answers=(wrong, right))
    assert term.prompts == 2, term.transcript
    # Logged in: the scheduler answered (an id it does not know), no ssh error.
    assert code == 1 and "not known to the scheduler on tb-ask" in term.transcript, term.transcript
    assert wrong not in term.transcript and right not in term.transcript
    assert len(testbed.accepted_since(which, offset)) == 1
    if transport == "fabric":
        if which == "pw":  # (not with TOTP: a fresh step each time; whole_session covers it there)
            # No login outlives a fabric process: the next invocation asks once more, and only once.
            code, out = term.run("status", "987654321", "--site", "tb-ask", answers=(testbed.password,))
            assert code == 1 and "not known to the scheduler" in out and term.prompts == 3, out
            assert len(testbed.accepted_since(which, offset)) == 2
        return
    # The login is kept: the next invocation asks nothing.
    code, out = term.run("status", "987654321", "--site", "tb-ask")
    assert code == 1 and "not known to the scheduler" in out and term.prompts == 2, out
    assert len(testbed.accepted_since(which, offset)) == 1
