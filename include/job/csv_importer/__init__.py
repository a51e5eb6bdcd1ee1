"""csv_importer: the AWS Batch job that imports one CSV object from S3 into DynamoDB."""

from __future__ import annotations
