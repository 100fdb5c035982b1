"""Dhan (DhanHQ v2) adapter on the official dhanhq SDK (docs/dhan.md). Only brokers.dhan.sdk imports it."""

from __future__ import annotations
