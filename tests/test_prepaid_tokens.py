"""The cached OpenPAYGO chain (prepaid/tokens.py: TokenChain) is openpaygo, only faster.

openpaygo walks a key's counter chain from 0 for every token it generates or decodes, so
a meter's k-th token cost O(k) hashes. ``TokenChain`` computes each step once; these
tests check it against openpaygo itself (tokens generated, and what decoding makes of
issued, replayed, forged, add-time and reserved-value tokens), and that many tokens
stay cheap.
"""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st
from openpaygo import TokenType, decode_token, generate_token

from gridmatch.prepaid.tokens import (
    TokenChain,
    TokenIssuer,
    TokenVerifier,
    meter_key_hex,
)

KEYS = st.text("0123456789", min_size=1, max_size=8).map(lambda s: meter_key_hex("k" * 8, s))


KINDS = {998: TokenType.DISABLE_PAYG, 999: TokenType.COUNTER_SYNC}


@settings(max_examples=60, deadline=None)
@given(KEYS, st.integers(0, 999).filter(lambda v: v not in (996, 997)), st.integers(0, 300))
def test_tokens_are_openpaygos(key: str, value: int, count: int) -> None:
    # Counters: odd for SET (and disable, sync), even for ADD tokens; openpaygo takes the
    # last counter and generates at the next of the right parity.
    if value in KINDS:
        kind, given_value = KINDS[value], None
    else:
        kind, given_value = (TokenType.SET_TIME, TokenType.ADD_TIME)[count % 2], value
    new_count, expected = generate_token(
        secret_key=key, count=count, value=given_value, token_type=kind
    )
    assert TokenChain(key).token(value, int(new_count)) == expected


@settings(max_examples=80, deadline=None)
@given(KEYS, st.data())
def test_decoding_is_openpaygos(key: str, data: st.DataObject) -> None:
    chain = TokenChain(key)
    last = data.draw(st.integers(0, 150))
    used = sorted(data.draw(st.sets(st.integers(max(0, last - 20), last), max_size=10)))
    count = data.draw(st.integers(0, last + 110))
    value = data.draw(st.integers(0, 999))
    token = data.draw(
        st.just(chain.token(value, count)) | st.integers(0, 999_999_999).map(lambda t: f"{t:09d}")
    )
    ours = chain.decode(int(token), last, list(used))
    theirs = decode_token(token=token, secret_key=key, count=last, used_counts=list(used))
    value_theirs = None if theirs[0] is None else int(theirs[0])
    assert (ours[0], ours[1], ours[2], ours[3]) == (value_theirs, *theirs[1:])


def test_a_thousand_tokens_of_few_values_cost_one_hash_a_step() -> None:
    # 1,000 limits (counters to 1,999) of ten values, each checked by the meter: with
    # openpaygo's walk from 0 about 2 x 1,000^2 hashes (measured 38 s); cached, each
    # base's chain is hashed once: 10 x 2,000 hashes (measured 0.2 s).
    key = meter_key_hex("timing-seed", "M1")
    chain = TokenChain(key)
    issuer, meter = TokenIssuer(key, chain), TokenVerifier(key, chain=chain)
    began = time.perf_counter()
    for n in range(1000):
        token = issuer.issue_limit(n % 10 * 70)
        assert meter.check(token.token).accepted
    assert time.perf_counter() - began < 3.0
    assert meter.last_count == issuer.count == 1999
