"""A stand-in for tf_speed.py / points.py in the same-run harness's tests:

    python fake_point.py SIDE --_point POINT [options...]

appends ``SIDE POINT options...`` to the file ``$FAKE_POINT_LOG`` and prints ``POINT_RESULT {json}``
with figures that depend on the side and on the round (the how-many-th call for that side and
point): hvae 100, 300, 200 per round (×1.5 for the reference's 100, 80, 60 ...). A point whose name
holds "fail" exits 3 with two lines on stderr; "kill" kills itself with SIGKILL, as does every point of
the side "oom" (a side the kernel's out-of-memory killer stops every time).
"""

import json
import os
import signal
import sys

side, _, point, *options = sys.argv[1:]
log = os.environ["FAKE_POINT_LOG"]
with open(log, "a+") as f:
    f.seek(0)
    k = sum(1 for line in f if line.split()[:2] == [side, point])
    f.write(" ".join([side, point, *options]) + "\n")
if "fail" in point:
    sys.stderr.write("first line\nlast line\n")
    sys.exit(3)
if "kill" in point or side == "oom":
    os.kill(os.getpid(), signal.SIGKILL)
value = {"hvae": (100, 300, 200), "reference": (100, 80, 60)}[side][k % 3]
result = {"median_s": 1 / value, "seqs_per_s": value, "examples_per_s": value, "peak_rss_mb": 512.0 * (k + 1)}
if side == "hvae":
    result.update(floor_per_s=400.0, floor_flops_per_s=2e11, seconds=10.0 + k, files=1150, windows=5108)
print("noise before the result")
print("POINT_RESULT " + json.dumps(result), flush=True)
