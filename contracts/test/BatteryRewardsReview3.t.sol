// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {BatteryRewardsFixture} from "./BatteryRewardsFixture.sol";
import {BatteryRewardsBlacklistToken, BatteryRewardsFeeToken} from "./BatteryRewardsMockTokens.sol";
import {BatteryRewards} from "../src/BatteryRewards.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// Cheatcodes the shared Vm.sol does not declare (same forge cheatcode address).
interface VmState {
    function snapshotState() external returns (uint256 snapshotId);
    function revertToState(uint256 snapshotId) external returns (bool success);
}

/// A third attacker's review of BatteryRewards (2026-12-03). Each `test_Finding_` failed
/// on the contract before its fix (push payments, a summary digest without battery and
/// schedule, funding credited at its nominal amount) and passes iff the contract defends.
contract BatteryRewardsReview3Test is BatteryRewardsFixture {
    VmState internal constant vmState = VmState(0x7109709ECfa91a80626fF3989D68f67F5b1DD12D);
    address internal vault = address(0x0A3);

    // ------------------------------------------------------------ push payments

    /// Finding 1 (liveness, high for a stablecoin): a release sent each participant's part
    /// in the same call, so one participant the token refuses (blacklisted, frozen, or a
    /// receiver that reverts) made every release of the agreement revert: nobody was paid,
    /// and after expiry the sponsor reclaimed everything. Fixed: a release credits owed
    /// balances; each participant withdraws (to any address) or anyone claims for it.
    function test_Finding_BlacklistedParticipantCannotBlockRelease() public {
        BatteryRewardsBlacklistToken token = new BatteryRewardsBlacklistToken();
        BatteryRewards r = deployOn(IERC20(address(token)));
        token.mint(sponsor, 1e15);
        vm.prank(sponsor);
        uint256 id = r.create(terms(7000));
        token.setBlacklisted(aggregator, true);
        warpPastPeriod(1);
        // Reverted BlacklistedAccount(aggregator) before the fix.
        assertEq(r.release(id, 0, goodSummary(), signedBy(r, id, 0, goodSummary())), 6 * AMOUNT, "released");
        assertEq(r.periodMask(id, 0), 0xBF, "attested");
        uint256 ownerPart = 6 * AMOUNT * 7000 / 10_000;
        assertEq(r.owedOf(owner), ownerPart, "owner credited");
        assertEq(r.owedOf(aggregator), 6 * AMOUNT - ownerPart, "aggregator credited");
        // The owner is paid; the aggregator's own address is refused, its credit kept.
        r.claim(owner);
        assertEq(token.balanceOf(owner), ownerPart, "owner paid");
        vm.expectRevert(abi.encodeWithSelector(BatteryRewardsBlacklistToken.BlacklistedAccount.selector, aggregator));
        r.claim(aggregator);
        assertEq(r.owedOf(aggregator), 6 * AMOUNT - ownerPart, "credit kept");
        // Even the owner blacklisted too, the next period releases.
        token.setBlacklisted(owner, true);
        assertEq(r.release(id, 1, goodSummary(), signedBy(r, id, 1, goodSummary())), 6 * AMOUNT, "next period");
        // The aggregator takes its two periods' credit to an address of its own.
        vm.prank(aggregator);
        assertEq(r.withdraw(vault), 2 * (6 * AMOUNT - ownerPart), "withdrawn elsewhere");
        assertEq(token.balanceOf(vault), 2 * (6 * AMOUNT - ownerPart), "vault paid");
        assertEq(r.owedOf(aggregator), 0, "nothing owed");
        assertConserved(r, id);
        assertEq(token.balanceOf(address(r)), 6 * AMOUNT + r.owedOf(owner), "held + owed");
    }

    /// Attack on the pull payments: withdrawing nothing, to the zero address or to the
    /// contract itself (tokens no credit accounts for), and twice.
    function test_RevertIf_WithdrawAbuse() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        rewards.release(id, 0, goodSummary(), signed(id, 0, goodSummary(), 3));
        vm.startPrank(mallory);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsNothingOwed.selector, mallory));
        rewards.withdraw(mallory);
        vm.stopPrank();
        vm.startPrank(owner);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsBadRecipient.selector, address(0)));
        rewards.withdraw(address(0));
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsBadRecipient.selector, address(rewards)));
        rewards.withdraw(address(rewards));
        uint256 owed = rewards.owedOf(owner);
        assertEq(rewards.withdraw(owner), owed, "once");
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsNothingOwed.selector, owner));
        rewards.withdraw(owner);
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsNothingOwed.selector, owner));
        rewards.claim(owner);
        assertEq(payment.balanceOf(owner), owed, "paid once");
        assertEq(payment.balanceOf(address(rewards)), 12 * AMOUNT + rewards.owedOf(aggregator), "held + owed");
    }

    /// Property: credits add up over agreements and periods; one withdrawal takes them all.
    function test_CreditsAddUpOverAgreements() public {
        uint256 a = createAgreement();
        vm.prank(sponsor);
        uint256 b = rewards.create(terms(2500));
        warpPastPeriod(0);
        rewards.release(a, 0, goodSummary(), signed(a, 0, goodSummary(), 3));
        rewards.release(b, 0, goodSummary(), signed(b, 0, goodSummary(), 3));
        uint256 expected = 6 * AMOUNT * 7000 / 10_000 + 6 * AMOUNT * 2500 / 10_000;
        assertEq(rewards.owedOf(owner), expected, "both agreements");
        vm.prank(owner);
        assertEq(rewards.withdraw(owner), expected, "withdrawn at once");
        assertEq(credited(), 12 * AMOUNT - expected, "the aggregator's left");
    }

    // ------------------------------------------------------------ summary binding

    /// Finding 2 (integrity, medium): the digest bound the agreement id and period, not
    /// what the summary is about. An id is only the creation order: after a reorg (or a
    /// create that failed and was resent) another agreement, for another battery, can hold
    /// the id validators signed for, and their quorum on battery 1's good period then
    /// released the other battery's sponsor's funds. Fixed: the digest binds batteryId
    /// and the schedule (periodStart, periodSeconds) too.
    function test_Finding_SummaryReplayedOnAnAgreementThatTookItsId() public {
        uint256 snapshot = vmState.snapshotState();
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        // The reorg: agreement `id` is now another battery's (or the same battery on
        // another schedule).
        vmState.revertToState(snapshot);
        uint256 other = vmState.snapshotState();
        BatteryRewards.Terms memory t = terms(7000);
        t.batteryId = keccak256("battery-2");
        vm.prank(sponsor);
        assertEq(rewards.create(t), id, "same id, other battery");
        warpPastPeriod(0);
        vm.expectRevert(invalidSig(sigs[0].validator)); // released 6 x AMOUNT before the fix
        rewards.release(id, 0, goodSummary(), sigs);
        vmState.revertToState(other);
        t = terms(7000);
        t.periodStart = START + DAY;
        t.expiry = EXPIRY + DAY;
        vm.prank(sponsor);
        assertEq(rewards.create(t), id, "same id and battery, a day later");
        vm.warp(START + 2 * uint64(DAY));
        vm.expectRevert(invalidSig(sigs[0].validator));
        rewards.release(id, 0, goodSummary(), sigs);
        assertEq(rewards.periodMask(id, 0), 0, "still open");
    }

    /// Attack: a summary signed for one agreement replayed for another one of the same
    /// battery, schedule and period (a second sponsor's): refused, the id is bound.
    function test_RevertIf_ReplayAcrossTwoAgreementsSameBattery() public {
        uint256 first = createAgreement();
        uint256 second = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.SignedSummary[] memory sigs = signed(first, 0, goodSummary(), 3);
        vm.expectRevert(invalidSig(sigs[0].validator));
        rewards.release(second, 0, goodSummary(), sigs);
        assertEq(rewards.release(first, 0, goodSummary(), sigs), 6 * AMOUNT, "its own agreement");
        assertEq(rewards.periodMask(second, 0), 0, "the other untouched");
    }

    /// Property: the digest changes with every field it binds (battery, start, length).
    function testFuzz_DigestBindsBatteryAndSchedule(bytes32 battery, uint32 shift, uint32 length) public {
        length = uint32(bound(length, 1, DAY));
        shift = uint32(bound(shift, 0, 30 * DAY));
        BatteryRewards.Terms memory t = terms(7000);
        t.batteryId = battery;
        t.periodStart = START + shift;
        t.periodSeconds = length;
        t.expiry = t.periodStart + uint64(PERIODS + 1) * length;
        uint256 base = createAgreement();
        vm.prank(sponsor);
        uint256 id = rewards.create(t);
        bytes32 digest = rewards.summaryHash(id, 0, goodSummary(), 1);
        bool same = battery == keccak256("battery-1") && shift == 0 && length == DAY;
        // Distinct ids always differ; with equal terms the id alone tells them apart.
        assertTrue(digest != rewards.summaryHash(base, 0, goodSummary(), 1), "bound to the id");
        bytes32 structHash = keccak256(
            abi.encode(rewards.SUMMARY_TYPEHASH(), id, battery, t.periodStart, length, uint32(0), goodSummary(), 1)
        );
        bytes32 withBase = keccak256(
            abi.encode(rewards.SUMMARY_TYPEHASH(), id, keccak256("battery-1"), START, DAY, uint32(0), goodSummary(), 1)
        );
        assertEq(structHash == withBase, same, "terms bound");
    }

    // ------------------------------------------------------------ funding

    /// Finding 3 (solvency, high for such a token): `create` credited the nominal
    /// periods x sum(amounts) while a fee-on-transfer token delivered less, so the
    /// agreement's releases and reclaim were paid from other agreements' money (the last
    /// to withdraw found the contract short). Fixed: create measures what arrived and
    /// refuses anything but the full amount.
    function test_Finding_FeeOnTransferFundingRefused() public {
        BatteryRewardsFeeToken token = new BatteryRewardsFeeToken(100); // 1 %
        BatteryRewards r = deployOn(IERC20(address(token)));
        token.mint(sponsor, 1e15);
        uint256 nominal = 18 * AMOUNT;
        vm.prank(sponsor);
        vm.expectRevert(
            abi.encodeWithSelector(
                BatteryRewards.BatteryRewardsFundingMismatch.selector, nominal, nominal - nominal / 100
            )
        );
        r.create(terms(7000)); // created, funded 18 x AMOUNT on paper, before the fix
        assertEq(r.agreementCount(), 0, "no agreement");
        assertEq(token.balanceOf(sponsor), 1e15, "sponsor untouched");
        assertEq(token.balanceOf(address(r)), 0, "nothing held");
        // Without the fee the same token funds in full; a fee switched on later costs the
        // receivers, never the contract's books (it sends exactly what it owes).
        token.setFee(0);
        vm.prank(sponsor);
        uint256 id = r.create(terms(7000));
        token.setFee(100);
        warpPastPeriod(0);
        r.release(id, 0, goodSummary(), signedBy(r, id, 0, goodSummary()));
        uint256 owed = r.owedOf(owner);
        r.claim(owner);
        assertEq(token.balanceOf(address(r)), nominal - owed, "the contract sent its credit");
        assertEq(token.balanceOf(owner), owed - owed / 100, "the fee is the receiver's");
        assertConserved(r, id);
    }
}
