"""Prompt relay against fake ssh children that print prompts the way ssh does on a terminal."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pexpect
import pytest
from fakes import FakePrompter

from hpcjupyter.errors import RemoteError
from hpcjupyter.transports.prompts import (
    TerminalPrompter,
    guess_secret,
    normalize,
    relay_prompts,
    split_prompt,
)

# A fake ssh: prints what a scenario says and reads answers from its terminal, with echo off for
# secrets (getpass, like ssh's readpassphrase) and on for public answers (like the host-key
# question). It records what it received, and exits 0 on success, 255 otherwise.
FAKE_SSH = textwrap.dedent(
    r'''
    import getpass, json, sys
    got = []
    def secret(p):
        a = getpass.getpass(p); got.append(a); return a
    def public(p):
        sys.stdout.write(p); sys.stdout.flush(); a = sys.stdin.readline().rstrip("\n"); got.append(a); return a
    def done(rc):
        json.dump(got, open(sys.argv[2], "w")); sys.exit(rc)
    s = sys.argv[1]
    if s == "password":
        for _ in range(3):
            if secret("jdoe@login.example.org's password: ") == "right":
                done(0)
            print("Permission denied, please try again.", file=sys.stderr)
        print("jdoe@login.example.org: Permission denied (password).", file=sys.stderr)
        done(255)
    if s == "hostkey-totp":
        print("The authenticity of host 'login.example.org (192.0.2.7)' can't be established.")
        print("ED25519 key fingerprint is SHA256:ixDia2wb2ISCwFG6OzXBmnsa3yi3QxaUXSWzhjBpozs.")
        print("This key is not known by any other names.")
        if public("Are you sure you want to continue connecting (yes/no/[fingerprint])? ") != "yes":
            print("Host key verification failed.", file=sys.stderr); done(255)
        print("Warning: Permanently added 'login.example.org' (ED25519) to the list of known hosts.", file=sys.stderr)
        done(0 if secret("Verification code: ") == "123456" else 255)
    if s == "oath":
        done(0 if secret("One-time password (OATH) for `jdoe': ") == "987654" else 255)
    if s == "duo":
        print("Duo two-factor login for jdoe")
        print()
        print("Enter a passcode or select one of the following options:")
        print()
        print(" 1. Duo Push to XXX-XXX-1234")
        print(" 2. Phone call to XXX-XXX-1234")
        print()
        if public("Passcode or option (1-2): ") == "1":
            print("Pushed a login request to your device...")
            print("Success. Logging you in...")
            done(0)
        done(255)
    if s == "silent-fail":
        print("ssh: connect to host x port 22: Connection refused", file=sys.stderr)
        done(255)
    if s == "hang":
        import time; time.sleep(30)
    '''
)


@pytest.fixture
def fake(tmp_path: Path):  # type: ignore[no-untyped-def]
    script = tmp_path / "fake_ssh.py"
    script.write_text(FAKE_SSH)
    record = tmp_path / "got.json"

    def spawn(scenario: str) -> pexpect.spawn:
        return pexpect.spawn(sys.executable, [str(script), scenario, str(record)], encoding="utf-8", timeout=None)

    spawn.received = lambda: json.loads(record.read_text())  # type: ignore[attr-defined]
    return spawn


def test_wrong_password_is_asked_again_as_ssh_asks(fake) -> None:  # type: ignore[no-untyped-def]
    p = FakePrompter("wrong", "right")
    out = relay_prompts(fake("password"), p)
    assert out.exitstatus == 0 and out.answered == 2
    assert p.asked == [("jdoe@login.example.org's password: ", True)] * 2
    assert p.shown == ["Permission denied, please try again."]
    assert fake.received() == ["wrong", "right"]


def test_three_wrong_passwords_end_in_failure_with_transcript(fake) -> None:  # type: ignore[no-untyped-def]
    out = relay_prompts(fake("password"), FakePrompter("a", "b", "c"))
    assert out.exitstatus == 255 and out.answered == 3
    assert "Permission denied (password)." in out.transcript


def test_host_key_question_is_public_and_its_context_shown(fake) -> None:  # type: ignore[no-untyped-def]
    p = FakePrompter("yes", "123456")
    out = relay_prompts(fake("hostkey-totp"), p)
    assert out.exitstatus == 0
    assert p.asked == [
        ("Are you sure you want to continue connecting (yes/no/[fingerprint])? ", False),
        ("Verification code: ", True),
    ]
    assert "SHA256:ixDia2wb2ISCwFG6OzXBmnsa3yi3QxaUXSWzhjBpozs" in p.shown[0]
    assert "can't be established" in p.shown[0]
    # the terminal's echo of "yes" is not shown back to the user as output
    assert not any(line.strip() == "yes" for text in p.shown for line in text.splitlines())
    assert fake.received() == ["yes", "123456"]


def test_declined_host_key_fails(fake) -> None:  # type: ignore[no-untyped-def]
    out = relay_prompts(fake("hostkey-totp"), FakePrompter("no"))
    assert out.exitstatus == 255 and "Host key verification failed." in out.transcript


def test_pam_oath_prompt_with_backquote(fake) -> None:  # type: ignore[no-untyped-def]
    p = FakePrompter("987654")
    out = relay_prompts(fake("oath"), p)
    assert out.exitstatus == 0 and p.asked == [("One-time password (OATH) for `jdoe': ", True)]


def test_duo_menu_shown_and_option_not_secret(fake) -> None:  # type: ignore[no-untyped-def]
    p = FakePrompter("1")
    out = relay_prompts(fake("duo"), p)
    assert out.exitstatus == 0
    assert p.asked == [("Passcode or option (1-2): ", False)]
    assert " 1. Duo Push to XXX-XXX-1234" in p.shown[0] and "Duo two-factor login" in p.shown[0]
    assert fake.received() == ["1"]


def test_failure_without_prompts_keeps_ssh_message(fake) -> None:  # type: ignore[no-untyped-def]
    p = FakePrompter()
    out = relay_prompts(fake("silent-fail"), p)
    assert out.exitstatus == 255 and out.answered == 0 and p.asked == []
    assert "Connection refused" in out.transcript


def test_silent_child_times_out(fake) -> None:  # type: ignore[no-untyped-def]
    child = fake("hang")
    with pytest.raises(RemoteError, match="printed nothing for 1 s"):
        relay_prompts(child, FakePrompter(), idle_timeout=1.0)
    assert not child.isalive()


def test_ready_stops_relaying_without_closing(fake) -> None:  # type: ignore[no-untyped-def]
    child = fake("hang")
    out = relay_prompts(child, FakePrompter(), ready=lambda: True)
    assert out.ready and child.isalive()
    child.terminate(force=True)


# --- pure helpers ---


@pytest.mark.parametrize(
    ("prompt", "secret"),
    [
        ("Password: ", True),
        ("jdoe@login.archer2.ac.uk's password: ", True),
        ("Enter passphrase for key '/home/u/.ssh/id_ed25519': ", True),
        ("Verification code: ", True),
        ("One-time password (OATH) for `jdoe': ", True),
        ("Are you sure you want to continue connecting (yes/no/[fingerprint])? ", False),
        ("Passcode or option (1-3): ", False),
    ],
)
def test_guess_secret_when_echo_state_is_unknown(prompt: str, secret: bool) -> None:
    assert guess_secret(prompt) is secret


def test_normalize_and_split() -> None:
    assert normalize("a\r\nb\rc") == "a\nbc"
    assert split_prompt("line one\nline two\nPassword: ") == ("line one\nline two\n", "Password: ")
    assert split_prompt("all done\n") == ("all done\n", "")


def test_terminal_prompter_without_terminal_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    with pytest.raises(RemoteError, match="no terminal"):
        TerminalPrompter().ask("Verification code: ", True)


class FakeUI:
    """The two things the prompter uses of the CLI's UI."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def stop_status(self) -> None:
        self.events.append("stop")

    def info(self, text: str) -> None:
        self.events.append(f"info:{text}")


def test_terminal_prompter_stops_the_status_line_before_asking(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    ui = FakeUI()
    monkeypatch.setattr(sys, "stdin", io.StringIO("yes\n"))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    assert TerminalPrompter(ui).ask("Continue (yes/no)? ", False) == "yes"
    assert ui.events == ["stop"]
    TerminalPrompter(ui).info("Duo two-factor login")
    assert ui.events == ["stop", "info:Duo two-factor login"]


def test_terminal_prompter_end_of_input_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    with pytest.raises(RemoteError, match="input ended"):
        TerminalPrompter(FakeUI()).ask("Passcode or option (1-3): ", False)

    def eof(*args: object, **kwargs: object) -> str:
        raise EOFError

    monkeypatch.setattr(getpass, "getpass", eof)
    with pytest.raises(RemoteError, match="input ended"):
        TerminalPrompter().ask("Password: ", True)
