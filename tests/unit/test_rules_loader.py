"""The rules directory: which files are read, read errors, reload and the watcher."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from receiver.model import NamespacePolicy
from receiver.rules.errors import RuleError, RuleSetError
from receiver.rules.loader import RuleHolder, RuleWatcher, check, lint, load_rules
from remediations.registry import default_registry
from tests.support.rules import GOOD, POLICY, registry, write

SURROGATE = (
    "contains a lone surrogate (a \\ud800 to \\udfff escape, not half of a pair), which UTF-8 "
    "cannot encode; write the character itself"
)

# --------------------------------------------------------------------------------------------
# the loader and the directory


def test_load_reads_yaml_and_yml_sorted_and_ignores_the_rest(tmp_path: Path) -> None:
    write(tmp_path, "b.yml", GOOD.replace("restart-on-high-memory", "b-rule"))
    write(tmp_path, "a.yaml", GOOD.replace("restart-on-high-memory", "a-rule"))
    write(tmp_path, "README.md", "not rules")
    write(tmp_path, ".a.yaml", "editor leftovers: [")
    (tmp_path / "..data").mkdir()  # ConfigMap mounts hold such directories
    write(tmp_path / "..data", "a.yaml", GOOD)
    ruleset = load_rules(tmp_path, registry(), POLICY)
    assert [r.name for r in ruleset.rules] == ["a-rule", "b-rule"]
    assert sorted(ruleset.source) == [str(tmp_path / "a.yaml"), str(tmp_path / "b.yml")]
    assert lint(tmp_path, registry(), POLICY) == []


def test_load_reports_file_paths(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules: []\n")
    with pytest.raises(RuleSetError) as caught:
        load_rules(tmp_path, registry(), POLICY)
    assert [str(e) for e in caught.value.errors] == [
        f"{tmp_path / 'a.yaml'}:1: `rules` must be a non-empty list"
    ]


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert lint(missing, registry(), POLICY) == [
        RuleError(str(missing), 0, "rules directory does not exist")
    ]


def test_directory_without_rule_files_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "notes.txt", "")
    assert lint(tmp_path, registry(), POLICY) == [
        RuleError(str(tmp_path), 0, "no *.yaml or *.yml rule files in directory")
    ]


def test_path_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", GOOD)
    assert lint(path, registry(), POLICY) == [
        RuleError(
            str(path),
            0,
            f"rules path is not a directory: give the directory that holds it ({tmp_path})",
        )
    ]
    assert lint(tmp_path / "absent" / "a.yaml", registry(), POLICY) == [
        RuleError(str(tmp_path / "absent" / "a.yaml"), 0, "rules directory does not exist")
    ]


def test_a_dangling_link_is_skipped_with_a_warning_naming_it(tmp_path: Path) -> None:
    # A ConfigMap update removes a key's link a moment after its data: a warning, not a failed
    # reload; silently skipped, a rule vanished unseen.
    write(tmp_path, "a.yaml", GOOD)
    (tmp_path / "gone.yaml").symlink_to(tmp_path / "missing.yaml")
    ruleset, errors, warnings = check(tmp_path, registry(), POLICY)
    assert errors == []
    assert ruleset is not None
    assert [r.name for r in ruleset.rules] == ["restart-on-high-memory"]
    skipped = "a link to a file that does not exist: skipped, its rules are not loaded"
    assert warnings == [RuleError(str(tmp_path / "gone.yaml"), 0, skipped, warning=True)]
    assert ruleset.warnings == tuple(warnings)


def test_only_dangling_links_say_so_beside_the_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "gone.yaml").symlink_to(tmp_path / "missing.yaml")
    _, errors, warnings = check(tmp_path, registry(), POLICY)
    assert errors == [RuleError(str(tmp_path), 0, "no *.yaml or *.yml rule files in directory")]
    assert [w.file for w in warnings] == [str(tmp_path / "gone.yaml")]


def test_an_entry_that_is_not_a_regular_file_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    (tmp_path / "sub.yaml").mkdir()
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    assert lint(tmp_path, registry(), POLICY) == [
        RuleError(str(tmp_path / "sub.yaml"), 0, "not a regular file"),
        RuleError(str(tmp_path / "zero.yaml"), 0, "not a regular file"),
    ]


def test_non_utf8_file_is_told_at_its_line_and_column_with_the_fix(tmp_path: Path) -> None:
    # Latin-1 on line 3, after a multi-byte character: the column counts characters.
    (tmp_path / "a.yaml").write_bytes(b"rules:\n  - name: ok\n    description: \xc3\xa9\xe9\n")
    assert lint(tmp_path, registry(), POLICY) == [
        RuleError(
            str(tmp_path / "a.yaml"),
            3,
            "not valid UTF-8: byte 0xE9 at column 19 (byte 40 of the file); save the file as "
            "UTF-8 (was it saved as Latin-1 or another encoding?)",
        )
    ]


@pytest.mark.parametrize(
    ("encoding", "said"),
    [
        ("utf-16", "the file is UTF-16 (it starts with a byte-order mark)"),
        ("utf-32", "the file is UTF-32 (it starts with a byte-order mark)"),
        ("utf-16-le", "the file has a NUL byte in its first four bytes, as UTF-16 or UTF-32"),
        ("utf-16-be", "the file has a NUL byte in its first four bytes, as UTF-16 or UTF-32"),
    ],
)
def test_a_utf16_or_utf32_file_is_told_to_be_saved_as_utf8(
    tmp_path: Path, encoding: str, said: str
) -> None:
    # Without a byte-order mark, ASCII as UTF-16 is valid UTF-8 and was told of as
    # "control character U+0000 is not allowed"; with one, as "not valid UTF-8 (byte 0)".
    (tmp_path / "a.yaml").write_bytes(GOOD.encode(encoding))
    [error] = lint(tmp_path, registry(), POLICY)
    assert (error.file, error.line) == (str(tmp_path / "a.yaml"), 1)
    assert error.message.startswith(said)
    assert error.message.endswith("save it as UTF-8")


def test_a_utf8_byte_order_mark_is_read_past(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_bytes(GOOD.encode("utf-8-sig"))
    assert lint(tmp_path, registry(), POLICY) == []


# --------------------------------------------------------------------------------------------
# reload


def test_reload_keeps_the_last_good_set_and_swaps_on_success(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", GOOD)
    holder = RuleHolder(tmp_path, registry(), POLICY)
    first = holder.current
    assert [r.name for r in first.rules] == ["restart-on-high-memory"]

    path.write_text(GOOD.replace("test.restart", "test.nope"))
    errors = holder.reload()
    assert [(e.line, e.message.split(":")[1].strip()) for e in errors] == [(7, "steps[0].action")]
    assert holder.current is first
    assert holder.last_errors == tuple(errors)

    path.write_text(GOOD.replace("restart-on-high-memory", "renamed"))
    assert holder.reload() == []
    assert holder.last_errors == ()
    assert [r.name for r in holder.current.rules] == ["renamed"]
    assert holder.current.source != first.source


def test_reload_keeps_the_set_when_the_directory_vanishes(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", GOOD)
    holder = RuleHolder(tmp_path, registry(), POLICY)
    first = holder.current
    path.unlink()
    assert holder.reload() == [
        RuleError(str(tmp_path), 0, "no *.yaml or *.yml rule files in directory")
    ]
    assert holder.current is first


def test_holder_refuses_to_start_on_bad_rules(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules: []\n")
    with pytest.raises(RuleSetError):
        RuleHolder(tmp_path, registry(), POLICY)


# --------------------------------------------------------------------------------------------
# a holder started on given texts (a worker process, on the rules serve runs on)


def test_a_holder_of_given_texts_starts_on_them_and_reloads_from_the_directory(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "a.yaml", "rules: [ {name: broken\n")  # a typo pushed since
    handed = {str(path): GOOD}
    holder = RuleHolder(tmp_path, registry(), POLICY, files=handed)
    first = holder.current
    assert [r.name for r in first.rules] == ["restart-on-high-memory"]
    assert holder.files == handed

    # The directory's errors: the handed rules and their texts stay.
    assert [e.file for e in holder.reload()] == [str(path)]
    assert holder.current is first
    assert holder.files == handed

    renamed = GOOD.replace("restart-on-high-memory", "renamed")
    path.write_text(renamed)
    assert holder.reload() == []
    assert [r.name for r in holder.current.rules] == ["renamed"]
    assert holder.files == {str(path): renamed}

    path.write_text("rules: []\n")
    assert holder.reload() != []
    assert holder.files == {str(path): renamed}


def test_a_holder_of_a_directory_keeps_the_texts_it_loaded(tmp_path: Path) -> None:
    write(tmp_path, "b.yml", GOOD.replace("restart-on-high-memory", "b-rule"))
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "notes.txt", "not rules")
    holder = RuleHolder(tmp_path, registry(), POLICY)
    assert holder.files == {
        str(tmp_path / "a.yaml"): GOOD,
        str(tmp_path / "b.yml"): GOOD.replace("restart-on-high-memory", "b-rule"),
    }
    assert sorted(holder.files) == sorted(holder.current.source)
    # Handed on, they compile to the same rules.
    again = RuleHolder(tmp_path / "elsewhere", registry(), POLICY, files=holder.files)
    assert again.current.source == holder.current.source


@pytest.mark.parametrize(
    ("files", "said"),
    [
        ({"/handed/a.yaml": "rules: []\n"}, ["/handed/a.yaml:1: `rules` must be a non-empty list"]),
        ({}, ["<rules>: no rule files given"]),
    ],
)
def test_given_texts_with_errors_fail_the_start_naming_their_file(
    tmp_path: Path, files: dict[str, str], said: list[str]
) -> None:
    write(tmp_path, "a.yaml", GOOD)  # not read: the texts given are the start
    with pytest.raises(RuleSetError) as caught:
        RuleHolder(tmp_path, registry(), POLICY, files=files)
    assert [str(e) for e in caught.value.errors] == said


def test_a_fixed_holder_has_no_texts(tmp_path: Path) -> None:
    ruleset = RuleHolder(tmp_path, registry(), POLICY, files={"a.yaml": GOOD}).current
    assert RuleHolder.fixed(ruleset, registry(), POLICY).files == {}


# --------------------------------------------------------------------------------------------
# the watcher

RULE = """
rules:
  - name: NAME
    match: ['alertname="X"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_restart
"""


def _write(path: Path, text: str, bump: int) -> None:
    path.write_text(text)
    st = path.stat()
    # Distinct mtimes even on a coarse clock, without sleeping.
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))


def test_a_changed_file_is_reloaded_and_a_bad_one_keeps_the_last_good_set(
    tmp_path: Path,
) -> None:
    rule_file = tmp_path / "a.yaml"
    _write(rule_file, RULE.replace("NAME", "first"), 0)
    holder = RuleHolder(tmp_path, default_registry(), NamespacePolicy())
    reloads: list[list[RuleError]] = []
    watcher = RuleWatcher(holder, tmp_path, reloads.append)

    assert watcher.check() is False  # nothing changed
    _write(rule_file, RULE.replace("NAME", "second"), 1)
    assert watcher.check() is True
    assert reloads == [[]]
    assert [r.name for r in holder.current.rules] == ["second"]

    _write(rule_file, "rules: [ {name: broken", 2)
    assert watcher.check() is True
    assert len(reloads[-1]) >= 1
    assert str(reloads[-1][0]).startswith(str(rule_file))
    assert [r.name for r in holder.current.rules] == ["second"]

    (tmp_path / "notes.txt").write_text("not a rule file")
    assert watcher.check() is False
    _write(tmp_path / "b.yml", RULE.replace("NAME", "third"), 3)
    _write(rule_file, RULE.replace("NAME", "second"), 4)
    assert watcher.check() is True
    assert sorted(r.name for r in holder.current.rules) == ["second", "third"]


def test_a_control_character_is_a_failed_reload_and_the_watcher_goes_on(tmp_path: Path) -> None:
    # PyYAML's reader refuses a control character when its loader is made; that escaped the
    # reload as an exception, which ended the watcher's loop for good without a word.
    rule_file = tmp_path / "a.yaml"
    _write(rule_file, RULE.replace("NAME", "first"), 0)
    holder = RuleHolder(tmp_path, default_registry(), NamespacePolicy())
    reloads: list[list[RuleError]] = []
    watcher = RuleWatcher(holder, tmp_path, reloads.append)

    _write(tmp_path / "zz.yaml", "rules:\n  - name: b\x01\n", 1)
    assert watcher.check() is True
    assert [str(e) for e in reloads[-1]] == [
        f"{tmp_path / 'zz.yaml'}:2: invalid YAML: control character U+0001 is not allowed;"
        " write it as an escape in a double-quoted string if it is meant"
    ]
    assert holder.last_errors == tuple(reloads[-1])
    assert [r.name for r in holder.current.rules] == ["first"]

    (tmp_path / "zz.yaml").unlink()
    _write(tmp_path / "b.yaml", RULE.replace("NAME", "second").replace('"X"', '"Y"'), 2)
    assert watcher.check() is True
    assert reloads[-1] == []
    assert sorted(r.name for r in holder.current.rules) == ["first", "second"]
    # The same text fails a lint and a start with the same error, not a traceback.
    _write(tmp_path / "zz.yaml", "rules:\n  - name: b\x01\n", 3)
    assert [e.line for e in lint(tmp_path, default_registry(), POLICY)] == [2]
    with pytest.raises(RuleSetError):
        load_rules(tmp_path, default_registry(), POLICY)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        # A step's message with a "\0" escape: lint and reload passed it, and every event of
        # the alert then failed to store its run (PostgreSQL keeps no U+0000) until it went dead.
        (
            "rules:\n  - name: nul\n    match: ['alertname=\"N\"']\n    steps:\n"
            '      - action: test.restart\n        params: {message: "before\\0after"}\n',
            6,
        ),
        ('rules:\n  - name: "nul\\0"\n', 2),
        ('rules:\n  - name: nul\n    labels: {"k\\0": v}\n', 3),
    ],
)
def test_a_nul_in_a_rule_file_is_refused_where_it_was_written(
    tmp_path: Path, text: str, line: int
) -> None:
    (tmp_path / "a.yaml").write_text(text)
    errors = lint(tmp_path, registry(), POLICY)
    assert (
        RuleError(
            str(tmp_path / "a.yaml"),
            line,
            "contains U+0000 (NUL), which cannot be stored; remove the \\0 escape",
        )
        in errors
    )


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('rules:\n  - name: sur\n    labels: {team: "a\\ud800b"}\n', 3),
        ('rules:\n  - name: sur\n    labels: {"k\\udfff": v}\n', 3),
    ],
)
def test_a_lone_surrogate_in_a_rule_file_is_refused_where_it_was_written(
    tmp_path: Path, text: str, line: int
) -> None:
    """A "\\ud800" escape not in a pair: no UTF-8 encodes it, so the text could be neither
    stored nor hashed (a rule test's alert with one failed its simulation with
    UnicodeEncodeError). Refused where it was written, as "\\0" is."""
    (tmp_path / "a.yaml").write_text(text)
    errors = lint(tmp_path, registry(), POLICY)
    assert RuleError(str(tmp_path / "a.yaml"), line, SURROGATE) in errors


@pytest.mark.parametrize(
    ("text", "line"),
    [
        # PyYAML's int() of more than 4,300 digits raised a plain ValueError: the lint said
        # "could not load the rules (ValueError: Exceeds the limit ...); please report this".
        ("rules:\n  - name: big\n    steps:\n      - params: {replicas: " + "9" * 5000 + "}\n", 4),
        # A key, which YAML lets be longer than 1,024 characters when marked with `?`.
        ("rules:\n  - name: big\n    labels:\n      ? " + "1" * 5000 + "\n      : x\n", 4),
        # Tagged: `9_9...` and `-5...:30` are text in a rule file, `!!int` text is read.
        ("rules:\n  - name: big\n    labels: {k: !!int -" + "5" * 5000 + "}\n", 3),
    ],
)
def test_an_integer_too_long_to_read_is_an_error_on_its_line(
    tmp_path: Path, text: str, line: int
) -> None:
    (tmp_path / "a.yaml").write_text(text)
    assert lint(tmp_path, registry(), POLICY) == [
        RuleError(
            str(tmp_path / "a.yaml"),
            line,
            "invalid YAML: a whole number of more than 4300 digits; quote it if it is text",
        )
    ]
