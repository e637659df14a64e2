"""The rule file: what it can say, and clear errors (file, line, reason) for what it cannot.

Each bad file below marks its offending line with ``# <-``; the RuleError must point there.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.cli import app
from node.control.rule_metrics import (
    Comparator,
    CpkSpec,
    CvSpec,
    DefectRateSpec,
    LotsSpec,
    ReadingSpec,
    SignalSpec,
)
from node.control.rules import (
    AllOf,
    Compensate,
    Emit,
    HoldSupplier,
    RuleBook,
    StopLine,
    Task,
    load_rules,
    parse_rules,
)
from node.errors import RuleError

EXAMPLE = Path(__file__).parent / "data" / "rules-example.yaml"
MARK = "# <-"


def marked_line(text: str) -> int:
    """The 1-based line carrying the ``# <-`` mark."""
    lines = [n for n, line in enumerate(text.splitlines(), start=1) if MARK in line]
    assert len(lines) == 1, text
    return lines[0]


def rule_error(text: str, path: str = "rules.yaml") -> RuleError:
    with pytest.raises(RuleError) as caught:
        parse_rules(text.encode(), path)
    return caught.value


def rules_file(body: str) -> str:
    return textwrap.dedent(body).lstrip("\n")


# -- the example file ---------------------------------------------------------------------------


def test_the_example_file_holds_the_four_cases_of_the_brief() -> None:
    rules = load_rules(EXAMPLE)
    by_id = {rule.id: rule for rule in rules.rules}
    assert rules.digest.startswith("0x") and len(rules.digest) == 66
    assert rules.path == str(EXAMPLE)

    cv = by_id["coating-cv"]
    assert isinstance(cv.condition, CvSpec)
    assert cv.condition.devices.quantity == "thickness"
    assert cv.condition.devices.patterns == ("coater-1/gauge-*",)
    assert (cv.condition.subgroup_size, cv.condition.consecutive) == (5, 3)
    assert cv.condition.threshold.comparator is Comparator.ABOVE
    assert cv.condition.threshold.ratio == pytest.approx(0.008)
    (compensate,) = cv.actions
    assert isinstance(compensate, Compensate)
    assert (compensate.delta.value, compensate.delta.unit) == (-0.05, "MMT")
    assert (compensate.minimum.value, compensate.maximum.value) == (-0.1, 0.1)

    lots = by_id["incoming-usl"]
    assert isinstance(lots.condition, LotsSpec)
    assert (lots.condition.limit, lots.condition.consecutive) == ("usl", 5)
    assert [type(a) for a in lots.actions] == [HoldSupplier, Emit]

    chained = by_id["supplier-corrective-task"]
    assert chained.condition == SignalSpec("supplier-out-of-spec", 0)

    both = by_id["capability-and-defects"]
    assert isinstance(both.condition, AllOf)
    cpk, defects = both.condition.conditions
    assert isinstance(cpk, CpkSpec) and isinstance(defects, DefectRateSpec)
    assert (cpk.window, cpk.threshold.limit.value, cpk.unit) == (50, 1.33, "MMT")
    assert defects.threshold.ratio == pytest.approx(0.15)
    (task,) = both.actions
    assert isinstance(task, Task)
    assert (task.assignee, task.due_us) == ("process-engineer", 7 * 86400 * 10**6)

    red = [rule.id for rule in rules.red_lines]
    assert red == ["cold-chain", "weighing-error", "metal-fragment"]
    cold = by_id["cold-chain"].condition
    assert isinstance(cold, ReadingSpec)
    assert cold.threshold.comparator is Comparator.AT_OR_ABOVE
    assert (cold.threshold.limit.value, cold.threshold.limit.unit) == (-18.0, "CEL")
    weighing = by_id["weighing-error"].condition
    assert isinstance(weighing, ReadingSpec) and weighing.absolute
    assert all(isinstance(by_id[r].actions[0], StopLine) for r in red)


def test_amounts_can_be_written_three_ways() -> None:
    text = rules_file(
        """
        rules:
          - id: a
            when: {reading: {quantity: t, above: 5 CEL}}
            then: {stop_line: {line: l}}
          - id: b
            when: {reading: {quantity: t, above: {value: 5, unit: CEL}}}
            then: {stop_line: {line: l}}
          - id: c
            when: {reading: {quantity: t, above: "\u22125 CEL"}}
            then: {stop_line: {line: l}}
        """
    )
    limits = [rule.condition.threshold.limit for rule in parse_rules(text.encode()).rules]  # type: ignore[union-attr]
    assert [(a.value, a.unit) for a in limits] == [(5.0, "CEL"), (5.0, "CEL"), (-5.0, "CEL")]


def test_the_digest_is_the_sha256_of_the_file_bytes() -> None:
    import hashlib

    data = EXAMPLE.read_bytes()
    assert load_rules(EXAMPLE).digest == "0x" + hashlib.sha256(data).hexdigest()
    assert parse_rules(data + b"\n# a comment").digest != load_rules(EXAMPLE).digest


# -- bad files: one case per class of error -----------------------------------------------------

GOOD_RULE = """
  - id: ok
    when: {reading: {quantity: temperature, at_or_above: -18 CEL}}
    then: {stop_line: {line: cold-chain}}
"""

BAD_FILES = {
    "yaml syntax": (
        """
        rules:
          - id: a
            when: {cv: {quantity: thickness
            then: x   # <-
        """,
        "YAML syntax error",
    ),
    "yaml indentation": (
        """
        rules:
          - id: a
             when: x   # <-
        """,
        "YAML syntax error",
    ),
    "unknown top-level key": (
        """
        version: 1
        rulez: []   # <-
        """,
        "unknown key 'rulez' in the rule file",
    ),
    "unknown key in a condition": (
        """
        rules:
          - id: a
            when:
              cv:
                quantity: thickness
                subgroup_sise: 5   # <-
                consecutive: 3
                above: 0.8 P1
            then: {emit: x}
        """,
        "unknown key 'subgroup_sise' in rule a: when.cv (expected quantity, subgroup_size, "
        "consecutive, devices, per_device, above, at_or_above, below, at_or_below); "
        "did you mean 'subgroup_size'?",
    ),
    "unknown key in an action": (
        """
        rules:
          - id: a
            when: {signal: s}
            then:
              task:
                assignee: pe
                title: t
                due: 7d
                owner: me   # <-
          - id: b
            when: {lots_out_of_spec: {limit: usl, consecutive: 5}}
            then: {emit: s}
        """,
        "unknown key 'owner' in rule a: then.task",
    ),
    "unknown metric": (
        """
        rules:
          - id: a
            when:
              cpkk: {quantity: d, window: 50, usl: 1 MMT, below: 1.33}   # <-
            then: {emit: x}
        """,
        "unknown metric 'cpkk' in rule a: when (expected one of all, any, cv, lots_out_of_spec, "
        "cpk, defect_rate_change, reading, signal); did you mean 'cpk'?",
    ),
    "wrong type: text for an integer": (
        """
        rules:
          - id: a
            when:
              cv:
                quantity: thickness
                subgroup_size: five   # <-
                consecutive: 3
                above: 0.8 P1
            then: {emit: x}
        """,
        "rule a: when.cv.subgroup_size must be an integer, got the string 'five'",
    ),
    "wrong type: a float for an integer": (
        """
        rules:
          - id: a
            when:
              lots_out_of_spec:
                limit: usl
                consecutive: 2.5   # <-
            then: {emit: x}
        """,
        "consecutive must be an integer, got the number 2.5",
    ),
    "wrong type: a list for a mapping": (
        """
        rules:
          - id: a
            when:
              reading: [temperature, -18]   # <-
            then: {emit: x}
        """,
        "rule a: when.reading must be a mapping, got a list",
    ),
    "wrong type: a boolean": (
        """
        rules:
          - id: a
            when:
              reading:
                quantity: w
                above: 1 GRM
                absolute: yes please   # <-
            then: {stop_line: {line: l}}
        """,
        "absolute must be true or false, got the string 'yes please'",
    ),
    "unknown unit": (
        """
        rules:
          - id: a
            when:
              cv:
                quantity: thickness
                subgroup_size: 5
                consecutive: 3
                above: 0.8 PCT   # <-
            then: {emit: x}
        """,
        "unknown unit 'PCT' in rule a: when.cv.above: not a UN/ECE Rec 20 code the node converts",
    ),
    "a unit symbol instead of its code": (
        """
        rules:
          - id: a
            when:
              reading:
                quantity: metal_fragment
                at_or_above: 0.3 mm   # <-
            then: {stop_line: {line: l}}
        """,
        "unknown unit 'mm' in rule a: when.reading.at_or_above: not a UN/ECE Rec 20 code the "
        "node converts; 'mm' is MMT",
    ),
    "wrong dimension for a ratio": (
        """
        rules:
          - id: a
            when:
              cv:
                quantity: thickness
                subgroup_size: 5
                consecutive: 3
                above: 0.8 MMT   # <-
            then: {emit: x}
        """,
        "unit MMT (millimetre) is a length; rule a: when.cv.above is a ratio (P1 percent or "
        "C62 one)",
    ),
    "wrong dimension for the quantity": (
        """
        quantities:
          temperature: CEL
        rules:
          - id: a
            when:
              reading:
                quantity: temperature
                at_or_above: -18 KGM   # <-
            then: {stop_line: {line: l}}
        """,
        "unit KGM (kilogram) is a mass, but quantity temperature is a temperature (CEL, degree "
        "Celsius) in rule a: when.reading.at_or_above",
    ),
    "a threshold without its unit": (
        """
        rules:
          - id: a
            when:
              reading:
                quantity: temperature
                at_or_above: -18   # <-
            then: {stop_line: {line: l}}
        """,
        "rule a: when.reading.at_or_above needs a unit: write e.g. '-18 MMT'",
    ),
    "compensation without bounds": (
        """
        rules:
          - id: a
            when: {signal: s}
            then:
              compensate:   # <-
                line: coater-1
                parameter: blade_pressure
                delta: -0.05 MMT
          - id: b
            when: {lots_out_of_spec: {limit: usl, consecutive: 5}}
            then: {emit: s}
        """,
        "unbounded compensation: rule a: then.compensate needs bounds {min, max} for its delta",
    ),
    "compensation delta outside its bounds": (
        """
        rules:
          - id: a
            when: {signal: s}
            then:
              compensate:
                line: coater-1
                parameter: blade_pressure
                delta: -0.2 MMT   # <-
                bounds: {min: -100 4H, max: 100 4H}
          - id: b
            when: {lots_out_of_spec: {limit: usl, consecutive: 5}}
            then: {emit: s}
        """,
        "unbounded compensation: delta -0.2 MMT is outside its bounds -100 4H .. 100 4H",
    ),
    "compensation bounds of another dimension": (
        """
        rules:
          - id: a
            when: {signal: s}
            then:
              compensate:
                line: coater-1
                parameter: blade_pressure
                delta: -0.05 MMT
                bounds:
                  min: -1 BAR   # <-
                  max: 1 MMT
          - id: b
            when: {lots_out_of_spec: {limit: usl, consecutive: 5}}
            then: {emit: s}
        """,
        "unit BAR (bar) is a pressure, but the delta is a length",
    ),
    "duplicate rule id": (
        """
        rules:
          - id: cold
            when: {reading: {quantity: t, above: 1 CEL}}
            then: {stop_line: {line: l}}
          - id: cold   # <-
            when: {reading: {quantity: t, above: 2 CEL}}
            then: {stop_line: {line: l}}
        """,
        "duplicate rule id 'cold' (first at line 2)",
    ),
    "duplicate key": (
        """
        rules:
          - id: a
            when: {reading: {quantity: t, above: 1 CEL}}
            then: {stop_line: {line: l}}
            when: {reading: {quantity: t, above: 2 CEL}}   # <-
        """,
        "duplicate key 'when' (first at line 3)",
    ),
    "unknown action": (
        """
        rules:
          - id: a
            when: {reading: {quantity: t, above: 1 CEL}}
            then:
              - stop_line: {line: l}
              - page_someone: {who: lead}   # <-
        """,
        "unknown action 'page_someone' in rule a: then (expected one of compensate, "
        "hold_supplier, task, stop_line, emit)",
    ),
    "a signal nobody emits": (
        """
        rules:
          - id: a
            when:
              signal: supplier-out-of-specs   # <-
            then: {task: {assignee: sqe, title: t, due: 1d}}
          - id: b
            when: {lots_out_of_spec: {limit: usl, consecutive: 5}}
            then: {emit: supplier-out-of-spec}
        """,
        "signal 'supplier-out-of-specs' is emitted by no rule; did you mean "
        "'supplier-out-of-spec'?",
    ),
    "a cycle through signals": (
        """
        rules:
          - id: first
            when: {signal: b-fired}
            then:
              - emit: a-fired   # <-
          - id: second
            when:
              any:
                - signal: a-fired
                - lots_out_of_spec: {limit: usl, consecutive: 5}
            then: {emit: b-fired}
        """,
        "rules form a cycle through their signals: rule first emits a-fired -> rule second "
        "emits b-fired -> rule first",
    ),
    "a rule listening to itself": (
        """
        rules:
          - id: echo
            when: {signal: ping}
            then: {emit: ping}   # <-
        """,
        "rules form a cycle through their signals: rule echo emits ping -> rule echo",
    ),
    "an unknown template field": (
        """
        rules:
          - id: a
            when: {reading: {quantity: t, above: 1 CEL}}
            then:
              stop_line:
                line: l
                reason: "too warm at {supplier}"   # <-
        """,
        "rule a: then.stop_line.reason: {supplier} is not known in rule a (available: "
        "{device}, {quantity}, {rule})",
    ),
    "hold_supplier without a supplier scope": (
        """
        rules:
          - id: a
            when: {reading: {quantity: t, above: 1 CEL}}
            then:
              hold_supplier:   # <-
        """,
        "rule a: then.hold_supplier.supplier: {supplier} is not known in rule a",
    ),
    "a red line inside a combination": (
        """
        rules:
          - id: a
            when:
              all:
                - reading: {quantity: t, above: 1 CEL}   # <-
                - lots_out_of_spec: {limit: usl, consecutive: 5}
            then: {emit: x}
        """,
        "a reading condition is a red line and must be its rule's whole condition",
    ),
    "a condition with two metrics": (
        """
        rules:
          - id: a
            when:   # <-
              cv: {}
              cpk: {}
            then: {emit: x}
        """,
        "rule a: when (a condition) must be a mapping with one of all, any, cv",
    ),
    "two thresholds": (
        """
        rules:
          - id: a
            when:
              reading:   # <-
                quantity: t
                above: 1 CEL
                below: -1 CEL
            then: {stop_line: {line: l}}
        """,
        "rule a: when.reading has 2 thresholds (above, below); give one",
    ),
    "a missing key": (
        """
        rules:
          - id: a   # <-
            when: {reading: {quantity: t, above: 1 CEL}}
        """,
        "a rule needs 'then'",
    ),
    "a bad rule id": (
        """
        rules:
          - id: "cold chain!"   # <-
            when: {reading: {quantity: t, above: 1 CEL}}
            then: {stop_line: {line: l}}
        """,
        "rule id 'cold chain!' must match",
    ),
    "a bad duration": (
        """
        rules:
          - id: a
            when: {lots_out_of_spec: {limit: usl, consecutive: 5}}
            then:
              task:
                assignee: pe
                title: t
                due: next week   # <-
        """,
        "rule a: then.task.due must be a duration such as 90m, 12h, 7d or 2w",
    ),
    "cpk limits reversed": (
        """
        rules:
          - id: a
            when:
              cpk:
                quantity: d
                window: 50
                lsl: 10.05 MMT
                usl: 9.95 MMT   # <-
                below: 1.33
            then: {emit: x}
        """,
        "rule a: when.cpk: usl 9.95 MMT must be above lsl 10.05 MMT",
    ),
    "a unit on a cpk": (
        """
        rules:
          - id: a
            when:
              cpk:
                quantity: d
                window: 50
                usl: 10 MMT
                below: 1.33 P1   # <-
            then: {emit: x}
        """,
        "rule a: when.cpk.below is a plain number (an index), not 1.33 P1",
    ),
    "absolute temperature": (
        """
        rules:
          - id: a
            when:
              reading:
                quantity: t
                above: 5 CEL
                absolute: true   # <-
            then: {stop_line: {line: l}}
        """,
        "absolute compares |value|, which means nothing for a temperature",
    ),
    "an alias": (
        """
        rules:
          - id: a
            when: &red {reading: {quantity: t, above: 1 CEL}}
            then: {stop_line: {line: l}}
          - id: b
            when: *red   # <-
            then: {stop_line: {line: l}}
        """,
        "YAML anchors and aliases are not supported here",
    ),
    "a wrong version": (
        """
        version: 2   # <-
        rules: []
        """,
        "version must be between 1 and 1, got 2",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_name_the_line_and_the_reason(case: str) -> None:
    body, reason = BAD_FILES[case]
    text = rules_file(body)
    error = rule_error(text)
    assert error.line == marked_line(text), (str(error), text)
    assert reason in error.reason, str(error)
    assert str(error) == f"rules.yaml:{error.line}: {error.reason}"
    assert error.path == "rules.yaml"


def test_an_empty_file_and_a_file_that_is_not_a_mapping() -> None:
    assert str(rule_error("")) == "rules.yaml:1: the rule file is empty"
    assert str(rule_error("# nothing\n")) == "rules.yaml:1: the rule file is empty"
    error = rule_error("- a\n- b\n")
    assert (error.line, error.reason) == (1, "the rule file must be a mapping, got a list")


def test_a_file_that_is_not_utf8() -> None:
    with pytest.raises(RuleError) as caught:
        parse_rules(b"rules:\n  - id: caf\xe9\n", "r.yaml")
    assert (caught.value.line, caught.value.reason) == (2, "the rule file is not UTF-8 text")


def test_a_missing_file() -> None:
    with pytest.raises(RuleError) as caught:
        load_rules(Path("/nonexistent/rules.yaml"))
    assert caught.value.line is None
    assert str(caught.value).startswith("/nonexistent/rules.yaml: cannot read the rule file")


def test_quantity_units_from_the_node_config_check_dimensions() -> None:
    text = rules_file(
        """
        rules:
          - id: a
            when:
              reading:
                quantity: weighing_error
                above: 1 CEL   # <-
            then: {stop_line: {line: l}}
        """
    )
    parse_rules(text.encode())  # without the quantity's unit nothing says CEL is wrong
    with pytest.raises(RuleError) as caught:
        parse_rules(text.encode(), "r.yaml", {"weighing_error": "GRM"})
    assert caught.value.line == marked_line(text)
    assert "is a temperature, but quantity weighing_error is a mass" in caught.value.reason


# -- reloading ------------------------------------------------------------------------------------


def test_reload_keeps_the_rules_in_force_when_the_new_file_is_bad(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(EXAMPLE.read_bytes())
    book = RuleBook(path)
    first = book.current
    assert book.reload_if_changed() is False  # nothing changed

    bad = EXAMPLE.read_text().replace("subgroup_size: 5", "subgroup_size: five")
    _write(path, bad)
    with caplog.at_level(logging.ERROR, logger="node.control.rules"):
        assert book.reload_if_changed() is False
    assert book.current is first
    assert book.last_error is not None
    assert book.last_error.line == bad.splitlines().index("        subgroup_size: five") + 1
    assert "subgroup_size must be an integer" in book.last_error.reason
    assert "the rules in force stay" in caplog.text

    caplog.clear()
    _touch(path)  # the same bad bytes again: refused without logging it twice
    with caplog.at_level(logging.ERROR, logger="node.control.rules"):
        assert book.reload_if_changed() is False
    assert caplog.text == "" and book.last_error is not None

    good = EXAMPLE.read_text().replace("consecutive: 3", "consecutive: 4")
    _write(path, good)
    assert book.reload_if_changed() is True
    assert book.current is not first and book.last_error is None
    assert book.current.digest != first.digest
    assert book.current.rule("coating-cv").condition.consecutive == 4  # type: ignore[union-attr]


def test_reload_ignores_a_rewrite_with_the_same_bytes(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(EXAMPLE.read_bytes())
    book = RuleBook(path)
    first = book.current
    _write(path, EXAMPLE.read_text())
    assert book.reload_if_changed() is False
    assert book.current is first


def test_a_deleted_file_keeps_the_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(EXAMPLE.read_bytes())
    book = RuleBook(path)
    path.unlink()
    assert book.reload_if_changed() is False
    assert book.last_error is not None and "cannot read the rule file" in str(book.last_error)
    assert len(book.current.rules) == 7


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    _touch(path)


def _touch(path: Path) -> None:
    """Move the modification time on by a second: a coarse file system clock cannot hide it."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


# -- qnode rules check -----------------------------------------------------------------------------

runner = CliRunner()


def test_rules_check_prints_the_rules() -> None:
    result = runner.invoke(app, ["rules", "check", str(EXAMPLE)])
    assert result.exit_code == 0, (result.output, result.exception)
    for rule_id in ("coating-cv", "incoming-usl", "capability-and-defects", "cold-chain"):
        assert rule_id in result.output
    assert "7 rules" in result.output and load_rules(EXAMPLE).digest in result.output
    assert "3 red lines" in result.output


def test_rules_check_prints_one_error_line_and_exits_13(tmp_path: Path) -> None:
    """Through the console script's entry point, as a user sees it."""
    path = tmp_path / "rules.yaml"
    text = rules_file(BAD_FILES["unknown metric"][0])
    path.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "node", "rules", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 13, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"qnode: error: {path}:{marked_line(text)}: unknown metric 'cpkk'")
    assert result.stdout == ""


def test_an_empty_rule_list_is_a_rule_set_without_rules() -> None:
    assert parse_rules(b"version: 1\nrules: []\n").rules == ()
