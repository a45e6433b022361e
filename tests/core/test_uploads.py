"""Uploads past the in-memory size spool to a temporary file with no name on disk."""

import os

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory

from apps.core.uploads import UnlinkedUploadedFile

BIG = b"id,expected\n" + b"x" * (3 * 1024 * 1024)  # past FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MB)


def test_a_large_upload_is_spooled_to_a_file_that_a_crash_cannot_leave_behind(settings, tmp_path):
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    request = RequestFactory().post("/", {"file": SimpleUploadedFile("cases.csv", BIG)})

    upload = request.FILES["file"]

    assert isinstance(upload, UnlinkedUploadedFile)
    # Open, full, and already without a name: nothing to delete after a SIGKILL.
    assert os.fstat(upload.file.fileno()).st_nlink == 0
    assert list(tmp_path.iterdir()) == []
    assert b"".join(upload.chunks()) == BIG
    assert (upload.name, upload.size) == ("cases.csv", len(BIG))


def test_a_small_upload_stays_in_memory(settings, tmp_path):
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    request = RequestFactory().post("/", {"file": SimpleUploadedFile("c.csv", b"id\n1\n")})

    assert request.FILES["file"].read() == b"id\n1\n"
    assert list(tmp_path.iterdir()) == []
