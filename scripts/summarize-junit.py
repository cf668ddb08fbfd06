"""Add up JUnit XML reports and print the closing line 'N passed, M failed[, K skipped]'.
Exit 1 when anything failed or a report is missing (a suite that didn't run is a failure).

    python3 scripts/summarize-junit.py REPORT...

It also writes reports for the checks that have none of their own (scripts/lint.sh):

    python3 scripts/summarize-junit.py --record OUT NAME RC [LOG]
        one test case NAME, failed when the exit code RC isn't 0, with the end of LOG as its text
    python3 scripts/summarize-junit.py --merge OUT NAME RC REPORT...
        the test cases of the REPORTs as one suite NAME; when RC isn't 0 but none of them failed
        (the tool broke before it reported), or there are none, one more failed case says so
"""
import sys
import xml.etree.ElementTree as ET

LOG_TAIL = 20000  # characters of a failed check's output kept in its report


def counts(path):
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    total = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    return total - failed - skipped, failed, skipped


def summarize(paths):
    passed = failed = skipped = 0
    missing = []
    for path in paths:
        try:
            p, f, s = counts(path)
        except (OSError, ET.ParseError):
            missing.append(path)
            continue
        passed, failed, skipped = passed + p, failed + f, skipped + s
    for path in missing:
        print("no test report at %s: that suite did not run" % path)
    failed += len(missing)
    print("%d passed, %d failed" % (passed, failed) + (", %d skipped" % skipped if skipped else ""))
    return 1 if failed else 0


def failed_case(classname, name, message, text):
    case = ET.Element("testcase", classname=classname, name=name)
    failure = ET.SubElement(case, "failure", message=message)
    failure.text = text
    return case


def write_suite(out, name, cases):
    suite = ET.Element("testsuite", name=name, tests=str(len(cases)), skipped="0", errors="0",
                       failures=str(sum(1 for case in cases if case.find("failure") is not None
                                        or case.find("error") is not None)))
    suite.extend(cases)
    ET.ElementTree(suite).write(out, encoding="utf-8", xml_declaration=True)


def log_tail(path):
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            return log.read()[-LOG_TAIL:]
    except OSError as exc:
        return "(no log: %s)" % exc


def record(out, name, rc, log=None):
    if int(rc) == 0:
        cases = [ET.Element("testcase", classname="lint", name=name)]
    else:
        cases = [failed_case("lint", name, "%s failed (exit %s)" % (name, rc), log_tail(log))]
    write_suite(out, name, cases)
    return 0


def merge(out, name, rc, paths):
    cases = []
    for path in paths:
        root = ET.parse(path).getroot()
        cases.extend(root.iter("testcase"))
    if not cases:
        cases.append(failed_case("lint", name, "%s (exit %s) reported no test" % (name, rc), ""))
    elif int(rc) != 0 and not any(case.find("failure") is not None or case.find("error") is not None
                                  for case in cases):
        cases.append(failed_case("lint", name, "%s failed (exit %s) without reporting a failed test" % (name, rc),
                                 ""))
    write_suite(out, name, cases)
    return 0


def main(argv):
    if argv[:1] == ["--record"] and len(argv) in (4, 5):
        return record(*argv[1:])
    if argv[:1] == ["--merge"] and len(argv) >= 4:
        return merge(argv[1], argv[2], argv[3], argv[4:])
    if not argv or argv[0].startswith("--"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    return summarize(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
