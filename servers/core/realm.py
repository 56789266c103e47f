"""The realm: DAOs, their rooms and rules, users with governance-token balances and roles.

A realm comes from a TOML file (:func:`load_realm`) or is generated deterministically
from a seed (:func:`generate_realm`), so that servers in several processes and the
load generator agree on it without sharing a file. A generated realm computes each
user on first use instead of storing 100,000 records.

Channels are ``dao:{dao}:{room}``. Joining a room requires membership of the DAO and
whatever the room's :class:`Rule` asks (a minimum balance, a role); balances change at
run time (:meth:`Realm.set_balance`) and members who no longer qualify are revoked.

Realm file::

    secret = "at-least-32-characters-of-secret........"
    [daos.1]
    name = "Protocol Guild"
    rooms = { general = {}, holders = { min_balance = 100 }, council = { role = "council" } }
    [users.alice]
    daos = { 1 = { balance = 250, role = "council" } }
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servers.core.errors import ChannelError, RealmError
from servers.core.protocol import generated_realm_secret


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """What a room asks of a member: ``Rule(min_balance=100)``, ``Rule(role="council")``."""

    min_balance: int = 0
    role: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Dao:
    id: str
    name: str
    rooms: dict[str, Rule]


@dataclass(slots=True, kw_only=True)
class Membership:
    balance: int
    role: str = "member"


@dataclass(slots=True, kw_only=True)
class User:
    name: str
    daos: dict[str, Membership] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Channel:
    """A parsed ``dao:{dao}:{room}`` name."""

    dao: str
    room: str

    def __str__(self) -> str:
        return f"dao:{self.dao}:{self.room}"


def parse_channel(name: str) -> Channel:
    parts = name.split(":")
    if len(parts) != 3 or parts[0] != "dao" or not parts[1] or not parts[2]:
        raise ChannelError(f"channel {name[:80]!r} is not 'dao:{{dao}}:{{room}}'")
    return Channel(parts[1], parts[2])


def denial(rule: Rule, membership: Membership | None) -> str | None:
    """Why ``membership`` may not be in a room with ``rule``, or None when it may."""
    if membership is None:
        return "not a member of this DAO"
    if membership.balance < rule.min_balance:
        return f"balance {membership.balance} below {rule.min_balance}"
    if rule.role is not None and membership.role != rule.role:
        return f"role {membership.role!r} is not {rule.role!r}"
    return None


class Realm:
    """DAOs and users; ``users`` holds explicit and already-generated users."""

    def __init__(
        self,
        *,
        secret: str,
        daos: dict[str, Dao],
        users: dict[str, User] | None = None,
        generated_users: int = 0,
        seed: int = 0,
    ) -> None:
        self.secret = secret
        self.daos = daos
        self.users: dict[str, User] = users or {}
        self.generated_users = generated_users
        self.seed = seed

    def user(self, name: str) -> User | None:
        found = self.users.get(name)
        if found is None and self.generated_users:
            found = self._generate(name)
            if found is not None:
                self.users[name] = found
        return found

    def room_rule(self, channel: Channel) -> Rule:
        dao = self.daos.get(channel.dao)
        if dao is None:
            raise ChannelError(f"no DAO {channel.dao!r}")
        rule = dao.rooms.get(channel.room)
        if rule is None:
            raise ChannelError(f"no room {channel.room!r} in DAO {channel.dao!r}")
        return rule

    def check_join(self, user: str, channel: Channel) -> str | None:
        """Why ``user`` may not join ``channel`` now, or None when it may."""
        rule = self.room_rule(channel)
        found = self.user(user)
        return denial(rule, found.daos.get(channel.dao) if found else None)

    def set_balance(self, user: str, dao: str, balance: int) -> None:
        found = self.user(user)
        if found is None:
            raise RealmError(f"no user {user!r}")
        if dao not in self.daos:
            raise RealmError(f"no DAO {dao!r}")
        membership = found.daos.get(dao)
        if membership is None:
            found.daos[dao] = Membership(balance=balance)
        else:
            membership.balance = balance

    def _generate(self, name: str) -> User | None:
        if not name.startswith("u") or not name[1:].isdigit():
            return None
        if int(name[1:]) >= self.generated_users:
            return None
        user = User(name=name)
        for dao in self.daos:
            digest = hashlib.blake2b(f"{self.seed}:{name}:{dao}".encode(), digest_size=8).digest()
            draw = int.from_bytes(digest, "big")
            role = "council" if draw % 50 == 0 else "member"
            user.daos[dao] = Membership(balance=(draw >> 8) % 1000, role=role)
        return user


TOPIC_ROOMS = 100


def _default_rooms() -> dict[str, Rule]:
    rooms = {
        "general": Rule(),
        "announcements": Rule(),
        "holders": Rule(min_balance=100),
        "whales": Rule(min_balance=900),
        "council": Rule(role="council"),
    }
    rooms.update({f"topic-{i}": Rule() for i in range(TOPIC_ROOMS)})
    return rooms


def generate_realm(*, seed: int = 0, users: int = 100_000, daos: int = 10) -> Realm:
    """A deterministic realm: users ``u0`` … ``u{users-1}``, members of DAOs ``1`` … ``daos``.

    Each user's balance (0–999) and role (``council`` for one in 50) in each DAO
    derive from the seed; every DAO has the rooms ``general``, ``announcements`` and
    ``topic-0`` … ``topic-99`` (open), ``holders`` (balance ≥ 100), ``whales`` (≥ 900)
    and ``council`` (role).
    The realm secret is derived from the seed too.
    """
    if users < 1 or daos < 1:
        raise RealmError(f"a generated realm needs users >= 1 and daos >= 1, got {users}, {daos}")
    secret = generated_realm_secret(seed)
    table = {
        str(i): Dao(id=str(i), name=f"DAO {i}", rooms=_default_rooms()) for i in range(1, daos + 1)
    }
    return Realm(secret=secret, daos=table, generated_users=users, seed=seed)


def _fail(path: Path, where: str, value: object, allowed: str) -> RealmError:
    return RealmError(f"{path}: {where} = {value!r}: {allowed}")


def load_realm(path: Path) -> Realm:
    """Read a realm TOML file; errors name the file, the field and what is allowed."""
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RealmError(f"{path}: {exc}") from None
    secret = data.get("secret")
    if not isinstance(secret, str) or len(secret) < 32:
        raise _fail(path, "secret", secret, "a string of at least 32 characters")
    daos: dict[str, Dao] = {}
    for dao_id, spec in dict(data.get("daos", {})).items():
        rooms: dict[str, Rule] = {}
        for room, rule in dict(spec.get("rooms", {"general": {}})).items():
            unknown = set(rule) - {"min_balance", "role"}
            if unknown:
                raise _fail(
                    path, f"daos.{dao_id}.rooms.{room}", sorted(unknown), "min_balance, role"
                )
            min_balance = rule.get("min_balance", 0)
            if not isinstance(min_balance, int) or min_balance < 0:
                raise _fail(
                    path,
                    f"daos.{dao_id}.rooms.{room}.min_balance",
                    min_balance,
                    "an integer >= 0",
                )
            rooms[room] = Rule(min_balance=min_balance, role=rule.get("role"))
        daos[str(dao_id)] = Dao(id=str(dao_id), name=str(spec.get("name", dao_id)), rooms=rooms)
    if not daos:
        raise _fail(path, "daos", {}, "at least one [daos.ID] table")
    users: dict[str, User] = {}
    for name, spec in dict(data.get("users", {})).items():
        user = User(name=name)
        for dao_id, member in dict(spec.get("daos", {})).items():
            if str(dao_id) not in daos:
                raise _fail(path, f"users.{name}.daos", dao_id, f"one of {sorted(daos)}")
            balance = member.get("balance", 0)
            if not isinstance(balance, int) or balance < 0:
                raise _fail(path, f"users.{name}.daos.{dao_id}.balance", balance, "an integer >= 0")
            user.daos[str(dao_id)] = Membership(
                balance=balance, role=str(member.get("role", "member"))
            )
        users[name] = user
    return Realm(secret=secret, daos=daos, users=users)
