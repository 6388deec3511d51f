// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SettlementFixture} from "./SettlementFixture.sol";
import {Settlement} from "../src/Settlement.sol";
import {EnergyCertificates} from "../src/EnergyCertificates.sol";

/// The settlement fixture plus its certificates: trades in any slot, quorums of honest
/// votes, issue requests, and claims.
abstract contract CertificatesFixture is SettlementFixture {
    /// The clock hour holding the fixture's default slot (SLOT_START is 400 s into it).
    uint64 internal constant HOUR = SLOT_START - (SLOT_START % 3600);
    uint64 internal constant QUARTER = 15 minutes;
    string internal constant BENEFICIARY = "Schule am Park";
    string internal constant PURPOSE = "2026 scope 2 report, hourly matched";

    EnergyCertificates internal certificates;

    function setUp() public virtual override {
        super.setUp();
        certificates = settlement.certificates();
        fund(buyer2, BUYER_FUNDS);
    }

    /// @notice An order of `participant` for [slotStart, slotStart + QUARTER), default limits.
    function orderIn(address participant, bool isBuy, uint64 slotStart, uint64 quantityWh)
        internal
        returns (Settlement.Order memory order)
    {
        order = isBuy ? buyOrder(participant, quantityWh) : sellOrder(participant, quantityWh);
        (order.slotStart, order.slotEnd) = (slotStart, slotStart + QUARTER);
    }

    /// @notice A trade of `wh` between fresh orders of `b` and `s` in the slot at `slotStart`.
    function tradeIn(address b, address s, uint64 slotStart, uint64 wh)
        internal
        returns (Settlement.TradeInput memory)
    {
        return tradeInput(orderIn(b, true, slotStart, wh), orderIn(s, false, slotStart, wh), wh, PRICE, FEE);
    }

    /// @notice Validators 0..2 each vote `wh` on every trade of `trades` (a settlement each).
    function settleAll(Settlement.Trade[] memory trades, uint64[] memory whs) internal {
        for (uint256 i; i < trades.length; ++i) {
            voteBy(3, trades[i], whs[i]);
        }
    }

    /// @notice One issue request.
    function requestOf(address device, uint64 hourStart, address[] memory holders)
        internal
        pure
        returns (EnergyCertificates.IssueRequest[] memory requests)
    {
        requests = new EnergyCertificates.IssueRequest[](1);
        requests[0] = EnergyCertificates.IssueRequest(device, hourStart, holders);
    }

    /// @notice The relayer (no role) asks the settlement to issue `requests`.
    function issue(EnergyCertificates.IssueRequest[] memory requests) internal returns (uint256[] memory) {
        vm.prank(relayer);
        return settlement.issueCertificates(requests);
    }

    /// @notice The relayer issues the certificate of `device`'s hour to `holders`; its id
    ///         (0 when the call reverted under vm.expectRevert: no ids come back then).
    function issueOne(address device, uint64 hourStart, address[] memory holders) internal returns (uint256) {
        uint256[] memory ids = issue(requestOf(device, hourStart, holders));
        return ids.length == 0 ? 0 : ids[0];
    }

    /// @notice A two-element array.
    function pair(address a, address b) internal pure returns (address[] memory arr) {
        arr = new address[](2);
        (arr[0], arr[1]) = (a, b);
    }

    /// @notice A one-element array.
    function whs1(uint64 a) internal pure returns (uint64[] memory arr) {
        arr = new uint64[](1);
        arr[0] = a;
    }

    /// @notice A two-element array.
    function whs2(uint64 a, uint64 b) internal pure returns (uint64[] memory arr) {
        arr = new uint64[](2);
        (arr[0], arr[1]) = (a, b);
    }

    /// @notice Holder `who` retires `wh` of certificate `id` for the default beneficiary.
    function claimAs(address who, uint256 id, uint64 wh) internal returns (uint256) {
        vm.prank(who);
        return certificates.claim(id, wh, BENEFICIARY, PURPOSE);
    }
}
