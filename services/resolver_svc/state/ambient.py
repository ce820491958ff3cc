"""Whether ambient AWS credentials exist (bedrock providers without a key),
and the region that goes with them.

botocore's standard chain may read files or ask the instance metadata
service, so the check runs in a worker thread, at start and then every few
minutes, never on a request. Ambient mode needs a region from the chain too,
and the region found here is the one requests use (the chat gateway reads
it from the Snapshot), so the check and the call always agree: a region only in
the ~/.aws/config profile counts for both, and with no region anywhere
ambient mode is reported unavailable rather than failing at call time.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Callable

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class AmbientAws:
    credentials: bool  # the standard chain yields credentials
    region: str | None  # AWS_REGION, else botocore's (AWS_DEFAULT_REGION, the profile)

    @property
    def available(self) -> bool:
        """SigV4 is possible: credentials and a region."""
        return self.credentials and bool(self.region)


NONE = AmbientAws(credentials=False, region=None)


def env_region() -> str | None:
    """AWS_REGION, else AWS_DEFAULT_REGION: what the environment says without
    asking botocore (for bearer tokens when the ambient check is off)."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def ambient_aws() -> AmbientAws:
    import botocore.session  # imported lazily: it is slow to import and only this check needs it

    try:
        session = botocore.session.get_session()
        # botocore itself reads AWS_DEFAULT_REGION and the profile, not AWS_REGION.
        region = os.environ.get("AWS_REGION") or session.get_config_variable("region") or None
        return AmbientAws(credentials=session.get_credentials() is not None,
                          region=str(region) if region else None)
    except Exception as exc:  # a broken profile is "no ambient credentials", not a crash
        log.warning("ambient AWS credential check failed", error_type=type(exc).__name__)
        return NONE


async def check_once(check: Callable[[], AmbientAws] = ambient_aws) -> AmbientAws:
    return await asyncio.to_thread(check)


async def keep_checking(record: Callable[[AmbientAws], None], interval_seconds: float,
                        check: Callable[[], AmbientAws] = ambient_aws) -> None:
    """Re-run the check forever, recording each result."""
    while True:
        await asyncio.sleep(interval_seconds)
        found = await check_once(check)
        record(found)
