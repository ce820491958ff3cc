"""Whether ambient AWS credentials exist (bedrock providers without a key).

botocore's standard chain may read files or ask the instance metadata
service, so the check runs in a worker thread, at start and then every few
minutes, never on a request. Ambient mode needs a region from the chain too.
"""

from __future__ import annotations

import asyncio
from typing import Callable

import structlog

log = structlog.get_logger(__name__)


def ambient_aws_available() -> bool:
    import botocore.session  # imported lazily: it is slow to import and only this check needs it

    try:
        session = botocore.session.get_session()
        return session.get_credentials() is not None and bool(session.get_config_variable("region"))
    except Exception as exc:  # a broken profile is "no ambient credentials", not a crash
        log.warning("ambient AWS credential check failed", error_type=type(exc).__name__)
        return False


async def check_once(check: Callable[[], bool] = ambient_aws_available) -> bool:
    return await asyncio.to_thread(check)


async def keep_checking(record: Callable[[bool], None], interval_seconds: float,
                        check: Callable[[], bool] = ambient_aws_available) -> None:
    """Re-run the check forever, recording each result."""
    while True:
        await asyncio.sleep(interval_seconds)
        available = await check_once(check)
        record(available)
