"""Usage limits as OpenPAYGO tokens: the server issues them, the meter verifies them.

The token scheme is OpenPAYGO Token (the ``openpaygo`` package, standard 9-digit
tokens), not one of our own: a token is a SipHash-2-4 chain over a per-device secret
key and a counter, with the value in its last three digits. We use its ``SET_TIME``
tokens, whose value is 0 to 995, as **usage limits** of ``units`` (one unit is
``tokens.unit_wh`` Wh of prepaid.yaml, default 100 Wh):

* values 0 to 749 are that many units, exactly;
* values 750 to 995 are a table that grows by 6 % a step (integer arithmetic:
  ``next = u + ceil(6 u / 100)`` from 750) up to :data:`MAX_UNITS` (1,199,197,601
  units, about 120 GWh at 100 Wh): a limit is rounded **up** to the next value, at
  most 6 % more than asked, so one token carries any balance a household account holds
  (a 995-unit cap used to cut large balances short); above that the server sends the
  largest and the next one when half of it is used;
* a ``SET`` token of ``n`` units tells the meter "you may supply ``n * unit_wh`` more Wh
  from your register as it is now, then switch off unless you hear from me"; ``n = 0`` is
  the server's cutoff command (a forged cutoff is refused like any forged token).

The meter keeps the last counter it accepted (and OpenPAYGO's list of used counters)
and refuses a token that is not valid for its key (``invalid``: forged, or meant for
another meter), one whose counter it has used already (``already_used``: a replay), one
that is not a limit (``ADD_TIME``, ``DISABLE_PAYG``, ``COUNTER_SYNC``), and text that is
not a standard token. OpenPAYGO's decoder tries the counters up to 64 past the last one:
a guessed 9-digit token passes with odds of about 64 in a million, as with any OpenPAYGO
device (real keypads rate-limit entries).

Keys: each meter's 128-bit key is derived from ``tokens.key_seed`` and the meter id
(HMAC-SHA-256), so a simulation is reproducible. That is for simulation only: real
deployments provision a random key into each meter at manufacture and keep it in the
server's key store.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from openpaygo import OpenPAYGOTokenDecoder, TokenType
from openpaygo.token_shared import OpenPAYGOTokenShared

# The largest value of a standard token (995; 996-999 are reserved by OpenPAYGO).
MAX_VALUE: int = OpenPAYGOTokenShared.MAX_ACTIVATION_VALUE
# Values below this are units one for one; from it on, the growing table.
LINEAR_VALUES = 750
_GROWTH_PERCENT = 6


def _units_table() -> tuple[int, ...]:
    units = [LINEAR_VALUES]
    while len(units) < MAX_VALUE - LINEAR_VALUES + 1:
        last = units[-1]
        units.append(last + -(-_GROWTH_PERCENT * last // 100))
    return tuple(units)


_TABLE = _units_table()
# The largest limit one token carries, in units (1,199,197,601).
MAX_UNITS: int = _TABLE[-1]
TOKEN_DIGITS = 9
_KEY_BYTES = 16
_KEY_CONTEXT = b"gridmatch-prepaid-openpaygo-key-v1:"
# What refusals are called in events.csv.
INVALID = "invalid"
ALREADY_USED = "already_used"
NOT_A_LIMIT = "not_a_limit_token"
MALFORMED = "malformed"


def scheme_name() -> str:
    """Return the token scheme and library version, as the summary records it."""
    try:
        installed = version("openpaygo")
    except PackageNotFoundError:  # pragma: no cover - it is a dependency
        installed = "unknown"
    return f"OpenPAYGO Token (openpaygo {installed}), standard SET_TIME tokens as usage limits"


def units_of_value(value: int) -> int:
    """Return the limit in units that a token value (0 to 995) stands for."""
    if not 0 <= value <= MAX_VALUE:
        raise ValueError(f"a standard OpenPAYGO token value is 0 to {MAX_VALUE}, not {value}")
    return value if value < LINEAR_VALUES else _TABLE[value - LINEAR_VALUES]


def value_for_units(units: int) -> int:
    """Return the smallest token value whose limit is at least ``units``.

    Raises
    ------
    ValueError
        ``units`` outside 0 to :data:`MAX_UNITS`.
    """
    if not 0 <= units <= MAX_UNITS:
        raise ValueError(f"one token carries 0 to {MAX_UNITS} units, not {units}")
    if units < LINEAR_VALUES:
        return units
    return LINEAR_VALUES + bisect.bisect_left(_TABLE, units)


def meter_key_hex(key_seed: str, meter_id: str) -> str:
    """Derive the meter's 128-bit OpenPAYGO secret key (32 hex digits) from the seed.

    Simulation only: real meters get a random key at manufacture.
    """
    digest = hmac.new(
        key_seed.encode("utf-8"), _KEY_CONTEXT + meter_id.encode("utf-8"), hashlib.sha256
    ).digest()
    return digest[:_KEY_BYTES].hex()


@dataclass(frozen=True)
class IssuedToken:
    """A limit token the server generated: its text, counter and limit in units."""

    token: str
    count: int
    units: int


class TokenChain:
    """OpenPAYGO's counter chains of one key, each step computed once.

    A standard token for value ``v`` at counter ``n`` is the ``n``-th SipHash step from
    the key's starting code with ``v``'s base put in its last three digits. openpaygo's
    encoder and decoder walk that chain from counter 0 for every token: a meter's
    ``k``-th token cost ``O(k)`` hashes to make and again to check. This cache of that
    pure function (per base, the codes so far) hashes each step of each base's chain
    once per meter, shared by the server and the meter of a simulation; the tokens, and
    what the meter accepts or refuses, are exactly openpaygo's (tested against it). A
    token of a value not used before still costs its counter in hashes: the number of
    tokens per meter is bounded at the edge (prepaid_input: top-ups and keypad rows).
    """

    def __init__(self, key_hex: str) -> None:
        self._key = OpenPAYGOTokenShared.load_secret_key_from_hex(key_hex)
        self._start = OpenPAYGOTokenShared.generate_starting_code(self._key)
        self._start_base = OpenPAYGOTokenShared.get_token_base(self._start)
        # Per base: the chain's codes, and the tokens they make (the code with the base
        # put in), so that a token's counters are found by list.index.
        self._codes: dict[int, list[int]] = {}
        self._tokens: dict[int, list[int]] = {}

    def _chain(self, base: int, count: int) -> list[int]:
        """Return the tokens of ``base``'s chain up to at least counter ``count``."""
        codes = self._codes.get(base)
        if codes is None:
            codes = self._codes[base] = [OpenPAYGOTokenShared.put_base_in_token(self._start, base)]
            self._tokens[base] = [codes[0]]
        tokens = self._tokens[base]
        while len(codes) <= count:
            code = OpenPAYGOTokenShared.generate_next_token(codes[-1], self._key)
            codes.append(code)
            tokens.append(OpenPAYGOTokenShared.put_base_in_token(code, base))
        return tokens

    def token(self, value: int, count: int) -> str:
        """Return the standard token of ``value`` at ``count``, as openpaygo generates it."""
        base = (self._start_base + value) % OpenPAYGOTokenShared.TOKEN_VALUE_OFFSET
        return f"{self._chain(base, count)[count]:09d}"

    def decode(
        self, token: int, last_count: int, used_counts: list[int]
    ) -> tuple[int | None, int, int | None, list[int] | None]:
        """Decode a standard token as ``openpaygo.decode_token`` does: value, type, count, used.

        The counters it tries are the same (0 to 64 past ``last_count``, 100 for a
        counter sync), in the same order; only the chain is not hashed again.
        """
        base = OpenPAYGOTokenShared.get_token_base(token)
        value = (base - self._start_base) % OpenPAYGOTokenShared.TOKEN_VALUE_OFFSET
        sync = value == OpenPAYGOTokenShared.COUNTER_SYNC_VALUE
        jump = (
            OpenPAYGOTokenDecoder.MAX_TOKEN_JUMP_COUNTER_SYNC
            if sync
            else OpenPAYGOTokenDecoder.MAX_TOKEN_JUMP
        )
        highest = last_count + jump
        tokens = self._chain(base, highest)
        older = False
        count = -1
        while True:
            try:
                count = tokens.index(token, count + 1, highest + 1)
            except ValueError:
                break
            if count % 2 == 0:
                kind = TokenType.ADD_TIME
            elif sync:
                kind = TokenType.COUNTER_SYNC
            elif value == OpenPAYGOTokenShared.PAYG_DISABLE_VALUE:
                kind = TokenType.DISABLE_PAYG
            else:
                kind = TokenType.SET_TIME
            if OpenPAYGOTokenDecoder._count_is_valid(count, last_count, value, kind, used_counts):
                used = OpenPAYGOTokenDecoder.update_used_counts(used_counts, value, count, kind)
                return value, kind, count, used
            older = True
        return None, TokenType.ALREADY_USED if older else TokenType.INVALID, None, None


class TokenIssuer:
    """The server's side: one counter per meter, every token a ``SET`` of a limit."""

    def __init__(self, key_hex: str, chain: TokenChain | None = None) -> None:
        self._chain = chain if chain is not None else TokenChain(key_hex)
        self.count = 0

    def issue_limit(self, units: int) -> IssuedToken:
        """Generate the next ``SET`` token for at least ``units`` units (0 = cutoff command).

        The token's limit is ``units`` rounded up to a token value
        (:func:`value_for_units`); :attr:`IssuedToken.units` is what it carries.

        Raises
        ------
        ValueError
            ``units`` outside 0 to :data:`MAX_UNITS`.
        """
        value = value_for_units(units)
        # SET tokens take odd counters: the next odd one above the last.
        self.count += 2 if self.count % 2 else 1
        return IssuedToken(self._chain.token(value, self.count), self.count, units_of_value(value))


@dataclass(frozen=True)
class TokenCheck:
    """What a meter made of a token: accepted with its units and counter, or why not."""

    accepted: bool
    units: int = 0
    count: int = 0
    reason: str = ""


@dataclass
class TokenVerifier:
    """The meter's side: its key, the last counter it accepted, the counters used."""

    key_hex: str
    last_count: int = 0
    used_counts: list[int] = field(default_factory=list)
    chain: TokenChain | None = field(default=None, repr=False, compare=False)

    def check(self, token: str) -> TokenCheck:
        """Verify a token and, if it is a fresh limit for this meter, take its counter."""
        if not (token.isascii() and token.isdigit() and 0 < len(token) <= TOKEN_DIGITS):
            return TokenCheck(False, reason=MALFORMED)
        if self.chain is None:
            self.chain = TokenChain(self.key_hex)
        value, kind, count, used = self.chain.decode(
            int(token),
            self.last_count,
            # openpaygo 0.6 expects a list here and returns None for an empty one.
            list(self.used_counts),
        )
        if kind == TokenType.INVALID:
            return TokenCheck(False, reason=INVALID)
        if kind == TokenType.ALREADY_USED:
            return TokenCheck(False, reason=ALREADY_USED)
        if kind != TokenType.SET_TIME or value is None or count is None or value > MAX_VALUE:
            # 996 and 997 decode as SET_TIME but are reserved by OpenPAYGO.
            return TokenCheck(False, reason=NOT_A_LIMIT)
        self.last_count = max(self.last_count, count)
        self.used_counts = sorted(set(used) if used is not None else {*self.used_counts, count})
        return TokenCheck(True, units=units_of_value(value), count=count)
