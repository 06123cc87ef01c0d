"""Start one SeaweedFS S3 server for a mutation run and print its endpoint; stop on Ctrl-C.

Why: mutmut forks a fresh pytest per mutant, so the session-scoped ``s3_server``
fixture would start (and stop) a server for every mutant of ``storage/s3.py``.
With this running, export its endpoint and the fixture uses it instead::

    python scripts/s3_for_mutation.py /tmp/s3-mutation &   # prints http://127.0.0.1:PORT
    ZSTACK_TEST_S3_ENDPOINT=http://127.0.0.1:PORT python scripts/mutate.py storage/s3.py
"""

from __future__ import annotations

import contextlib
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.s3server import running_s3_server


def main() -> int:
    """Run the server in the folder given (default: a fresh one in the current folder)."""
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "s3-for-mutation")
    with running_s3_server(folder) as server:
        print(server.endpoint, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
