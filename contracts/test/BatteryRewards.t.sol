// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {BatteryRewardsFixture} from "./BatteryRewardsFixture.sol";
import {BatteryRewards} from "../src/BatteryRewards.sol";

/// The normal life of a battery reward agreement, and one attack test per rule.
contract BatteryRewardsTest is BatteryRewardsFixture {
    // ------------------------------------------------------------ the normal life

    /// Property: creating pulls periods x sum(amounts) from the sponsor.
    function test_CreateFunds() public {
        uint256 before = payment.balanceOf(sponsor);
        uint256 id = createAgreement();
        assertEq(id, 1, "first id");
        assertEq(before - payment.balanceOf(sponsor), 6 * AMOUNT * PERIODS, "funded");
        (uint256 funded,, uint256 held,) = rewards.balancesOf(id);
        assertEq(funded, 6 * AMOUNT * PERIODS, "funded view");
        assertEq(held, funded, "all held");
    }

    /// Property: a quorum summary meeting every condition releases six amounts, split
    /// 70/30 with the remainder to the last participant; the period is then closed.
    function test_ReleaseAllConditions() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        uint256 amount = rewards.release(id, 0, goodSummary(), signed(id, 0, goodSummary(), 3));
        assertEq(amount, 6 * AMOUNT, "released");
        uint256 ownerPart = 6 * AMOUNT * 7000 / 10_000;
        assertEq(rewards.owedOf(owner), ownerPart, "owner share rounded down");
        assertEq(rewards.owedOf(aggregator), 6 * AMOUNT - ownerPart, "aggregator gets the rest");
        assertEq(rewards.periodMask(id, 0), 0x80 | 0x3F, "all released, attested");
        assertEq(payment.balanceOf(owner) + payment.balanceOf(aggregator), 0, "credited, not sent");
        // Pull payments: the owner withdraws its own credit, anyone claims the aggregator's.
        vm.prank(owner);
        assertEq(rewards.withdraw(owner), ownerPart, "owner withdraws");
        vm.prank(mallory);
        assertEq(rewards.claim(aggregator), 6 * AMOUNT - ownerPart, "claimed for the aggregator");
        assertEq(payment.balanceOf(owner), ownerPart, "owner paid");
        assertEq(payment.balanceOf(aggregator), 6 * AMOUNT - ownerPart, "aggregator paid");
        assertEq(payment.balanceOf(mallory), 0, "the claimer gets nothing");
        assertEq(credited(), 0, "nothing owed");
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsNothingOwed.selector, owner));
        rewards.withdraw(owner);
    }

    /// Property: each broken condition withholds exactly its amount; with SoH 0 (no data)
    /// the SoH condition is not met.
    function test_ReleasePartial() public {
        uint256 id = createAgreement();
        BatteryRewards.Summary memory s = goodSummary();
        s.socMinBps = 500; // below the window
        s.maxDodBps = 8000; // the range, as deep as allowed
        s.tempMaxDeciC = 401; // above the band
        s.sohBps = 0; // no state-of-health data
        warpPastPeriod(1);
        uint256 amount = rewards.release(id, 1, s, signed(id, 1, s, 3));
        assertEq(amount, 3 * AMOUNT, "three conditions met");
        assertEq(rewards.periodMask(id, 1), 0x80 | 0x16, "dod, c-rate, cycles");
    }

    /// Property: boundaries are inclusive (a summary equal to the thresholds meets them).
    function test_BoundariesInclusive() public {
        uint256 id = createAgreement();
        BatteryRewards.Conditions memory c = conditions();
        BatteryRewards.Summary memory s = BatteryRewards.Summary(
            c.socMinBps,
            c.socMaxBps,
            c.maxDodBps,
            c.maxCRateMilli,
            c.tempMinDeciC,
            c.tempMaxDeciC,
            c.maxCyclesPerDayMilli,
            c.minSohBps,
            c.minCoverageBps,
            c.maxGapSeconds
        );
        assertEq(rewards.metMask(c, s), 0x3F, "all met");
        warpPastPeriod(0);
        assertEq(rewards.release(id, 0, s, signed(id, 0, s, 3)), 6 * AMOUNT, "all paid");
    }

    /// Property: 3 of 4 validators are a quorum (> 8/3); 2 of 3 are not.
    function test_QuorumIsStrictlyMoreThanTwoThirds() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.SignedSummary[] memory two = signed(id, 0, goodSummary(), 2);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsNoQuorum.selector, 2, 3));
        rewards.release(id, 0, goodSummary(), two);
        registerValidator(0xA004);
        rewards.release(id, 0, goodSummary(), signed(id, 0, goodSummary(), 3));
    }

    /// Property: after expiry the sponsor gets exactly funded - released, once: credited
    /// by the reclaim (no token moves), then withdrawn.
    function test_ReclaimAfterExpiry() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        rewards.release(id, 0, goodSummary(), signed(id, 0, goodSummary(), 3));
        uint256 before = payment.balanceOf(sponsor);
        vm.warp(EXPIRY + 1);
        vm.prank(sponsor);
        assertEq(rewards.reclaim(id), 12 * AMOUNT, "two periods left");
        assertEq(payment.balanceOf(sponsor), before, "a reclaim moves no token");
        assertEq(rewards.owedOf(sponsor), 12 * AMOUNT, "credited to the sponsor");
        assertEq(withdrawSponsor(), 12 * AMOUNT, "withdrawn");
        assertEq(payment.balanceOf(sponsor) - before, 12 * AMOUNT, "paid back");
        assertEq(rewards.owedOf(sponsor), 0, "nothing left owed");
        (uint256 funded, uint256 released, uint256 held, uint256 reclaimed) = rewards.balancesOf(id);
        assertEq(funded, released + held + reclaimed, "conservation");
        assertEq(held, 0, "nothing held");
        assertEq(payment.balanceOf(address(rewards)), credited(), "only the credits left");
        withdrawAll();
        assertEq(payment.balanceOf(address(rewards)), 0, "contract empty");
    }

    /// Property: any split of shares pays exactly the released amount.
    function testFuzz_SharesPayExactly(uint16 ownerShare, uint8 mask) public {
        ownerShare = uint16(bound(ownerShare, 1, 9999));
        vm.prank(sponsor);
        uint256 id = rewards.create(terms(ownerShare));
        BatteryRewards.Summary memory s = goodSummary();
        if (mask & 1 != 0) s.socMaxBps = 9001;
        // The deepest cycle spans the SoC range (checkSummary); with bit 1, one bps deeper
        // than allowed, in a range (still inside the window) that gives it.
        if (mask & 2 != 0) {
            s.socMinBps = 1000;
            if (s.socMaxBps < 9000) s.socMaxBps = 9000;
        }
        s.maxDodBps = s.socMaxBps - s.socMinBps + (mask & 2 != 0 && s.socMaxBps == 9000 ? uint16(1) : uint16(0));
        if (mask & 4 != 0) s.maxCRateMilli = 501;
        if (mask & 8 != 0) s.tempMinDeciC = -1;
        if (mask & 16 != 0) s.cyclesPerDayMilli = 1501;
        if (mask & 32 != 0) s.sohBps = 7999;
        uint256 broken;
        for (uint256 c; c < 6; ++c) {
            if (mask & (1 << c) != 0) ++broken;
        }
        warpPastPeriod(2);
        uint256 amount = rewards.release(id, 2, s, signed(id, 2, s, 3));
        assertEq(amount, (6 - broken) * AMOUNT, "amount");
        assertEq(credited(), amount, "credited exactly");
        assertEq(rewards.owedOf(owner), amount * ownerShare / 10_000, "owner rounded down");
        withdrawAll();
        assertEq(payment.balanceOf(owner) + payment.balanceOf(aggregator), amount, "paid exactly");
    }

    // ------------------------------------------------------------ attacks

    /// Attack: a summary signed by a key other than the named validator's.
    function test_RevertIf_ForgedSignature() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        sigs[1].signature = sign(0xBAD, id, 0, goodSummary(), sigs[1].epoch);
        vm.expectRevert(
            abi.encodeWithSelector(BatteryRewards.BatteryRewardsInvalidSignature.selector, sigs[1].validator)
        );
        rewards.release(id, 0, goodSummary(), sigs);
    }

    /// Attack: a better summary than the validators signed.
    function test_RevertIf_SummaryAltered() public {
        uint256 id = createAgreement();
        BatteryRewards.Summary memory s = goodSummary();
        s.sohBps = 7000;
        warpPastPeriod(0);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, s, 3);
        vm.expectRevert(
            abi.encodeWithSelector(BatteryRewards.BatteryRewardsInvalidSignature.selector, sigs[0].validator)
        );
        rewards.release(id, 0, goodSummary(), sigs);
    }

    /// Attack: the same attestation submitted again, and for another period or agreement.
    function test_RevertIf_ReplayedAttestation() public {
        uint256 id = createAgreement();
        uint256 other = createAgreement();
        warpPastPeriod(1);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        rewards.release(id, 0, goodSummary(), sigs);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsPeriodAttested.selector, id, 0));
        rewards.release(id, 0, goodSummary(), sigs);
        vm.expectRevert(
            abi.encodeWithSelector(BatteryRewards.BatteryRewardsInvalidSignature.selector, sigs[0].validator)
        );
        rewards.release(id, 1, goodSummary(), sigs);
        vm.expectRevert(
            abi.encodeWithSelector(BatteryRewards.BatteryRewardsInvalidSignature.selector, sigs[0].validator)
        );
        rewards.release(other, 0, goodSummary(), sigs);
    }

    /// Attack: a second, different quorum summary for a period already attested (a
    /// condition failed the first time): no second release of any condition.
    function test_RevertIf_SecondReleaseSamePeriod() public {
        uint256 id = createAgreement();
        BatteryRewards.Summary memory bad = goodSummary();
        bad.maxCRateMilli = 900;
        warpPastPeriod(0);
        assertEq(rewards.release(id, 0, bad, signed(id, 0, bad, 3)), 5 * AMOUNT, "c-rate withheld");
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsPeriodAttested.selector, id, 0));
        rewards.release(id, 0, goodSummary(), sigs);
    }

    /// Attack: a period attested before it is over, or one beyond the agreement.
    function test_RevertIf_PeriodNotOverOrUnknown() public {
        uint256 id = createAgreement();
        vm.warp(START + DAY - 1);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsPeriodNotOver.selector, id, 0, START + DAY));
        rewards.release(id, 0, goodSummary(), sigs);
        sigs = signed(id, PERIODS, goodSummary(), 3);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsBadPeriod.selector, id, PERIODS));
        rewards.release(id, PERIODS, goodSummary(), sigs);
        sigs = signed(9, 0, goodSummary(), 3);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsUnknownAgreement.selector, 9));
        rewards.release(9, 0, goodSummary(), sigs);
    }

    /// Attack: a release after expiry (the sponsor's money by then).
    function test_RevertIf_ReleaseAfterExpiry() public {
        uint256 id = createAgreement();
        vm.warp(EXPIRY + 1);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsExpired.selector, id, EXPIRY));
        rewards.release(id, 0, goodSummary(), sigs);
    }

    /// Attack: a reclaim before expiry, by someone else, or twice.
    function test_RevertIf_ReclaimBeforeExpiryOrNotSponsorOrTwice() public {
        uint256 id = createAgreement();
        vm.warp(EXPIRY);
        vm.prank(sponsor);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsNotExpired.selector, id, EXPIRY));
        rewards.reclaim(id);
        vm.warp(EXPIRY + 1);
        vm.prank(mallory);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsNotSponsor.selector, mallory));
        rewards.reclaim(id);
        vm.prank(sponsor);
        rewards.reclaim(id);
        vm.prank(sponsor);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsReclaimed.selector, id));
        rewards.reclaim(id);
    }

    /// Attack: a validly signed summary by keys that are not registered does not count.
    function test_RevertIf_NonValidators() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        for (uint256 k; k < 3; ++k) {
            uint256 key = 0xE000 + k;
            sigs[k] = BatteryRewards.SignedSummary(vm.addr(key), 1, sign(key, id, 0, goodSummary(), 1));
        }
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsNoQuorum.selector, 0, 3));
        rewards.release(id, 0, goodSummary(), sigs);
    }

    /// Attack: a revoked validator's signature no longer counts, and re-registering does
    /// not revive it (a new epoch).
    function test_RevertIf_RevokedValidator() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        vm.startPrank(admin);
        registry.revoke(sigs[2].validator);
        registry.register(sigs[2].validator);
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsNoQuorum.selector, 2, 3));
        rewards.release(id, 0, goodSummary(), sigs);
    }

    /// Attack: the same validator's signature twice to make up a quorum.
    function test_RevertIf_DuplicateValidator() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        sigs[2] = sigs[0];
        vm.expectRevert(
            abi.encodeWithSelector(BatteryRewards.BatteryRewardsInvalidSignature.selector, sigs[0].validator)
        );
        rewards.release(id, 0, goodSummary(), sigs);
    }

    /// Attack: a malleated (high-s) copy of a valid signature.
    function test_RevertIf_MalleatedSignature() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        (bytes32 r, bytes32 s, uint8 v) = splitSignature(sigs[0].signature);
        uint256 n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
        sigs[0].signature = abi.encodePacked(r, bytes32(n - uint256(s)), v == 27 ? uint8(28) : uint8(27));
        vm.expectRevert(
            abi.encodeWithSelector(BatteryRewards.BatteryRewardsInvalidSignature.selector, sigs[0].validator)
        );
        rewards.release(id, 0, goodSummary(), sigs);
    }

    /// Attack: shares that do not add up to 10,000 bps, a zero share, no participant.
    function test_RevertIf_SharesDoNotAddUp() public {
        BatteryRewards.Terms memory t = terms(7000);
        t.sharesBps[1] = 2999;
        vm.prank(sponsor);
        vm.expectRevert(
            abi.encodeWithSelector(BatteryRewards.BatteryRewardsBadTerms.selector, "shares do not add up to 10000")
        );
        rewards.create(t);
        t.sharesBps[0] = 0;
        t.sharesBps[1] = 10_000;
        vm.prank(sponsor);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsBadTerms.selector, "participant"));
        rewards.create(t);
        t.participants = new address[](0);
        t.sharesBps = new uint16[](0);
        vm.prank(sponsor);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsBadTerms.selector, "participants"));
        rewards.create(t);
    }

    /// Attack: terms whose expiry comes before the last period ends (the sponsor could
    /// reclaim rewards still to be earned), or an inverted window.
    function test_RevertIf_BadSchedule() public {
        BatteryRewards.Terms memory t = terms(7000);
        t.expiry = START + 3 * uint64(DAY) - 1;
        vm.prank(sponsor);
        vm.expectRevert(
            abi.encodeWithSelector(BatteryRewards.BatteryRewardsBadTerms.selector, "expiry before the last period ends")
        );
        rewards.create(t);
        t = terms(7000);
        t.conditions.socMinBps = 9500;
        vm.prank(sponsor);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsBadTerms.selector, "soc window"));
        rewards.create(t);
    }

    /// Property: coverage exactly at the agreement's minimum and a gap exactly at its
    /// maximum release (inclusive, like the conditions).
    function test_CoverageBoundariesInclusive() public {
        uint256 id = createAgreement();
        BatteryRewards.Summary memory s = goodSummary();
        s.coverageBps = conditions().minCoverageBps;
        s.maxGapSeconds = conditions().maxGapSeconds;
        warpPastPeriod(0);
        assertEq(rewards.release(id, 0, s, signed(id, 0, s, 3)), 6 * AMOUNT, "all paid");
    }

    /// Attack: a full validator quorum signs a summary of telemetry that covers too little
    /// of the period (one sample short of the minimum share, or one gap a second too
    /// long): nothing is released and the period stays open for a summary that shows it.
    function test_RevertIf_CoverageBelowMinimum() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.Summary memory thin = goodSummary();
        thin.coverageBps = conditions().minCoverageBps - 1;
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, thin, 3);
        vm.expectRevert(
            abi.encodeWithSelector(
                BatteryRewards.BatteryRewardsInsufficientCoverage.selector, id, 0, thin.coverageBps, thin.maxGapSeconds
            )
        );
        rewards.release(id, 0, thin, sigs);
        BatteryRewards.Summary memory gap = goodSummary();
        gap.maxGapSeconds = conditions().maxGapSeconds + 1;
        sigs = signed(id, 0, gap, 3);
        vm.expectRevert(
            abi.encodeWithSelector(
                BatteryRewards.BatteryRewardsInsufficientCoverage.selector, id, 0, gap.coverageBps, gap.maxGapSeconds
            )
        );
        rewards.release(id, 0, gap, sigs);
        assertEq(credited(), 0, "nothing credited");
        assertEq(rewards.periodMask(id, 0), 0, "still open");
        (, uint256 released,,) = rewards.balancesOf(id);
        assertEq(released, 0, "nothing released");
        // The period is still open: a summary of full telemetry releases it.
        assertEq(rewards.release(id, 0, goodSummary(), signed(id, 0, goodSummary(), 3)), 6 * AMOUNT, "later");
    }

    /// Attack: terms with a coverage minimum above 100 % or no gap allowed at all.
    function test_RevertIf_BadCoverageTerms() public {
        BatteryRewards.Terms memory t = terms(7000);
        t.conditions.minCoverageBps = 10_001;
        vm.prank(sponsor);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsBadTerms.selector, "coverage"));
        rewards.create(t);
        t = terms(7000);
        t.conditions.maxGapSeconds = 0;
        vm.prank(sponsor);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsBadTerms.selector, "coverage"));
        rewards.create(t);
    }

    /// Property: any coverage and gap releases everything met if and only if both meet
    /// the agreement's rule; otherwise the release is refused and nothing moves.
    function testFuzz_CoverageRule(uint16 coverageBps, uint32 maxGapSeconds) public {
        coverageBps = uint16(bound(coverageBps, 0, 10_000));
        uint256 id = createAgreement();
        BatteryRewards.Summary memory s = goodSummary();
        s.coverageBps = coverageBps;
        s.maxGapSeconds = maxGapSeconds;
        warpPastPeriod(0);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, s, 3);
        bool ok = coverageBps >= conditions().minCoverageBps && maxGapSeconds <= conditions().maxGapSeconds;
        if (!ok) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    BatteryRewards.BatteryRewardsInsufficientCoverage.selector, id, 0, coverageBps, maxGapSeconds
                )
            );
        }
        uint256 amount = rewards.release(id, 0, s, sigs);
        assertEq(amount, ok ? 6 * AMOUNT : 0, "released");
        assertEq(credited(), amount, "credited");
        assertEq(rewards.periodMask(id, 0), ok ? 0xBF : 0, "attested only when covered");
    }
}
