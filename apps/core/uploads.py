"""Size limits on uploaded files, enforced while the request body is read.

Django has no size limit for files: `FILE_UPLOAD_MAX_MEMORY_SIZE` only chooses between memory
and a temporary file, so a multi-gigabyte body lands whole in the temporary folder before any
view or service can refuse it. A view that takes files installs `LimitedUploadHandler` first in
the chain: each file passes through until it exceeds its field's limit, then it is dropped (its
temporary file deleted with it), the rest of it is read and discarded chunk by chunk, and the
refusal is recorded for the view to report next to the field.

Files past the in-memory size are spooled to an unnamed temporary file (`UnlinkedFileHandler`):
the kernel frees it when the process ends, however it ends, so a web process killed in the
middle of an upload leaves no partial file behind.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile, TemporaryFileUploadHandler
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from .errors import ValidationFailed

REFUSALS = "upload_refusals"


def too_large(limit: int) -> str:
    """The field message for a file over `limit` bytes (services say the same)."""
    return f"Files over {limit:,} bytes are refused."


class LimitedUploadHandler(FileUploadHandler):
    """Pass each file on until it exceeds its field's byte limit, then drop it and say why.

    Fields without a limit take no files at all. Placed first, later handlers (memory,
    temporary file) never receive more than the limit of any file.
    """

    def __init__(self, request, limits: dict[str, int]) -> None:
        super().__init__(request)
        self.limits = limits
        self.limit = 0
        setattr(request, REFUSALS, {})

    def new_file(self, field_name, *args, **kwargs) -> None:
        super().new_file(field_name, *args, **kwargs)
        self.limit = self.limits.get(field_name, 0)

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > self.limit:
            getattr(self.request, REFUSALS)[self.field_name] = too_large(self.limit)
            raise SkipFile
        return raw_data

    def file_complete(self, file_size):
        return None  # the next handler holds the data


class UnlinkedUploadedFile(UploadedFile):
    """An upload spooled to a temporary file that has no name on disk (O_TMPFILE, or unlinked
    at once): nothing needs deleting after a crash. It has no `temporary_file_path`, so
    storage copies it chunk by chunk instead of moving it."""

    def __init__(self, name, content_type, size, charset, content_type_extra=None):
        file = tempfile.TemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR)  # noqa: SIM115 - lives as long as the upload
        super().__init__(file, name, content_type, size, charset, content_type_extra)


class UnlinkedFileHandler(TemporaryFileUploadHandler):
    """Django's temporary-file handler, spooling to an `UnlinkedUploadedFile`."""

    def new_file(self, *args, **kwargs):
        FileUploadHandler.new_file(self, *args, **kwargs)
        self.file = UnlinkedUploadedFile(
            self.file_name, self.content_type, 0, self.charset, self.content_type_extra
        )

    def upload_interrupted(self):
        if hasattr(self, "file"):
            self.file.close()


def install(request, limits: dict[str, int]) -> None:
    """Put the limits in front of the request's upload handlers (before its body is read)."""
    request.upload_handlers.insert(0, LimitedUploadHandler(request, limits))


def refusals(request) -> dict[str, str]:
    """{field: reason} for files dropped for their size (empty when none, or none installed)."""
    return dict(getattr(request, REFUSALS, None) or {})


def raise_refusals(request) -> None:
    """Refuse the request as invalid input when any file was dropped for its size."""
    refused = refusals(request)
    if refused:
        raise ValidationFailed(
            "The upload is too large; nothing was kept.",
            errors={field: [reason] for field, reason in refused.items()},
        )


def form_refusals(form, request) -> bool:
    """Put files dropped for their size on `form` (instead of "This field is required.");
    true when there were any."""
    refused = refusals(request)
    for field, reason in refused.items():
        if field in form.fields:
            form.errors[field] = form.error_class([reason])
    return bool(refused)


def limit_uploads(limits: Callable[[], dict[str, int]]):
    """View decorator: install `LimitedUploadHandler` with `limits()` on every POST.

    CsrfViewMiddleware reads request.POST before the view runs, which would read the whole body
    with the default handlers; as Django's upload-handler docs prescribe, the view is exempted
    from the middleware and the CSRF check runs inside, after the limits are in place.
    """

    def decorator(view):
        protected = csrf_protect(view)

        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if request.method == "POST":
                install(request, limits())
            return protected(request, *args, **kwargs)

        return csrf_exempt(wrapped)

    return decorator
