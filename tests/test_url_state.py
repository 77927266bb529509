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


def test_a_link_cannot_ask_for_what_the_page_cannot_show() -> None:
    """Values a hand-made or older link may carry: a weight the slider does not offer snaps
    to the nearest on its side of zero (the slider would fall back to "much less like
    this"); years and ids past what dates and SQLite hold, and digits that are not ASCII,
    are dropped rather than crash the page."""
    assert [from_params({"like": "1", "lw": w}).lw for w in ("0.7", "1.5", "-0.1", "0", "nan")] == [
        0.5, 1.0, -0.5, 0.5, 1.0,
    ]  # fmt: skip
    assert from_params({"lw": "-inf"}).lw == 1.0
    for when in ("0000", "0001", "¹²³⁴", "99999"):
        assert from_params({"when": when}).when == ""
    assert from_params({"when": "1999"}).when == "1999"
    assert from_params({"when": "custom", "since": "0001-01-01"}).since == ""
    assert from_params({"like": "3,99999999999999999999,²"}).like == ()
    assert from_params({"like": "3,99999999999999999999"}).like == (3,)
    assert from_params({"min_side": "50000"}).min_side == 20_000
    assert from_params({"min_side": "-5"}).min_side == 0
    assert from_params({"pages": "1_000"}).pages == 1
