// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TestBase} from "./Vm.sol";
import {SettlementCertificatesHandler} from "./handlers/SettlementCertificatesHandler.sol";
import {Settlement} from "../src/Settlement.sol";
import {EnergyCertificates} from "../src/EnergyCertificates.sol";

/// The certificates behind the real settlement: random sequences of
/// {SettlementCertificatesHandler} actions (every settlement action of the base handler,
/// hours closing, issuance through the settlement, splits, claims, attacks). One
/// invariant function checks every property after each call (each would otherwise be a
/// campaign of its own); afterInvariant closes every deadline and hour and issues all.
contract SettlementCertificatesInvariantTest is TestBase {
    SettlementCertificatesHandler internal handler;
    Settlement internal settlement;
    EnergyCertificates internal certificates;

    function setUp() public {
        vm.warp(1_750_000_000);
        handler = new SettlementCertificatesHandler(50);
        settlement = handler.settlement();
        certificates = handler.certificates();
        targetContract(address(handler));
    }

    /// After every call: verified == paid, each certificate == its seller-hour's verified
    /// Wh (pending Wh as the model's), active + claimed == issued, claimed never moves,
    /// every attack refused.
    function invariant_certificatesFollowSettlement() public view {
        // Issued Wh == verified Wh (the settlement's paid Wh, checked against the votes).
        assertEq(certificates.totalValidatedWh(), settlement.totalPaidWh(), "verified == paid");
        assertEq(settlement.totalPaidWh(), handler.ghost_whPaid(), "paid == model");
        uint256 n = certificates.certificateCount();
        assertEq(n, handler.issuedCount(), "certificates == issuances");
        uint256 issued = 0;
        for (uint256 id = 1; id <= n; ++id) {
            EnergyCertificates.Certificate memory c = certificates.certificate(id);
            assertEq(
                c.issuedWh,
                handler.ghost_verifiedOf(handler.sellerOf(id), handler.hourOf(id)),
                "certificate == its seller-hour's verified Wh"
            );
            issued += c.issuedWh;
            _balancesOf(id, c);
        }
        assertEq(certificates.unitsIssued(), issued, "units == sum of certificates");
        assertEq(issued, handler.ghost_issued(), "issued == model");
        (uint256 model, uint256 onChain) = handler.pendingTotals();
        assertEq(onChain, model, "pending per buyer as the model's");
        assertEq(issued + model, certificates.totalValidatedWh(), "issued + pending == verified");
        assertEq(certificates.totalClaimedWh(), handler.ghost_claimed(), "total claimed");
        assertEq(handler.ghost_issueMismatch(), 0, "a mint differed from the model");
        assertEq(handler.ghost_modelMismatch(), 0, "the settlement differed from the model");
        assertEq(handler.ghost_attacksAccepted(), 0, "an attack went through");
        assertEq(handler.ghost_wrongError(), 0, "an attack was refused for the wrong reason");
    }

    /// At the end of each run: past every deadline every open trade is reclaimed, and every
    /// seller-hour with verified Wh is issued; then issued Wh == paid Wh exactly.
    function afterInvariant() public {
        vm.warp(uint256(handler.latestDeadline()) + handler.currentTime() + 1);
        uint256 n = handler.tradeCount();
        Settlement.Trade[] memory all = new Settlement.Trade[](n);
        for (uint256 i; i < n; ++i) {
            (all[i],,) = handler.tradeAt(i);
        }
        settlement.reclaimBatch(all);
        if (settlement.paused()) {
            vm.prank(handler.ADMIN());
            settlement.unpause();
        }
        uint256 hours_ = handler.closedHourCount();
        for (uint256 k; k <= hours_; ++k) {
            uint64 h = k < hours_ ? handler.closedHours(k) : handler.currentHour();
            for (uint256 i; i < 3; ++i) {
                address s = handler.sellers(i);
                EnergyCertificates.Period memory p = _period(s, h);
                assertEq(p.openTrades, 0, "no trade open after all reclaims");
                if (p.certificateId != 0 || p.validatedWh == 0) continue;
                settlement.issueCertificates(handler.fullRequest(s, h));
            }
        }
        assertEq(certificates.unitsIssued(), settlement.totalPaidWh(), "all issued: issued == paid");
        assertEq(certificates.unitsIssued(), certificates.totalValidatedWh(), "issued == verified");
    }

    function _balancesOf(uint256 id, EnergyCertificates.Certificate memory c) internal view {
        uint256 active = 0;
        uint256 claimed = 0;
        for (uint256 i; i < handler.actorCount(); ++i) {
            address a = handler.actors(i);
            active += certificates.balanceOf(a, id);
            uint256 mine = certificates.claimedBalanceOf(a, id);
            assertEq(mine, handler.ghost_claimedOf(a, id), "claimed == what the holder retired");
            claimed += mine;
        }
        assertEq(claimed, c.claimedWh, "claimed balances == certificate's claimed");
        assertEq(active + claimed, c.issuedWh, "active + claimed == issued");
    }

    function _period(address s, uint64 h) internal view returns (EnergyCertificates.Period memory) {
        address[] memory d = new address[](1);
        uint64[] memory hs = new uint64[](1);
        (d[0], hs[0]) = (s, h);
        return certificates.periods(d, hs)[0];
    }
}
