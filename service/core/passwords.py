"""The password policy of ``qbank create-user`` and ``POST /v1/admin/users``: long enough, and
not one of the passwords tried first in every guessing attack (NIST SP 800-63B, 5.1.1.2: refuse
commonly used and expected values)."""

from __future__ import annotations

MIN_LENGTH = 10
MAX_LENGTH = 1024

# The most common passwords of public breach corpora (those of 10+ characters; shorter ones fail
# the length rule anyway), compared case-insensitively.
COMMON = frozenset(
    [
        "1234567890",
        "0987654321",
        "0123456789",
        "1234512345",
        "1122334455",
        "1111111111",
        "0000000000",
        "1q2w3e4r5t",
        "1qaz2wsx3edc",
        "qwertyuiop",
        "qwerty1234",
        "qwerty12345",
        "asdfghjkl;",
        "zxcvbnm123",
        "password12",
        "password123",
        "password1234",
        "passw0rd12",
        "p@ssw0rd123",
        "iloveyou12",
        "iloveyou123",
        "letmein123",
        "welcome123",
        "welcome1234",
        "changeme123",
        "administrator",
        "admin12345",
        "admin123456",
        "abc1234567",
        "abcdefghij",
        "123456789a",
        "a123456789",
        "qwertyuiop123",
        "football123",
        "baseball123",
        "superman123",
        "princess123",
        "sunshine123",
        "trustno1234",
        "1234567890a",
        "12345678910",
        "123456789q",
        "q1w2e3r4t5",
        "987654321a",
        "starwars123",
        "dragon1234",
        "monkey1234",
        "computer123",
        "internet123",
        "student123",
        "teacher123",
        "qbankqbank",
    ]
)


def password_problem(password: str, username: str = "") -> str | None:
    """Why ``password`` is refused, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"must have at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"must have at most {MAX_LENGTH} characters"
    lowered = password.lower()
    if lowered in COMMON:
        return "is one of the most common passwords; choose another"
    if len(set(password)) < 3:
        return "must use more than two different characters"
    if username and lowered == username.strip().lower():
        return "must differ from the username"
    return None
