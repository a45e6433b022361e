"""Datasets: creation, streamed and validated uploads, derived versions, JSONL export."""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils.text import slugify

from apps.core.errors import ValidationFailed
from apps.core.uploads import too_large
from apps.prompts.choices import VersionStatus

from .. import permissions
from ..choices import SEGMENT_KEYS
from ..models import Case, Dataset, DatasetVersion
from ._common import RESERVED_SLUGS, save_with_history, unique_slug

CHUNK = 1000
MAX_REPORTED_ERRORS = 500
MAX_ROW_BYTES = 1_000_000
READ_BYTES = 64 * 1024
MAX_NUMBER_DIGITS = 100
# First bytes that say a "JSONL/CSV" file is something else; the file is refused unread.
OTHER_FORMATS = {
    b"PK\x03\x04": "a zip archive: upload the JSONL or CSV file inside it, not the archive",
    b"\x1f\x8b": "gzip-compressed: upload the uncompressed JSONL or CSV file",
    codecs.BOM_UTF16_LE: "UTF-16 text: save it as UTF-8",
    codecs.BOM_UTF16_BE: "UTF-16 text: save it as UTF-8",
}
CASE_KEYS = {"id", "variables", "expected", "contexts", "segments", "tags", *SEGMENT_KEYS}


@dataclass(frozen=True)
class ParsedCase:
    """One validated row, ready to store."""

    position: int
    external_id: str
    variables: dict
    expected: str
    contexts: list
    segments: dict
    tags: list


class RowError(ValueError):
    """A row that cannot become a case; the message says why."""


def declared_variables(prompt) -> tuple[set[str], set[str]] | None:
    """(all, required) variable names of the prompt's newest approved (else newest) version."""
    if prompt is None:
        return None
    versions = prompt.versions.order_by("-number")
    version = versions.filter(status=VersionStatus.APPROVED).first() or versions.first()
    if version is None:
        return None
    names = {v["name"] for v in version.variables}
    required = {v["name"] for v in version.variables if v.get("required", True)}
    return names, required


def _text(value: Any, field: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RowError(f"'{field}' must be text, not {type(value).__name__}.")
    return str(value)


def check_storable(value: str, field: str) -> None:
    """Text the databases can store: no NUL characters (PostgreSQL refuses them) and no
    unpaired surrogates (not Unicode, so not UTF-8 either)."""
    if "\x00" in value:
        raise RowError(f"'{field}' holds a NUL character (\\u0000), which cannot be stored.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RowError(
            f"'{field}' holds an unpaired surrogate, which is not valid Unicode."
        ) from None


def clean_row(raw: Mapping[str, Any], position: int, declared) -> ParsedCase:
    """Validate one row (from JSONL or CSV) and return the case it describes."""
    if not isinstance(raw, Mapping):
        raise RowError("A row must be a JSON object.")
    unknown = sorted(set(raw) - CASE_KEYS)
    if unknown:
        raise RowError(f"Unknown field(s): {', '.join(unknown)}.")
    external_id = _text(raw.get("id"), "id").strip()
    if not external_id:
        raise RowError("'id' is required.")
    if len(external_id) > 200:
        raise RowError("'id' is longer than 200 characters.")
    variables = raw.get("variables") or {}
    if not isinstance(variables, Mapping):
        raise RowError("'variables' must be an object of name → value.")
    for name, value in variables.items():
        if not isinstance(value, (str, int, float, bool)) and value is not None:
            raise RowError(f"Variable '{name}' must be text or a number.")
    if declared is not None:
        names, required = declared
        missing = sorted(required - set(variables))
        if missing:
            raise RowError(f"Missing required variable(s): {', '.join(missing)}.")
        undeclared = sorted(set(variables) - names)
        if undeclared:
            raise RowError(f"Variable(s) not declared by the prompt: {', '.join(undeclared)}.")
    contexts = raw.get("contexts") or []
    if isinstance(contexts, str):
        contexts = [contexts]
    if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
        raise RowError("'contexts' must be a list of text passages.")
    segments = raw.get("segments") or {}
    if not isinstance(segments, Mapping):
        raise RowError("'segments' must be an object of key → value.")
    segments = dict(segments)
    for key in SEGMENT_KEYS:
        if raw.get(key) not in (None, ""):
            segments[key] = raw[key]
    for key, value in segments.items():
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise RowError(f"Segment '{key}' must be a text or number value.")
        segments[key] = str(value)
    tags = raw.get("tags") or []
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RowError("'tags' must be a list of text tags.")
    expected = _text(raw.get("expected"), "expected")
    for field, texts in (
        ("id", [external_id]),
        ("variables", [t for pair in variables.items() for t in pair if isinstance(t, str)]),
        ("expected", [expected]),
        ("contexts", contexts),
        ("segments", [t for pair in segments.items() for t in pair]),
        ("tags", tags),
    ):
        for text in texts:
            check_storable(text, field)
    return ParsedCase(
        position=position,
        external_id=external_id,
        variables={k: ("" if v is None else v) for k, v in variables.items()},
        expected=expected,
        contexts=contexts,
        segments=segments,
        tags=tags,
    )


def max_bytes() -> int:
    """The largest dataset file accepted (EVALUATIONS_MAX_DATASET_BYTES, default 1 GiB)."""
    return int(getattr(settings, "EVALUATIONS_MAX_DATASET_BYTES", 1024**3))


def _chunks(stream) -> Iterator[bytes]:
    if hasattr(stream, "chunks"):
        yield from stream.chunks(READ_BYTES)
        return
    while block := stream.read(READ_BYTES):
        yield block


def _lines(stream: IO[bytes], digest) -> Iterator[bytes | None]:
    """The stream's lines, read in fixed chunks with every byte fed to `digest`.

    A line over MAX_ROW_BYTES comes out as None and is skipped to its end unbuffered, so memory
    stays bounded whatever the file holds (one 2 GB line included); reading stops, refusing
    the upload, once the file passes the dataset size limit.
    """
    limit, total = max_bytes(), 0
    parts: list[bytes] = []
    size, overlong = 0, False
    for chunk in _chunks(stream):
        total += len(chunk)
        if total > limit:
            raise ValidationFailed(
                f"The file is larger than {limit:,} bytes; nothing was kept.",
                errors={"file": [too_large(limit)]},
            )
        digest.update(chunk)
        start = 0
        while start < len(chunk):
            end = chunk.find(b"\n", start)
            stop = len(chunk) if end < 0 else end + 1
            if not overlong:
                parts.append(chunk[start:stop])
                size += stop - start
                if size > MAX_ROW_BYTES:
                    parts, overlong = [], True
            if end >= 0:
                yield None if overlong else b"".join(parts)
                parts, size, overlong = [], 0, False
            start = stop
    if overlong:
        yield None
    elif parts:
        yield b"".join(parts)


def _text_lines(stream: IO[bytes], digest) -> Iterator[tuple[int, str | RowError]]:
    """(line number, the line as text or why it is not UTF-8 text) per physical line.

    A first line that starts like an archive or UTF-16 refuses the whole file, unread; a UTF-8
    byte-order mark at the start is dropped (spreadsheets write one).
    """
    for number, line in enumerate(_lines(stream, digest), start=1):
        if line is None:
            yield number, RowError(f"The line is longer than {MAX_ROW_BYTES} bytes.")
            continue
        if number == 1:
            other = next(
                (why for magic, why in OTHER_FORMATS.items() if line.startswith(magic)), ""
            )
            if other:
                yield number, RowError(f"The file is {other}.")
                return
            if line.startswith(codecs.BOM_UTF8):
                line = line[len(codecs.BOM_UTF8) :]
        if b"\x00" in line:
            yield (
                number,
                RowError("The line holds NUL bytes: the file is UTF-16 or binary, not UTF-8 text."),
            )
            continue
        try:
            yield number, line.decode("utf-8")
        except UnicodeDecodeError:
            yield number, RowError("The line is not valid UTF-8.")


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is too large for a number")
    return value


def _integer(text: str) -> int:
    if len(text) > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number has more than {MAX_NUMBER_DIGITS} digits")
    return int(text)


def parse_json(text: str) -> Any:
    """json.loads where every way a line can fail is a RowError with the reason (the databases
    store neither NaN nor Infinity; a recursion bomb is refused, not a crash)."""
    try:
        return json.loads(
            text, parse_constant=_refuse_constant, parse_float=_finite, parse_int=_integer
        )
    except json.JSONDecodeError as exc:
        raise RowError(f"{exc.msg.removesuffix(' at')} at column {exc.colno}") from None
    except RecursionError:
        raise RowError("it is nested too deeply") from None
    except ValueError as exc:  # NaN, Infinity, 1e999, too many digits
        raise RowError(str(exc)) from None


def iter_jsonl(stream: IO[bytes], digest) -> Iterator[tuple[int, Any]]:
    """(line number, decoded object or RowError) per non-blank line, read one line at a time."""
    for number, text in _text_lines(stream, digest):
        if isinstance(text, RowError):
            yield number, text
            continue
        if not text.strip():
            continue
        try:
            yield number, parse_json(text)
        except RowError as exc:
            yield number, RowError(f"Not valid JSON: {exc}.")


def _csv_row(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row as a case dict: var.<name>, seg.<key>, contexts as JSON list or ' || '."""
    out: dict[str, Any] = {"variables": {}, "segments": {}}
    for column, value in row.items():
        if column is None:
            raise RowError("The row has more cells than the header.")
        if value is None:
            raise RowError("The row has fewer cells than the header.")
        column = column.strip()
        if column.startswith("var."):
            out["variables"][column[4:]] = value
        elif column.startswith("seg."):
            if value != "":
                out["segments"][column[4:]] = value
        elif column == "contexts":
            stripped = value.strip()
            if stripped.startswith("["):
                try:
                    out["contexts"] = parse_json(stripped)
                except RowError as exc:
                    raise RowError(f"'contexts' is not a JSON list: {exc}.") from None
            else:
                out["contexts"] = [p.strip() for p in stripped.split("||") if p.strip()]
        else:
            out[column] = value
    return out


class _Unreadable(Exception):
    """A physical line of a CSV file that is not UTF-8 text; the rest cannot be trusted."""

    def __init__(self, number: int, error: RowError) -> None:
        super().__init__(str(error))
        self.number, self.error = number, error


def _csv_text(stream: IO[bytes], digest) -> Iterator[str]:
    """Decoded lines for csv, with \r\n and lone \r (old Mac exports) read as \n."""
    for number, text in _text_lines(stream, digest):
        if isinstance(text, RowError):
            raise _Unreadable(number, text)
        *lines, last = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        for line in lines:
            yield line + "\n"
        if last:
            yield last


def iter_csv(stream: IO[bytes], digest) -> Iterator[tuple[int, Any]]:
    """(row number counting the header as 1, case dict or RowError), streamed.

    csv reads physical lines decoded one by one, so an encoding error names its own line and a
    field never grows past csv.field_size_limit().
    """
    reader = csv.DictReader(_csv_text(stream, digest))
    try:
        header = reader.fieldnames
    except _Unreadable as exc:
        yield exc.number, exc.error
        return
    except csv.Error as exc:
        yield 1, RowError(f"The header cannot be read: {exc}.")
        return
    if not header or "id" not in [h.strip() for h in header]:
        yield 1, RowError("The header must name an 'id' column.")
        return
    while True:
        first = reader.reader.line_num + 1  # where the row starts (a quoted cell may span lines)
        try:
            row = next(reader)
        except StopIteration:
            return
        except _Unreadable as exc:
            yield exc.number, exc.error
            return
        except csv.Error as exc:
            yield first, RowError(f"The row cannot be read: {exc}.")
            return
        try:
            yield reader.line_num, _csv_row(row)
        except RowError as exc:
            yield reader.line_num, exc


def detect_format(filename: str, fmt: str | None) -> str:
    """'jsonl' or 'csv' from an explicit format or the file name."""
    fmt = (fmt or "").lower().lstrip(".")
    if not fmt:
        fmt = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if fmt in {"jsonl", "ndjson", "json"}:
        return "jsonl"
    if fmt == "csv":
        return "csv"
    raise ValidationFailed(
        "Unknown file format.", errors={"file": ["Upload a .jsonl or .csv file."]}
    )


def _store_rows(
    version: DatasetVersion, rows: Iterator[tuple[int, Any]], declared
) -> tuple[int, set[str], list[str], int]:
    """Validate and insert rows in chunks; return (count, segment keys, errors, error count)."""
    seen: dict[str, int] = {}
    errors: list[str] = []
    error_count = 0
    segment_keys: set[str] = set()
    pending: list[Case] = []
    count = 0
    for position, raw in rows:
        try:
            if isinstance(raw, RowError):
                raise raw
            parsed = clean_row(raw, position, declared)
            if parsed.external_id in seen:
                raise RowError(
                    f"Duplicate id '{parsed.external_id}' (first on line {seen[parsed.external_id]})."
                )
        except RowError as exc:
            error_count += 1
            if len(errors) < MAX_REPORTED_ERRORS:
                errors.append(f"line {position}: {exc}")
            continue
        seen[parsed.external_id] = position
        count += 1
        segment_keys.update(parsed.segments)
        if error_count:
            continue  # the upload fails anyway: keep checking, stop writing
        pending.append(
            Case(
                dataset_version=version,
                position=count,
                external_id=parsed.external_id,
                variables=parsed.variables,
                expected=parsed.expected,
                contexts=parsed.contexts,
                segments=parsed.segments,
                tags=parsed.tags,
            )
        )
        if len(pending) >= CHUNK:
            Case.objects.bulk_create(pending)
            pending.clear()
    if pending and not error_count:
        Case.objects.bulk_create(pending)
    return count, segment_keys, errors, error_count


def _next_number(dataset: Dataset) -> int:
    last = dataset.versions.order_by("-number").values_list("number", flat=True).first()
    return (last or 0) + 1


@transaction.atomic
def dataset_create(
    *,
    actor,
    name: str,
    charter=None,
    prompt=None,
    slug: str = "",
    description: str = "",
) -> Dataset:
    """Create an empty dataset under a charter (its cases arrive as versions)."""
    errors: dict[str, list[str]] = {}
    if not (name or "").strip():
        errors["name"] = ["This field is required."]
    if prompt is not None and charter is not None and prompt.charter_id not in (None, charter.pk):
        errors["prompt"] = ["The prompt belongs to another charter."]
    slug = slugify(slug or "")
    if slug in RESERVED_SLUGS:
        errors["slug"] = [f"'{slug}' is reserved; choose another slug."]
    elif slug and Dataset.objects.filter(slug=slug).exists():
        errors["slug"] = ["A dataset with this slug already exists."]
    if errors:
        raise ValidationFailed("The dataset is not valid.", errors=errors)
    if not permissions.can_author_under(actor, charter):
        raise PermissionDenied("You may not create datasets under this charter.")
    dataset = Dataset(
        slug=slug or unique_slug(Dataset, name),
        name=name.strip(),
        description=description,
        charter=charter,
        prompt=prompt,
        owner=actor,
    )
    save_with_history(dataset, actor=actor, reason="Dataset created")
    return dataset


@transaction.atomic
def dataset_version_upload(
    *,
    actor,
    dataset: Dataset,
    stream: IO[bytes],
    filename: str = "",
    fmt: str | None = None,
    notes: str = "",
) -> DatasetVersion:
    """Stream a JSONL or CSV file into a new dataset version; any bad row keeps nothing.

    The file is read one line at a time and cases are inserted in chunks, so a 100,000-case
    upload never sits in memory whole. Every bad row is reported with its line number.
    """
    permissions.require(actor, permissions.AUTHOR, dataset)
    fmt = detect_format(filename, fmt)
    Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
    parent = dataset.versions.order_by("-number").first()
    version = DatasetVersion.objects.create(
        dataset=dataset,
        number=_next_number(dataset),
        parent=parent,
        notes=notes,
        source_name=filename[:255],
        source_format=fmt,
        created_by=actor,
    )
    digest = hashlib.sha256()
    rows = iter_jsonl(stream, digest) if fmt == "jsonl" else iter_csv(stream, digest)
    count, segment_keys, errors, error_count = _store_rows(
        version, rows, declared_variables(dataset.prompt)
    )
    if error_count:
        more = error_count - len(errors)
        if more > 0:
            errors.append(f"… and {more} more bad rows.")
        raise ValidationFailed(
            f"{error_count} row(s) of {filename or 'the upload'} are not valid; nothing was kept.",
            errors={"file": errors},
        )
    if count == 0:
        raise ValidationFailed("The file holds no cases.", errors={"file": ["No rows found."]})
    version.case_count = count
    version.segment_keys = sorted(segment_keys)
    version.sha256 = digest.hexdigest()
    version.save(update_fields=["case_count", "segment_keys", "sha256"])
    save_with_history(
        dataset,
        actor=actor,
        reason=f"Version {version.number} uploaded ({count} cases)",
        update_fields=["updated_at"],
    )
    return version


@transaction.atomic
def dataset_version_derive(
    *,
    actor,
    dataset: Dataset,
    upserts: Iterable[Mapping[str, Any]] = (),
    removals: Iterable[str] = (),
    notes: str = "",
) -> DatasetVersion:
    """A new version from the newest one with cases added, replaced or removed by id.

    Versions are immutable, so editing a dataset (used by a run or not) always writes a new
    version; runs keep pointing at the cases they scored.
    """
    permissions.require(actor, permissions.AUTHOR, dataset)
    Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
    base = dataset.versions.order_by("-number").first()
    declared = declared_variables(dataset.prompt)
    changes: dict[str, dict] = {}
    errors: list[str] = []
    for index, raw in enumerate(upserts, start=1):
        try:
            parsed = clean_row(raw, index, declared)
        except RowError as exc:
            errors.append(f"case {index}: {exc}")
            continue
        changes[parsed.external_id] = parsed.__dict__
    removed = {str(r) for r in removals}
    if base is not None:
        known = set(base.cases.values_list("external_id", flat=True))
        errors += [f"case '{r}': no such case to remove." for r in sorted(removed - known)]
    elif removed:
        errors.append("The dataset has no cases to remove.")
    if errors:
        raise ValidationFailed(
            "The changes are not valid; nothing was kept.", errors={"cases": errors}
        )
    if not changes and not removed:
        raise ValidationFailed(
            "Nothing to change.", errors={"cases": ["Add, edit or remove a case."]}
        )
    version = DatasetVersion.objects.create(
        dataset=dataset,
        number=_next_number(dataset),
        parent=base,
        notes=notes,
        source_name=f"derived from v{base.number}" if base else "edited",
        source_format="edit",
        created_by=actor,
    )
    pending: list[Case] = []
    position = 0
    segment_keys: set[str] = set()

    def add(external_id, variables, expected, contexts, segments, tags):
        nonlocal position
        position += 1
        segment_keys.update(segments)
        pending.append(
            Case(
                dataset_version=version,
                position=position,
                external_id=external_id,
                variables=variables,
                expected=expected,
                contexts=contexts,
                segments=segments,
                tags=tags,
            )
        )
        if len(pending) >= CHUNK:
            Case.objects.bulk_create(pending)
            pending.clear()

    if base is not None:
        for case in base.cases.order_by("position").iterator(chunk_size=CHUNK):
            if case.external_id in removed:
                continue
            change = changes.pop(case.external_id, None)
            if change:
                add(**{k: v for k, v in change.items() if k != "position"})
            else:
                add(
                    case.external_id,
                    case.variables,
                    case.expected,
                    case.contexts,
                    case.segments,
                    case.tags,
                )
    for change in changes.values():
        add(**{k: v for k, v in change.items() if k != "position"})
    if pending:
        Case.objects.bulk_create(pending)
    version.case_count = position
    version.segment_keys = sorted(segment_keys)
    version.save(update_fields=["case_count", "segment_keys"])
    save_with_history(
        dataset,
        actor=actor,
        reason=f"Version {version.number} derived",
        update_fields=["updated_at"],
    )
    return version


def dataset_version_export(version: DatasetVersion) -> Iterator[bytes]:
    """The version's cases as JSONL, one line per case, streamed from the database."""
    for case in version.cases.order_by("position").iterator(chunk_size=CHUNK):
        row = {
            "id": case.external_id,
            "variables": case.variables,
            "expected": case.expected,
            "contexts": case.contexts,
            "segments": case.segments,
            "tags": case.tags,
        }
        yield (json.dumps(row, ensure_ascii=False) + "\n").encode()
