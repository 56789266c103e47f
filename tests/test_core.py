"""Unit tests of the sans-I/O server core: no sockets, time passed in."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadgen.sse import SseDecoder
from servers.core import protocol
from servers.core.auth import TokenIssuer, user_secret
from servers.core.errors import AuthError, ChannelError, ClockDriftError, ProtocolError, RealmError
from servers.core.hlc import HLC, Clock, receive, tick
from servers.core.presence import PresenceTable, State
from servers.core.ratelimit import TokenBucket
from servers.core.realm import Membership, Rule, denial, generate_realm, load_realm, parse_channel

ms = st.integers(min_value=0, max_value=2**45)
counters = st.integers(min_value=0, max_value=10_000)
stamps = st.builds(HLC, ms, counters, st.sampled_from(["a", "b", "c"]))


@given(stamps, st.lists(ms, min_size=1, max_size=50))
def test_hlc_tick_is_strictly_monotonic(start: HLC, clock_readings: list[int]) -> None:
    """Local events get strictly increasing timestamps whatever the wall clock does."""
    current = start
    for now in clock_readings:
        following = tick(current, now)
        assert following > current
        assert following.ms >= now
        current = following


@given(stamps, stamps, ms)
def test_hlc_receive_never_regresses(local: HLC, remote: HLC, now: int) -> None:
    """A merge is later than both the local clock and the remote stamp, and keeps the node."""
    remote = remote._replace(ms=min(remote.ms, now + 60_000))
    merged = receive(local, remote, now, max_drift_ms=60_000)
    assert merged > local
    assert (merged.ms, merged.counter) > (remote.ms, remote.counter)
    assert merged.ms >= now
    assert merged.node == local.node


@given(stamps, ms, st.integers(min_value=1, max_value=10**9))
def test_hlc_drift_bound_rejects_and_keeps_clock(local: HLC, now: int, ahead: int) -> None:
    """A remote stamp beyond the drift bound is refused and leaves the clock unchanged."""
    clock = Clock("n", max_drift_ms=1000)
    clock.now = local._replace(node="n")
    before = clock.now
    remote = HLC(now + 1000 + ahead, 0, "x")
    with pytest.raises(ClockDriftError):
        clock.receive(remote, now)
    assert clock.now == before
    assert clock.rejected == 1


def test_hlc_matches_the_article_cases() -> None:
    """The four branches of the article's tick(local, received)."""
    local = HLC(100, 3, "a")
    assert receive(local, HLC(100, 7, "b"), 50) == HLC(100, 8, "a")
    assert receive(local, HLC(90, 7, "b"), 50) == HLC(100, 4, "a")
    assert receive(local, HLC(120, 7, "b"), 50) == HLC(120, 8, "a")
    assert receive(local, HLC(90, 7, "b"), 130) == HLC(130, 0, "a")
    assert tick(local, 100) == HLC(100, 4, "a")
    assert tick(local, 150) == HLC(150, 0, "a")
    assert HLC.parse(str(HLC(5, 6, "node:x"))) == HLC(5, 6, "node:x")


def test_tokens_expire_and_reject_tampering() -> None:
    """A token verifies until its expiry; expired, forged and missing ones are refused."""
    issuer = TokenIssuer("k" * 32, ttl_s=30)
    token = issuer.issue("alice", now=1000)
    assert issuer.verify(token, now=1029.9).user == "alice"
    with pytest.raises(AuthError) as expired:
        issuer.verify(token, now=1030)
    assert expired.value.status == 403
    with pytest.raises(AuthError) as forged:
        TokenIssuer("x" * 32).verify(token, now=1000)
    assert forged.value.status == 403
    with pytest.raises(AuthError) as missing:
        issuer.verify(None, now=1000)
    assert missing.value.status == 401


def test_user_secrets_are_derived_per_user() -> None:
    """Every user has its own secret, stable for a realm secret."""
    assert user_secret("s" * 32, "u1") == user_secret("s" * 32, "u1")
    assert user_secret("s" * 32, "u1") != user_secret("s" * 32, "u2")


def test_gating_rules() -> None:
    """Rooms admit by balance and role; non-members never."""
    assert denial(Rule(), Membership(balance=0)) is None
    assert denial(Rule(min_balance=100), Membership(balance=99)) == "balance 99 below 100"
    assert denial(Rule(min_balance=100), Membership(balance=100)) is None
    assert denial(Rule(role="council"), Membership(balance=5, role="member")) is not None
    assert denial(Rule(role="council"), Membership(balance=5, role="council")) is None
    assert denial(Rule(), None) == "not a member of this DAO"


def test_generated_realm_is_deterministic_and_balances_change() -> None:
    """Two realms from one seed agree; a balance change moves a user across a rule."""
    one, two = generate_realm(seed=7, users=100), generate_realm(seed=7, users=100)
    assert one.secret == two.secret
    user1, user2 = one.user("u42"), two.user("u42")
    assert user1 is not None and user2 is not None
    assert user1.daos == user2.daos
    assert one.user("u100") is None and one.user("bob") is None
    holders = parse_channel("dao:1:holders")
    one.set_balance("u42", "1", 100)
    assert one.check_join("u42", holders) is None
    one.set_balance("u42", "1", 99)
    assert one.check_join("u42", holders) == "balance 99 below 100"
    with pytest.raises(ChannelError):
        one.check_join("u42", parse_channel("dao:1:nope"))
    with pytest.raises(ChannelError):
        parse_channel("dao:1")


def test_realm_file_errors_name_the_field(tmp_path: Path) -> None:
    """A wrong realm file is refused with the file, the field and what is allowed."""
    path = tmp_path / "realm.toml"
    path.write_text('secret = "short"\n')
    with pytest.raises(RealmError, match="secret = 'short': a string of at least 32"):
        load_realm(path)
    path.write_text(
        'secret = "' + "s" * 32 + '"\n[daos.1]\nrooms = { general = { min_balance = -1 } }\n'
    )
    with pytest.raises(RealmError, match=r"daos\.1\.rooms\.general\.min_balance = -1"):
        load_realm(path)
    path.write_text(
        'secret = "' + "s" * 32 + '"\n[daos.1]\nrooms = { general = {} }\n'
        '[users.alice]\ndaos = { 1 = { balance = 5, role = "council" } }\n'
    )
    realm = load_realm(path)
    assert realm.check_join("alice", parse_channel("dao:1:general")) is None


def test_presence_transitions_only() -> None:
    """Online on a user's first connection, offline on its last; heartbeats are silent."""
    table = PresenceTable()
    first = table.join("ch", "alice", "c1", 0)
    assert first is not None and first.state is State.ONLINE
    assert table.join("ch", "alice", "c2", 0) is None
    assert table.heartbeat("ch", "alice", "c1", 10) is None
    assert table.leave("ch", "alice", "c1") is None
    assert table.members("ch") == ["alice"]
    last = table.leave("ch", "alice", "c2")
    assert last is not None and last.state is State.OFFLINE
    assert table.leave("ch", "alice", "c2") is None
    assert table.members("ch") == []


def test_presence_expiry_and_return() -> None:
    """A silent connection expires after the window; its next heartbeat brings it back."""
    table = PresenceTable()
    table.join("ch", "alice", "c1", 0)
    table.join("ch", "bob", "c2", 0)
    table.heartbeat("ch", "bob", "c2", 80_000)
    gone = table.sweep(now_ms=95_000, expiry_ms=90_000)
    assert [(t.user, t.state) for t in gone] == [("alice", State.OFFLINE)]
    back = table.heartbeat("ch", "alice", "c1", 96_000)
    assert back is not None and back.state is State.ONLINE


def test_token_bucket() -> None:
    """The bucket allows its burst, then its rate."""
    bucket = TokenBucket(rate=10, burst=2, now=0)
    assert [bucket.take(0), bucket.take(0), bucket.take(0)] == [True, True, False]
    assert bucket.take(0.1)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"{nope", "bad_json"),
        (b"[1]", "bad_frame"),
        (b'{"op":"dance"}', "unknown_op"),
        (b'{"op":"join"}', "bad_frame"),
        (b'{"op":"join","ch":"dao:1:general","since":-1}', "bad_frame"),
        (b'{"op":"pub","ch":"x","cid":[1]}', "bad_frame"),
    ],
)
def test_protocol_refuses_bad_frames(frame: bytes, code: str) -> None:
    """Every malformed frame maps to one error code."""
    with pytest.raises(ProtocolError) as refused:
        protocol.decode_client(frame)
    assert refused.value.code == code


def test_protocol_round_trip() -> None:
    """Client encoders decode to the same ops; msg frames splice the id without re-encoding."""
    assert protocol.decode_client(protocol.encode_join("dao:1:a", 5)) == protocol.Join("dao:1:a", 5)
    assert protocol.decode_client(protocol.encode_pub("c", {"x": 1}, "k")) == protocol.Pub(
        "c", {"x": 1}, "k"
    )
    frame = protocol.msg_frame(42, protocol.msg_tail("dao:1:a", "1:0:n", "u1", {"t": 1}))
    assert orjson.loads(frame) == {
        "op": "msg",
        "id": 42,
        "ch": "dao:1:a",
        "hlc": "1:0:n",
        "from": "u1",
        "body": {"t": 1},
    }
    assert protocol.op_of(frame) == "msg"


@given(st.text(max_size=200))
def test_sse_data_survives_any_line_breaks(text: str) -> None:
    """CR, LF and CRLF in data never end the event early: the decoder gets the data back."""
    encoded = protocol.sse_event("msg", text.encode(), "7")
    events = SseDecoder().feed(encoded)
    assert len(events) == 1
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    assert events[0].data == expected
    assert events[0].id == "7" and events[0].event == "msg"


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\0b"])
def test_sse_refuses_field_injection(bad: str) -> None:
    """An event name or id with CR, LF or NUL would inject fields: refused."""
    with pytest.raises(ValueError):
        protocol.sse_event(bad, b"{}")
    with pytest.raises(ValueError):
        protocol.sse_event("msg", b"{}", bad)


def test_sse_decoder_handles_split_chunks() -> None:
    """Events split across arbitrary chunk boundaries decode the same."""
    stream = (
        protocol.sse_event("msg", b'{"a":1}', "1")
        + b": keep-alive\n\n"
        + protocol.sse_event("presence", b"{}")
    )
    decoder = SseDecoder()
    events = [e for i in range(len(stream)) for e in decoder.feed(stream[i : i + 1])]
    assert [(e.event, e.data) for e in events] == [("msg", '{"a":1}'), ("presence", "{}")]
    assert decoder.last_event_id == "1"
