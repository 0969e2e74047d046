"""A validator for 5-field cron expressions in the dialect of Kubernetes CronJobs (robfig/cron:
minute hour day-of-month month day-of-week, weekdays 0-6 with Sunday 0, names, lists, ranges, steps)."""
from __future__ import annotations

from dataclasses import dataclass


# ------------------------------------------------------------------------------------- cron
class CronError(ValueError):
    """An invalid cron expression; the message names the field, the rule and the value."""


@dataclass(frozen=True)
class CronSchedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]


# (name, low, high, names) of the five fields; Kubernetes uses robfig/cron: weekdays 0-6, Sunday 0.
_CRON_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i for i, m in enumerate(
        "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 1)}),
    ("day of week", 0, 6, {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}),
)


def _cron_value(token: str, field: str, low: int, high: int, names: dict[str, int]) -> int:
    if token.upper() in names:
        return names[token.upper()]
    if not token.isdigit():
        raise CronError(f"cron {field}: {token!r} is not a number"
                        + (f" or one of {', '.join(names)}" if names else ""))
    value = int(token)
    if not low <= value <= high:
        raise CronError(f"cron {field}: {value} is outside {low}-{high}")
    return value


def _cron_field(text: str, field: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"cron {field}: empty item in {text!r}")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"cron {field}: step {step_text!r} in {item!r} must be a positive number")
            step = int(step_text)
        if base in ("*", "?"):
            start, end = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            start = _cron_value(a, field, low, high, names)
            end = _cron_value(b, field, low, high, names)
            if start > end:
                raise CronError(f"cron {field}: range {base!r} runs backwards")
        else:
            start = _cron_value(base, field, low, high, names)
            end = high if slash else start  # "5/15" means 5-max every 15, as in robfig/cron
        values.update(range(start, end + 1, step))
    return frozenset(values)


def parse_cron(expression: str) -> CronSchedule:
    """A standard 5-field cron expression (minute hour day-of-month month day-of-week) with `*`,
    `?`, lists, ranges, steps and month/day names; macros (@daily) and TZ= prefixes are refused."""
    fields = expression.split()
    if len(fields) != 5:
        raise CronError(f"cron expression {expression!r} has {len(fields)} fields; expected 5 "
                        "(minute hour day-of-month month day-of-week)")
    parsed = [_cron_field(text, *spec) for text, spec in zip(fields, _CRON_FIELDS)]
    return CronSchedule(*parsed)
