"""TOTP codes for the test bed's MFA logins, as an authenticator app gives them."""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import struct
import time
from pathlib import Path

LOCK_DIR = Path("/srv")   # beside the bed (/srv/hpcj-testbed): one issuer per machine
TOTP_STEP = 30


def totp_code(key: bytes, step: int, digits: int = 6) -> str:
    """RFC 6238 TOTP (HMAC-SHA1, 30 s steps) -- what `oathtool --totp -b SECRET` prints."""
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    value = (struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % (10 ** digits)
    return f"{value:0{digits}d}"


class Totp:
    """An authenticator app for one bed user, shared by every test process on this machine.

    pam_oath refuses a code whose 30-second step is not newer than the last one it accepted
    (replay), so several logins within one step need the following steps' codes (accepted within
    its window). Test processes running side by side (pytest -n) would hand out the same step
    twice; the step last handed out is kept in a file under an exclusive lock instead.
    """

    def __init__(self, bed_dir: Path, user: str, secret_hex: str) -> None:
        self.oath_file = Path(bed_dir) / "etc" / "users.oath"
        # pam_oath's window= (testbed.sh): steps either side of now it accepts
        self.window = int(json.loads((Path(bed_dir) / "testbed.json").read_text())["oath_window"])
        self.user = user
        self.key = bytes.fromhex(secret_hex)
        self.issued_file = LOCK_DIR / f".hpcj-totp-{user}"

    def at_step(self, step: int) -> str:
        return totp_code(self.key, step)

    def _last_used_step(self) -> int:
        """The step pam_oath last accepted for this user (found in its users.oath line)."""
        try:
            lines = self.oath_file.read_text().splitlines()
        except OSError:
            return -1
        fields = next((line.split() for line in lines if line.split()[1:2] == [self.user]), [])
        if len(fields) < 6:
            return -1
        now = int(time.time()) // TOTP_STEP
        return max((s for s in range(now - 40, now + self.window + 2) if self.at_step(s) == fields[5]), default=-1)

    def code(self) -> str:
        """A code accepted now, for a step never used or handed out before; waits (as a user
        waits for the app's next code) when the window is used up."""
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        with open(self.issued_file, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            issued = int(handle.read().strip() or -1)
            step = max(int(time.time()) // TOTP_STEP, self._last_used_step() + 1, issued + 1)
            while step > int(time.time()) // TOTP_STEP + self.window - 1:
                time.sleep(1)
            handle.seek(0)
            handle.truncate()
            handle.write(str(step))
            return self.at_step(step)
