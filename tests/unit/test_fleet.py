"""testbed.fleet: a playbook run through ansible-runner, read from its events (a local play, no VM)."""
import sys

from testbed.fleet import run_ansible_playbook

PLAY = """---
- name: A play with one change, one read and one failure
  hosts: bpfquota_clients
  gather_facts: false
  tasks:
    - name: Write the file
      ansible.builtin.copy:
        content: "after\\n"
        dest: "{{ target }}"
        mode: "0644"
    - name: Read it
      ansible.builtin.stat:
        path: "{{ target }}"
    - name: Fail on purpose
      ansible.builtin.fail:
        msg: the reason, and the fix
"""


def run(tmp_path, **options):
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    return run_ansible_playbook({"node": local}, str(playbook), tmp_path, {"target": str(tmp_path / "f")}, **options)


def test_changes_diffs_failures_and_recap_come_from_the_events(tmp_path):
    (tmp_path / "f").write_text("before\n")
    result = run(tmp_path, diff=True)
    assert result.rc == 2
    assert result.recap == {"node": {"ok": 2, "changed": 1, "unreachable": 0, "failed": 1}}
    assert result.changed_tasks() == ["Write the file"]
    diff, = result.diffs("Write the file")
    assert (diff["before"], diff["after"]) == ("before\n", "after\n")
    assert result.diffs("Read it") == []
    assert result.failure_messages() == ["the reason, and the fix"]
    assert (tmp_path / "f").read_text() == "after\n"
    assert "Fail on purpose" in result.output


def test_check_mode_reaches_the_play(tmp_path):
    (tmp_path / "f").write_text("before\n")
    result = run(tmp_path, check=True)
    assert result.changed_tasks() == ["Write the file"]
    assert (tmp_path / "f").read_text() == "before\n"
