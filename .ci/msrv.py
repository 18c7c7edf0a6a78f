#!/usr/bin/env python3
"""The declared minimum Rust version (`rust-version`) against what else sets a floor.

Only one toolchain is installed where CI runs, so the declared version is never built. Two
checks keep it honest without it: clippy's `incompatible_msrv` lint (in .ci/run's clippy runs)
flags standard-library items newer than `rust-version`, and this script checks the floors
that lint does not see: each published crate's edition, and the `rust-version` of every crate
that a published crate builds (normal and build dependencies, every feature, every target),
as cargo resolved them. Cargo's resolver (resolver 3) already prefers versions that fit the
declared one; this fails if it could not, or if someone raised a floor by hand.

Language features newer than the declared version (syntax, lints, `cargo` manifest keys) are
not checked by either: only building with that toolchain would.
"""

import json
import subprocess
import sys

# The first stable Rust of each edition.
EDITION_FLOOR = {"2015": (1, 0, 0), "2018": (1, 31, 0), "2021": (1, 56, 0), "2024": (1, 85, 0)}


def version(text):
    parts = [int(part) for part in text.split(".")][:3]
    return tuple(parts + [0] * (3 - len(parts)))


def shown(ver):
    return ".".join(str(part) for part in (ver[:2] if ver[2:] == (0,) else ver))


def main():
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--all-features"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    meta = json.loads(out)
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    published = [
        packages[i] for i in meta["workspace_members"] if packages[i].get("publish") != []
    ]

    failed = False
    for root in published:
        declared = version(root["rust_version"] or "0")
        edition = EDITION_FLOOR[root["edition"]]
        if edition > declared:
            print(f"{root['name']}: edition {root['edition']} needs Rust {shown(edition)}, "
                  f"above its rust-version {shown(declared)}")
            failed = True

        # Everything the crate builds for its users: no dev-dependencies.
        seen, todo = set(), [root["id"]]
        while todo:
            node = nodes[todo.pop()]
            for dep in node["deps"]:
                if any(kind["kind"] != "dev" for kind in dep["dep_kinds"]) and dep["pkg"] not in seen:
                    seen.add(dep["pkg"])
                    todo.append(dep["pkg"])
        floors = sorted(
            ((version(packages[i]["rust_version"]), packages[i]["name"], packages[i]["version"])
             for i in seen
             if packages[i].get("rust_version") and i not in meta["workspace_members"]),
            reverse=True,
        )
        highest = floors[0] if floors else ((0, 0, 0), "none", "")
        at_highest = [f"{name} {ver}" for floor, name, ver in floors if floor == highest[0]]
        print(f"{root['name']}: rust-version {shown(declared)}; edition {root['edition']} "
              f"needs {shown(edition)}; of {len(seen)} dependencies the highest rust-version is "
              f"{shown(highest[0])} ({', '.join(at_highest[:4])}{', ..' if len(at_highest) > 4 else ''})")
        over = [f"{name} {ver} needs {shown(floor)}" for floor, name, ver in floors if floor > declared]
        if over:
            print(f"  above {shown(declared)}: {'; '.join(over)}")
            failed = True

    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
