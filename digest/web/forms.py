"""Reading the subscribe and preferences forms into Preferences, with an error per field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from zoneinfo import available_timezones

from digest import ranking
from digest.config import validate_timezone
from digest.models import WEEKDAYS
from digest.store import InvalidSubscriber, Preferences, UnmailableAddress, normalize_email

FREQUENCIES = (("daily", "Every day"), ("weekly", "Once a week"))
WEEKDAY_CHOICES = tuple((str(n), name.capitalize()) for n, name in enumerate(WEEKDAYS))
MAX_FIELD_CHARS = 4000


@cache
def timezones() -> tuple[str, ...]:
    """Every IANA zone name, UTC first (for the time zone select)."""
    return ("UTC", *sorted(z for z in available_timezones() if z != "UTC" and "/" in z))


@dataclass
class FormState:
    """What the reader typed, the errors per field, and the Preferences when all is well."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    preferences: Preferences | None = None
    email: str = ""

    @property
    def ok(self) -> bool:
        """True when every field is acceptable."""
        return not self.errors and self.preferences is not None


def values_of(preferences: Preferences) -> dict[str, str]:
    """Form values for stored preferences (to fill the preferences page)."""
    return {
        "keywords": preferences.keywords,
        "frequency": preferences.frequency,
        "send_hour": str(preferences.send_hour),
        "send_weekday": str(preferences.send_weekday),
        "timezone": preferences.timezone,
        "max_papers": str(preferences.max_papers),
        "channel_email": "on" if "email" in preferences.channels else "",
        "channel_feed": "on" if "feed" in preferences.channels else "",
    }


def read_form(
    form: Mapping[str, object], *, defaults: Preferences, with_email: bool, with_channels: bool
) -> FormState:
    """Validate a submitted form; fields it does not carry keep their `defaults`."""
    values = {
        name: _text(form.get(name))
        for name in (
            "email",
            "keywords",
            "frequency",
            "send_hour",
            "send_weekday",
            "timezone",
            "max_papers",
            "channel_email",
            "channel_feed",
        )
    }
    state = FormState(values=values)
    if with_email:
        try:
            state.email = normalize_email(values["email"])
        except UnmailableAddress as exc:
            state.errors["email"] = _sentence(str(exc).partition(": ")[2])
        except InvalidSubscriber:
            state.errors["email"] = "Enter a valid email address, like ada@example.org."
    keywords = values["keywords"].strip()
    try:
        ranking.validate_profile(keywords)
    except ranking.ProfileError as exc:
        state.errors["keywords"] = str(exc)
    if values["timezone"]:
        try:
            validate_timezone(values["timezone"])
        except ValueError:
            state.errors["timezone"] = "Choose a time zone from the list."
    if values["frequency"] and values["frequency"] not in dict(FREQUENCIES):
        state.errors["frequency"] = "Choose every day or once a week."
    send_hour = _number(values["send_hour"], defaults.send_hour, 0, 23, "send_hour", state)
    send_weekday = _number(
        values["send_weekday"], defaults.send_weekday, 0, 6, "send_weekday", state
    )
    max_papers = _number(values["max_papers"], defaults.max_papers, 1, 100, "max_papers", state)
    channels = defaults.channels
    if with_channels:
        channels = tuple(
            name for name in ("email", "feed") if values[f"channel_{name}"] in ("on", "1", "true")
        )
    preferences = Preferences(
        keywords=keywords,
        timezone=values["timezone"] or defaults.timezone,
        send_hour=send_hour,
        frequency=values["frequency"] or defaults.frequency,
        send_weekday=send_weekday,
        max_papers=max_papers,
        channels=channels,
    )
    if not state.errors:
        try:
            state.preferences = preferences.checked()
        except InvalidSubscriber as exc:
            name, _, message = str(exc).partition(": ")
            state.errors["channels" if name == "channels" else name] = _sentence(message)
    return state


def _number(raw: str, default: int, low: int, high: int, name: str, state: FormState) -> int:
    if not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        state.errors[name] = f"Enter a whole number from {low} to {high}."
        return default
    if not low <= value <= high:
        state.errors[name] = f"Enter a whole number from {low} to {high}."
    return value


def _text(value: object) -> str:
    # Uploaded files and oversized values are not something these forms ever send.
    return value[:MAX_FIELD_CHARS] if isinstance(value, str) else ""


def _sentence(message: str) -> str:
    message = message.strip() or "This value is not accepted."
    return message[0].upper() + message[1:] + ("" if message.endswith(".") else ".")
