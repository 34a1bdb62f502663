"""searchAllResources' query matcher (keyless.cloudasset.query, issue #20): time of one `:` match of
a phrase of `--words` words against a field of `--field-words` words, for the shift-and Keyless uses
and for the naive window comparison it replaced, as figures (the naive one grows with the product).

    .venv/bin/python bench/asset_query.py [--field-words 100000] [--words 500]
"""

from __future__ import annotations

import argparse
import time

from keyless.cloudasset.query import has_phrase, words


def naive(field: str, value: str) -> bool:
    have, want = words(field), words(value)
    return any(have[i:i + len(want)] == want for i in range(len(have) - len(want) + 1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--field-words", type=int, default=100_000)
    parser.add_argument("--words", type=int, default=500)
    args = parser.parse_args()
    field = "a-" * args.field_words + "b"
    phrase = "a " * (args.words - 1) + "c"  # matches nowhere: every window is compared to the end
    for name, match in (("shift-and", has_phrase), ("naive window", naive)):
        started = time.perf_counter()
        assert not match(field, phrase)
        print(f"{name:>13}: {time.perf_counter() - started:8.3f} s  "
              f"({args.field_words} field words, {args.words} query words)")
    started = time.perf_counter()
    assert has_phrase(field, "a* " * (args.words - 1) + "b*")
    print(f"{'prefix words':>13}: {time.perf_counter() - started:8.3f} s")


if __name__ == "__main__":
    main()
