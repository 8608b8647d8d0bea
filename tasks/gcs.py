"""Google Cloud Storage as every stage asks it: which service, with what patience, failures in one line.

The charts bucket (tasks/chart/repo.py), the data bucket (tasks/data/bucket.py)
and gs:// dataset sources (tasks/data/sources.py) share this.  The endpoint is
Google's, or the emulator named by STORAGE_EMULATOR_HOST (then asked
anonymously).  Patience is bounded: RETRY_SECONDS of retries, CONNECT_TIMEOUT
per connection, so an endpoint that is down is one line naming it within
seconds.  google.cloud is imported only inside the functions that call it.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from typing import NamedTuple

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
GOOGLE_ENDPOINT = "https://storage.googleapis.com"
RETRY_SECONDS = 4.0
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 20.0


class Service(NamedTuple):
    endpoint: str        # where requests go
    description: str     # how a failure names it
    anonymous: bool      # the emulator takes no credentials


def service() -> Service:
    emulator = os.environ.get(EMULATOR_ENV)
    if not emulator:
        return Service(GOOGLE_ENDPOINT, f"Google Cloud Storage at {GOOGLE_ENDPOINT}", False)
    endpoint = emulator.rstrip("/")
    endpoint = endpoint if "://" in endpoint else f"http://{endpoint}"
    return Service(endpoint, f"the GCS emulator at {endpoint} ({EMULATOR_ENV})", True)


def client():
    from google.cloud import storage  # honours STORAGE_EMULATOR_HOST
    return storage.Client.create_anonymous_client() if service().anonymous else storage.Client()


def calls(retry_seconds: float | None = None, read_timeout: float | None = None) -> dict:
    """retry= and timeout= for a client call: bounded patience."""
    from google.cloud.storage.retry import DEFAULT_RETRY
    seconds = retry_seconds or RETRY_SECONDS
    retry = DEFAULT_RETRY.with_timeout(seconds) if hasattr(DEFAULT_RETRY, "with_timeout") \
        else DEFAULT_RETRY.with_deadline(seconds)  # google-api-core < 2.17
    return {"retry": retry, "timeout": (CONNECT_TIMEOUT, read_timeout or READ_TIMEOUT)}


def why_unreachable(exc: BaseException) -> str:
    """The errno text of a connection failure ("connection refused"), not the urllib3 repr."""
    text = str(exc)
    errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if errno:
        return errno.group(1).strip().rstrip(".").lower()
    if "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
        return "no answer in time"
    return type(exc).__name__


@contextmanager
def failures_as(error: type, doing: str, where: str, retry_seconds: float | None = None, not_found: str = ""):
    """The client's failures as one `error` line naming the service, what was being done and,
    for credentials and permissions, `where` (gs://BUCKET).  `not_found`: what a 404 means
    here (else it is said as any other answer).  A failed precondition (a concurrent writer)
    goes to the caller as it is."""
    import requests
    from google.api_core import exceptions
    from google.auth import exceptions as auth_exceptions

    described = service().description
    try:
        yield
    except exceptions.PreconditionFailed:
        raise
    except exceptions.RetryError as exc:
        raise error(f"cannot reach {described} to {doing} ({why_unreachable(exc.cause or exc)}; gave up after "
                    f"{retry_seconds or RETRY_SECONDS:g} s of retries): is it up and reachable from here?") from None
    except (requests.exceptions.RequestException, auth_exceptions.TransportError) as exc:
        raise error(f"cannot reach {described} to {doing} ({why_unreachable(exc)}): "
                    "is it up and reachable from here?") from None
    except auth_exceptions.DefaultCredentialsError:
        raise error(f"no Google Cloud credentials to write {where}: run "
                    "`gcloud auth application-default login` (CI: workload identity)") from None
    except exceptions.Forbidden as exc:
        raise error(f"not allowed to {doing}: {' '.join(str(exc.message).split())[:200]}") from None
    except exceptions.NotFound as exc:
        if not_found:
            raise error(not_found) from None
        raise error(f"{described} answered 404 ({' '.join(str(exc.message).split())[:200]}) "
                    f"when asked to {doing}") from None
    except exceptions.GoogleAPICallError as exc:
        raise error(f"{described} answered {exc.code} ({' '.join(str(exc.message).split())[:200]}) "
                    f"when asked to {doing}") from None
