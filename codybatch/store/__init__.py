"""Stores: local (SQLite + files) and aws (DynamoDB + S3)."""

from __future__ import annotations

from codybatch.settings import Settings
from codybatch.store.base import JobCursor, NotFoundError, StaleWriteError, Store, StoreError

__all__ = ["JobCursor", "NotFoundError", "StaleWriteError", "Store", "StoreError", "open_store"]


def open_store(settings: Settings) -> Store:
    """The store the settings select (CODYBATCH_STORE=local|aws)."""
    if settings.store == "aws":
        from codybatch.store.aws import AwsStore

        return AwsStore.from_settings(settings)
    if settings.store == "local":
        from codybatch.store.local import LocalStore

        return LocalStore(settings.home)
    raise StoreError(f"CODYBATCH_STORE={settings.store!r} is not known: use 'local' or 'aws'")
