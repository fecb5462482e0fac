"""`serve` keeps its connection cap inside the process's file-descriptor limit: it raises the
soft limit towards the hard one as far as the cap needs, and lowers the cap (with a warning)
when even the hard limit is too small. Each case runs in a child process with its own limit."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

from stillmotion.server import files_needed

PROBE = (
    "import json, logging, resource; logging.basicConfig();"
    "from stillmotion.server import fit_connections;"
    "cap = fit_connections(1000);"
    "print(json.dumps([cap, resource.getrlimit(resource.RLIMIT_NOFILE)[0]]))"
)


def _fit(soft: int, hard: int) -> tuple[int, int, str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
        capture_output=True,
        text=True,
        check=True,
    )
    cap, soft_after = json.loads(done.stdout)
    return cap, soft_after, done.stderr


def test_a_low_soft_limit_is_raised_to_what_the_cap_needs():
    cap, soft, log = _fit(256, 4096)
    assert cap == 1000
    assert soft == files_needed(1000)
    assert "lowered" not in log


def test_a_low_hard_limit_lowers_the_cap_and_says_so():
    cap, soft, log = _fit(512, 512)
    assert soft == 512
    assert 1 <= cap < 1000 and files_needed(cap) <= 512 < files_needed(cap + 10)
    assert f"STILLMOTION_MAX_CONNECTIONS=1000 lowered to {cap}" in log


def test_a_limit_that_fits_is_left_alone():
    cap, soft, log = _fit(8192, 8192)
    assert (cap, soft, log) == (1000, 8192, "")
