// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {BatteryRewardsFixture} from "./BatteryRewardsFixture.sol";
import {BatteryRewards} from "../src/BatteryRewards.sol";

/// Regressions of two findings of an attacker's review (2026-12-01): each test failed
/// against the contract of that day and passes since the fix named in it.
contract BatteryRewardsFindingsTest is BatteryRewardsFixture {
    /// Finding 1 (terms, sponsor vs participants): `_checkTerms` accepts expiry == the end
    /// of the last period. `release` needs block.timestamp >= endsAt and <= expiry, so the
    /// last period can only be released in a block whose timestamp is exactly its end
    /// (on a 12 s slot chain possibly no such block exists; validators cannot summarise a
    /// period before it ends). One second later the release is `BatteryRewardsExpired`
    /// and the sponsor reclaims the last period's rewards. The "expiry before the last
    /// period ends" check exists to stop exactly that, but the boundary defeats it.
    /// Fixed: create asks for at least one period's length between the last end and expiry.
    function test_Finding_LastPeriodHasNoReleaseWindow() public {
        BatteryRewards.Terms memory t = terms(7000);
        uint64 lastEnd = START + uint64(PERIODS) * DAY;
        t.expiry = lastEnd;
        vm.prank(sponsor);
        try rewards.create(t) returns (uint256 id) {
            uint32 last = PERIODS - 1;
            BatteryRewards.SignedSummary[] memory sigs = signed(id, last, goodSummary(), 3);
            vm.warp(lastEnd + 1); // the first block after the period ended
            rewards.release(id, last, goodSummary(), sigs); // reverts BatteryRewardsExpired today
            assertEq(credited(), 6 * AMOUNT, "last period paid");
        } catch (bytes memory reason) {
            assertEq(
                bytes32(bytes4(reason)), bytes32(BatteryRewards.BatteryRewardsBadTerms.selector), "refused as bad terms"
            );
        }
    }

    /// Finding 2 (liveness, low): `_pay` (now `_credit`) computes `amount * sharesBps[i]` in checked uint256
    /// arithmetic, while `create` only bounds periods x sum(amounts). An agreement with
    /// two or more participants and a per-period release above 2^256 / 10,000 (about
    /// 1.16e73 units) is created and funded, but every release panics (0x11): the
    /// participants can never be paid and the sponsor reclaims everything after expiry.
    /// Needs a token with such a supply (not the bundled micro-EUR in practice).
    /// Fixed: create refuses a period amount above type(uint256).max / 10000.
    function test_Finding_HugeAmountReleaseOverflows() public {
        uint256 huge = uint256(1) << 245;
        vm.prank(admin);
        payment.mint(sponsor, huge);
        BatteryRewards.Terms memory t = terms(7000);
        for (uint256 c; c < 6; ++c) {
            t.amounts[c] = c == 0 ? huge : 0;
        }
        t.periods = 1;
        vm.prank(sponsor);
        try rewards.create(t) returns (uint256 id) {
            warpPastPeriod(0);
            uint256 amount = rewards.release(id, 0, goodSummary(), signed(id, 0, goodSummary(), 3));
            assertEq(amount, huge, "released");
            assertEq(credited(), huge, "paid");
        } catch (bytes memory reason) {
            assertEq(
                bytes32(bytes4(reason)), bytes32(BatteryRewards.BatteryRewardsBadTerms.selector), "refused as bad terms"
            );
        }
    }
}
