"""csv_importer: the AWS Batch job that imports one CSV object from S3 into a DynamoDB table.

Run it as ``csv-importer`` or ``python -m csv_importer``. Its inputs are described once in
:mod:`csv_importer.inputs` (environment variables with the names the reference article's ``submit_job`` overrides
use, or flags, a flag winning); ``csv-importer --help`` lists them.

The object is streamed (gzip and UTF-8 decoded incrementally), parsed as RFC 4180, checked against the
table's key schema, typed, and written with BatchWriteItem (25 items / 16 MB a request, several in flight,
last row of a key wins). Rejected rows go to ``<rejected_prefix><import_id>/shard-<i>-of-<n>.csv`` and a manifest
to ``<manifest_prefix><import_id>/shard-<i>-of-<n>.json`` in the same bucket. Exit codes:
:mod:`csv_importer.exit_codes`. User documentation: docs/job.md.

Modules: ``cli`` (entry point, clients), ``inputs`` (the inputs' one description), ``settings``,
``compression`` (gzip by content), ``reader`` (S3 stream -> lines -> records),
``rows`` (key schema, header, typing, item size, key hash), ``fingerprints`` (duplicate-key counting),
``writer`` (BatchWriteItem pool), ``manifest``, ``progress``, ``importer`` (one shard end to end),
``import_id``, ``exit_codes``. Runtime dependency: boto3 only; never Airflow.
"""

from __future__ import annotations
