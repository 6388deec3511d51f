// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {BatteryRewardsFixture} from "./BatteryRewardsFixture.sol";
import {BatteryRewardsBlacklistToken} from "./BatteryRewardsMockTokens.sol";
import {BatteryRewards} from "../src/BatteryRewards.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// The sponsor's reclaim as a pull payment (2026-12-03). The finding failed on the push
/// reclaim (the tokens sent to msg.sender in `reclaim`); every attack passes iff the
/// contract defends.
contract BatteryRewardsReclaimTest is BatteryRewardsFixture {
    address internal vault = address(0x5B9);

    /// Finding (funds locked, the sponsor's own): a push reclaim could only send to the
    /// sponsor's address, so a sponsor the token blacklisted after funding saw every
    /// reclaim revert and the unreleased money stay in the contract for good. Fixed: the
    /// reclaim credits the sponsor, who withdraws to an address the token accepts. Nobody
    /// else was ever blocked: the participants are paid as before.
    function test_Finding_BlacklistedSponsorFundsNotLocked() public {
        BatteryRewardsBlacklistToken token = new BatteryRewardsBlacklistToken();
        BatteryRewards r = deployOn(IERC20(address(token)));
        token.mint(sponsor, 18 * AMOUNT);
        vm.prank(sponsor);
        uint256 id = r.create(terms(7000));
        warpPastPeriod(0);
        r.release(id, 0, goodSummary(), signedBy(r, id, 0, goodSummary()));
        token.setBlacklisted(sponsor, true);
        vm.warp(EXPIRY + 1);
        // Reverted BlacklistedAccount(sponsor) on every try before the fix.
        vm.prank(sponsor);
        assertEq(r.reclaim(id), 12 * AMOUNT, "reclaimed");
        assertEq(r.owedOf(sponsor), 12 * AMOUNT, "credited to the sponsor");
        // Its own address still refused: the credit is kept, not lost.
        vm.expectRevert(abi.encodeWithSelector(BatteryRewardsBlacklistToken.BlacklistedAccount.selector, sponsor));
        r.claim(sponsor);
        assertEq(r.owedOf(sponsor), 12 * AMOUNT, "credit kept");
        vm.prank(sponsor);
        assertEq(r.withdraw(vault), 12 * AMOUNT, "withdrawn elsewhere");
        assertEq(token.balanceOf(vault), 12 * AMOUNT, "vault paid");
        // The participants' credits were never touched by the sponsor's.
        r.claim(owner);
        r.claim(aggregator);
        assertEq(token.balanceOf(owner) + token.balanceOf(aggregator), 6 * AMOUNT, "participants paid");
        assertEq(token.balanceOf(address(r)), 0, "nothing locked");
        assertConserved(r, id);
    }

    /// Attack: take the sponsor's reclaimed credit: a stranger, a participant or a
    /// validator withdraws (owed nothing of it), claims it for the sponsor (the tokens go
    /// to the sponsor only), or the sponsor withdraws it twice.
    function test_RevertIf_ReclaimCreditTaken() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        rewards.release(id, 0, goodSummary(), signed(id, 0, goodSummary(), 3));
        withdrawAll();
        vm.warp(EXPIRY + 1);
        vm.prank(sponsor);
        rewards.reclaim(id);
        address[3] memory intruders = [mallory, owner, vm.addr(validatorKeys[0])];
        for (uint256 i; i < 3; ++i) {
            vm.prank(intruders[i]);
            vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsNothingOwed.selector, intruders[i]));
            rewards.withdraw(intruders[i]);
        }
        uint256 before = payment.balanceOf(sponsor);
        uint256 ownerBefore = payment.balanceOf(owner);
        vm.prank(mallory);
        assertEq(rewards.claim(sponsor), 12 * AMOUNT, "claimed for the sponsor");
        assertEq(payment.balanceOf(sponsor) - before, 12 * AMOUNT, "to the sponsor");
        assertEq(payment.balanceOf(mallory) + payment.balanceOf(owner) - ownerBefore, 0, "to no one else");
        vm.prank(sponsor);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsNothingOwed.selector, sponsor));
        rewards.withdraw(sponsor);
        assertEq(payment.balanceOf(address(rewards)), 0, "empty");
    }

    /// Attack: a sponsor that is its own agreement's participant, with a second agreement
    /// still running, tries to withdraw more than its credit and its reclaim: exactly
    /// their sum leaves, the other agreement's funds stay held.
    function test_RevertIf_SponsorParticipantOverdraws() public {
        BatteryRewards.Terms memory t = terms(7000);
        t.participants[1] = sponsor;
        uint256 id = createWith(t);
        BatteryRewards.Terms memory later = terms(5000);
        later.periodStart = EXPIRY;
        later.expiry = EXPIRY + 5 * uint64(DAY);
        createWith(later);
        warpPastPeriod(0);
        rewards.release(id, 0, goodSummary(), signed(id, 0, goodSummary(), 3));
        uint256 part = 6 * AMOUNT - 6 * AMOUNT * 7000 / 10_000;
        vm.warp(EXPIRY + 1);
        vm.prank(sponsor);
        assertEq(rewards.reclaim(id), 12 * AMOUNT, "reclaimed");
        assertEq(rewards.owedOf(sponsor), part + 12 * AMOUNT, "its share and its reclaim");
        uint256 before = payment.balanceOf(sponsor);
        vm.startPrank(sponsor);
        assertEq(rewards.withdraw(sponsor), part + 12 * AMOUNT, "exactly the sum");
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsNothingOwed.selector, sponsor));
        rewards.withdraw(sponsor);
        vm.stopPrank();
        assertEq(payment.balanceOf(sponsor) - before, part + 12 * AMOUNT, "paid once");
        rewards.claim(owner);
        assertEq(payment.balanceOf(address(rewards)), 18 * AMOUNT, "the later agreement held in full");
    }

    /// Property: a reclaim of nothing (every period released) credits nothing and leaves
    /// the sponsor owed nothing; the reclaim is still final.
    function test_ReclaimOfNothingCreditsNothing() public {
        uint256 id = createAgreement();
        warpPastPeriod(2);
        for (uint32 p; p < PERIODS; ++p) {
            rewards.release(id, p, goodSummary(), signed(id, p, goodSummary(), 3));
        }
        vm.warp(EXPIRY + 1);
        vm.prank(sponsor);
        assertEq(rewards.reclaim(id), 0, "nothing left");
        assertEq(rewards.owedOf(sponsor), 0, "nothing credited");
        vm.prank(sponsor);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsReclaimed.selector, id));
        rewards.reclaim(id);
        withdrawAll();
        assertEq(payment.balanceOf(address(rewards)), 0, "everything paid to the participants");
    }
}
