"""csv_importer: the AWS Batch job that imports one CSV object from S3 into a DynamoDB table.

Run it as ``csv-importer`` or ``python -m csv_importer``. Settings come from environment variables (the
names the reference article's ``submit_job`` overrides use) or flags, a flag winning::

    bucket_name / --bucket          bucket of the CSV (required)
    key / --key                     object key, .csv or gzip .csv.gz (required)
    table_name / --table            DynamoDB table (required)
    import_id / --import-id         default: derive_import_id(bucket, key, ETag)
    max_reject_ratio / --max-reject-ratio          default 0
    column_types / --column-types   e.g. price:N,active:BOOL (S default, N, BOOL)
    shard_count / --shard-count, AWS_BATCH_JOB_ARRAY_INDEX / --shard-index    default one shard
    writer_concurrency / --writer-concurrency      BatchWriteItem requests in flight, default 8

The object is streamed (gzip and UTF-8 decoded incrementally), parsed as RFC 4180, checked against the
table's key schema, typed, and written with BatchWriteItem (25 items / 16 MB a request, several in flight,
last row of a key wins). Rejected rows go to ``rejected/<import_id>/shard-<i>-of-<n>.csv`` and a manifest
to ``manifests/<import_id>/shard-<i>-of-<n>.json`` in the same bucket. Exit codes:
:mod:`csv_importer.exit_codes`. User documentation: docs/job.md.

Modules: ``cli`` (entry point, clients), ``settings``, ``reader`` (S3 stream -> lines -> records),
``rows`` (key schema, header, typing, item size, key hash), ``fingerprints`` (duplicate-key counting),
``writer`` (BatchWriteItem pool), ``manifest``, ``progress``, ``importer`` (one shard end to end),
``import_id``, ``exit_codes``. Runtime dependency: boto3 only; never Airflow.
"""

from __future__ import annotations
