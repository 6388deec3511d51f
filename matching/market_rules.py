"""Market rules: grid fees and the pricing rule that turns a matched pair into a price."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt


class PricingRule(StrEnum):
    """How the trade price is set inside ``[sell limit, buy limit - fee]``."""

    MIDPOINT = "midpoint"
    PAY_AS_BID = "pay_as_bid"
    PAY_AS_OFFER = "pay_as_offer"
    # One price per slot, the pool's marginal price (backends/pool_price.py), clipped
    # into each pair's range.
    UNIFORM = "uniform"


@dataclass(frozen=True)
class MarketRules:
    """Pricing and grid fees of a market.

    Attributes
    ----------
    pricing
        Pricing rule for matched pairs.
    grid_fee_eur_per_kwh
        Flat fee per traded kWh, paid by the buyer on top of the energy price.
    grid_fee_eur_per_kwh_per_km
        Additional fee per kWh and per km of the shortest line path between the buses.
    """

    pricing: PricingRule = PricingRule.MIDPOINT
    grid_fee_eur_per_kwh: float = 0.0
    grid_fee_eur_per_kwh_per_km: float = 0.0

    def fee_eur_per_kwh(self, distance_km: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Grid fee per kWh for trades over the given line distances."""
        return self.grid_fee_eur_per_kwh + self.grid_fee_eur_per_kwh_per_km * distance_km

    def price_eur_per_kwh(
        self,
        buy_limit_eur_per_kwh: npt.NDArray[np.float64],
        sell_limit_eur_per_kwh: npt.NDArray[np.float64],
        fee_eur_per_kwh: npt.NDArray[np.float64],
        uniform_eur_per_kwh: float | None = None,
    ) -> npt.NDArray[np.float64]:
        """Energy price of each trade (fee excluded) under the pricing rule.

        The price always lies in ``[sell limit, buy limit - fee]``, so neither side
        trades beyond its limit once the buyer has paid the fee. ``uniform_eur_per_kwh``
        is the slot's pool price for the uniform rule (``None``: the slot has none, and
        its trades are priced at the midpoint).
        """
        buyer_max = buy_limit_eur_per_kwh - fee_eur_per_kwh
        if self.pricing is PricingRule.UNIFORM and uniform_eur_per_kwh is not None:
            return np.asarray(
                np.clip(uniform_eur_per_kwh, sell_limit_eur_per_kwh, buyer_max), dtype=float
            )
        if self.pricing is PricingRule.PAY_AS_BID:
            return np.asarray(buyer_max, dtype=float)
        if self.pricing is PricingRule.PAY_AS_OFFER:
            return np.asarray(sell_limit_eur_per_kwh, dtype=float)
        return 0.5 * (buyer_max + sell_limit_eur_per_kwh)
