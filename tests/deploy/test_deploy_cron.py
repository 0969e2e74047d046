"""The 5-field cron validator, and the schedule of the CronJob in deploy/k8s."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from deploy_checks import K8S, load_yaml_docs
from deploy_cron import CronError, parse_cron


def test_every_field_form() -> None:
    s = parse_cron("*/15 0-6,23 1,15 JAN-MAR mon-fri")
    assert s.minutes == {0, 15, 30, 45}
    assert s.hours == {0, 1, 2, 3, 4, 5, 6, 23}
    assert s.days == {1, 15}
    assert s.months == {1, 2, 3}
    assert s.weekdays == {1, 2, 3, 4, 5}


def test_star_and_question_mark_cover_the_range() -> None:
    s = parse_cron("* * ? * ?")
    assert s.minutes == set(range(60)) and s.hours == set(range(24))
    assert s.days == set(range(1, 32)) and s.months == set(range(1, 13))
    assert s.weekdays == set(range(7))


def test_start_with_step_runs_to_the_end() -> None:
    assert parse_cron("5/20 * * * *").minutes == {5, 25, 45}


@pytest.mark.parametrize("expression, message", [
    ("0 2 * *", "has 4 fields"),
    ("0 2 * * * *", "has 6 fields"),
    ("@daily", "has 1 fields"),
    ("60 * * * *", "minute: 60 is outside 0-59"),
    ("0 24 * * *", "hour: 24 is outside 0-23"),
    ("0 0 0 * *", "day of month: 0 is outside 1-31"),
    ("0 0 * 13 *", "month: 13 is outside 1-12"),
    ("0 0 * * 7", "day of week: 7 is outside 0-6"),
    ("0 0 * * FUN", "'FUN' is not a number or one of SUN"),
    ("*/0 * * * *", "step '0'"),
    ("10-5 * * * *", "runs backwards"),
    ("1,,2 * * * *", "empty item"),
    ("TZ=UTC 0 2 * *", "'TZ=UTC' is not a number"),
])
def test_invalid_expressions_name_field_rule_and_value(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message.replace("*", r"\*").replace("(", r"\(")):
        parse_cron(expression)


@given(st.integers(0, 59), st.integers(0, 59), st.integers(1, 60))
def test_ranges_with_steps_match_python_ranges(a: int, b: int, step: int) -> None:
    low, high = min(a, b), max(a, b)
    assert parse_cron(f"{low}-{high}/{step} * * * *").minutes == set(range(low, high + 1, step))


def test_the_cronjob_schedule_is_a_valid_five_field_expression() -> None:
    cronjobs = [d for d in load_yaml_docs(K8S / "cronjob.yaml") if d["kind"] == "CronJob"]
    assert cronjobs, "deploy/k8s/cronjob.yaml has no CronJob"
    for cronjob in cronjobs:
        schedule = parse_cron(cronjob["spec"]["schedule"])
        assert schedule.minutes and schedule.hours
        # Kubernetes refuses a TZ= prefix when timeZone is set; the zone belongs in timeZone.
        assert "TZ" not in cronjob["spec"]["schedule"]
        assert cronjob["spec"].get("timeZone"), "name the schedule's time zone explicitly"
