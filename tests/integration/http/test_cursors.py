"""A crafted cursor on every paginated route (the run list of the API and of the review page,
the queues) is a 400 naming ``cursor``, never a 500 from the store."""

from __future__ import annotations

import pytest

from receiver.store import Store
from tests.support.cursors import CRAFTED, cursor_of
from tests.support.http import OPERATOR, AiohttpClient, Client, default_settings
from tests.support.review_app import review_app

pytestmark = [pytest.mark.postgres]

BAD = [cursor_of(raw) for raw in CRAFTED] + [
    "not-a-cursor!",
    "12abc",
]


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, store: Store) -> Client:
    return await aiohttp_client(review_app(store, default_settings()))


@pytest.mark.parametrize("path", ["/api/v1/runs", "/api/v1/events", "/api/v1/jobs"])
async def test_a_bad_cursor_is_400_naming_it_on_every_api_list(client: Client, path: str) -> None:
    for cursor in BAD:
        response = await client.get(path, headers=OPERATOR, params={"cursor": cursor})
        assert response.status == 400, (path, cursor, await response.text())
        data = await response.json()
        assert data["parameter"] == "cursor"
        assert "pass the next_cursor of a previous page" in data["error"]


async def test_a_bad_cursor_is_a_400_page_on_the_run_list(client: Client) -> None:
    for cursor in BAD:
        response = await client.get("/runs", headers=OPERATOR, params={"cursor": cursor})
        assert response.status == 400, (cursor, await response.text())
        assert response.content_type == "text/html"
        assert "invalid cursor" in await response.text()
