"""Reading a registry export as it really comes: the separator, decimal mark and text encoding are detected (or
given), said back to the user, and a file that cannot be read gets one sentence saying what to do.

Spreadsheets in most of Europe write CSV with `;` between fields and a decimal comma, in Windows-1252 or
Latin-1 rather than UTF-8; Excel's "Unicode text" is UTF-16 with tabs. All of these read here; every value stays
text until the schema checks it, so a number with a decimal comma is rewritten with a point and nothing else.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
SEPARATOR_WORDS = {"comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t", "pipe": "|"}
DECIMAL_WORDS = {".": ".", "point": ".", "dot": ".", ",": ",", "comma": ","}
SAMPLE_LINES = 200
# A number written with a decimal comma (12,5 / -0,25 / ,5), and one with a dot that a decimal-comma file cannot
# hold unambiguously (1.500 may be 1500 with a thousands dot, or 1.5).
COMMA_NUMBER = re.compile(r"[+-]?\d*,\d+")
POINT_NUMBER = re.compile(r"[+-]?\d*\.\d+")
DOTTED_NUMBER = re.compile(r"[+-]?(\d+\.)+\d*(,\d+)?|[+-]?\.\d+(,\d+)?")
WHAT_TO_DO = "export it again from the registry or spreadsheet as CSV or Parquet"


class RegistryFileError(ValueError):
    """A file that cannot be read at all; the message is one sentence saying what to do."""


@dataclass(frozen=True)
class FileFormat:
    """How a file was read, and which parts of it the user gave rather than the reader detected."""

    kind: str  # "CSV" or "Parquet"
    separator: str | None = None
    decimal: str | None = None
    encoding: str | None = None
    given: frozenset[str] = field(default_factory=frozenset)
    decimals_seen: bool = True

    def _how(self, part: str) -> str:
        return "given" if part in self.given else "detected"

    def describe(self) -> str:
        """One line for the report and the run, e.g. CSV, separator ';' (semicolon, detected), ..."""
        if self.kind != "CSV":
            return f"{self.kind} (typed columns: no separator, decimal mark or encoding to detect)"
        assert self.separator is not None and self.decimal is not None
        mark = "comma" if self.decimal == "," else "point"
        decimal = f"decimal {mark} ({self._how('decimal')})"
        if not self.decimals_seen and "decimal" not in self.given:
            decimal = "decimal point (no decimal numbers in the file)"
        return (f"CSV, separator {self.separator!r} ({SEPARATORS.get(self.separator, 'other')}, "
                f"{self._how('separator')}), {decimal}, encoding {self.encoding} ({self._how('encoding')})")


# --- options given by the user --------------------------------------------------------------------------------

def separator_option(value: str | None) -> str | None:
    """`;`, `semicolon`, `tab`, ... as the one character; None when not given."""
    if value is None or value == "":
        return None
    if value in SEPARATORS:
        return value
    if value.lower() in SEPARATOR_WORDS:
        return SEPARATOR_WORDS[value.lower()]
    raise RegistryFileError(f"unknown separator {value!r}: give one of , ; | or the words comma, semicolon, tab, "
                            "pipe (SEP=semicolon)")


def decimal_option(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if value.lower() in DECIMAL_WORDS:
        return DECIMAL_WORDS[value.lower()]
    raise RegistryFileError(f"unknown decimal mark {value!r}: give . or , (or the words point, comma)")


def encoding_option(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    try:
        codecs.lookup(value)
    except LookupError:
        raise RegistryFileError(f"unknown encoding {value!r}: give e.g. utf-8, cp1252 (Windows) or latin-1") from None
    return value


# --- text: encoding and separator ---------------------------------------------------------------------------

def decode(data: bytes, encoding: str | None) -> tuple[str, str]:
    """(text, name of the encoding). Without one given: UTF-8 (with or without byte-order mark), UTF-16 by its
    byte-order mark, else Windows-1252 when it uses the bytes only Windows-1252 gives letters to, else Latin-1."""
    if encoding:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError as error:
            raise RegistryFileError(f"the file is not valid {encoding} (byte {error.start + 1} cannot be read that "
                                    "way): give its real encoding (ENCODING=cp1252, ENCODING=latin-1, ...) or "
                                    "leave ENCODING out to detect it") from None
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8):].decode("utf-8", errors="strict"), "UTF-8 with byte-order mark"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16"), "UTF-16"
    _refuse_binary(data)
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        pass
    # Bytes 0x80-0x9f are control characters in Latin-1 but letters and punctuation (€ – ’ Œ) in Windows-1252.
    if any(0x80 <= byte <= 0x9F for byte in data):
        try:
            return data.decode("cp1252"), "Windows-1252"
        except UnicodeDecodeError:
            pass
    return data.decode("latin-1"), "Latin-1 (ISO-8859-1)"


def _refuse_binary(data: bytes) -> None:
    head = data[:4096]
    if head.startswith(b"PK\x03\x04"):
        raise RegistryFileError("this is a spreadsheet workbook (.xlsx) with a .csv name, not CSV: in the "
                                "spreadsheet use Save As > CSV, or export Parquet")
    if b"\x00" in head:
        raise RegistryFileError(f"the file holds binary data, not CSV text: {WHAT_TO_DO}")


def detect_separator(text: str) -> str:
    """The candidate that splits the header into the most fields and every sampled line into as many; a file
    with one column only (no candidate splits its header) reads as comma-separated."""
    lines = [line for line in text.splitlines()[:SAMPLE_LINES] if line.strip()]
    best, best_score = ",", (0.0, 1)
    for candidate in SEPARATORS:
        counts = [len(row) for row in csv.reader(lines, delimiter=candidate)]
        if not counts or counts[0] < 2:
            continue
        consistent = sum(count == counts[0] for count in counts) / len(counts)
        score = (consistent, counts[0])
        if score > best_score:
            best, best_score = candidate, score
    return best


def detect_decimal(frame: pd.DataFrame) -> tuple[str, bool]:
    """(decimal mark, whether any decimal number was seen): a comma when more cells are written 12,5 than 12.5."""
    commas = points = 0
    for column in frame.columns:
        text = frame[column].dropna().astype(str).str.strip()
        commas += int(text.str.fullmatch(COMMA_NUMBER).sum())
        points += int(text.str.fullmatch(POINT_NUMBER).sum())
    return ("," if commas > points else "."), commas + points > 0


def apply_decimal_mark(frame: pd.DataFrame, decimal: str | None) -> tuple[pd.DataFrame, dict[str, list[int]]]:
    """Rewrite 12,5 as 12.5 when the file's decimal mark is a comma. Also returns, per column, the 0-based rows of
    numbers written with a dot in such a file (ambiguous: a thousands dot or a decimal point), for the report."""
    if decimal != ",":
        return frame, {}
    frame = frame.copy()
    dotted: dict[str, list[int]] = {}
    for column in frame.columns:
        if frame[column].dtype != object:
            continue
        text = frame[column].astype("string").str.strip()
        comma = text.str.fullmatch(COMMA_NUMBER).fillna(False).to_numpy(bool)
        frame.loc[comma, column] = text[comma].str.replace(",", ".", regex=False)
        ambiguous = text.str.fullmatch(DOTTED_NUMBER).fillna(False).to_numpy(bool)
        if ambiguous.any():
            dotted[column] = [int(i) for i in ambiguous.nonzero()[0]]
    return frame, dotted


# --- the file -------------------------------------------------------------------------------------------------

def read_registry_table(path: str | Path, *, separator: str | None = None, decimal: str | None = None,
                        encoding: str | None = None) -> tuple[pd.DataFrame, FileFormat]:
    """The file as text columns (CSV) or typed columns (Parquet), and how it was read. Raises
    FileNotFoundError, or RegistryFileError with one sentence when the file cannot be read."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"registry file not found: {path}")
    if path.is_dir():
        raise RegistryFileError(f"{path} is a folder: give the registry file itself (DATA=folder/file.csv)")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame, file_format = _read_parquet(path), FileFormat("Parquet")
    elif suffix in (".csv", ".txt", ".tsv"):
        frame, file_format = _read_csv(path, separator_option(separator), decimal_option(decimal),
                                       encoding_option(encoding))
    else:
        raise ValueError(f"unsupported file type {path.suffix!r}: use .csv or .parquet")
    if frame.empty:
        raise RegistryFileError("the file has a header row but no patient rows: export it again with one row per "
                                "patient under the header")
    return frame, file_format


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for a file that is not Parquet
        reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        raise RegistryFileError(f"the file cannot be read as Parquet ({reason}): {WHAT_TO_DO}") from None


def _read_csv(path: Path, separator: str | None, decimal: str | None, encoding: str | None
              ) -> tuple[pd.DataFrame, FileFormat]:
    data = path.read_bytes()
    if not data.strip():
        raise RegistryFileError("the file is empty: export it again with a header row of column names and one row "
                                "per patient")
    text, encoding_name = decode(data, encoding)
    if not text.strip():
        raise RegistryFileError("the file is empty: export it again with a header row of column names and one row "
                                "per patient")
    sep = separator or detect_separator(text)
    if decimal is not None and decimal == sep:
        raise RegistryFileError(f"the decimal mark and the separator are both {sep!r}: give a different separator "
                                "(SEP=semicolon) or decimal mark")
    frame = _parse(text, sep, given=separator is not None)
    if len(frame.columns) == 1 and (other := detect_separator(text)) != sep:
        raise RegistryFileError(f"the given separator {sep!r} ({SEPARATORS.get(sep, 'other')}) leaves the header "
                                f"one column, while {other!r} ({SEPARATORS[other]}) splits it: give "
                                f"SEP={SEPARATORS[other]} or leave SEP out to detect it")
    found_decimal, seen = detect_decimal(frame) if decimal is None else (decimal, True)
    given = frozenset(name for name, value in (("separator", separator), ("decimal", decimal),
                                               ("encoding", encoding)) if value is not None)
    return frame, FileFormat("CSV", sep, found_decimal, encoding_name, given, seen)


def _parse(text: str, sep: str, given: bool) -> pd.DataFrame:
    try:
        return pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise RegistryFileError("the file has no header row: export it again with a header row of column names "
                                "and one row per patient") from None
    except pd.errors.ParserError as error:
        how = "given" if given else "detected"
        fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
        where = (f"line {fields.group(2)} has {fields.group(3)} fields where the header has {fields.group(1)}"
                 if fields else "the rows do not line up with the header")
        raise RegistryFileError(
            f"{where} with the {how} separator {sep!r} ({SEPARATORS.get(sep, 'other')}): a value holds the "
            "separator unquoted (decimal commas in a comma-separated file?); export with ';' between fields, or "
            "quote such values, or give the separator (SEP=semicolon)") from None
