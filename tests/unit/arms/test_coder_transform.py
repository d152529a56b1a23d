"""Offline data transformations: done for real when recognised, refused honestly otherwise."""

import json

import pytest

from app.arms.datatransform import Unsupported, parse, render, transform

PEOPLE_JSON = json.dumps([
    {"name": "Bob", "age": 31, "city": "Paris"},
    {"name": "Ann", "age": 25, "city": "Rome", "tags": ["x", "y"]},
    {"name": "Cid", "age": 40, "city": "Paris"},
])
PEOPLE_CSV = "name,age,city,score\nBob,31,Paris,3.50\nAnn,25,Rome,10\nCid,40,Paris,\n"


def test_json_to_csv_with_the_union_of_keys():
    done = transform("Convert this JSON to CSV", PEOPLE_JSON)

    assert done.text == ('name,age,city,tags\nBob,31,Paris,\nAnn,25,Rome,"[""x"", ""y""]"\n'
                         "Cid,40,Paris,\n")
    assert (done.input_format, done.output_format) == ("json", "csv")
    assert done.operations == ["convert json to csv"]
    assert (done.rows_in, done.rows_out) == (3, 3)


def test_csv_to_json_turns_canonical_numbers_into_numbers():
    done = transform("Turn the CSV data in the context into JSON", PEOPLE_CSV)

    rows = json.loads(done.text)
    assert rows[0] == {"name": "Bob", "age": 31, "city": "Paris", "score": 3.5}
    assert rows[2]["score"] == ""


def test_sort_descending_keeps_csv_text_as_written():
    done = transform("sort the rows by score, highest first", PEOPLE_CSV)

    assert done.text == "name,age,city,score\nAnn,25,Rome,10\nBob,31,Paris,3.50\nCid,40,Paris,\n"
    assert done.operations == ["sort by score descending"]


def test_sort_text_field_ascending_case_insensitive():
    data = json.dumps([{"n": "beta"}, {"n": "Alpha"}, {"n": "gamma"}])

    done = transform("Sort by n", data)

    assert [r["n"] for r in json.loads(done.text)] == ["Alpha", "beta", "gamma"]


@pytest.mark.parametrize("goal, names", [
    ("keep only rows where age > 30", ["Bob", "Cid"]),
    ("filter rows where age >= 31.", ["Bob", "Cid"]),
    ("rows with city = paris", ["Bob", "Cid"]),
    ("filter out rows where city is Paris", ["Ann"]),
    ("remove records where age < 30", ["Bob", "Cid"]),
    ("entries whose name contains 'n'", ["Ann"]),
    ("where city != 'Paris'", ["Ann"]),
])
def test_filters(goal, names):
    done = transform(goal, PEOPLE_JSON)

    assert [r["name"] for r in json.loads(done.text)] == names


def test_combined_filter_sort_limit_and_conversion():
    done = transform("Keep rows where age > 20, sort by age descending, first 2, output as CSV",
                     PEOPLE_JSON)

    assert done.text.splitlines() == ["name,age,city", "Cid,40,Paris", "Bob,31,Paris"]
    assert done.operations == ["keep rows where age > 20", "sort by age descending", "first 2",
                               "convert json to csv"]


def test_dedupe():
    data = json.dumps([{"a": 1}, {"a": 1}, {"a": 2}])

    assert json.loads(transform("remove duplicates", data).text) == [{"a": 1}, {"a": 2}]


def test_format_constraint_sets_the_target():
    done = transform("Sort by age", PEOPLE_JSON, {"format": "csv"})

    assert done.output_format == "csv"


def test_tsv_is_recognised_and_kept():
    done = transform("sort by b", "a\tb\nx\t2\ny\t1\n")

    assert done.text == "a\tb\ny\t1\nx\t2\n"


@pytest.mark.parametrize("goal, data, reason", [
    ("group the rows by city and count them", PEOPLE_JSON, "'group'"),
    ("pivot this table", PEOPLE_CSV, "'pivot'"),
    ("make this data nicer", PEOPLE_JSON, "no conversion"),
    ("sort by height", PEOPLE_JSON, "no field 'height'"),
    ("convert to csv", "just some words", "neither JSON nor delimited"),
    ("convert to csv", "[1, 2, 3]", "list of objects"),
    ("convert to csv", "{broken json", "does not parse"),
    ("convert to csv", "   ", "no data"),
])
def test_unsupported_requests_say_why(goal, data, reason):
    with pytest.raises(Unsupported, match=reason):
        transform(goal, data)


def test_parse_and_render_round_trip():
    fmt, rows = parse(PEOPLE_CSV)

    assert fmt == "csv" and len(rows) == 3
    assert render(rows, "csv") == PEOPLE_CSV
