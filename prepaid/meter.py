"""The meter of the loop: registers, a cutoff switch, and the limit it was last given.

A prepaid meter here is the patent's metering device with a cutoff: it measures what it
supplies into one cumulative register per tariff band (as rate registers of real meters
do, so a report that is lost is not usage lost: the next one carries the totals), reports
them at every report instant, and obeys limit tokens (:mod:`gridmatch.prepaid.tokens`).
It does not know the tariff or the balance: the money is the server's.

The switch follows Disconnect control (DLMS/COSEM class 70) in name only:
``control_state`` is connected, disconnected or ready_for_reconnection. A limit token of
``n > 0`` units arms a disconnected meter (ready_for_reconnection), and the simulation
reconnects it at once (a remote reconnection; a real meter may wait for the customer's
button). The meter switches itself off at a report instant when its register has reached
the limit, unless that instant is in friendly-credit hours: with the server in contact
this is the server's cutoff command (a limit of 0), without contact it is the meter's
own backstop. Switching happens at report instants: the simulation's resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gridmatch.prepaid.tokens import TokenChain, TokenCheck, TokenVerifier
from gridmatch.results_io.prepaid import ControlState


@dataclass(frozen=True)
class MeterReport:
    """One report: what the server learns from the meter at an instant.

    Attributes
    ----------
    seq
        The report instant it was made at (a later report supersedes it).
    registers_wh
        Cumulative Wh supplied per tariff band since commissioning.
    remaining_wh
        Wh the meter may still supply under its current limit.
    token_count
        The OpenPAYGO counter of the last token it accepted (the server issues above it).
    """

    seq: int
    registers_wh: tuple[int, ...]
    control_state: ControlState
    remaining_wh: int
    token_count: int = 0


class Meter:
    """One meter: per-band registers, its switch, its limit and its token verifier."""

    def __init__(
        self,
        meter_id: str,
        key_hex: str,
        n_bands: int,
        unit_wh: int,
        chain: TokenChain | None = None,
    ) -> None:
        self.meter_id = meter_id
        self.unit_wh = unit_wh
        self.registers_wh = [0] * n_bands
        self.control_state = ControlState.CONNECTED
        # The total register reading at which the meter stops: nothing until the first
        # token (the commissioning gives one, or a cutoff).
        self.limit_total_wh = 0
        self.verifier = TokenVerifier(key_hex, chain=chain)

    @property
    def total_wh(self) -> int:
        """All Wh supplied since commissioning."""
        return sum(self.registers_wh)

    @property
    def remaining_wh(self) -> int:
        """Wh the meter may still supply before it switches itself off (< 0: overrun)."""
        return self.limit_total_wh - self.total_wh

    @property
    def connected(self) -> bool:
        """Whether the switch is closed."""
        return self.control_state is ControlState.CONNECTED

    def supply(self, demand_wh: Sequence[int]) -> list[int]:
        """Supply one interval's demand per band if connected (else nothing); count it."""
        if not self.connected:
            return [0] * len(demand_wh)
        for band, wh in enumerate(demand_wh):
            self.registers_wh[band] += int(wh)
        return [int(wh) for wh in demand_wh]

    def report(self, seq: int) -> MeterReport:
        """Make the report of instant ``seq``."""
        return MeterReport(
            seq,
            tuple(self.registers_wh),
            self.control_state,
            self.remaining_wh,
            self.verifier.last_count,
        )

    def enter(self, token: str) -> tuple[TokenCheck, bool]:
        """Verify a token and apply it if accepted; also return whether it reconnected.

        An accepted limit of ``n`` units lets the meter supply ``n * unit_wh`` Wh more
        from its register now; ``n > 0`` on a disconnected meter reconnects it.
        """
        check = self.verifier.check(token)
        if not check.accepted:
            return check, False
        self.limit_total_wh = self.total_wh + check.units * self.unit_wh
        if check.units > 0 and not self.connected:
            # Armed (ready_for_reconnection) and reconnected remotely in the same step.
            self.control_state = ControlState.CONNECTED
            return check, True
        return check, False

    def enforce_limit(self, friendly: bool) -> bool:
        """Switch off if the limit is reached and it is not friendly time; True if it did."""
        if self.connected and self.remaining_wh <= 0 and not friendly:
            self.control_state = ControlState.DISCONNECTED
            return True
        return False
