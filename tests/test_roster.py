"""Roster parsing/validation: canonical CSV, SIS mappings, and every error kind."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from photocheck.roster import (
    RosterError,
    RosterProblem,
    StudentRecord,
    load_mapping,
    parse_opt_out,
    read_roster,
    read_roster_file,
)
from tests.helpers import REPO

MAPPINGS = REPO / "roster" / "mappings"
EXAMPLES = REPO / "roster" / "examples"
HEADER = "student_id,first_name,last_name,campus,grade,opt_out\n"


def write(tmp_path: Path, text: str, name: str = "roster.csv", encoding: str = "utf-8") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def errors(path: Path, mapping=None) -> RosterError:
    with pytest.raises(RosterError) as info:
        read_roster(path, mapping)
    return info.value


def only(err: RosterError) -> RosterProblem:
    assert len(err.problems) == 1, str(err)
    return err.problems[0]


# --------------------------------------------------------------------------
# Canonical files
# --------------------------------------------------------------------------

def test_generator_format(tmp_path):
    p = write(tmp_path, "student_id,first_name,last_name,campus,grade,opt_out\n"
                        "S100002,Barack,Obama,Demo High School,10,all")  # no final newline
    assert read_roster(p) == [StudentRecord(
        "S100002", "Barack", "Obama", "Demo High School", "10", ("all",), None, False, 2)]


def test_shipped_demo_roster():
    recs = read_roster(REPO / "roster" / "no_consent.csv")
    assert [(r.student_id, r.first_name, r.last_name, r.campus, r.grade, r.opt_out)
            for r in recs] == [
        ("D0001", "Joseph", "Biden", "Demo High School", "12", ("all",)),
    ]


def test_optional_columns_whitespace_and_leading_zeros(tmp_path):
    p = write(tmp_path,
              "Student_ID , first_name,last_name,campus,grade,opt_out,opt_out_until,strict,notes\n"
              " 000123 , Zoë , De Vries ,North,9, web;Social | press ,2026-07-31,yes,ignored\n"
              "000124,=cmd,@x,North,9,all web,,,\n")
    a, b = read_roster(p)
    assert a.student_id == "000123" and a.first_name == "Zoë" and a.last_name == "De Vries"
    assert a.opt_out == ("web", "social", "press")
    assert a.opt_out_until == date(2026, 7, 31) and a.strict is True
    # "all" absorbs other channels; formula-looking names are kept as plain data.
    assert b.opt_out == ("all",) and b.first_name == "=cmd" and b.last_name == "@x"
    assert b.opt_out_until is None and b.strict is False


@pytest.mark.parametrize("value,expected", [
    ("all", ("all",)), ("WEB", ("web",)), ("yearbook,web", ("web", "yearbook")),
    ("newsletter|press", ("newsletter", "press")), ("web web", ("web",)),
])
def test_parse_opt_out(value, expected):
    assert parse_opt_out(value) == expected


def test_bom(tmp_path):
    p = write(tmp_path, HEADER + "S1,A,B,C,9,all\n", encoding="utf-8-sig")
    assert read_roster(p)[0].student_id == "S1"


def test_utf16_excel_unicode_text(tmp_path):
    p = write(tmp_path, (HEADER + "S1,Zoë,B,C,9,all\n").replace(",", "\t"), encoding="utf-16")
    assert read_roster(p)[0].first_name == "Zoë"


def test_semicolon_delimiter_with_commas_in_data(tmp_path):
    p = write(tmp_path, HEADER.replace(",", ";") + "S1;Mary, Jr.;B;C;9;web,social\n")
    [r] = read_roster(p)
    assert r.first_name == "Mary, Jr." and r.opt_out == ("web", "social")


def test_tab_delimiter_and_crlf(tmp_path):
    p = write(tmp_path, (HEADER + "S1,A,B,C,9,all\n").replace(",", "\t").replace("\n", "\r\n"))
    assert read_roster(p)[0].opt_out == ("all",)


def test_old_mac_cr_line_endings(tmp_path):
    p = write(tmp_path, (HEADER + "S1,A,B,C,9,all\nS2,A,B,C,9,all\n").replace("\n", "\r"))
    assert [r.line for r in read_roster(p)] == [2, 3]


def test_excel_sep_hint_line(tmp_path):
    p = write(tmp_path, "sep=;\n" + HEADER.replace(",", ";") + "S1;A;B;C;9;all\n")
    [r] = read_roster(p)
    assert r.line == 3


def test_quoted_newline_keeps_line_numbers(tmp_path):
    p = write(tmp_path, HEADER + 'S1,"Multi\nLine",B,C,9,all\nS2,A,B,C,9,all\n')
    assert [r.line for r in read_roster(p)] == [2, 4]


def test_empty_roster_ok(tmp_path):
    assert read_roster(write(tmp_path, HEADER)) == []
    assert read_roster(write(tmp_path, HEADER + "\n,,,,,\n\n", "blank_rows.csv")) == []


def test_empty_file_is_error(tmp_path):
    assert "header row is required" in str(errors(write(tmp_path, "")))


# --------------------------------------------------------------------------
# Bad input: each names file, line and column; never a partial list
# --------------------------------------------------------------------------

@pytest.mark.parametrize("row,column,fragment", [
    (",A,B,C,9,all", "student_id", "empty value"),
    ("=1+2,A,B,C,9,all", "student_id", "spreadsheet formula"),
    ("+S1,A,B,C,9,all", "student_id", "spreadsheet formula"),
    ("-S1,A,B,C,9,all", "student_id", "spreadsheet formula"),
    ("@S1,A,B,C,9,all", "student_id", "spreadsheet formula"),
    ("S 1,A,B,C,9,all", "student_id", "whitespace"),
    ("S1,A,B,C,9,twitter", "opt_out", "unknown opt-out channel 'twitter'"),
    ("S1,A,B,C,9,", "opt_out", "empty value"),
    ("S1,,,C,9,all", "first_name/last_name", "both names are empty"),
])
def test_bad_row_kinds(tmp_path, row, column, fragment):
    p = write(tmp_path, HEADER + "S0,Ok,Row,C,9,all\n" + row + "\n")
    prob = only(errors(p))
    assert (prob.file, prob.line, prob.column) == (str(p), 3, column)
    assert fragment in prob.message
    assert str(prob).startswith(f"{p}:3: column '{column}': ")


@pytest.mark.parametrize("until,strict,column,fragment", [
    ("2025-13-01", "", "opt_out_until", "no such day"),
    ("31/12/2025", "", "opt_out_until", "expected YYYY-MM-DD"),
    ("", "maybe", "strict", "invalid value 'maybe'"),
])
def test_bad_optional_values(tmp_path, until, strict, column, fragment):
    p = write(tmp_path, HEADER.strip() + ",opt_out_until,strict\n"
                        f"S1,A,B,C,9,all,{until},{strict}\n")
    prob = only(errors(p))
    assert (prob.line, prob.column) == (2, column) and fragment in prob.message


def test_wrong_cell_count(tmp_path):
    p = write(tmp_path, HEADER + "S1,A,B,C,9\nS2,A,B,C,9,all,extra\n")
    err = errors(p)
    assert [(x.line, x.column) for x in err.problems] == [(2, None), (3, None)]
    assert "expected 6 cells, found 5" in str(err)
    assert f"{p}:3: expected 6 cells, found 7" in str(err)


def test_all_problems_reported_and_nothing_returned(tmp_path):
    p = write(tmp_path, HEADER + "S1,A,B,C,9,all\n,A,B,C,9,all\nS3,A,B,C,9,bogus\n")
    err = errors(p)
    assert [x.line for x in err.problems] == [3, 4]


def test_duplicate_ids_name_both_lines(tmp_path):
    p = write(tmp_path, HEADER + "S1,A,B,C,9,all\nS2,A,B,C,9,all\nS1,X,Y,C,9,all\n")
    prob = only(errors(p))
    assert (prob.line, prob.column) == (4, "student_id")
    assert "duplicate student_id 'S1' (first on line 2)" in prob.message


def test_duplicate_detected_even_when_first_row_is_bad(tmp_path):
    p = write(tmp_path, HEADER + "S1,A,B,C,9,bogus\nS1,X,Y,C,9,all\n")
    err = errors(p)
    assert [(x.line, x.column) for x in err.problems] == [(2, "opt_out"), (3, "student_id")]
    assert "(first on line 2)" in str(err)


def test_missing_column_lists_found(tmp_path):
    p = write(tmp_path, "student_id,first_name,surname,campus,grade\nS1,A,B,C,9\n")
    prob = only(errors(p))
    assert prob.line == 1
    assert "missing required column(s): last_name, opt_out" in prob.message
    assert "found: 'student_id', 'first_name', 'surname', 'campus', 'grade'" in prob.message


@pytest.mark.parametrize("column, meant", [("strickt", "strict"), ("Opt Out Until", "opt_out_until"),
                                           ("opt_out_untill", "opt_out_until")])
def test_misspelt_optional_column_is_an_error_not_ignored(tmp_path, column, meant):
    # A silently ignored "strict" column would let a protection-order student be published redacted.
    p = write(tmp_path, HEADER.strip() + f",{column}\nS1,A,B,C,9,all,yes\n")
    prob = only(errors(p))
    assert (prob.line, prob.column) == (1, column) and f"misspelling of the column {meant!r}" in prob.message


def test_unrelated_extra_columns_are_still_ignored(tmp_path):
    p = write(tmp_path, HEADER.strip() + ",email,homeroom,notes\nS1,A,B,C,9,all,a@b.c,12,\n")
    assert [r.student_id for r in read_roster(p)] == ["S1"]


def test_missing_header_hint(tmp_path):
    p = write(tmp_path, "S1,A,B,C,9,all\n")
    assert "is the header row missing" in str(errors(p))


def test_latin1_file_clear_error(tmp_path):
    p = write(tmp_path, HEADER + "S1,A,B,C,9,all\nS2,Zoë,B,C,9,all\n", encoding="latin-1")
    prob = only(errors(p))
    assert prob.line == 3
    assert "not valid UTF-8" in prob.message and "0xeb" in prob.message
    assert "CSV UTF-8" in prob.message


def test_latin1_ok_with_mapping_encoding(tmp_path):
    m = write(tmp_path, "encoding = 'latin-1'\n[columns]\n" + "".join(
        f"{f} = '{f}'\n" for f in HEADER.strip().split(",")), "m.toml")
    p = write(tmp_path, HEADER + "S2,Zoë,B,C,9,all\n", encoding="latin-1")
    assert read_roster(p, load_mapping(m))[0].first_name == "Zoë"


def test_unclosed_quote(tmp_path):
    p = write(tmp_path, HEADER + 'S1,"A,B,C,9,all\n')
    assert "malformed CSV" in str(errors(p))


def test_error_message_capped(tmp_path):
    p = write(tmp_path, HEADER + ",A,B,C,9,all\n" * 60)
    err = errors(p)
    assert len(err.problems) == 60
    lines = str(err).splitlines()
    assert len(lines) == 51 and lines[-1] == "... and 10 more"


# --------------------------------------------------------------------------
# SIS mappings
# --------------------------------------------------------------------------

def rows(recs):
    return [(r.student_id, r.first_name, r.last_name, r.campus, r.grade, r.opt_out) for r in recs]


def test_shipped_mappings_load():
    for name in ("oneroster", "powerschool"):
        load_mapping(MAPPINGS / f"{name}.toml")


def test_oneroster_example_11_with_consent_extension():
    recs = read_roster(EXAMPLES / "oneroster_users.csv", load_mapping(MAPPINGS / "oneroster.toml"))
    # Tobias consented, Gus is tobedeleted, teacher/parent are filtered out;
    # Lena's blank consent counts as withheld.
    assert rows(recs) == [
        ("001001", "Maya", "Rivera", "Demo High School", "9", ("all",)),
        ("001003", "Lena", "Chen", "Demo High School", "12", ("all",)),
    ]
    assert [r.line for r in recs] == [2, 4]


OR11_HEADER = ("sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,"
               "userIds,givenName,familyName,middleName,identifier,email,sms,phone,"
               "agentSourcedIds,grades,password\n")


def test_oneroster_11_without_consent_column_lists_every_student(tmp_path):
    p = write(tmp_path, OR11_HEADER
              + "u1,,,true,o1,student,a,,Ann,Lee,,00042,,,,,09,\n"
              + "u2,,,true,o1,teacher,b,,Bo,Ek,,T1,,,,,,\n", "users.csv")
    recs = read_roster(p, load_mapping(MAPPINGS / "oneroster.toml"))
    assert rows(recs) == [("00042", "Ann", "Lee", "Demo High School", "9", ("all",))]


def test_oneroster_12_users_csv(tmp_path):
    # 1.2: no role column (roles.csv), extra columns, metadata extension.
    header = ("sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,"
              "familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,"
              "password,userMasterIdentifier,resourceSourcedIds,preferredGivenName,"
              "preferredMiddleName,preferredFamilyName,primaryOrgSourcedId,pronouns,"
              "metadata.photo_consent\n")
    p = write(tmp_path, header
              + "u1,active,,true,ann,,Ann,Lee,,S1,,,,,KG,,,,,,,o1,,FALSE\n"
              + "u2,active,,true,bo,,Bo,Ek,,S2,,,,,10,,,,,,,o1,,TRUE\n"
              + "u3,active,,true,cy,,Cy,Ng,,S3,,,,,11,,,,,,,o1,,no\n", "users.csv")
    recs = read_roster(p, load_mapping(MAPPINGS / "oneroster.toml"))
    assert rows(recs) == [
        ("S1", "Ann", "Lee", "Demo High School", "K", ("all",)),
        ("S3", "Cy", "Ng", "Demo High School", "11", ("all",)),
    ]


def test_oneroster_unknown_consent_value_is_error(tmp_path):
    p = write(tmp_path, OR11_HEADER.strip() + ",metadata.photo_consent\n"
              + "u1,,,true,o1,student,a,,Ann,Lee,,00042,,,,,09,,maybe\n", "users.csv")
    prob = only(errors(p, load_mapping(MAPPINGS / "oneroster.toml")))
    assert (prob.line, prob.column) == (2, "metadata.photo_consent")
    assert "unrecognised consent value 'maybe'" in prob.message


def test_oneroster_mapped_error_names_source_column(tmp_path):
    p = write(tmp_path, OR11_HEADER + "u1,,,true,o1,student,a,,Ann,Lee,,,,,,,09,\n", "users.csv")
    prob = only(errors(p, load_mapping(MAPPINGS / "oneroster.toml")))
    assert str(prob) == f"{p}:2: column 'identifier (student_id)': empty value"


def test_powerschool_example():
    recs = read_roster(EXAMPLES / "powerschool_students.csv",
                       load_mapping(MAPPINGS / "powerschool.toml"))
    # Priya (Y) and Elif (yes) consented; Sam's blank release counts as withheld.
    assert rows(recs) == [
        ("012345", "Noah", "Lindqvist", "Demo High School", "9", ("all",)),
        ("012347", "Sam", "O'Donnell", "Demo Middle School", "K", ("all",)),
    ]


def test_powerschool_missing_consent_column(tmp_path):
    p = write(tmp_path, "Student_Number,First_Name,Last_Name,SchoolID,Grade_Level\n"
                        "1,A,B,100,9\n", "ps.csv")
    prob = only(errors(p, load_mapping(MAPPINGS / "powerschool.toml")))
    assert prob.line == 1 and "Photo_Release (consent)" in prob.message


def test_mapping_channel_specific_consent(tmp_path):
    m = write(tmp_path, """
[columns]
student_id = "ID"
first_name = "First"
last_name = "Last"
grade = "Grade"
[constants]
campus = "North"
[[consent]]
column = "Web"
means = "consent_given"
channels = ["web", "social"]
listed = ["N"]
not_listed = ["Y"]
[[consent]]
column = "Yearbook"
means = "consent_given"
channels = ["yearbook"]
listed = ["N"]
not_listed = ["Y"]
""", "m.toml")
    p = write(tmp_path, "ID;First;Last;Grade;Web;Yearbook\n1;A;B;9;N;Y\n2;C;D;9;Y;Y\n"
                        "3;E;F;9;N;N\n", "x.csv")
    recs = read_roster(p, load_mapping(m))
    assert [(r.student_id, r.opt_out) for r in recs] == [
        ("1", ("web", "social")), ("3", ("web", "social", "yearbook"))]


def test_bad_mapping_reports_everything(tmp_path):
    m = write(tmp_path, """
colums = {}
delimiter = "|"
[columns]
student_id = "ID"
nickname = "Nick"
[constants]
student_id = "x"
[[filter]]
column = "role"
[[consent]]
column = "C"
means = "consent_given"
listed = ["Y"]
not_listed = ["Y"]
""", "bad.toml")
    with pytest.raises(RosterError) as info:
        load_mapping(m)
    text = str(info.value)
    for fragment in ("unknown key 'colums'", "delimiter", "columns.nickname",
                     "student_id: set in both", "filter #1", "values in both listed and not_listed",
                     "no source for required field(s): first_name, last_name, campus, grade"):
        assert fragment in text
    assert all(p.file == str(m) for p in info.value.problems)


def test_invalid_toml(tmp_path):
    m = write(tmp_path, "[columns\n", "broken.toml")
    with pytest.raises(RosterError, match="invalid TOML"):
        load_mapping(m)


# --------------------------------------------------------------------------
# Consent meaning: a renamed copy of a mapping cannot invert the list
# --------------------------------------------------------------------------

def opt_out_export(tmp_path: Path) -> Path:
    # Ann's family refused (opt-out true), Bo's did not.
    return write(tmp_path, OR11_HEADER.strip() + ",metadata.photo_opt_out\n"
                 + "u1,,,true,o1,student,a,,Ann,Lee,,S1,,,,,09,,true\n"
                 + "u2,,,true,o1,student,b,,Bo,Ek,,S2,,,,,10,,false\n", "users.csv")


def mapping_problems(path: Path) -> RosterError:
    with pytest.raises(RosterError) as info:
        load_mapping(path)
    return info.value


def test_copied_oneroster_mapping_renamed_to_opt_out_column_is_refused(tmp_path):
    text = (MAPPINGS / "oneroster.toml").read_text()
    m = write(tmp_path, text.replace('column = "metadata.photo_consent"', 'column = "metadata.photo_opt_out"'),
              "district.toml")
    prob = only(mapping_problems(m))
    means_line = next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith("means ="))
    assert (prob.file, prob.line) == (str(m), means_line)
    assert "'metadata.photo_opt_out' reads as a refusal" in prob.message
    assert "set means = 'consent_refused'" in prob.message


def test_opt_out_column_with_means_refused_lists_the_refusing_student(tmp_path):
    text = (MAPPINGS / "oneroster.toml").read_text()
    text = text.replace('column = "metadata.photo_consent"', 'column = "metadata.photo_opt_out"')
    text = text.replace('means = "consent_given"', 'means = "consent_refused"')
    text = text.replace('listed = ["false", "no", "n", "0", ""]', 'listed = ["true", "yes", "y", "1"]')
    text = text.replace('not_listed = ["true", "yes", "y", "1"]', 'not_listed = ["false", "no", "n", "0", ""]')
    recs = read_roster(opt_out_export(tmp_path), load_mapping(write(tmp_path, text, "district.toml")))
    assert [r.student_id for r in recs] == ["S1"]


def test_flipping_means_without_swapping_the_lists_is_refused(tmp_path):
    text = (MAPPINGS / "oneroster.toml").read_text()
    text = text.replace('column = "metadata.photo_consent"', 'column = "metadata.photo_opt_out"')
    text = text.replace('means = "consent_given"', 'means = "consent_refused"')
    m = write(tmp_path, text, "district.toml")
    err = mapping_problems(m)
    assert {p.message.split(" = ")[0] for p in err.problems} == {"consent #1: listed", "consent #1: not_listed"}
    assert all(p.line is not None for p in err.problems)
    assert "contradicts means = 'consent_refused'" in str(err)


CONSENT_MAPPING = """
[columns]
student_id = "ID"
first_name = "First"
last_name = "Last"
grade = "Grade"
[constants]
campus = "North"
[[consent]]
"""


def test_old_style_consent_rule_fails_with_how_to_update(tmp_path):
    m = write(tmp_path, CONSENT_MAPPING + 'column = "Photo_Release"\ngranted = ["Y"]\nwithheld = ["N", ""]\n',
              "old.toml")
    prob = only(mapping_problems(m))
    assert prob.line == 11  # the `granted` line
    assert ('means = "consent_given", listed = ["N", ""], not_listed = ["Y"]' in prob.message
            and "consent_refused" in prob.message)


def test_means_is_required(tmp_path):
    m = write(tmp_path, CONSENT_MAPPING + 'column = "Flag"\nlisted = ["N"]\nnot_listed = ["Y"]\n', "m.toml")
    prob = only(mapping_problems(m))
    assert prob.line == 10 and "'means' is required" in prob.message


@pytest.mark.parametrize("rule, fragment", [
    ('column = "No_Media"\nmeans = "consent_given"\nlisted = ["N"]\nnot_listed = ["Y"]\n', "reads as a refusal"),
    ('column = "Photo_Permission"\nmeans = "consent_refused"\nlisted = ["Y"]\nnot_listed = ["N"]\n',
     "reads as a consent"),
    ('column = "Flag"\nmeans = "consent_given"\nlisted = ["Granted"]\nnot_listed = ["Refused"]\n',
     "those values say the opposite"),
])
def test_contradictions_are_refused(tmp_path, rule, fragment):
    err = mapping_problems(write(tmp_path, CONSENT_MAPPING + rule, "m.toml"))
    assert fragment in str(err) and all(p.line for p in err.problems)


def test_column_name_misleading_is_an_explicit_override(tmp_path):
    m = write(tmp_path, CONSENT_MAPPING + 'column = "OptOutForm"\nmeans = "consent_given"\n'
              'column_name_misleading = true\nlisted = ["N"]\nnot_listed = ["Y"]\n', "m.toml")
    p = write(tmp_path, "ID,First,Last,Grade,OptOutForm\n1,A,B,9,N\n2,C,D,9,Y\n", "x.csv")
    assert [r.student_id for r in read_roster(p, load_mapping(m))] == ["1"]


def test_read_roster_file_says_when_a_missing_consent_column_lists_every_row(tmp_path):
    p = write(tmp_path, OR11_HEADER
              + "u1,,,true,o1,student,a,,Ann,Lee,,00042,,,,,09,\n"
              + "u2,,,true,o1,student,b,,Bo,Ek,,00043,,,,,09,\n"
              + "u3,,,true,o1,teacher,c,,Cy,Ng,,T1,,,,,,\n", "users.csv")
    read = read_roster_file(p, load_mapping(MAPPINGS / "oneroster.toml"))
    assert (len(read.records), read.rows, read.listed_by_default, read.consent_decided) == \
        (2, 2, ("metadata.photo_consent",), False)
    read = read_roster_file(EXAMPLES / "powerschool_students.csv", load_mapping(MAPPINGS / "powerschool.toml"))
    assert (len(read.records), read.rows, read.listed_by_default, read.consent_decided) == (2, 4, (), True)


# --------------------------------------------------------------------------
# --encoding for canonical files
# --------------------------------------------------------------------------

def test_cp1252_canonical_file_with_encoding(tmp_path):
    p = write(tmp_path, HEADER + "S1,Zoë,Œuvre,C,9,all\n", encoding="cp1252")
    assert "not valid UTF-8" in only(errors(p)).message  # the default stays UTF-8
    [r] = read_roster(p, encoding="cp1252")
    assert (r.first_name, r.last_name) == ("Zoë", "Œuvre")


def test_encoding_decode_failure_names_file_and_line(tmp_path):
    p = write(tmp_path, HEADER + "S1,A,B,C,9,all\n", encoding="cp1252")
    p.write_bytes(p.read_bytes() + b"S2,A\x81,B,C,9,all\n")  # 0x81 is not a cp1252 character
    with pytest.raises(RosterError) as info:
        read_roster(p, encoding="cp1252")
    prob = only(info.value)
    assert (prob.file, prob.line) == (str(p), 3) and "not valid cp1252 text (byte 0x81" in prob.message


def test_unknown_encoding(tmp_path):
    with pytest.raises(RosterError, match="unknown encoding 'klingon'"):
        read_roster(write(tmp_path, HEADER), encoding="klingon")


# --------------------------------------------------------------------------
# `photocheck roster import` on a database: safety stop, --dry-run, warnings, --encoding
# --------------------------------------------------------------------------

DISTRICT_MAPPING = """
[columns]
student_id = "identifier"
first_name = "givenName"
last_name = "familyName"
grade = "grades"
[constants]
campus = "North"
[[consent]]
column = "metadata.photo"     # a name that says nothing either way
means = "consent_given"
listed = ["false", ""]
not_listed = ["true"]
"""
REFUSING = {f"S{i:02d}" for i in range(1, 7)}  # 6 of 30 families refused


def district_export(tmp_path: Path, name: str, *, yes_means_refused: bool) -> Path:
    """30 students; `yes_means_refused` writes the same decisions as an opt-out column would."""
    lines = ["identifier,givenName,familyName,grades,metadata.photo"]
    for i in range(1, 31):
        sid = f"S{i:02d}"
        refused = sid in REFUSING
        lines.append(f"{sid},Given{i},Family{i},9,{'true' if refused == yes_means_refused else 'false'}")
    return write(tmp_path, "\n".join(lines) + "\n", name)


def listed_ids(db_url: str) -> list[str]:
    from sqlalchemy import select

    from photocheck.db import open_database
    from photocheck.db.models import Student

    db = open_database(db_url)
    try:
        with db.session() as s:
            return sorted(s.scalars(select(Student.student_id)))
    finally:
        db.dispose()


def import_count(db_url: str) -> tuple[int, int]:
    from sqlalchemy import func, select

    from photocheck.db import open_database
    from photocheck.db.models import AuditEvent, RosterImport

    db = open_database(db_url)
    try:
        with db.session() as s:
            return (s.scalar(select(func.count()).select_from(RosterImport)),
                    s.scalar(select(func.count()).select_from(AuditEvent)))
    finally:
        db.dispose()


def last_import_event(db_url: str) -> dict:
    import json

    from sqlalchemy import select

    from photocheck.db import open_database
    from photocheck.db.models import AuditEvent

    db = open_database(db_url)
    try:
        with db.session() as s:
            ev = s.scalars(select(AuditEvent).where(AuditEvent.action == "roster.import")
                           .order_by(AuditEvent.seq.desc())).first()
            return json.loads(ev.details)
    finally:
        db.dispose()


@pytest.mark.backends("sqlite", "postgresql")
def test_inverted_reimport_stops_shows_counts_and_changes_nothing_until_yes(cli, db_url, tmp_path):
    m = write(tmp_path, DISTRICT_MAPPING, "district.toml")
    good = district_export(tmp_path, "good.csv", yes_means_refused=False)
    assert "6 added" in cli("roster", "import", good, "--mapping", m).output
    assert listed_ids(db_url) == sorted(REFUSING)
    before = import_count(db_url)
    # The SIS field now records refusals (true = refused) but the mapping still says consent.
    inverted = district_export(tmp_path, "inverted.csv", yes_means_refused=True)
    out = " ".join(cli("roster", "import", inverted, "--mapping", m, expect=3).output.split())
    assert "roster not imported — nothing was changed" in out
    assert "it removes 6 of the 6 listed students (100%)" in out
    assert "lists 24 of the 30 students in the file (80%), 24 of them new" in out
    assert "Would be: 24 added, 0 changed, 6 removed, 0 kept unchanged" in out
    assert "would remove: S01, S02, S03, S04, S05, S06" in out
    assert "would add: S07, S08," in out and "... and 4 more" in out  # a sample of 20 ids
    assert "Given" not in out and "Family" not in out  # ids only
    assert "--yes" in out
    assert listed_ids(db_url) == sorted(REFUSING) and import_count(db_url) == before
    # --dry-run says the same and changes nothing either.
    out = " ".join(cli("roster", "import", inverted, "--mapping", m, "--dry-run", expect=3).output.split())
    assert "Dry run — nothing was changed" in out and "6 removed" in out and "stop for --yes" in out
    assert listed_ids(db_url) == sorted(REFUSING) and import_count(db_url) == before
    # Confirmed: imported, and the confirmation is in the audit trail.
    out = cli("roster", "import", inverted, "--mapping", m, "--yes").output
    assert "24 added" in out and "Confirmed with --yes" in out
    assert len(listed_ids(db_url)) == 24
    assert "it removes 6 of the 6 listed students" in last_import_event(db_url)["confirmed"][0]


@pytest.mark.backends("sqlite", "postgresql")
def test_first_import_whose_consent_column_lists_most_rows_stops(cli, db_url, tmp_path):
    m = write(tmp_path, DISTRICT_MAPPING, "district.toml")
    inverted = district_export(tmp_path, "inverted.csv", yes_means_refused=True)
    out = " ".join(cli("roster", "import", inverted, "--mapping", m, expect=3).output.split())
    assert "lists 24 of the 30 students in the file (80%)" in out and "it removes" not in out
    assert listed_ids(db_url) == []
    # A district where most families refuse confirms once; the same list again does not stop.
    cli("roster", "import", inverted, "--mapping", m, "--yes")
    assert "24 unchanged" in cli("roster", "import", inverted, "--mapping", m).output


@pytest.mark.backends("sqlite", "postgresql")
def test_canonical_reimport_removing_many_stops(cli, db_url, tmp_path):
    rows = "".join(f"S{i},A,B,North,9,all\n" for i in range(10))
    cli("roster", "import", write(tmp_path, HEADER + rows, "all.csv"))
    # 6 of 10 removed: stops; 1 of 10 (or 5 of 10, not more than 5) goes through.
    fewer = write(tmp_path, HEADER + "".join(f"S{i},A,B,North,9,all\n" for i in range(4)), "fewer.csv")
    out = " ".join(cli("roster", "import", fewer, expect=3).output.split())
    assert "it removes 6 of the 10 listed students (60%)" in out and "would remove: S4, S5, S6, S7, S8, S9" in out
    assert len(listed_ids(db_url)) == 10
    five = write(tmp_path, HEADER + "".join(f"S{i},A,B,North,9,all\n" for i in range(5)), "five.csv")
    assert "5 removed" in cli("roster", "import", five).output


def test_dry_run_creates_no_database_and_no_key(tmp_path):
    from photocheck import config
    from tests.helpers import Cli

    db_file = tmp_path / "never.db"
    out = Cli(f"sqlite:///{db_file}")("roster", "import", REPO / "roster" / "no_consent.csv", "--dry-run").output
    assert "Dry run — nothing was changed" in out and "Would be: 1 added" in out and "would add: D0001" in out
    assert list(tmp_path.iterdir()) == [] and not config.key_file().exists()


@pytest.mark.backends("sqlite", "postgresql")
def test_dry_run_on_an_existing_database_writes_nothing(cli, db_url, tmp_path):
    cli("roster", "import", REPO / "roster" / "no_consent.csv")
    before = import_count(db_url)
    out = cli("roster", "import", write(tmp_path, HEADER + "S1,A,B,C,9,all\n"), "--dry-run").output
    assert "1 added, 0 changed, 1 removed" in out and "would remove: D0001" in out
    assert listed_ids(db_url) == ["D0001"] and import_count(db_url) == before


def test_missing_consent_column_listing_every_row_warns_loudly(cli, tmp_path):
    p = write(tmp_path, OR11_HEADER
              + "u1,,,true,o1,student,a,,Ann,Lee,,00042,,,,,09,\n"
              + "u2,,,true,o1,student,b,,Bo,Ek,,00043,,,,,10,\n", "users.csv")
    out = " ".join(cli("roster", "import", p, "--mapping", MAPPINGS / "oneroster.toml").output.split())
    assert "WARNING: every row is listed" in out
    assert "'metadata.photo_consent' is not in" in out and "all 2 student row(s) are listed" in out
    out = " ".join(cli("roster", "import", EXAMPLES / "oneroster_users.csv",
                       "--mapping", MAPPINGS / "oneroster.toml").output.split())
    assert "WARNING" not in out  # the column is there: it decided


def test_import_encoding_option(cli, db_url, tmp_path):
    p = write(tmp_path, HEADER + "S1,Zoë,B,C,9,all\n", encoding="cp1252")
    out = cli("roster", "import", p, expect=1).output
    assert f"{p}:2" in out and "--encoding cp1252" in " ".join(out.split())
    cli("roster", "import", p, "--encoding", "cp1252")
    assert "Zoë" in cli("roster", "list").output
    bad = write(tmp_path, HEADER + "S1,A,B,C,9,all\n", "bad.csv", encoding="cp1252")
    bad.write_bytes(bad.read_bytes() + b"S2,A\x81,B,C,9,all\n")
    assert f"{bad}:3: not valid cp1252 text" in cli("roster", "import", bad, "--encoding", "cp1252",
                                                   expect=1).output.replace("\n", "")
    assert "unknown encoding 'klingon'" in cli("roster", "import", p, "--encoding", "klingon", expect=2).output


def test_import_help_gives_exit_codes(cli):
    out = " ".join(cli("roster", "import", "--help").output.split())
    assert "Exit status: 0 imported" in out and "1 not imported" in out and "2 usage" in out
    assert "3 not imported, a large change that needs --yes" in out and "--dry-run" in out
