"""What the client scripts share: a transcript on stdout, and failing with a
message (exit status 1) when something is not as expected."""

import sys


def log(line):
    print(line, flush=True)


def fail(message):
    log(f"FAIL: {message}")
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def expect(what, got, want):
    check(got == want, f"{what}: got {got!r}, want {want!r}")


def parse_addr(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)
