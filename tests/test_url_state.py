"""The page's search as URL parameters (ui/url_state.py): round trips and bad input."""

from __future__ import annotations

from datetime import date

from searchapp.ui.filters_view import quick_range
from searchapp.ui.url_state import SearchState, from_params, to_params


def test_the_landing_page_has_no_parameters() -> None:
    assert to_params(SearchState()) == {}
    assert from_params({}) == SearchState()


def test_a_full_search_survives_the_round_trip() -> None:
    state = SearchState(
        q="dog + 2:beach", neg="people, cars", like=(12, 40), lw=-1.0, sort="newest",
        all=True, folder="/photos/2023/Juli", when="2023", types=("JPEG", "PNG"),
        min_side=800, fold=True, pages=3,
    )  # fmt: skip
    params = to_params(state)
    assert params["like"] == "12,40" and params["lw"] == "-1" and params["all"] == "1"
    assert from_params(params) == state


def test_malformed_parameters_fall_back_to_defaults() -> None:
    state = from_params(
        {"like": "7,x", "pages": "many", "sort": "random", "when": "someday", "lw": "99",
         "min_side": "-", "q": "kept"}
    )  # fmt: skip
    assert state == SearchState(q="kept", lw=3.0)
    assert from_params({"pages": "100000"}).pages == 50
    days = from_params({"when": "custom", "since": "garbage", "until": "2020-13-01"})
    assert (days.when, days.since, days.until) == ("custom", "", "")
    assert from_params({"when": "custom", "since": "2021-02-03"}).since == "2021-02-03"


def test_quick_date_ranges() -> None:
    today = date(2024, 6, 15)
    start, end = quick_range("this-month", today)
    assert date.fromtimestamp(start) == date(2024, 6, 1) and date.fromtimestamp(end) == today
    start, end = quick_range("last-year", today)
    assert (date.fromtimestamp(start), date.fromtimestamp(end)) == (
        date(2023, 1, 1), date(2023, 12, 31),
    )  # fmt: skip
    assert quick_range("", today) == (None, None)
    assert date.fromtimestamp(quick_range("2019", today)[0]) == date(2019, 1, 1)
