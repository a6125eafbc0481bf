#!/usr/bin/env python3
"""Checks that no test was skipped in CI (.ci/run).

    check-tests-ran.py DEFAULT_LOG IGNORED_LOG [USER_LOG]

DEFAULT_LOG is the output (stdout and stderr) of `cargo test --locked`,
IGNORED_LOG that of `cargo test --locked -- --ignored --show-output` (runs
of one test binary in parts, such as the end-to-end suite once per
server, count as one run: their summaries are summed), and
USER_LOG (optional) that of the e2e test binary run with `--ignored
--show-output` by a non-root user. Fails (exit 1, saying why) when:

- a test in DEFAULT_LOG is ignored without a reason (`#[ignore]` needs one:
  what the test needs and how to run it);
- any test binary failed a test in any log;
- for some test binary, the --ignored run did not pass exactly the tests
  the default run ignored (by count from the harness summary, and each
  ignored name must appear as run), or ignored any test itself;
- USER_LOG does not show the end-to-end test passing on both servers;
- any log has a skip marker ("skipped", "SKIP", "SKIPPED") in test output:
  a test that says it skipped something did not test it.
"""

import re
import sys

# A test binary is its source path and its crate's binary name: every
# crate of the workspace has a `src/lib.rs`, told apart by the latter.
RUNNING = re.compile(r"^\s+Running (?:unittests )?(\S+) \((?:\S*/)?([^/\s]+?)(?:-[0-9a-f]{16})?\)")
DOCTESTS = re.compile(r"^\s+Doc-tests (\S+)")
SUMMARY = re.compile(
    r"test result: (?:ok|FAILED)\. (\d+) passed; (\d+) failed; (\d+) ignored; \d+ measured; \d+ filtered out"
)
IGNORED = re.compile(r"test (\S+) \.\.\. ignored(?:, (.*))?$")
SKIP_MARKER = re.compile(r"\bskipped\b|\bSKIP(?:PED)?\b", re.IGNORECASE)


class Binary:
    def __init__(self, name):
        self.name = name
        self.passed = self.failed = self.ignored = None
        self.ignored_tests = {}  # name -> reason


def parse(path):
    """Test binaries in the order cargo ran them, and the log's lines."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    binaries, current, by_name = [], None, {}
    for line in lines:
        m = RUNNING.match(line)
        name = "%s (%s)" % m.groups() if m else None
        m = m or DOCTESTS.match(line)
        if m:
            name = name or m.group(1)
            # A binary run again (the end-to-end suite, once per server)
            # adds to its first run: one binary, its counts summed.
            current = by_name.get(name)
            if current is None:
                current = by_name[name] = Binary(name)
                binaries.append(current)
            continue
        m = SUMMARY.search(line)
        if m:
            if current is None:  # a test binary run directly: one binary
                current = Binary("(binary)")
                binaries.append(current)
            counts = list(map(int, m.groups()))
            if current.passed is not None:
                counts = [a + b for a, b in zip(counts, (current.passed, current.failed, current.ignored))]
            current.passed, current.failed, current.ignored = counts
            continue
        m = IGNORED.search(line)
        if m:
            if current is None:
                current = Binary("(binary)")
                binaries.append(current)
            current.ignored_tests[m.group(1)] = (m.group(2) or "").strip()
    return binaries, lines


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    problems = []
    default, default_lines = parse(sys.argv[1])
    ignored_run, ignored_lines = parse(sys.argv[2])
    logs = [(sys.argv[1], default, default_lines), (sys.argv[2], ignored_run, ignored_lines)]
    if len(sys.argv) == 4:
        user, user_lines = parse(sys.argv[3])
        logs.append((sys.argv[3], user, user_lines))
        e2e_ok = all(
            any("test workflow_on_a_real_%s ... ok" % server in l for l in user_lines)
            for server in ("lxd", "incus")
        ) and any(
            b.passed is not None and b.passed >= 1 and b.failed == 0 and b.ignored == 0 for b in user
        )
        if not e2e_ok:
            problems.append("%s: the end-to-end test did not pass as the non-root user" % sys.argv[3])

    for path, binaries, lines in logs:
        if not binaries:
            problems.append("%s: no test binary ran" % path)
        for b in binaries:
            if b.passed is None:
                problems.append("%s: %s has no result line (did it crash?)" % (path, b.name))
            elif b.failed:
                problems.append("%s: %s: %d test(s) failed" % (path, b.name, b.failed))
        for i, line in enumerate(lines, 1):
            if SKIP_MARKER.search(line):
                problems.append("%s:%d: a skip marker: %s" % (path, i, line.strip()))

    for b in default:
        for name, reason in sorted(b.ignored_tests.items()):
            if not reason:
                problems.append("%s: %s is ignored without a reason" % (b.name, name))
    if [b.name for b in default] != [b.name for b in ignored_run]:
        problems.append(
            "the two runs ran different test binaries: %s vs %s"
            % ([b.name for b in default], [b.name for b in ignored_run])
        )
    else:
        for d, r in zip(default, ignored_run):
            want = len(d.ignored_tests)
            if d.ignored is not None and d.ignored != want:
                problems.append("%s: the summary says %d ignored, but %d were listed" % (d.name, d.ignored, want))
            if r.passed != want or r.ignored:
                problems.append(
                    "%s: the default run ignored %d test(s) (%s); the --ignored run passed %s and ignored %s"
                    % (d.name, want, ", ".join(sorted(d.ignored_tests)) or "none", r.passed, r.ignored)
                )
        ran = "\n".join(ignored_lines)
        for d in default:
            for name in sorted(d.ignored_tests):
                if ("test %s ... " % name) not in ran:
                    problems.append("%s: %s was ignored by default and did not run with --ignored" % (d.name, name))

    total = sum(len(b.ignored_tests) for b in default)
    if problems:
        print("check-tests-ran: FAILED", file=sys.stderr)
        for p in problems:
            print("  - " + p, file=sys.stderr)
        sys.exit(1)
    print(
        "check-tests-ran: every test ran: %d passed by default, %d ignored by default and passed with --ignored%s"
        % (
            sum(b.passed or 0 for b in default),
            total,
            "; the end-to-end test passed as the non-root user" if len(sys.argv) == 4 else "",
        )
    )


if __name__ == "__main__":
    main()
