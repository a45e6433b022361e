"""Signed checkpoints of the audit chain, anchored outside the database.

The hash chain (`audit.py`) finds an event edited or removed in the middle of the log, but a
log cut back to an earlier state with its head rewound, an emptied log, or one rebuilt from
scratch is again a valid chain. A checkpoint records the chain's head (the newest event's id
and hash) and how many events lead up to it, signs that with HMAC-SHA256 under a key the
database never holds, and appends it to an append-only file and the `aifactory.audit` log.
The verifier holds today's log against the newest checkpoint whose signature it can check.

This stops anyone who can write to the database but holds neither the key nor the anchor
file; someone holding the database *and* the key can still sign a rewritten log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from . import audit
from .models import AuditCheckpoint, AuditEvent, AuditHead

logger = logging.getLogger("aifactory.audit")

# What a signature covers, in this order (the anchor line adds the checkpoint's id).
SIGNED_FIELDS = (
    "sequence",
    "head_hash",
    "event_count",
    "created_at",
    "database",
    "key_id",
    "seals",
)
# Rows named one by one in a finding before the rest are summed up.
MAX_NAMED = 20


class AnchorError(Exception):
    """The chain no longer matches its newest checkpoint, so no new one was signed."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class Finding:
    """One thing the verifier found wrong, with the kind of check that found it."""

    kind: str
    message: str


@dataclass
class Anchor:
    """A checkpoint as read back from the table or one line of the anchor file."""

    checkpoint: int | None
    sequence: int
    head_hash: str
    event_count: int
    created_at: str
    database: str
    key_id: str
    seals: dict[str, str]
    signature: str
    source: str

    def payload(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SIGNED_FIELDS}

    @property
    def label(self) -> str:
        return f"checkpoint #{self.checkpoint} ({self.created_at}, {self.source})"


# --- the key --------------------------------------------------------------------------------


def _create_key_file(path: Path) -> str:
    """Write a new random key readable by its owner only; a concurrent writer's key wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        try:
            os.link(staging, path)  # never replaces a key another process just made
        except FileExistsError:
            return path.read_text().strip()
    finally:
        staging.unlink(missing_ok=True)
    logger.warning("Created the audit signing key %s: keep a copy off the database host.", path)
    return key


def signing_key(*, create: bool = True) -> bytes | None:
    """AUDIT_SIGNING_KEY, else the key file (created on first use unless `create` is off)."""
    configured = getattr(settings, "AUDIT_SIGNING_KEY", "")
    if configured:
        return configured.encode()
    path = Path(settings.AUDIT_SIGNING_KEY_FILE)
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        if not create:
            return None
        key = _create_key_file(path)
    if not key:
        raise ImproperlyConfigured(f"The audit signing key file {path} is empty.")
    return key.encode()


def key_id(key: bytes) -> str:
    """A public name for a key, so a checkpoint says which key signed it."""
    return hashlib.sha256(b"aifactory.audit.key:" + key).hexdigest()[:16]


def sign(payload: Mapping[str, Any], key: bytes) -> str:
    return hmac.new(key, audit.canonical(payload).encode(), hashlib.sha256).hexdigest()


def verifying_keys(key: bytes | None) -> dict[str, bytes]:
    """The current key and the retired ones (AUDIT_SIGNING_OLD_KEYS), by key id."""
    keys = [k.encode() for k in getattr(settings, "AUDIT_SIGNING_OLD_KEYS", ()) if k]
    keys += [key] if key else []
    return {key_id(k): k for k in keys}


def database_name() -> str:
    """Which database a checkpoint describes (SQLite by file name, so the folder may move)."""
    if getattr(settings, "AUDIT_ANCHOR_DATABASE", ""):
        return settings.AUDIT_ANCHOR_DATABASE
    name = str(connection.settings_dict.get("NAME") or "")
    return Path(name).name if connection.vendor == "sqlite" else name


# --- reading checkpoints back ---------------------------------------------------------------


def _from_row(row: AuditCheckpoint) -> Anchor:
    return Anchor(
        checkpoint=row.pk,
        sequence=row.sequence,
        head_hash=row.head_hash,
        event_count=row.event_count,
        created_at=row.created_at.isoformat(),
        database=row.database,
        key_id=row.key_id,
        seals=dict(row.seals or {}),
        signature=row.signature,
        source="table",
    )


def anchor_line(anchor: Anchor) -> str:
    return json.dumps(
        {"checkpoint": anchor.checkpoint, **anchor.payload(), "signature": anchor.signature},
        sort_keys=True,
        separators=(",", ":"),
    )


def read_anchor_file(path: Path | None = None) -> tuple[list[Anchor], list[Finding]]:
    """Every checkpoint in the anchor file, and a finding for each line that is not one."""
    path = Path(path or settings.AUDIT_ANCHOR_FILE)
    anchors: list[Anchor] = []
    findings: list[Finding] = []
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        return anchors, findings
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                anchors.append(
                    Anchor(
                        checkpoint=data.get("checkpoint"),
                        sequence=int(data["sequence"]),
                        head_hash=str(data["head_hash"]),
                        event_count=int(data["event_count"]),
                        created_at=str(data["created_at"]),
                        database=str(data["database"]),
                        key_id=str(data["key_id"]),
                        seals=dict(data.get("seals") or {}),
                        signature=str(data["signature"]),
                        source=f"{path.name} line {number}",
                    )
                )
            except (ValueError, KeyError, TypeError, AttributeError):
                findings.append(
                    Finding("checkpoint", f"{path.name} line {number} is not a checkpoint")
                )
    return anchors, findings


@dataclass
class Anchors:
    """The checkpoints of this database that verify, and what is wrong with the others."""

    trusted: list[Anchor] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def newest(self) -> Anchor | None:
        return max(self.trusted, key=lambda a: (a.sequence, a.created_at), default=None)


def load_anchors(key: bytes | None) -> Anchors:
    """Checkpoints from the anchor file and the table, each signature checked."""
    result = Anchors()
    from_file, result.findings = read_anchor_file()
    from_table = [_from_row(row) for row in AuditCheckpoint.objects.order_by("id")]
    here = database_name()
    elsewhere = [a for a in from_file if a.database != here]
    if elsewhere:
        others = ", ".join(sorted({a.database for a in elsewhere}))
        result.notes.append(
            f"{len(elsewhere)} anchor line(s) describe another database ({others}) and were "
            f"not used; after restoring one under a new name set AIFACTORY_AUDIT_DATABASE"
        )
    candidates = [a for a in from_file if a.database == here] + from_table
    keys = verifying_keys(key)
    if candidates and not keys:
        result.findings.append(
            Finding(
                "checkpoint",
                f"{len(candidates)} checkpoint(s) exist but no signing key is configured "
                "(AIFACTORY_AUDIT_KEY or AIFACTORY_AUDIT_KEY_FILE): none can be checked",
            )
        )
        return result
    for anchor in candidates:
        if anchor.database != here:
            result.findings.append(
                Finding("checkpoint", f"{anchor.label} describes database {anchor.database!r}")
            )
        elif anchor.key_id not in keys:
            result.findings.append(
                Finding(
                    "checkpoint",
                    f"{anchor.label} was signed with an unknown key ({anchor.key_id}): forged, "
                    "or signed with a retired key missing from AIFACTORY_AUDIT_OLD_KEYS",
                )
            )
        elif not hmac.compare_digest(sign(anchor.payload(), keys[anchor.key_id]), anchor.signature):
            result.findings.append(
                Finding("checkpoint", f"{anchor.label}: its signature does not verify (forged)")
            )
        else:
            result.trusted.append(anchor)
    filed = {a.checkpoint: a for a in from_file if a.database == here}
    for row in from_table:
        line = filed.get(row.checkpoint)
        if line is not None and (line.payload(), line.signature) != (
            row.payload(),
            row.signature,
        ):
            result.findings.append(
                Finding(
                    "checkpoint",
                    f"checkpoint #{row.checkpoint} in the table differs from {line.source}",
                )
            )
    in_table = {a.checkpoint for a in from_table}
    trusted = {id(a) for a in result.trusted}
    for anchor in filed.values():
        if id(anchor) in trusted and anchor.checkpoint not in in_table:
            result.findings.append(
                Finding(
                    "checkpoint",
                    f"{anchor.label} is missing from the checkpoint table (deleted)",
                )
            )
    return result


# --- holding the log against a checkpoint ---------------------------------------------------


def check_against(anchor: Anchor) -> list[str]:
    """What no longer matches `anchor`: its event, its hash, the number of events up to it."""
    if anchor.sequence == 0:
        return []
    total = AuditEvent.objects.count()
    if total == 0:
        return [
            f"{anchor.event_count} event(s) anchored at {anchor.label} are missing: "
            "the audit log was emptied or truncated"
        ]
    problems = []
    event = AuditEvent.objects.filter(pk=anchor.sequence).only("hash").first()
    if event is None:
        last = AuditEvent.objects.aggregate(last=Max("id"))["last"]
        if last < anchor.sequence:
            problems.append(
                f"tail cut / head rewound: the log ends at event #{last} but {anchor.label} "
                f"anchors event #{anchor.sequence}; the newest events were deleted"
            )
        else:
            problems.append(f"event #{anchor.sequence} anchored by {anchor.label} was deleted")
    elif event.hash != anchor.head_hash:
        problems.append(
            f"event #{anchor.sequence} no longer has the hash {anchor.label} signed: "
            "the log up to it was rewritten"
        )
    count = AuditEvent.objects.filter(pk__lte=anchor.sequence).count()
    if count != anchor.event_count:
        missing = anchor.event_count - count
        problems.append(
            f"{anchor.label} counted {anchor.event_count} event(s) up to #{anchor.sequence}, "
            f"the log holds {count}"
            + (f": {missing} were deleted" if missing > 0 else ": events were inserted")
        )
    return problems


def segment_problems(start_id: int, start_hash: str, end_id: int, end_hash: str) -> list[str]:
    """Check the links from one known event (id, hash) to another, both hashes recomputed."""
    previous, last = start_hash, start_id
    events = AuditEvent.objects.filter(pk__gt=start_id, pk__lte=end_id).order_by("id")
    for event in events.iterator(chunk_size=2000):
        if event.prev_hash != previous:
            return [
                f"event #{event.pk} does not link to the event before it (removed or reordered)"
            ]
        if audit.event_hash(audit._fields(event), previous) != event.hash:
            return [f"event #{event.pk} does not match its hash (the row was edited)"]
        previous, last = event.hash, event.pk
    if (last, previous) != (end_id, end_hash):
        return [f"the stored head (event #{end_id}) does not match the log, which ends at #{last}"]
    return []


def _head() -> tuple[int, str]:
    head = AuditHead.objects.filter(pk=1).values_list("last_id", "last_hash").first()
    return head or (0, audit.GENESIS)


def checkpoint_write(
    *, seals: Mapping[str, str] | None = None, force: bool = False
) -> AuditCheckpoint | None:
    """Sign the chain's head, store it and append it to the anchor file and the audit log.

    Only a chain that still matches the newest trusted checkpoint is signed: the events since
    then are re-linked first (outside the head's lock, then the few that arrived meanwhile
    under it). Returns None when nothing changed since the newest checkpoint."""
    key = signing_key()
    assert key is not None
    anchors = load_anchors(key)
    for finding in anchors.findings:
        logger.warning("audit anchor: %s", finding.message)
    previous = anchors.newest
    start = (previous.sequence, previous.head_hash) if previous else (0, audit.GENESIS)
    snapshot = _head()
    problems = (check_against(previous) if previous else []) + segment_problems(*start, *snapshot)
    if not problems:
        with transaction.atomic():
            head, _ = AuditHead.objects.select_for_update().get_or_create(pk=1)
            if snapshot[0] <= head.last_id:
                problems = segment_problems(*snapshot, head.last_id, head.last_hash)
            else:
                problems = segment_problems(*start, head.last_id, head.last_hash)
            if not problems:
                unchanged = previous is not None and start == (head.last_id, head.last_hash)
                if unchanged and not seals and not force:
                    return None
                return _write(key, head, seals or {})
    logger.error("audit checkpoint refused: %s", "; ".join(problems))
    raise AnchorError(problems)


def _write(key: bytes, head: AuditHead, seals: Mapping[str, str]) -> AuditCheckpoint:
    row = AuditCheckpoint(
        sequence=head.last_id,
        head_hash=head.last_hash,
        event_count=AuditEvent.objects.filter(pk__lte=head.last_id).count(),
        created_at=timezone.now(),
        database=database_name(),
        key_id=key_id(key),
        seals=dict(sorted(seals.items())),
    )
    row.signature = sign(_from_row(row).payload(), key)
    row.save()
    line = anchor_line(_from_row(row))
    # Appended inside the transaction: a checkpoint the file could not take is not stored.
    path = Path(settings.AUDIT_ANCHOR_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    logger.info("audit checkpoint %s", line)
    return row


# --- history rows without a link in the chain ----------------------------------------------


def history_models() -> list:
    """Every simple-history table: each row in one is chained by `audit.record_history`."""
    from simple_history.models import HistoricalChanges

    return [m for m in apps.get_models() if issubclass(m, HistoricalChanges)]


def unchained_history() -> tuple[int, list[Finding]]:
    """History rows no audit event chains (inserted behind the application's back)."""
    chained: dict[str, set[Any]] = {}
    events = AuditEvent.objects.filter(verb__startswith="history.").values_list("data", flat=True)
    for data in events.iterator(chunk_size=5000):
        if isinstance(data, dict) and "history_model" in data:
            chained.setdefault(data["history_model"], set()).add(str(data.get("history_id")))
    findings = []
    checked = 0
    for model in history_models():
        label = audit.object_label(model)
        known = chained.get(label, set())
        stray = []
        rows = model.objects.order_by("history_id").values_list("history_id", flat=True)
        for history_id in rows.iterator(chunk_size=5000):
            checked += 1
            if str(history_id) not in known:
                stray.append(history_id)
        if stray:
            named = ", ".join(f"#{h}" for h in stray[:MAX_NAMED])
            more = f" and {len(stray) - MAX_NAMED} more" if len(stray) > MAX_NAMED else ""
            findings.append(
                Finding(
                    "history",
                    f"history row(s) {label} {named}{more} have no chained audit event "
                    "(inserted behind the application's back)",
                )
            )
    return checked, findings
