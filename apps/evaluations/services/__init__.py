"""Every write of the evaluations app. Import services from here."""

from .artifacts import (  # noqa: F401
    artifact_import_folder,
    artifact_quantize,
    artifact_register_default_pack,
    artifact_retire,
    artifact_upload,
    artifact_validate,
)
from .datasets import (  # noqa: F401
    dataset_create,
    dataset_version_derive,
    dataset_version_export,
    dataset_version_upload,
)
from .runs import (  # noqa: F401
    run_batch_execute,
    run_cancel,
    run_finalize,
    run_outputs_post,
    run_scoring_start,
    run_start,
    run_sweep,
)
from .suites import suite_create, suite_update, threshold_delete, threshold_set  # noqa: F401
