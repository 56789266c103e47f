"""Integration tests: real servers on loopback, real clients, both brokers (memory and Redis)."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from servers.runner import Running
from servers.session import CLOSE_POLICY, CLOSE_TOO_BIG, Transport
from tests.clients import post, sse_client, token, ws_client
from tests.conftest import UNIT, ServerFactory

GENERAL = "dao:1:general"


async def presence_connections(server: Running, ch: str) -> int:
    count = server.hub.broker.presence_connections(ch)  # type: ignore[attr-defined]
    return int(await count if asyncio.iscoroutine(count) else count)


async def test_every_transport_receives_a_publish(server: Running) -> None:
    """WS, SSE/1.1 and SSE/2 subscribers all get a message with its id and hlc."""
    async with (
        ws_client(server, "u1") as ws,
        sse_client(server, "u2", GENERAL) as sse,
        sse_client(server, "u3", GENERAL, h2=True) as sse2,
    ):
        await ws.join(GENERAL)
        await sse.inbox.wait_for("joined")
        await sse2.inbox.wait_for("joined")
        await ws.send({"op": "pub", "ch": GENERAL, "body": {"text": "hello"}, "cid": "c1"})
        ack = (await ws.inbox.wait_for("ack"))[0]
        assert ack["cid"] == "c1" and ack["id"] >= 1
        for inbox in (ws.inbox, sse.inbox, sse2.inbox):
            msg = (await inbox.wait_for("msg"))[0]
            assert msg["id"] == ack["id"] and msg["hlc"] == ack["hlc"]
            assert msg["body"] == {"text": "hello"} and msg["from"] == "u1"
        assert sse.inbox.event_ids[-1] == str(ack["id"])


async def test_sse_client_posts_are_answered_on_its_stream(server: Running) -> None:
    """An SSE client publishes, echoes and heartbeats over POST; replies come on the stream."""
    for h2 in (False, True):
        async with sse_client(server, "u4", GENERAL, h2=h2) as sse:
            await sse.inbox.wait_for("joined")
            assert (
                await post(
                    server,
                    f"/v1/channels/{GENERAL}/messages",
                    {"body": "hi", "cid": 9},
                    sid=sse.sid,
                )
                == 202
            )
            assert (await sse.inbox.wait_for("ack"))[0]["cid"] == 9
            assert (await sse.inbox.wait_for("msg"))[0]["body"] == "hi"
            assert await post(server, "/v1/echo", {"body": {"t": 1}}, sid=sse.sid) == 202
            assert (await sse.inbox.wait_for("echo"))[0]["body"] == {"t": 1}
            assert await post(server, "/v1/presence/heartbeat", {}, sid=sse.sid) == 202
            assert await post(server, "/v1/echo", {"body": 1}, sid="nope") == 404
            assert await post(server, "/v1/echo", {"body": 1}) == 400


async def test_auth_refusals_come_before_upgrade_and_tokens_never_logged(
    server: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """No token → 401, bad or expired → 403, on WS and SSE; no token appears in the log."""
    caplog.set_level(logging.DEBUG)
    assert server.http_url
    good = await token(server.http_url, "u5")
    expired = server.hub.issuer.issue("u5", now=0)
    async with aiohttp.ClientSession() as http:
        for path in ("/v1/ws", f"/v1/sse?ch={GENERAL}"):
            sep = "&" if "?" in path else "?"
            url = f"{server.http_url}{path}"
            assert (await http.get(url)).status == 401
            assert (await http.get(f"{url}{sep}token=garbage")).status == 403
            assert (await http.get(f"{url}{sep}token={expired}")).status == 403
        bad_login = await http.post(
            f"{server.http_url}/v1/auth/token", json={"user": "u5", "secret": "wrong"}
        )
        assert bad_login.status == 403
    async with ws_client(server, "u5") as ws:
        await ws.join(GENERAL)
        await ws.send({"op": "join", "ch": "dao:1:nope"})
        await ws.inbox.wait_for("error")
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert good not in text and expired not in text and "garbage" not in text
    assert server.hub.metrics.auth_failures["401"] == 2
    assert server.hub.metrics.auth_failures["403"] == 5


@pytest.mark.parametrize("transport", [Transport.WS, Transport.SSE])
async def test_disconnect_during_gating_leaves_nothing(
    make_server: ServerFactory, transport: Transport
) -> None:
    """Hard case 1: a client gone while its gating check is pending leaves no trace."""
    delay = 0.3 * UNIT
    async with make_server(gate_delay_s=delay) as server:
        if transport is Transport.WS:
            async with ws_client(server, "u6") as ws:
                await ws.send({"op": "join", "ch": GENERAL})
                await asyncio.sleep(delay / 3)
        else:
            async with sse_client(server, "u6", GENERAL):
                await asyncio.sleep(delay / 3)
        await asyncio.sleep(delay * 2)
        assert server.hub.sessions == {}
        assert server.hub.local == {}
        assert server.hub.by_user == {}
        assert await presence_connections(server, GENERAL) == 0
        assert await server.hub.broker.members(GENERAL) == []
        joins = [t for t in asyncio.all_tasks() if "_join" in repr(t.get_coro())]
        assert joins == []


async def test_concurrent_joins_give_one_membership_per_connection(server: Running) -> None:
    """Hard case 2: two connections of one user joining at once, one of them twice."""
    async with ws_client(server, "u7") as observer:
        await observer.join(GENERAL)
        async with ws_client(server, "u8") as a, ws_client(server, "u8") as b:
            frame = {"op": "join", "ch": GENERAL}
            await asyncio.gather(a.send(frame), a.send(frame), b.send(frame))
            await a.inbox.wait_for("joined")
            await b.inbox.wait_for("joined")
            await observer.inbox.wait_for("presence")
            await asyncio.sleep(0.2 * UNIT)
            online = [p for p in observer.inbox.ops("presence") if p["user"] == "u8"]
            assert [p["state"] for p in online] == ["online"]
            assert len(a.inbox.ops("joined")) == 1
            assert await presence_connections(server, GENERAL) == 3
            assert await server.hub.broker.members(GENERAL) == ["u7", "u8"]
            await a.ws.close()
            await asyncio.sleep(0.2 * UNIT)
            assert await server.hub.broker.members(GENERAL) == ["u7", "u8"]
        await observer.inbox.wait_for("presence", 3)  # u7 online, u8 online, u8 offline
        states = [p["state"] for p in observer.inbox.ops("presence") if p["user"] == "u8"]
        assert states == ["online", "offline"]


async def test_concurrent_sse_streams_of_one_user(server: Running) -> None:
    """Hard case 2 over SSE: two streams of one user, one online broadcast."""
    async with ws_client(server, "u7") as observer:
        await observer.join(GENERAL)
        async with sse_client(server, "u9", GENERAL), sse_client(server, "u9", GENERAL, h2=True):
            await observer.inbox.wait_for("presence")
            await asyncio.sleep(0.2 * UNIT)
            assert await presence_connections(server, GENERAL) == 3
        states = [p["state"] for p in observer.inbox.ops("presence") if p["user"] == "u9"]
        assert states == ["online"]


async def _publish(server: Running, count: int, start: int = 0) -> list[int]:
    ids = []
    async with ws_client(server, "u10") as pub:
        await pub.join(GENERAL)
        for i in range(count):
            await pub.send({"op": "pub", "ch": GENERAL, "body": start + i, "cid": i})
        acks = await pub.inbox.wait_for("ack", count)
        ids = [a["id"] for a in acks]
    return ids


async def test_ws_resume_delivers_missed_messages_once_in_order(server: Running) -> None:
    """Hard case 3 (WS): messages published while away arrive once, in order, before live."""
    async with ws_client(server, "u11") as ws:
        joined = await ws.join(GENERAL)
        first = await _publish(server, 1)
        await ws.inbox.wait_for("msg")
    last_seen = first[-1]
    assert joined["last"] < last_seen
    missed = await _publish(server, 5, start=100)
    async with ws_client(server, "u11") as ws:
        resumed = await ws.join(GENERAL, since=last_seen)
        assert resumed["recovered"] is True and resumed["missed"] == 0
        live = await _publish(server, 2, start=200)
        msgs = await ws.inbox.wait_for("msg", 7)
        await asyncio.sleep(0.1 * UNIT)
        ids = [m["id"] for m in ws.inbox.ops("msg")]
        assert ids == missed + live
        assert [m["body"] for m in msgs[:5]] == [100, 101, 102, 103, 104]


async def test_sse_resume_with_last_event_id(server: Running) -> None:
    """Hard case 3 (SSE/1.1 and SSE/2): Last-Event-ID resumes exactly after the last event."""
    for h2 in (False, True):
        async with sse_client(server, "u12", GENERAL, h2=h2) as sse:
            await sse.inbox.wait_for("joined")
            await _publish(server, 2)
            await sse.inbox.wait_for("msg", 2)
            last_event_id = sse.decoder.last_event_id
        assert last_event_id is not None
        missed = await _publish(server, 3)
        async with sse_client(server, "u12", GENERAL, h2=h2, last_event_id=last_event_id) as sse:
            joined = (await sse.inbox.wait_for("joined"))[0]
            assert joined["recovered"] is True
            live = await _publish(server, 1)
            await sse.inbox.wait_for("msg", 4)
            await asyncio.sleep(0.1 * UNIT)
            assert [m["id"] for m in sse.inbox.ops("msg")] == missed + live


async def test_resume_beyond_the_window_says_not_recovered(make_server: ServerFactory) -> None:
    """Beyond the history window the client is told recovered: false and how many it missed."""
    async with make_server(history_count=3) as server:
        first = await _publish(server, 1)
        await _publish(server, 5)
        async with ws_client(server, "u13") as ws:
            joined = await ws.join(GENERAL, since=first[-1])
            assert joined["recovered"] is False and joined["missed"] == 2
            msgs = await ws.inbox.wait_for("msg", 3)
            assert [m["id"] for m in msgs] == [first[-1] + 3, first[-1] + 4, first[-1] + 5]
        async with sse_client(server, "u13", GENERAL, last_event_id=str(first[-1])) as sse:
            joined = (await sse.inbox.wait_for("joined"))[0]
            assert joined["recovered"] is False and joined["missed"] == 2


async def test_oversized_frame_closes_1009_and_others_keep_receiving(server: Running) -> None:
    """A frame over max_message_bytes closes that client with 1009; its peers are unaffected."""
    async with ws_client(server, "u14") as big, ws_client(server, "u15") as other:
        await other.join(GENERAL)
        await big.ws.send_str('{"op":"echo","body":"' + "x" * (70 * 1024) + '"}')
        assert await big.wait_closed() == CLOSE_TOO_BIG
        ids = await _publish(server, 1)
        assert (await other.inbox.wait_for("msg"))[0]["id"] == ids[0]


async def test_malformed_frames_get_errors_then_close_1008(make_server: ServerFactory) -> None:
    """Malformed JSON and unknown ops get error ops; repeated errors close with 1008."""
    async with make_server() as server, ws_client(server, "u16") as ws:
        await ws.ws.send_str("{not json")
        await ws.send({"op": "dance"})
        errors = await ws.inbox.wait_for("error", 2)
        assert [e["code"] for e in errors] == ["bad_json", "unknown_op"]
        for _ in range(server.hub.config.limits.max_errors):
            await ws.ws.send_str("{")
        assert await ws.wait_closed() == CLOSE_POLICY


async def test_publish_needs_membership_and_respects_rate(make_server: ServerFactory) -> None:
    """Publishing before joining is refused; past the burst the rate limit answers."""
    async with make_server() as server, ws_client(server, "u17") as ws:
        await ws.send({"op": "pub", "ch": GENERAL, "body": 1})
        assert (await ws.inbox.wait_for("error"))[0]["code"] == "not_joined"
        await ws.join(GENERAL)
        burst = int(server.hub.config.limits.publish_burst)
        for i in range(burst + 5):
            await ws.send({"op": "pub", "ch": GENERAL, "body": i})
        await ws.inbox.wait_for("ack", burst)
        codes = [e["code"] for e in await ws.inbox.wait_for("error", 2)]
        assert "rate_limited" in codes


async def test_balance_drop_revokes_gated_room(server: Running) -> None:
    """A member whose balance falls below a room's rule gets revoked and stops receiving."""
    assert server.http_url
    key = server.hub.admin_key
    async with aiohttp.ClientSession() as http:
        status = (
            await http.post(
                f"{server.http_url}/v1/admin/balances",
                json={"user": "u18", "dao": "1", "balance": 500},
                headers={"X-Admin-Key": key},
            )
        ).status
        assert status == 204
        async with ws_client(server, "u18") as ws:
            await ws.join("dao:1:holders")
            forbidden = (
                await http.post(
                    f"{server.http_url}/v1/admin/balances",
                    json={"user": "u18", "dao": "1", "balance": 1},
                    headers={"X-Admin-Key": "wrong"},
                )
            ).status
            assert forbidden == 403
            await http.post(
                f"{server.http_url}/v1/admin/balances",
                json={"user": "u18", "dao": "1", "balance": 1},
                headers={"X-Admin-Key": key},
            )
            revoked = (await ws.inbox.wait_for("revoked"))[0]
            assert revoked["ch"] == "dao:1:holders" and "below 100" in revoked["reason"]
            await ws.send({"op": "join", "ch": "dao:1:holders"})
            assert (await ws.inbox.wait_for("error"))[0]["code"] == "forbidden"
            await asyncio.sleep(0.1 * UNIT)
            assert "dao:1:holders" not in server.hub.local


async def test_origin_allow_list(make_server: ServerFactory) -> None:
    """With an Origin allow-list, other origins get 403 before the upgrade."""
    async with make_server(allowed_origins=("https://ok.example",)) as server:
        assert server.http_url
        tok = await token(server.http_url, "u19")
        async with aiohttp.ClientSession() as http:
            url = f"{server.http_url}/v1/sse?ch={GENERAL}&token={tok}"
            refused = await http.get(url, headers={"Origin": "https://evil.example"})
            assert refused.status == 403
        async with ws_client(server, "u19", origin="https://ok.example") as ws:
            await ws.join(GENERAL)


async def test_metrics_count_connections(server: Running) -> None:
    """/metrics reports open connections per transport in the Prometheus format."""
    assert server.http_url
    async with ws_client(server, "u20"), aiohttp.ClientSession() as http:
        text = await (await http.get(f"{server.http_url}/metrics")).text()
    assert 'rtbench_connections{node="' in text and 'transport="ws"} 1' in text


async def test_sse_keepalive_only_on_idle_streams(make_server: ServerFactory) -> None:
    """An idle SSE stream gets a comment every keep-alive tick; a stream that carried a frame
    since the last tick gets none (a busy server must not write thousands of comments)."""
    async with make_server({Transport.WS, Transport.SSE}, sse_keepalive_s=0.2 * UNIT) as server:
        assert server.http_url
        raw: dict[str, bytearray] = {"idle": bytearray(), "busy": bytearray()}
        async with aiohttp.ClientSession() as http:

            async def stream(user: str, ch: str, into: bytearray) -> None:
                tok = await token(server.http_url or "", user)
                async with http.get(
                    f"{server.http_url}/v1/sse", params={"token": tok, "ch": ch}
                ) as response:
                    async for chunk in response.content.iter_any():
                        into += chunk

            async with ws_client(server, "u9") as publisher:
                await publisher.join("dao:1:topic-1")
                tasks = [
                    asyncio.create_task(stream("u7", "dao:1:topic-2", raw["idle"])),
                    asyncio.create_task(stream("u8", "dao:1:topic-1", raw["busy"])),
                ]
                await asyncio.sleep(0.3 * UNIT)  # both joined
                raw["busy"].clear()
                for n in range(30):
                    await publisher.send({"op": "pub", "ch": "dao:1:topic-1", "body": n})
                    await asyncio.sleep(0.04 * UNIT)
                for task in tasks:
                    task.cancel()
        assert raw["idle"].count(b": keep-alive") >= 3
        assert raw["busy"].count(b"event: msg") >= 25
        assert b": keep-alive" not in raw["busy"]
