"""Validated orders, held column-wise so candidate pairs can be built with numpy."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt


class Side(StrEnum):
    """Which side of the market an order is on."""

    BUY = "buy"
    SELL = "sell"


@dataclass(frozen=True)
class Order:
    """One buy or sell order for energy in one time slot.

    Attributes
    ----------
    order_id
        Unique identifier given by the user.
    participant_id
        The prosumer who posted the order.
    side
        Buy or sell.
    bus
        Index of the connection point in the pandapower ``net.bus`` table.
    slot
        Delivery time slot, 0-based.
    quantity_kwh
        Energy offered or wanted in the slot.
    limit_price_eur_per_kwh
        A buyer's maximum or a seller's minimum price for energy (fees excluded).
    divisible
        A divisible buy may be filled partly and by several sellers; an indivisible
        buy is filled completely by one seller or not at all. An indivisible sell is
        all-or-none: sold completely (to any number of buyers) or not at all.
    """

    order_id: str
    participant_id: str
    side: Side
    bus: int
    slot: int
    quantity_kwh: float
    limit_price_eur_per_kwh: float
    divisible: bool


@dataclass(frozen=True)
class OrderBook:
    """All orders of a scenario, in file order.

    The array views (``quantity_kwh`` ...) are aligned with ``orders`` and are what the
    model builders use; ``orders`` keeps the user's identifiers for the result files.
    """

    orders: tuple[Order, ...]

    def __len__(self) -> int:
        return len(self.orders)

    @property
    def slots(self) -> list[int]:
        """Sorted distinct slots that have at least one order."""
        return sorted({order.slot for order in self.orders})

    @property
    def is_buy(self) -> npt.NDArray[np.bool_]:
        """True where the order is a buy order."""
        return np.fromiter((o.side is Side.BUY for o in self.orders), bool, len(self.orders))

    @property
    def quantity_kwh(self) -> npt.NDArray[np.float64]:
        """Quantities, one per order."""
        return np.fromiter((o.quantity_kwh for o in self.orders), float, len(self.orders))

    @property
    def limit_price_eur_per_kwh(self) -> npt.NDArray[np.float64]:
        """Limit prices, one per order."""
        return np.fromiter(
            (o.limit_price_eur_per_kwh for o in self.orders), float, len(self.orders)
        )

    @property
    def participant_code(self) -> npt.NDArray[np.int64]:
        """Participants as integer codes (equal code: same participant), one per order."""
        codes: dict[str, int] = {}
        return np.fromiter(
            (codes.setdefault(o.participant_id, len(codes)) for o in self.orders),
            np.int64,
            len(self.orders),
        )

    @property
    def slot(self) -> npt.NDArray[np.int64]:
        """Slots, one per order."""
        return np.fromiter((o.slot for o in self.orders), np.int64, len(self.orders))

    @property
    def bus(self) -> npt.NDArray[np.int64]:
        """Buses, one per order."""
        return np.fromiter((o.bus for o in self.orders), np.int64, len(self.orders))

    @property
    def divisible(self) -> npt.NDArray[np.bool_]:
        """Divisibility flags, one per order."""
        return np.fromiter((o.divisible for o in self.orders), bool, len(self.orders))
