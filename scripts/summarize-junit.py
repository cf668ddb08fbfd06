"""Add up JUnit XML reports and print the closing line 'N passed, M failed[, K skipped]'.
Exit 1 when anything failed or a report is missing (a suite that didn't run is a failure)."""
import sys
import xml.etree.ElementTree as ET


def counts(path):
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    total = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    return total - failed - skipped, failed, skipped


def main(paths):
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
