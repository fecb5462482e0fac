"""What the `runway` provider itself costs per poll of an upstream task: our CPU time, not the
upstream's. Prints a table.

    .venv/bin/python benchmarks/runway_provider.py             # about 20 s
    .venv/bin/python benchmarks/runway_provider.py --polls 500 --reps 5

The fake Runway API (tests/support/fake_runway.py) runs in a child process, so this process's
`time.process_time()` is the provider's alone. A render with N polls and one with a single poll
do the same create, download, decode and poster; the difference over N − 1 is what one poll
adds: the HTTP request through httpx, the JSON, the state mapping, the progress callback, the
jittered wait. Each figure is the minimum over `--reps` repetitions. The bar (issue 11): under
5 ms a poll.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from skimage import data

from stillmotion import net
from stillmotion.providers.base import RenderJob
from stillmotion.providers.runway import RunwayProvider
from stillmotion.services.catalogue import RunwaySettings

ROOT = Path(__file__).resolve().parents[1]
TEST_HOST = "127.0.0.2"  # where the fake listens (tests/support/fake_runway.py)
KEY = "key_" + "be" * 64
BAR_MS = 5.0
_CHILD = """
import sys
from tests.support.fake_runway import FakeRunway, running, succeeded
fake = FakeRunway(api_key=sys.argv[1])
print(fake.base_url, flush=True)
for line in sys.stdin:
    n = int(line)
    fake.script(*[running(i / n) for i in range(n - 1)], succeeded())
    print("ok", flush=True)
"""


def _photo() -> bytes:
    image = Image.fromarray(data.astronaut())
    image.thumbnail((256, 256))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polls", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--interval", type=float, default=0.001, help="poll_interval, seconds")
    args = parser.parse_args()

    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, KEY],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin and child.stdout
    try:
        base_url = child.stdout.readline().strip()
        provider = RunwayProvider(
            RunwaySettings(
                model="gen4_turbo",
                models={"gen-3": "gen4_turbo"},
                base_url=base_url,
                api_key=KEY,
                poll_interval=args.interval,
                output_networks=net.parse_networks(f"{TEST_HOST}/32"),
            ),
            service_id="runway-i2v",
        )
        job = RenderJob(
            generation_id="gen_bench",
            source=_photo(),
            options={"version": "gen-3", "aspect_ratio": "16:9", "duration": 5, "prompt": "x"},
        )

        def run(polls: int) -> tuple[float, float, float]:
            child.stdin.write(f"{polls}\n")  # type: ignore[union-attr]
            child.stdin.flush()  # type: ignore[union-attr]
            assert child.stdout.readline().strip() == "ok"  # type: ignore[union-attr]
            with tempfile.TemporaryDirectory() as tmp:
                cpu, thread, wall = time.process_time(), time.thread_time(), time.perf_counter()
                provider.render(
                    job, workdir=Path(tmp), on_progress=lambda f, s: None, should_cancel=bool
                )
                return (
                    time.process_time() - cpu,
                    time.thread_time() - thread,
                    time.perf_counter() - wall,
                )

        run(1)  # warm: imports, connection pool, PyAV
        ones, manys = [], []
        for _ in range(args.reps):
            ones.append(run(1))
            manys.append(run(args.polls))
        before = provider.counters()["polls"]
        assert before == (1 + args.polls) * args.reps + 1, provider.counters()
        n = args.polls - 1
        per_poll = [(min(m[i] for m in manys) - min(o[i] for o in ones)) / n for i in range(3)]
    finally:
        child.stdin.close()
        child.wait(10)

    print(f"runway provider, {args.polls} polls vs 1, min of {args.reps} reps")
    print(f"{'':28}{'1 poll':>10}{f'{args.polls} polls':>12}{'per poll':>12}")
    rows = [("CPU, process (ms)", 0), ("CPU, this thread (ms)", 1), ("wall (ms)", 2)]
    for label, i in rows:
        one, many = min(o[i] for o in ones) * 1e3, min(m[i] for m in manys) * 1e3
        print(f"{label:28}{one:10.1f}{many:12.1f}{per_poll[i] * 1e3:12.3f}")
    verdict = "met" if per_poll[0] * 1e3 < BAR_MS else "NOT met"
    print(f"bar: our CPU per poll < {BAR_MS:g} ms: {verdict} ({per_poll[0] * 1e3:.3f} ms)")


if __name__ == "__main__":
    main()
