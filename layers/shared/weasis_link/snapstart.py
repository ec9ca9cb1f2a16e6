"""Lambda SnapStart (template parameter SnapStart=true): Lambda initialises a published version once, snapshots
its memory and restores that snapshot in every new execution environment. What the init phase built and must not
outlive the snapshot is rebuilt by the hooks registered here, after each restore:
- the JWKS client and its key-set cache (PyJWKClient dates its cache with time.monotonic, a clock a restore
  invalidates): the new runtime fetches the key set again, on a thread, as Init did;
- the S3, Lambda and EventBridge clients, every urllib3 pool and the TLS context they share (their connections
  belong to the snapshotted environment);
- the OAuth token providers (cached tokens, expiries on the monotonic clock) and the secrets resolved at cold start
  (they may have been rotated since the snapshot).

`snapshot_restore_py` ships with Lambda's Python runtime (and on PyPI): it is imported only when present, so
without it a hook is simply not registered."""

from __future__ import annotations

from collections.abc import Callable

Hook = Callable[[], None]


def after_restore(hook: Hook) -> Hook:
    """Registers `hook` to run after a SnapStart restore (a decorator; a no-op without snapshot_restore_py)."""
    try:
        from snapshot_restore_py import register_after_restore
    except ImportError:
        return hook
    register_after_restore(hook)
    return hook


def forget_process_caches() -> None:
    """The container-wide caches that hold connections or monotonic timestamps, beyond the runtime (which the hooks
    build anew, with its token validator, its JWKS clients and their pools): the OAuth token providers, and the TLS
    context our pools share (its session cache belongs to the snapshotted environment), and the AWS session the
    clients are made from (it caches the credentials resolved at Init)."""
    from weasis_link import oauth_client, storage, upstream_retry

    oauth_client.forget_shared_providers()
    upstream_retry.tls_context.cache_clear()
    storage.aws_session.cache_clear()
