"""An alert as a webhook body (the reconciler's JSON, or Slack's incoming-webhook shape),
and its POST with deadlines (docs/beat.md, "Alerts").

Bodies carry what the alert row holds, built with the one redaction policy
(``reconciler.core.redact``) when the alert was recorded. The webhook's URL is never
logged or put in an error: it is a secret of its own (Slack's hold a token).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from reconciler.store.alertstate import Pending

BODY_VERSION = 1
TIMEOUT = 5.0
"""Seconds a webhook may take to accept the connection, and again for each read."""
USER_AGENT = "celery-reconciler-alerts/1"


class SendFailed(Exception):
    """The webhook did not take the alert (refused, timed out, or answered non-2xx)."""


def body(pending: Pending, format: str) -> dict[str, Any]:
    """The JSON body for ``pending``'s owed message in ``format`` (``json`` or ``slack``)."""
    own = json_body(pending)
    return slack_body(own) if format == "slack" else own


def json_body(pending: Pending) -> dict[str, Any]:
    """The reconciler's own body (docs/beat.md, "The alert body")."""
    firing = pending.claimed_kind == "firing"
    return {
        "version": BODY_VERSION,
        "status": "firing" if firing else "resolved",
        "alert_id": pending.id,
        "task": pending.task_name,
        "owner": pending.owner,
        "condition": pending.condition,
        "summary": pending.summary,
        "since": pending.since.isoformat(),
        "fired_at": pending.fired_at.isoformat(),
        "resolved_at": None
        if firing or pending.resolved_at is None
        else pending.resolved_at.isoformat(),
        "resolution": None if firing else pending.resolution,
        "details": pending.details,
    }


def slack_body(own: dict[str, Any]) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook body: one ``text`` in Slack's markup."""
    if own["status"] == "firing":
        head = f":rotating_light: *FIRING* `{own['task']}` ({own['condition']})"
        tail = f"since {own['since']}"
    else:
        head = f":white_check_mark: *RESOLVED* `{own['task']}` ({own['condition']})"
        tail = f"{own['resolution']} at {own['resolved_at']}"
    execution = own["details"].get("execution")
    lines = [head, _escape(own["summary"]), f"owner {_escape(own['owner'])}, {tail}"]
    if execution and own["status"] == "firing":
        lines.append(f"execution {execution['id']} ({execution['celery_task_id']})")
    return {"text": "\n".join(lines)}


def _escape(text: str) -> str:
    """Slack's markup escapes (``&``, ``<``, ``>``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def post(url: str, payload: dict[str, Any], timeout: float = TIMEOUT) -> None:
    """POST ``payload`` as JSON; ``SendFailed`` unless the webhook answers 2xx in time."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)
    except urllib.error.HTTPError as exc:
        raise SendFailed(f"answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SendFailed(f"not sent: {type(reason).__name__}: {reason}") from None


def checked_url(variable: str, value: str | None) -> str:
    """The webhook URL from ``variable``'s ``value``; ``SendFailed`` naming the variable
    (never the value) when it is unset or not an http(s) URL."""
    if not value:
        raise SendFailed(f"the environment variable {variable} is not set")
    if not value.startswith(("http://", "https://")):
        raise SendFailed(f"the environment variable {variable} does not hold an http(s) URL")
    return value
