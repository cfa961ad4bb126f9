from __future__ import annotations

import pytest

from botify.storage import InMemoryUserStateStore
from tests.unit.storage.contract import CHECKS


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
async def test_memory_store_honours_the_contract(check) -> None:  # type: ignore[no-untyped-def]
    await check(InMemoryUserStateStore())
