#!/usr/bin/env python3
"""Checks of the Dockerfile without a Docker engine.

The runtime stage must install every shared library `sluice` links (ldd of a binary built
on this machine, which runs the same Debian release as both stages, each library mapped to
its Debian package with dpkg -S), run as a numeric non-root user that matches the chart's
runAsUser, and start `sluice` as its entrypoint; the build stage must have what rdkafka's
features need. `--negative-controls` breaks the Dockerfile in one place per control and
requires the checks to fail.

Usage: check_image.py --sluice PATH [--negative-controls]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CODENAMES = {"11": "bullseye", "12": "bookworm", "13": "trixie"}


class CheckFailed(Exception):
    pass


def ensure(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def stages(dockerfile: str) -> list[str]:
    parts = re.split(r"^(?=FROM )", dockerfile, flags=re.M)
    return [p for p in parts if p.startswith("FROM ")]


def apt_packages(stage: str) -> set[str]:
    packages = set()
    joined = stage.replace("\\\n", " ")
    for m in re.finditer(r"apt-get install ([^&\n]*)", joined):
        packages |= {w for w in m.group(1).split() if not w.startswith("-")}
    return packages


def linked_packages(binary: Path) -> dict[str, str]:
    """Shared library -> the Debian package that ships it, for everything the binary links."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    libraries = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) => (\S+)", line)
        if not m:
            continue
        path = Path(m.group(2)).resolve()
        owner = subprocess.run(["dpkg", "-S", str(path)], capture_output=True, text=True, check=False)
        if owner.returncode != 0:  # merged /usr: dpkg knows the /lib path
            owner = subprocess.run(["dpkg", "-S", m.group(2)], capture_output=True, text=True, check=False)
        ensure(owner.returncode == 0, f"no Debian package ships {m.group(1)} ({path})")
        libraries[m.group(1)] = owner.stdout.split(":")[0].strip()
    return libraries


def check(dockerfile: str, binary: Path) -> None:
    all_stages = stages(dockerfile)
    ensure(len(all_stages) >= 2, "the Dockerfile is not multi-stage")
    build, runtime = all_stages[0], all_stages[-1]
    ensure(re.match(r"FROM rust:\S+ AS \w+", build) is not None, f"the build stage is {build.splitlines()[0]}")
    ensure("cargo build --release --locked -p sluice" in build, "the build stage does not build sluice with the lock file")
    base = runtime.splitlines()[0]
    ensure(re.match(r"FROM debian:\S+-slim$", base) is not None, f"the runtime base is {base}, not a slim Debian")

    # One Debian release everywhere, the one this machine runs, so ldd here stands for the image.
    here = CODENAMES.get(Path("/etc/debian_version").read_text().split(".")[0])
    for stage in (build, runtime):
        ensure(here is not None and here in stage.splitlines()[0],
               f"{stage.splitlines()[0]} is not this machine's Debian ({here}): the ldd check would not apply")

    # What rdkafka needs to build, from the workspace's features.
    cargo = (ROOT / "Cargo.toml").read_text()
    rdkafka = re.search(r"^rdkafka = (.*)$", cargo, re.M).group(1)
    needs = {"build-essential", "pkg-config", "zlib1g-dev"}
    if "ssl" in rdkafka:
        needs.add("libssl-dev")
    if "cmake-build" in rdkafka:
        needs.add("cmake")
    missing = needs - apt_packages(build)
    ensure(not missing, f"the build stage lacks {missing} (rdkafka = {rdkafka})")

    runtime_packages = apt_packages(runtime)
    ensure("ca-certificates" in runtime_packages, "the runtime stage has no CA certificates")
    linked = linked_packages(binary)
    ensure(linked, "ldd found no libraries")
    missing = {lib: pkg for lib, pkg in linked.items() if pkg.split(":")[0] not in runtime_packages}
    ensure(not missing, f"the runtime stage does not install what sluice links: {missing}")
    ensure(not {p for p in runtime_packages if p.endswith("-dev")}, "the runtime stage installs -dev packages")

    user = re.search(r"^USER (\d+)(?::(\d+))?$", runtime, re.M)
    ensure(user is not None, "the runtime stage has no numeric USER")
    ensure(int(user.group(1)) != 0, "the image runs as root")
    values = yaml.safe_load((ROOT / "helm" / "sluice" / "values.yaml").read_text())
    ensure(values["securityContext"]["runAsUser"] == int(user.group(1)),
           f"the chart's runAsUser {values['securityContext']['runAsUser']} is not the image's USER {user.group(1)}")
    ensure(re.search(r'^ENTRYPOINT \["sluice"\]$', runtime, re.M) is not None, "the entrypoint is not sluice")
    ensure(re.search(r"^COPY --from=\w+ /usr/local/bin/sluice /usr/local/bin/sluice$", runtime, re.M) is not None,
           "sluice is not installed at /usr/local/bin/sluice")

    ignore = (ROOT / ".dockerignore").read_text().split()
    ensure({"target", ".git"} <= set(ignore), ".dockerignore does not leave out target/ and .git")


CONTROLS = [
    ("runtime lacks libssl3", "ca-certificates libc6 libgcc-s1 libssl3 zlib1g", "ca-certificates libc6 libgcc-s1 zlib1g"),
    ("runs as root", "USER 10001:10001", "USER 0:0"),
    ("single stage", "FROM rust:1.95-bookworm AS build", "FROM rust:1.95-bookworm"),
    ("another Debian at run time", "FROM debian:bookworm-slim", "FROM debian:trixie-slim"),
    ("no OpenSSL headers to build", "build-essential pkg-config libssl-dev zlib1g-dev", "build-essential pkg-config zlib1g-dev"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sluice", required=True, type=Path)
    parser.add_argument("--negative-controls", action="store_true")
    args = parser.parse_args()
    dockerfile = (ROOT / "Dockerfile").read_text()
    passed = failed = 0
    try:
        check(dockerfile, args.sluice)
        passed += 1
        print("ok    Dockerfile: multi-stage, slim runtime with exactly what sluice links, non-root")
    except CheckFailed as e:
        failed += 1
        print(f"FAIL  Dockerfile: {e}")
    if args.negative_controls:
        for name, old, new in CONTROLS:
            if dockerfile.count(old) != 1:
                failed += 1
                print(f"FAIL  negative control '{name}': '{old}' is not in the Dockerfile once")
                continue
            try:
                check(dockerfile.replace(old, new), args.sluice)
            except CheckFailed as e:
                passed += 1
                print(f"ok    negative control '{name}' fails: {e}")
            else:
                failed += 1
                print(f"FAIL  negative control '{name}': the checks pass on the broken Dockerfile")
    print(f"image: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
