"""Read and validate the "no photo consent" roster.

Parsing and validation only: callers get a complete list of StudentRecord or a
RosterError listing *every* problem. A partial list is never returned, because
silently dropping one bad row would silently drop one student's protection.

Input is either the canonical CSV (what the test-set generator writes)::

    student_id,first_name,last_name,campus,grade,opt_out[,opt_out_until][,strict][,preferred_name]

or an SIS export (OneRoster users.csv, PowerSchool, ...) plus a TOML mapping
file (see load_mapping and roster/mappings/*.toml for the documented format).
"""
from __future__ import annotations

import codecs
import csv
import difflib
import io
import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from photocheck.config import SCHOOL_CHANNELS

# An import stops (changes nothing) unless confirmed when it would remove more than
# GUARD_REMOVED_SHARE of the students listed now (within --campus) and more than GUARD_MIN_STUDENTS,
# or when a consent column lists more than GUARD_LISTED_SHARE of the file's rows while adding more
# than GUARD_MIN_STUDENTS: what a consent column read the wrong way round does. Re-importing an
# unchanged list never stops, so a confirmation stays rare enough to be read.
GUARD_REMOVED_SHARE = 0.20
GUARD_LISTED_SHARE = 0.50
GUARD_MIN_STUDENTS = 5

__all__ = [
    "CHANNELS",
    "CONSENT_MEANINGS",
    "CANONICAL_COLUMNS",
    "OPTIONAL_COLUMNS",
    "StudentRecord",
    "RosterProblem",
    "RosterError",
    "Filter",
    "ConsentRule",
    "Mapping",
    "load_mapping",
    "read_roster",
    "read_roster_file",
    "RosterRead",
    "parse_opt_out",
    "parse_strict",
]

# Publication channels a student can opt out of: the school's channels, and "all" for every one.
CHANNELS: tuple[str, ...] = ("all", *SCHOOL_CHANNELS)
CANONICAL_COLUMNS: tuple[str, ...] = (
    "student_id", "first_name", "last_name", "campus", "grade", "opt_out",
)
OPTIONAL_COLUMNS: tuple[str, ...] = ("opt_out_until", "strict", "preferred_name")
ALL_FIELDS = CANONICAL_COLUMNS + OPTIONAL_COLUMNS

DELIMITERS = (",", ";", "\t")
_CHANNEL_SPLIT = re.compile(r"[;,|\s]+")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Spreadsheet formula triggers (OWASP CSV injection list). Tab/CR are stripped
# with the surrounding whitespace anyway.
_FORMULA_START = ("=", "+", "-", "@")
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0", ""}
_MAX_RENDERED = 50


# --------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class StudentRecord:
    student_id: str                 # always a string: leading zeros matter
    first_name: str
    last_name: str
    campus: str
    grade: str
    opt_out: tuple[str, ...]        # normalised channels; ("all",) absorbs the rest
    opt_out_until: date | None      # inclusive end of the opt-out; None = open-ended
    strict: bool
    line: int                       # physical line in the source file (1 = header)
    preferred_name: str = ""        # the name the student goes by, if the roster has one


@dataclass(frozen=True)
class RosterProblem:
    file: str
    line: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.column is not None:
            return f"{where}: column '{self.column}': {self.message}"
        return f"{where}: {self.message}"


class RosterError(Exception):
    """One or more problems in a roster or mapping file; str() lists them all."""

    def __init__(self, problems: list[RosterProblem]):
        self.problems = list(problems)
        super().__init__(self._render())

    def _render(self) -> str:
        lines = [str(p) for p in self.problems[:_MAX_RENDERED]]
        extra = len(self.problems) - _MAX_RENDERED
        if extra > 0:
            lines.append(f"... and {extra} more")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self._render()


@dataclass(frozen=True)
class Filter:
    """Keep a row only if `column` is (or is not) one of `values` (case-insensitive)."""

    column: str
    values: tuple[str, ...]
    negate: bool = False            # True for `not_equals`
    if_missing: str = "error"       # "error" | "ignore" when the column is absent


# What a yes in a consent column says. Required in every [[consent]] rule, so that a copied
# mapping whose column is renamed to one of the opposite meaning is caught (see load_mapping).
CONSENT_MEANINGS = ("consent_given", "consent_refused")


@dataclass(frozen=True)
class ConsentRule:
    """One consent field of the SIS. A value in `listed` lists the student for `channels`."""

    column: str
    channels: tuple[str, ...]
    means: str                      # one of CONSENT_MEANINGS
    listed: tuple[str, ...]         # values that put the student on the no-consent list
    not_listed: tuple[str, ...]     # values that leave the student off it
    if_missing: str = "error"       # "error" | "withheld" (column absent: every row listed) | "ignore"


@dataclass(frozen=True)
class Mapping:
    """How to turn one SIS export into canonical StudentRecords (see load_mapping)."""

    name: str = "canonical"
    encoding: str = "utf-8-sig"
    delimiter: str | None = None            # None = detect from the header
    columns: dict[str, str] = field(default_factory=dict)     # canonical -> source
    constants: dict[str, str] = field(default_factory=dict)   # canonical -> value
    translate: dict[str, dict[str, str]] = field(default_factory=dict)  # keys casefolded
    filters: tuple[Filter, ...] = ()
    consent: tuple[ConsentRule, ...] = ()


@dataclass(frozen=True)
class RosterRead:
    """A parsed roster file: the listed students and how the file decided who is listed."""

    records: list[StudentRecord]
    rows: int                       # data rows that passed the mapping's filters
    # Consent columns absent from the file whose rule lists every row (if_missing = "withheld").
    listed_by_default: tuple[str, ...] = ()
    # True when a consent column present in the file decided, row by row, who is listed.
    consent_decided: bool = False


# --------------------------------------------------------------------------
# Value parsers (public so the DB/CLI layers validate edits the same way)
# --------------------------------------------------------------------------

def parse_opt_out(value: str) -> tuple[str, ...]:
    """Normalise "web; Social|press" -> ("web", "social", "press"). ValueError if invalid."""
    parts = [p.casefold() for p in _CHANNEL_SPLIT.split(value.strip()) if p]
    if not parts:
        raise ValueError(f"empty value (expected one or more of: {', '.join(CHANNELS)})")
    unknown = sorted({p for p in parts if p not in CHANNELS})
    if unknown:
        raise ValueError(
            f"unknown opt-out channel {', '.join(repr(u) for u in unknown)} "
            f"(allowed: {', '.join(CHANNELS)})"
        )
    if "all" in parts:
        return ("all",)
    return tuple(c for c in CHANNELS if c in parts)  # stable canonical order, no dups


def parse_strict(value: str) -> bool:
    v = value.strip().casefold()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"invalid value {value.strip()!r} (expected true/false, yes/no or 1/0)")


def _parse_date(value: str) -> date | None:
    v = value.strip()
    if not v:
        return None
    # fromisoformat alone would also accept "20250101"/week dates; insist on the
    # one unambiguous form so "03/04/2025" style dates never slip through.
    if not _ISO_DATE.fullmatch(v):
        raise ValueError(f"invalid date {v!r} (expected YYYY-MM-DD)")
    try:
        return date.fromisoformat(v)
    except ValueError:
        raise ValueError(f"invalid date {v!r} (no such day)") from None


# --------------------------------------------------------------------------
# Mapping files
# --------------------------------------------------------------------------

_MAPPING_KEYS = {"name", "encoding", "delimiter", "columns", "constants",
                 "translate", "filter", "consent"}
_DELIM_NAMES = {",": ",", "comma": ",", ";": ";", "semicolon": ";",
                "\t": "\t", "tab": "\t"}


def load_mapping(path: str | Path) -> Mapping:
    """Load a TOML mapping file; RosterError lists every mistake in it."""
    path = Path(path)
    fname = str(path)
    problems: list[RosterProblem] = []

    def bad(msg: str) -> None:
        problems.append(RosterProblem(fname, None, None, msg))

    try:
        text = path.read_bytes().decode("utf-8-sig")
        data = tomllib.loads(text)
    except OSError as exc:
        raise RosterError([RosterProblem(fname, None, None, f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise RosterError([RosterProblem(fname, None, None, "not UTF-8 text (TOML files are UTF-8)")]) from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib puts "(at line N, column M)" in the message; keep it verbatim.
        raise RosterError([RosterProblem(fname, None, None, f"invalid TOML: {exc}")]) from None

    for key in sorted(set(data) - _MAPPING_KEYS):
        bad(f"unknown key {key!r} (allowed: {', '.join(sorted(_MAPPING_KEYS))})")

    name = str(data.get("name", path.stem))

    encoding = data.get("encoding", "utf-8-sig")
    try:
        encoding = codecs.lookup(str(encoding)).name
    except LookupError:
        bad(f"encoding: unknown encoding {encoding!r}")
        encoding = "utf-8-sig"

    delimiter = data.get("delimiter")
    if delimiter is not None:
        if delimiter not in _DELIM_NAMES:
            bad(f"delimiter: must be one of ',', ';', 'tab' (got {delimiter!r})")
            delimiter = None
        else:
            delimiter = _DELIM_NAMES[delimiter]

    columns = _str_table(data.get("columns", {}), "columns", bad)
    constants = _str_table(data.get("constants", {}), "constants", bad)
    for section, table in (("columns", columns), ("constants", constants)):
        for key in table:
            if key not in ALL_FIELDS:
                bad(f"{section}.{key}: not a canonical field (fields: {', '.join(ALL_FIELDS)})")
    for key in sorted(set(columns) & set(constants)):
        bad(f"{key}: set in both [columns] and [constants]; choose one")

    translate: dict[str, dict[str, str]] = {}
    raw_tr = data.get("translate", {})
    if not isinstance(raw_tr, dict):
        bad("translate: must be a table of tables")
        raw_tr = {}
    for key, table in raw_tr.items():
        if key not in ALL_FIELDS:
            bad(f"translate.{key}: not a canonical field")
            continue
        tr = _str_table(table, f"translate.{key}", bad)
        # Matching is case/whitespace-insensitive: SIS exports are inconsistent.
        translate[key] = {k.strip().casefold(): v for k, v in tr.items()}

    filters: list[Filter] = []
    for i, raw in enumerate(_array_of_tables(data.get("filter", []), "filter", bad)):
        where = f"filter #{i + 1}"
        col = raw.get("column")
        if not isinstance(col, str) or not col.strip():
            bad(f"{where}: 'column' is required")
            continue
        has_eq, has_ne = "equals" in raw, "not_equals" in raw
        if has_eq == has_ne:
            bad(f"{where}: give exactly one of 'equals' or 'not_equals'")
            continue
        values = _str_list(raw["equals" if has_eq else "not_equals"], where, bad)
        if_missing = raw.get("if_missing", "error")
        if if_missing not in ("error", "ignore"):
            bad(f"{where}: if_missing must be 'error' or 'ignore'")
        for k in sorted(set(raw) - {"column", "equals", "not_equals", "if_missing"}):
            bad(f"{where}: unknown key {k!r}")
        filters.append(Filter(col.strip(), values, negate=has_ne, if_missing=if_missing))

    consent: list[ConsentRule] = []
    consent_lines = _table_key_lines(text, "consent")
    for i, raw in enumerate(_array_of_tables(data.get("consent", []), "consent", bad)):
        keys = consent_lines[i] if i < len(consent_lines) else {}
        rule = _consent_rule(raw, f"consent #{i + 1}", keys,
                             lambda msg, key=None, keys=keys: problems.append(
                                 RosterProblem(fname, keys.get(key, keys.get("")), None, msg)))
        if rule is not None:
            consent.append(rule)

    if data.get("consent") and "opt_out" in columns | constants:
        bad("opt_out comes from [[consent]]; remove it from [columns]/[constants]")
    covered = set(columns) | set(constants) | ({"opt_out"} if data.get("consent") else set())
    missing = [f for f in CANONICAL_COLUMNS if f not in covered]
    if missing:
        bad(f"no source for required field(s): {', '.join(missing)} "
            "(add them to [columns] or [constants])")

    if problems:
        raise RosterError(problems)
    return Mapping(name=name, encoding=encoding, delimiter=delimiter,
                   columns={k: v.strip() for k, v in columns.items()},
                   constants=constants, translate=translate,
                   filters=tuple(filters), consent=tuple(consent))


_CONSENT_KEYS = {"column", "means", "listed", "not_listed", "channels", "if_missing", "column_name_misleading"}
# A column name that reads as a refusal / as a permission (lower-case, letters and digits only).
_NAME_REFUSED = re.compile(r"opt(ed)?out|refus|withh[oe]ld|withdr[ae]w|deni(al|ed)|deny|declin|object|revok|"
                           r"prohibit|exclu|donot|dont|notallow|no(photo|consent|permission|release|media|publish)")
_NAME_GIVEN = re.compile(r"consent|release|permission|permit|allow|approv|agree|grant|opt(ed)?in|publish")
# Cell values whose meaning is plain whatever the column: a yes/no, or a word naming the decision.
_YES = {"true", "t", "yes", "y", "1", "on", "x"}
_NO = {"false", "f", "no", "n", "0", "off"}
_GIVEN_WORDS = {"granted", "given", "consented", "allowed", "permitted", "approved", "agreed", "opted in", "opt-in"}
_REFUSED_WORDS = {"refused", "denied", "withheld", "declined", "withdrawn", "revoked", "objected", "opted out",
                  "opt-out", "opt out"}


def _consent_rule(raw: dict, where: str, keys: dict[str, int], bad) -> ConsentRule | None:
    """One [[consent]] table -> ConsentRule; bad(message, key) reports a problem at that key's line."""
    col = raw.get("column")
    if not isinstance(col, str) or not col.strip():
        bad(f"{where}: 'column' is required")
        return None
    col = col.strip()
    if "granted" in raw or "withheld" in raw:
        # The old form named values by consent only; an opt-out column copied into it read backwards.
        granted = _str_list(raw.get("granted", []), where, lambda m: None)
        withheld = _str_list(raw.get("withheld", []), where, lambda m: None)
        bad(f"{where}: 'granted'/'withheld' are replaced by 'means', 'listed' and 'not_listed'. If this "
            f"column records consent (a yes = the family agreed), write: means = \"consent_given\", "
            f"listed = {_toml_list(withheld)}, not_listed = {_toml_list(granted)}. If a yes in it means the "
            f"family REFUSED (an opt-out column), write means = \"consent_refused\" and list the yes values "
            f"under 'listed'", "granted" if "granted" in raw else "withheld")
        return None
    for k in sorted(set(raw) - _CONSENT_KEYS):
        bad(f"{where}: unknown key {k!r} (allowed: {', '.join(sorted(_CONSENT_KEYS))})", k)
    try:
        channels = parse_opt_out(" ".join(_str_list(raw.get("channels", ["all"]), where, bad)))
    except ValueError as exc:
        bad(f"{where}: channels: {exc}", "channels")
        channels = ("all",)
    means = raw.get("means")
    if means not in CONSENT_MEANINGS:
        bad(f"{where}: 'means' is required: \"consent_given\" if a yes in column {col!r} means the family "
            f"gave photo consent, \"consent_refused\" if it means they refused (an opt-out column)"
            + ("" if means is None else f" (got {means!r})"), "means" if "means" in raw else "column")
        return None
    listed = _str_list(raw.get("listed", []), where, bad)
    not_listed = _str_list(raw.get("not_listed", []), where, bad)
    if not listed or not not_listed:
        bad(f"{where}: both 'listed' and 'not_listed' value lists are required", "column")
    overlap = {v.strip().casefold() for v in listed} & {v.strip().casefold() for v in not_listed}
    if overlap:
        bad(f"{where}: values in both listed and not_listed: {sorted(overlap)}", "listed")
    if_missing = raw.get("if_missing", "error")
    if if_missing not in ("error", "withheld", "ignore"):
        bad(f"{where}: if_missing must be 'error', 'withheld' or 'ignore'", "if_missing")
    misleading = raw.get("column_name_misleading", False)
    if not isinstance(misleading, bool):
        bad(f"{where}: column_name_misleading must be true or false", "column_name_misleading")

    # Cross-checks: column name, `means` and the value lists must tell the same story, so that
    # renaming the column of a copied mapping (or flipping only `means`) cannot invert the list.
    reads = ("consent_refused" if _NAME_REFUSED.search(_squash(col))
             else "consent_given" if _NAME_GIVEN.search(_squash(col)) else None)
    if reads is not None and reads != means and misleading is not True:
        other = "a refusal (an opt-out)" if reads == "consent_refused" else "a consent (a permission)"
        bad(f"{where}: column {col!r} reads as {other}, but means = {means!r}: a renamed copy of a mapping "
            f"would list exactly the wrong students. If a yes in this column means the family "
            f"{'refused' if reads == 'consent_refused' else 'agreed'}, set means = {reads!r} and swap "
            f"'listed' and 'not_listed'; if the name is misleading, add column_name_misleading = true",
            "means" if "means" in raw else "column")
    yes_listed = means == "consent_refused"  # a yes lists the student only in an opt-out column
    for key, values, wrong in (("listed", listed, _NO if yes_listed else _YES),
                               ("not_listed", not_listed, _YES if yes_listed else _NO)):
        clash = [v for v in values if v.strip().casefold() in wrong]
        if clash:
            said = "a yes" if clash[0].strip().casefold() in _YES else "a no"
            verb = "refuse" if yes_listed else "consent"
            did = "did" if (said == "a yes") else "did not"
            bad(f"{where}: {key} = {clash} contradicts means = {means!r}: in a column that records a "
                f"{'refusal' if yes_listed else 'consent'}, {said} means the family {did} {verb}, so it belongs "
                f"in {'not_listed' if key == 'listed' else 'listed'}. Fix 'means' or swap the lists", key)
    for key, values, wrong in (("listed", listed, _GIVEN_WORDS), ("not_listed", not_listed, _REFUSED_WORDS)):
        clash = [v for v in values if v.strip().casefold() in wrong]
        if clash:
            bad(f"{where}: {key} = {clash}: those values say the opposite; swap them into "
                f"{'not_listed' if key == 'listed' else 'listed'}", key)
    return ConsentRule(col, channels, means, listed, not_listed, if_missing)


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.casefold())


def _toml_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "]"


def _table_key_lines(text: str, table: str) -> list[dict[str, int]]:
    """Line numbers of the keys of each [[table]] in a TOML text ("" = the table header line)."""
    blocks: list[dict[str, int]] = []
    current: dict[str, int] | None = None
    for n, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if re.fullmatch(rf"\[\[\s*{re.escape(table)}\s*\]\]\s*(#.*)?", stripped):
            current = {"": n}
            blocks.append(current)
        elif stripped.startswith("["):
            current = None
        elif current is not None:
            m = re.match(r"""["']?([A-Za-z0-9_.-]+)["']?\s*=""", stripped)
            if m:
                current.setdefault(m.group(1), n)
    return blocks


def _str_table(raw, where, bad) -> dict[str, str]:
    if not isinstance(raw, dict):
        bad(f"{where}: must be a table")
        return {}
    out = {}
    for k, v in raw.items():
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            bad(f"{where}.{k}: value must be a string")
            continue
        out[k] = str(v)
    return out


def _str_list(raw, where, bad) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        bad(f"{where}: expected a list of strings")
        return ()
    return tuple(raw)


def _array_of_tables(raw, where, bad) -> list[dict]:
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        bad(f"{where}: use [[{where}]] tables")
        return []
    return raw


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------

def read_roster(path: str | Path, mapping: Mapping | None = None, *,
                encoding: str | None = None) -> list[StudentRecord]:
    """Parse a roster file. Returns every listed student, or raises RosterError.

    Without a mapping the file must have the canonical columns (any order,
    header case-insensitive, extra columns ignored unless one looks like a
    misspelling of a missing photocheck column). `encoding` (e.g. "cp1252")
    overrides the mapping's; a byte-order mark always wins.
    """
    return read_roster_file(path, mapping, encoding=encoding).records


def read_roster_file(path: str | Path, mapping: Mapping | None = None, *,
                     encoding: str | None = None) -> RosterRead:
    """read_roster, plus how the file decided who is listed (for the import's safety checks)."""
    path = Path(path)
    fname = str(path)
    if encoding is not None:
        try:
            encoding = codecs.lookup(encoding).name
        except LookupError:
            raise RosterError([RosterProblem(fname, None, None, f"unknown encoding {encoding!r}")]) from None
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RosterError([RosterProblem(fname, None, None, f"cannot read: {exc.strerror}")]) from None
    text = _decode(raw, encoding or (mapping.encoding if mapping else "utf-8-sig"), fname)
    return _parse(text, fname, mapping)


def _decode(raw: bytes, encoding: str, fname: str) -> str:
    # Excel's "Unicode text" export is UTF-16 with a BOM; honour any BOM first.
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif raw.startswith(codecs.BOM_UTF8) or codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"  # a BOM is not part of the first column name
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        byte = raw[exc.start:exc.start + 1].hex()
        shown = "UTF-8" if encoding == "utf-8-sig" else encoding
        hint = ("save it as 'CSV UTF-8' (e.g. Excel: Save As > CSV UTF-8) or name its encoding "
                "(`photocheck roster import --encoding cp1252`, or `encoding` in the mapping file)"
                if shown == "UTF-8" else f"is the file really {encoding}? Name its actual encoding")
        raise RosterError([RosterProblem(
            fname, line, None,
            f"not valid {shown} text (byte 0x{byte} at byte {col} of the line); {hint}",
        )]) from None


def _read_header(text: str, delimiter: str) -> list[str]:
    return next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])


def _pick_delimiter(header_line: str, wanted: list[str]) -> str:
    # Score each candidate by how many wanted columns its split of the header
    # finds, then by column count: robust even when names contain commas.
    wanted_cf = {w.casefold() for w in wanted}

    def score(d: str) -> tuple[int, int]:
        cols = [c.strip().casefold() for c in _read_header(header_line, d)]
        return (len(wanted_cf & set(cols)), len(cols))

    return max(DELIMITERS, key=score)  # max() keeps the first on ties -> ","


def _parse(text: str, fname: str, mapping: Mapping | None) -> RosterRead:
    problems: list[RosterProblem] = []

    def bad(line: int | None, column: str | None, msg: str) -> None:
        problems.append(RosterProblem(fname, line, column, msg))

    # newline="" splits on \n, \r\n and bare \r exactly as csv expects, so
    # physical line numbers agree with csv.reader.line_num.
    lines = io.StringIO(text, newline="").readlines()
    first = 0
    delimiter = mapping.delimiter if mapping else None
    # Excel's "sep=;" hint line: honour it, never treat it as the header.
    if lines and re.fullmatch(r"sep=(.)\s*", lines[0].lstrip("\ufeff"), re.S):
        delimiter = delimiter or lines[0].strip()[4]
        first = 1
    while first < len(lines) and not lines[first].strip():
        first += 1
    if first >= len(lines):
        raise RosterError([RosterProblem(fname, None, None,
                                         "file is empty; a header row is required")])

    # Which source columns this file must provide.
    if mapping is None:
        wanted = list(CANONICAL_COLUMNS)
    else:
        wanted = list(mapping.columns.values()) + [f.column for f in mapping.filters] \
            + [c.column for c in mapping.consent]
    if delimiter is None:
        delimiter = _pick_delimiter(lines[first], wanted)

    reader = csv.reader(io.StringIO("".join(lines[first:]), newline=""),
                        delimiter=delimiter, strict=True)
    header_line = first + 1
    try:
        header = [h.strip() for h in next(reader)]
    except csv.Error as exc:
        raise RosterError([RosterProblem(fname, header_line, None, f"bad CSV header: {exc}")]) from None

    index = _index_header(header)

    def find(col: str) -> int | None:
        return index.get(col.casefold())

    # Resolve every field to a column index (or constant).
    field_idx: dict[str, int] = {}
    missing: list[str] = []
    if mapping is None:
        for f in ALL_FIELDS:
            i = find(f)
            if i is not None:
                field_idx[f] = i
            elif f in CANONICAL_COLUMNS:
                missing.append(f)
    else:
        for f, src in mapping.columns.items():
            i = find(src)
            if i is None:
                missing.append(src if src == f else f"{src} (for {f})")
            else:
                field_idx[f] = i
    filter_idx: list[tuple[Filter, int | None]] = []
    consent_idx: list[tuple[ConsentRule, int | None]] = []
    if mapping is not None:
        for flt in mapping.filters:
            i = find(flt.column)
            if i is None and flt.if_missing == "error":
                missing.append(f"{flt.column} (filter)")
            filter_idx.append((flt, i))
        for rule in mapping.consent:
            i = find(rule.column)
            if i is None and rule.if_missing == "error":
                missing.append(f"{rule.column} (consent)")
            consent_idx.append((rule, i))

    if mapping is None:
        # Extra columns are ignored, but a misspelt photocheck column must not be: a silently
        # dropped "strict" or "opt_out_until" would weaken a student's protection.
        used = set(field_idx.values())
        absent = [f for f in ALL_FIELDS if f not in field_idx]
        for i, h in enumerate(header):
            near = difflib.get_close_matches(h.casefold().replace(" ", "_").replace("-", "_"), absent, n=1,
                                             cutoff=0.75) if i not in used and h else []
            if near:
                bad(header_line, h, f"looks like a misspelling of the column {near[0]!r}: rename it "
                    f"(or remove the column if it means something else)")

    dup_names = _duplicate_names(header, [header[i] for i in field_idx.values()]
                                 + [header[i] for _, i in filter_idx + consent_idx if i is not None])
    for name in dup_names:
        bad(header_line, name, "column appears more than once in the header")
    if missing:
        found = ", ".join(repr(h) for h in header if h) or "none"
        hint = ""
        if mapping is None and len(missing) == len(CANONICAL_COLUMNS):
            hint = " (is the header row missing, or is this an SIS export that needs a mapping?)"
        bad(header_line, None, f"missing required column(s): {', '.join(missing)}; "
            f"found: {found}{hint}")
    if problems:
        raise RosterError(problems)

    # Error messages name the column as it appears in the file, with the
    # canonical field in brackets when the names differ (mapped exports).
    def label(f: str) -> str:
        if f not in field_idx:
            return f
        src = header[field_idx[f]]
        return src if src.casefold() == f else f"{src} ({f})"

    records: list[StudentRecord] = []
    seen: dict[str, int] = {}
    kept_rows = 0
    prev_line = header_line
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            bad(first + reader.line_num, None, f"malformed CSV: {exc}")
            break  # the reader cannot resync after e.g. an unclosed quote
        line = prev_line + 1                       # first physical line of this record
        prev_line = first + reader.line_num        # last physical line (quoted newlines)
        if not any(c.strip() for c in row):
            continue  # blank lines / Excel's ",,,,," leftovers carry no student
        if len(row) != len(header):
            bad(line, None, f"expected {len(header)} cells, found {len(row)}")
            continue
        rec, sid, row_problems, kept = _row_to_record(row, mapping, field_idx, filter_idx,
                                                      consent_idx, label)
        kept_rows += kept
        for column, msg in row_problems:
            bad(line, column, msg)
        # Duplicates are checked even on rows with other problems, so one
        # round of fixes is enough.
        if sid:
            if sid in seen:
                bad(line, label("student_id"),
                    f"duplicate student_id {sid!r} (first on line {seen[sid]})")
                continue
            seen[sid] = line
        if rec is not None:
            records.append(replace(rec, line=line))

    if problems:
        raise RosterError(problems)
    by_default = tuple(rule.column for rule, i in consent_idx if i is None and rule.if_missing == "withheld")
    return RosterRead(records, kept_rows, listed_by_default=by_default,
                      consent_decided=any(i is not None for _, i in consent_idx))


def _index_header(header: list[str]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, h in enumerate(header):
        index.setdefault(h.casefold(), i)  # first wins; duplicates reported separately
    return index


def _duplicate_names(header: list[str], used: list[str]) -> list[str]:
    used_cf = {u.casefold() for u in used}
    counts: dict[str, int] = {}
    for h in header:
        counts[h.casefold()] = counts.get(h.casefold(), 0) + 1
    return sorted({h for h in header if h.casefold() in used_cf and counts[h.casefold()] > 1})


def _row_to_record(row, mapping, field_idx, filter_idx, consent_idx, label):
    """One data row -> (record or None, student_id or "", [(column, message), ...], passed filters).

    The record is None when the row is filtered out, has consent, or is invalid;
    the caller stamps the line number on the problems and on the record.
    """
    cells = [c.strip() for c in row]
    problems: list[tuple[str | None, str]] = []

    def bad(column: str | None, msg: str) -> None:
        problems.append((column, msg))

    # Filters first: a teacher row must not fail on student-only validation.
    for flt, i in filter_idx:
        if i is None:
            continue  # if_missing == "ignore"
        hit = cells[i].casefold() in {v.casefold() for v in flt.values}
        if hit == flt.negate:
            return None, "", problems, False

    values: dict[str, str] = {}
    for f in ALL_FIELDS:
        if f in field_idx:
            v = cells[field_idx[f]]
        elif mapping is not None and f in mapping.constants:
            v = mapping.constants[f].strip()
        else:
            continue
        if mapping is not None and f in mapping.translate:
            v = mapping.translate[f].get(v.casefold(), v).strip()
        values[f] = v

    if consent_idx:
        withheld: list[str] = []
        for rule, i in consent_idx:
            if i is None:
                if rule.if_missing == "withheld":
                    withheld.extend(rule.channels)
                continue  # "ignore" (and "error" was already reported at the header)
            v = cells[i].casefold()
            if v in {x.strip().casefold() for x in rule.listed}:
                withheld.extend(rule.channels)
            elif v not in {x.strip().casefold() for x in rule.not_listed}:
                # Unknown consent values are errors, not guesses: a typo must
                # neither unlist a student nor be silently ignored.
                bad(rule.column,
                    f"unrecognised consent value {cells[i]!r} "
                    f"(listed: {list(rule.listed)}, not listed: {list(rule.not_listed)})")
                return None, "", problems, True
        if not withheld:
            return None, "", problems, True  # consent given everywhere -> not on the no-consent list
        values["opt_out"] = " ".join(withheld)

    sid = values.get("student_id", "")
    if not sid:
        bad(label("student_id"), "empty value")
    elif sid.startswith(_FORMULA_START):
        bad(label("student_id"),
            f"value {sid!r} starts with {sid[0]!r} (looks like a spreadsheet formula)")
    elif any(ch.isspace() or not ch.isprintable() for ch in sid):
        bad(label("student_id"), f"value {sid!r} contains whitespace or control characters")

    if not values.get("first_name") and not values.get("last_name"):
        bad(f"{label('first_name')}/{label('last_name')}", "both names are empty")

    opt_out: tuple[str, ...] = ()
    try:
        opt_out = parse_opt_out(values.get("opt_out", ""))
    except ValueError as exc:
        bad(label("opt_out"), str(exc))

    until = None
    try:
        until = _parse_date(values.get("opt_out_until", ""))
    except ValueError as exc:
        bad(label("opt_out_until"), str(exc))

    strict = False
    try:
        strict = parse_strict(values.get("strict", ""))
    except ValueError as exc:
        bad(label("strict"), str(exc))

    if problems:
        return None, sid, problems, True
    return StudentRecord(
        student_id=sid,
        first_name=values.get("first_name", ""),
        last_name=values.get("last_name", ""),
        campus=values.get("campus", ""),
        grade=values.get("grade", ""),
        opt_out=opt_out,
        opt_out_until=until,
        strict=strict,
        line=0,
        preferred_name=values.get("preferred_name", ""),
    ), sid, problems, True


# -------------------------------------------------------------------------- shipped mappings

# Source checkout: <repo>/roster/mappings/. Wheel install: photocheck/_mappings/ (force-include).
_MAPPING_DIRS = (Path(__file__).resolve().parent.parent / "roster" / "mappings",
                 Path(__file__).resolve().parent / "_mappings")


def shipped_mappings() -> dict[str, Path]:
    """The SIS mappings that come with photocheck, by name (file stem): e.g. "oneroster"."""
    found: dict[str, Path] = {}
    for d in _MAPPING_DIRS:
        if d.is_dir():
            for p in sorted(d.glob("*.toml")):
                found.setdefault(p.stem, p)
    return found


def find_mapping(name_or_path: str | Path) -> Path:
    """A mapping file given as a path, or as the name of a shipped one ("oneroster",
    "powerschool.toml"). An existing file wins over a shipped name; RosterError otherwise."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = shipped_mappings()
    key = p.name[:-5] if p.name.endswith(".toml") else p.name
    if p.parent == Path(".") and key in shipped:
        return shipped[key]
    names = ", ".join(shipped) or "(none found)"
    raise RosterError([RosterProblem(str(name_or_path), None, None,
                                     f"no such mapping file, and not the name of a shipped mapping ({names})")])
