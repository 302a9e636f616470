"""DolphinScheduler's built-in time parameters and `$[...]` expressions, against DS's own test cases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from easysched_es.core import time_params as tp


def at(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%d%H%M%S")


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def test_builtin_parameters_follow_business_time_utils() -> None:
    # BusinessTimeUtils: biz.date = base - 1 day, curdate = base day, datetime = base, on the zone's wall clock
    assert tp.builtin(ms(2022, 8, 26), "UTC") == {
        "system.biz.date": "20220825", "system.biz.curdate": "20220826", "system.datetime": "20220826000000",
    }
    # 02:00 in Shanghai is 18:00 UTC the day before: the zone decides the dates
    assert tp.builtin(ms(2026, 12, 1, 18), "Asia/Shanghai") == {
        "system.biz.date": "20261201", "system.biz.curdate": "20261202", "system.datetime": "20261202020000",
    }
    assert tp.env_name("system.biz.date") == "system_biz_date"


# ParameterUtilsTest.testConvertParameterPlaceholders2, system.datetime = 20201201123000
DS_PARAMETER_CASES = [
    ("$[1]", "$[1]"), ("$[0]", "$[0]"),
    ("$[add_months(yyyyMMdd,12*2)]", "20221201"), ("$[add_months(yyyyMMdd,-12*2)]", "20181201"),
    ("$[add_months(yyyyMMdd,3)]", "20210301"), ("$[add_months(yyyyMMdd,-4)]", "20200801"),
    ("$[yyyyMMdd+7*2]", "20201215"), ("$[yyyyMMdd-7*2]", "20201117"), ("$[yyyyMMdd+3]", "20201204"),
    ("$[yyyyMMdd-3]", "20201128"), ("$[HHmmss+2/24]", "143000"), ("$[HHmmss-1/24]", "113000"),
    ("$[HHmmss+3/24/60]", "123300"), ("$[HHmmss-2/24/60]", "122800"),
]


@pytest.mark.parametrize(("value", "expected"), DS_PARAMETER_CASES)
def test_dolphinscheduler_parameter_cases(value: str, expected: str) -> None:
    assert tp.resolve(value, {}, at("20201201123000")) == expected


# TimePlaceholderUtilsTest, base 2022-08-26 00:00:00 (a Friday)
DS_PLACEHOLDER_CASES = [
    ("$[this_day(yyyy-MM-dd)]", "2022-08-26"), ("$[this_day(yyyyMMdd)]", "20220826"),
    ("$[last_day(yyyy-MM-dd)]", "2022-08-25"), ("$[last_day(yyyyMMdd)]", "20220825"),
    ("$[year_week(yyyy-MM-dd)]", "2022-34"), ("$[year_week(yyyyMMdd)]", "202234"),
    ("$[year_week(yyyy-MM-dd,5)]", "2022-35"), ("$[year_week(yyyyMMdd,5)]", "202235"),
    ("$[month_first_day(yyyy-MM-dd,-1)]", "2022-07-01"), ("$[month_first_day(yyyyMMdd,-1)]", "20220701"),
    ("$[month_last_day(yyyy-MM-dd,-1)]", "2022-07-31"), ("$[month_last_day(yyyyMMdd,-1)]", "20220731"),
    ("$[week_first_day(yyyy-MM-dd,0)]", "2022-08-22"), ("$[week_first_day(yyyyMMdd,0)]", "20220822"),
    ("$[week_last_day(yyyy-MM-dd,0)]", "2022-08-28"), ("$[week_last_day(yyyyMMdd,0)]", "20220828"),
]


@pytest.mark.parametrize(("value", "expected"), DS_PLACEHOLDER_CASES)
def test_dolphinscheduler_placeholder_cases(value: str, expected: str) -> None:
    assert tp.resolve(value, {}, at("20220826000000")) == expected


MORE_CASES = [
    ("$[yyyy-MM-dd]", "2024-03-31"),  # a '-' followed by a letter is part of the format
    ("$[yyyy-MM-dd-1]", "2024-03-30"), ("$[yyyy-MM-dd+1]", "2024-04-01"),
    ("$[yyyy-MM-dd HH:mm:ss]", "2024-03-31 23:15:30"),
    ("$[add_months(yyyyMMdd,-1)]", "20240229"),  # Calendar.add clamps the day: Mar 31 - 1 month
    ("$[add_months(yyyy-MM-dd,1)]", "2024-04-30"),
    ("$[month_begin(yyyyMMdd,0)]", "20240301"), ("$[month_end(yyyyMMdd,-1)]", "20240330"),
    ("$[week_begin(yyyyMMdd,0)]", "20240325"), ("$[week_end(yyyyMMdd,1)]", "20240401"),
    ("$[month_last_day(yyyyMMdd,-1)]", "20240229"), ("$[week_first_day(yyyyMMdd,-1)]", "20240318"),
    ("$[yyyyMMddHHmmss-1/24/60]", "20240331231430"),  # one minute
    ("$[yyyyMMddHHmmss-1/24/60/60]", "20240331231530"),  # DS adds whole minutes: a second is 0
    ("x$[yyyyMMdd]y", "x20240331y"),
    ("$[EEE dd MMM yy 'at' hh a]", "Sun 31 Mar 24 at 11 PM"),
    ("$[timestamp(yyyyMMddHHmmss)]", "1711926930"),
    ("$[year_week(yyyyMMdd)]", "202413"),
]


@pytest.mark.parametrize(("value", "expected"), MORE_CASES)
def test_more_expressions(value: str, expected: str) -> None:
    assert tp.resolve(value, {}, at("20240331231530")) == expected


def test_year_week_keeps_the_calendar_year_at_year_ends() -> None:
    # 2025-12-29 is in ISO week 1 of 2026; DolphinScheduler prints Calendar.YEAR (2025) beside it
    assert tp.resolve("$[year_week(yyyyMMdd)]", {}, at("20251229000000")) == "202501"
    # 2027-01-01 is a Friday: it belongs to the last week of 2026 (53), printed with year 2027
    assert tp.resolve("$[year_week(yyyy-MM-dd)]", {}, at("20270101000000")) == "2027-53"


def test_the_calculator_keeps_dolphinschedulers_unary_minus() -> None:
    assert tp.calculate("1+2*3") == 7
    assert tp.calculate("(1+2)*3") == 9
    assert tp.calculate("-12*2") == -24
    assert tp.calculate("-1+2") == -3  # DolphinScheduler's evaluator: the unary minus takes the rest
    assert tp.calculate("7/2") == 3 and tp.calculate("-7/2") == -3  # Java: truncation toward zero


def test_timestamp_is_epoch_seconds_of_the_wall_time_in_the_zone() -> None:
    assert tp.resolve("$[timestamp(yyyyMMddHHmmss)]", {}, at("20261202020000"), "Asia/Shanghai") == str(
        ms(2026, 12, 1, 18) // 1000
    )


def test_parameter_references_then_time_expressions() -> None:
    params = {"system.biz.date": "20240330", "who": "etl"}
    assert tp.resolve("${who}-${system.biz.date}-${nope}", params, at("20240331000000")) == "etl-20240330-${nope}"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("$[week_last_day(yyyy-MM-dd,0) - 1]", "unsupported time expression"),  # DS's own refusal case
        ("$[add_months(yyyyMMdd)]", "add_months takes two arguments"),
        ("$[yyyyMMdd+]", "nothing after the last '+'"),
        ("$[timestamp(yyyyMMdd)]", "timestamp() needs an expression formatted yyyyMMddHHmmss"),
        ("$[qqq]", "pattern letter 'q' is not supported"),
        ("$['open]", "unterminated quote"),
        ("$[yyyyMMdd+1/0]", "ZeroDivisionError"),
    ],
)
def test_bad_expressions_are_refused_with_a_reason(value: str, reason: str) -> None:
    message = tp.check(value)
    assert message is not None and reason in message, message
    assert tp.check("plain $[yyyyMMdd] and $[1]") is None
