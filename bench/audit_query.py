"""Cloud Logging queries over a large audit log (issue #2's seed query, kept in tests/audit as a
correctness test on 6,000 entries): loads N entries of three projects into a fresh store (SQLite,
or --database URL) and times seed 001's principalSubject query and a principalEmail query, each
the newest 20 matches, as entries.list and `keyless audit read` run them.

    .venv/bin/python bench/audit_query.py [--entries 60000] [--runs 5] [--database URL]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keyless.audit import query  # noqa: E402
from keyless.config import Settings  # noqa: E402
from keyless.state import ServerState  # noqa: E402
from tests.audit.test_query import load, rows  # noqa: E402

QUERIES = {
    "seed 001 (principalSubject =~)": ('resource.type="service_account" protoPayload.methodName="GenerateAccessToken" '
                                       'protoPayload.authenticationInfo.principalSubject=~"repo:my-org/my-repo"'),
    "principalEmail =": 'protoPayload.authenticationInfo.principalEmail="deploy-sa@my-project.iam.gserviceaccount.com"',
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=60_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="keyless-bench-audit-") as tmp:
        state = ServerState(Settings(data_dir=Path(tmp) / "data", database_url=args.database))
        state.bootstrap()
        started = time.perf_counter()
        load(state, rows(args.entries, projects=("my-project", "other-project", "third-project"), seed=7))
        print(f"{args.entries:,} entries loaded in {time.perf_counter() - started:.1f} s "
              f"({'PostgreSQL' if args.database else 'SQLite'})")
        for label, text in QUERIES.items():
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                with state.db.read() as s:
                    page = query.list_entries(s, ["my-project"], text, order_by="timestamp desc", page_size=20,
                                              private={"my-project"})
                times.append((time.perf_counter() - t0) * 1000)
                assert len(page.entries) == 20
            print(f"{label}: median {statistics.median(times):.1f} ms, best {min(times):.1f} ms "
                  f"of {args.runs} (newest 20 of {args.entries:,})")
        state.db.dispose()


if __name__ == "__main__":
    main()
