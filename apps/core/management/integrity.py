"""Everything `verify_audit` checks, and the checkpoint `audit_checkpoint` and beat sign.

Beyond the chain and its anchors (core), this reads the rows the log describes: each
submitted prompt version's content against its content hash and its chained history, and each
dataset version's cases against the digest a signed checkpoint sealed. It lives under
`management/` because it reads other apps' rows, which the app layers allow only here.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from apps.core import anchors, audit
from apps.core.anchors import Anchor, Finding
from apps.evaluations.models import Case, DatasetVersion
from apps.prompts import content
from apps.prompts.choices import VersionStatus
from apps.prompts.models import PromptVersion
from apps.prompts.services import VERSION_FIELDS

DATASET_VERSION = "evaluations.datasetversion"
# A submitted version's content (what its author writes, and its hash): these never change
# once it leaves draft.
PROMPT_CONTENT = (*VERSION_FIELDS, "content_hash")
CHUNK = 500


def _chunks(items: list, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- prompt versions ------------------------------------------------------------------------


def prompt_version_findings() -> tuple[int, list[Finding]]:
    """Submitted versions whose content no longer matches its hash or its chained history."""
    history = PromptVersion.history.model
    ids = list(
        PromptVersion.objects.exclude(status=VersionStatus.DRAFT)
        .order_by("id")
        .values_list("id", flat=True)
    )
    findings = []
    for chunk in _chunks(ids):
        latest: dict[int, dict[str, Any]] = {}
        rows = history.objects.filter(id__in=chunk).order_by("id", "-history_id")
        for row in rows.values("id", *PROMPT_CONTENT):
            latest.setdefault(row["id"], row)
        versions = PromptVersion.objects.filter(id__in=chunk).order_by("id")
        for version in versions.values("id", "number", "prompt__slug", *PROMPT_CONTENT):
            problems = []
            try:
                recomputed = content.content_hash(
                    version["template_kind"],
                    version["messages"],
                    version["text"],
                    version["variables"],
                    version["model_config"],
                )
            except (KeyError, TypeError, AttributeError):
                recomputed = None
            if recomputed != version["content_hash"]:
                problems.append("its content no longer matches its content hash")
            chained = latest.get(version["id"])
            if chained is None:
                problems.append("it has no history (inserted behind the application's back)")
            else:
                changed = [f for f in PROMPT_CONTENT if chained[f] != version[f]]
                if changed:
                    problems.append(f"{', '.join(changed)} differ from its chained history")
            if problems:
                findings.append(
                    Finding(
                        "content",
                        f"prompts.promptversion #{version['id']} "
                        f"({version['prompt__slug']} v{version['number']}): " + "; ".join(problems),
                    )
                )
    return len(ids), findings


# --- dataset versions -----------------------------------------------------------------------


def dataset_digests(ids: list[int] | None = None) -> dict[int, str]:
    """sha256 over each dataset version's identity and every case, in order."""
    versions = DatasetVersion.objects.order_by("id").values(
        "id", "dataset_id", "number", "sha256", "case_count", "source_format"
    )
    batches = [None] if ids is None else list(_chunks(sorted(ids)))
    digests: dict[int, str] = {}
    for batch in batches:
        selected = versions if batch is None else versions.filter(id__in=batch)
        hashers = {v["id"]: hashlib.sha256(audit.canonical(v).encode()) for v in selected}
        cases = Case.objects.order_by("dataset_version_id", "position", "id")
        if batch is not None:
            cases = cases.filter(dataset_version_id__in=batch)
        fields = ("external_id", "position", "variables", "expected", "contexts", "segments")
        for row in cases.values_list("dataset_version_id", *fields, "tags").iterator(
            chunk_size=2000
        ):
            hasher = hashers.get(row[0])
            if hasher is not None:
                hasher.update(b"\n" + audit.canonical(row[1:]).encode())
        digests.update({pk: hasher.hexdigest() for pk, hasher in hashers.items()})
    return digests


def seal_key(pk: int) -> str:
    return f"{DATASET_VERSION}:{pk}"


def _sealed(trusted: list[Anchor]) -> dict[int, list[tuple[Anchor, str]]]:
    sealed: dict[int, list[tuple[Anchor, str]]] = {}
    for anchor in trusted:
        for key, digest in anchor.seals.items():
            label, _, pk = key.rpartition(":")
            if label == DATASET_VERSION and pk.isdigit():
                claims = sealed.setdefault(int(pk), [])
                if digest not in {d for _, d in claims}:
                    claims.append((anchor, digest))
    return sealed


def dataset_version_findings(trusted: list[Anchor]) -> tuple[int, list[Finding], list[str]]:
    """Sealed dataset versions whose cases changed, or that were deleted."""
    sealed = _sealed(trusted)
    current = dataset_digests(list(sealed)) if sealed else {}
    names = {
        v["id"]: f"{v['dataset__slug']} v{v['number']}"
        for v in DatasetVersion.objects.filter(id__in=list(current)).values(
            "id", "number", "dataset__slug"
        )
    }
    findings = []
    for pk, claims in sorted(sealed.items()):
        for anchor, digest in claims:
            if pk not in current:
                findings.append(
                    Finding(
                        "content",
                        f"{DATASET_VERSION} #{pk} sealed by {anchor.label} was deleted",
                    )
                )
                break
            if current[pk] != digest:
                findings.append(
                    Finding(
                        "content",
                        f"{DATASET_VERSION} #{pk} ({names.get(pk, '?')}): its cases no longer "
                        f"match the digest sealed by {anchor.label}",
                    )
                )
    notes = []
    unsealed = DatasetVersion.objects.count() - len(current) if trusted else 0
    if unsealed:
        notes.append(f"{unsealed} dataset version(s) are not sealed yet (the next checkpoint will)")
    return len(current), findings, notes


# --- the two entry points -------------------------------------------------------------------


def checkpoint(*, force: bool = False):
    """Seal new dataset versions and sign the chain's head (None when nothing changed)."""
    trusted = anchors.load_anchors(anchors.signing_key()).trusted
    sealed = _sealed(trusted)
    due = [pk for pk in DatasetVersion.objects.values_list("id", flat=True) if pk not in sealed]
    seals = {seal_key(pk): digest for pk, digest in dataset_digests(due).items()} if due else {}
    return anchors.checkpoint_write(seals=seals, force=force)


@dataclass
class Report:
    """What `verify_audit` found: counts of what it checked, findings, and notes."""

    events: int = 0
    checkpoint: dict[str, Any] | None = None
    history_rows: int = 0
    prompt_versions: int = 0
    dataset_versions: int = 0
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}


def verify() -> Report:
    """The chain, the newest checkpoint, history coverage and the content of governed rows."""
    report = Report()
    chain = audit.verify_chain()
    report.events = chain.checked
    if not chain.ok:
        report.findings.append(
            Finding(
                "chain",
                f"Audit chain broken at event #{chain.broken_at}: {chain.reason}. "
                f"{chain.checked} event(s) before it verified.",
            )
        )
    loaded = anchors.load_anchors(anchors.signing_key(create=False))
    report.findings += loaded.findings
    report.notes += loaded.notes
    newest = loaded.newest
    if newest is None:
        report.notes.append("No checkpoint yet: run manage.py audit_checkpoint (beat does).")
    else:
        report.checkpoint = {
            "checkpoint": newest.checkpoint,
            "source": newest.source,
            "created_at": newest.created_at,
            "sequence": newest.sequence,
            "event_count": newest.event_count,
        }
        report.findings += [Finding("anchor", m) for m in anchors.check_against(newest)]
    report.history_rows, history = anchors.unchained_history()
    report.findings += history
    report.prompt_versions, prompt_findings = prompt_version_findings()
    report.findings += prompt_findings
    report.dataset_versions, dataset_findings, notes = dataset_version_findings(loaded.trusted)
    report.findings += dataset_findings
    report.notes += notes
    return report
