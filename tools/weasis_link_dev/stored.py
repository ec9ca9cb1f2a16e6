"""What a test reads back from the manifest bucket: an object as any S3 client gets it (the service itself never
reads a manifest back; Weasis fetches it through its presigned URL)."""

from __future__ import annotations

import boto3

from weasis_link.storage import ManifestStore


def stored_manifest(store: ManifestStore, manifest_id: str) -> bytes:
    """The stored object of `manifest_id`, as stored (gzipped)."""
    client = boto3.client("s3", region_name="us-east-1")  # S3 names buckets globally (moto too)
    answer = client.get_object(Bucket=store.bucket, Key=store.key_for(manifest_id))
    return bytes(answer["Body"].read())
