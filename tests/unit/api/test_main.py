"""``python -m services.api``: a configuration error stops the start with one line."""

from __future__ import annotations

import pytest

from services.api.__main__ import main


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("BOTIFY_RECOMMENDER__AFINITY__SESSION_POWER", "3", "BOTIFY_RECOMMENDER__AFINITY: "),
        ("BOTIFY_MODELS__PLUGINS", '["no_such_plugin"]', "cannot load model plugin"),
    ],
)
def test_a_config_error_at_start_is_one_line_and_a_non_zero_exit(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as info:
        main()
    message = info.value.code
    assert isinstance(message, str) and message.startswith(f"botify api: {expected}"), message
    assert "\n" not in message
