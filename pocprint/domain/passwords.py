"""What makes a password acceptable: length, not the user's own names or the site's, and hard
to guess as judged by zxcvbn (a maintained strength estimator with large dictionaries of
common passwords, names and keyboard patterns) rather than a short hand-kept word list."""

from __future__ import annotations

import re

from zxcvbn import zxcvbn

MIN_PASSWORD = 12
MAX_PASSWORD = 256
# zxcvbn scores 0-4; 3 is "safely unguessable: moderate protection from an offline attack".
DEFAULT_MIN_SCORE = 3
# zxcvbn's cost grows with length; its own guidance is to score only the first 100 characters.
_SCORED_CHARACTERS = 100


def _words(*texts: str) -> list[str]:
    words = []
    for text in texts:
        words += [w for w in re.split(r"[\s.,'_@-]+", (text or "").lower()) if len(w) >= 4]
    return words


def password_problem(
    password: str,
    username: str,
    full_name: str,
    site_name: str = "",
    min_score: int = DEFAULT_MIN_SCORE,
) -> str | None:
    """None when the password is acceptable, else what is wrong with it (one sentence)."""
    if len(password) < MIN_PASSWORD:
        return f"password must have at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"password must have at most {MAX_PASSWORD} characters"
    lowered = password.lower()
    if len(set(password)) < 4:
        return "password must not be a repetition of a few characters"
    if username and username.lower() in lowered:
        return "password must not contain the username"
    if any(part in lowered for part in _words(full_name)):
        return "password must not contain the user's name"
    site = re.sub(r"[^a-z0-9]", "", (site_name or "").lower())
    if len(site) >= 4 and site in re.sub(r"[^a-z0-9]", "", lowered):
        return "password must not contain the site's name"
    result = zxcvbn(
        password[:_SCORED_CHARACTERS],
        user_inputs=[username, full_name, site_name, *_words(username, full_name, site_name)],
    )
    if result["score"] < min_score:
        hint = (result.get("feedback") or {}).get("warning") or ""
        return (
            f"password is too easy to guess (strength {result['score']} of 4, at least "
            f"{min_score} needed){': ' + hint.rstrip('.') if hint else ''}; a phrase of several "
            "unrelated words is easiest"
        )
    return None
