// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {BatteryRewardsFixture} from "./BatteryRewardsFixture.sol";
import {BatteryRewards} from "../src/BatteryRewards.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";

/// A second attacker's review of BatteryRewards (2026-12-02): every test passes iff the
/// contract defends. The review found one rule missing (cycles against the depth, now in
/// `checkSummary`); the rest it tried was refused already.
contract BatteryRewardsAttack2Test is BatteryRewardsFixture {
    // ------------------------------------------------------------ cycles and depth

    /// Attack (a faulty or colluding quorum, the threat `checkSummary` exists for): the
    /// equivalent full cycles of a period come from the same SoC series as its depth of
    /// discharge (battery_rewards/summary.py), and the deepest cycle is at least a half
    /// cycle, so cyclesPerDayMilli >= (maxDodBps - 1) x 4,320 / periodSeconds. A quorum
    /// signing an 80 % swing with 0 cycles would meet MAX_CYCLES_PER_DAY, which its own
    /// numbers rule out: refused, nothing paid, the period open.
    function test_RevertIf_CyclesBelowDepthOfDischarge() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.Summary memory s = goodSummary();
        s.socMinBps = 1000;
        s.socMaxBps = 9000;
        s.maxDodBps = 8000; // an 80 % swing: at least 0.4 full cycles in the day
        s.cyclesPerDayMilli = 0; // ... but none reported
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, s, 3);
        vm.expectRevert(
            abi.encodeWithSelector(
                BatteryRewards.BatteryRewardsInconsistentSummary.selector, "cycles below the deepest cycle"
            )
        );
        rewards.release(id, 0, s, sigs);
        assertEq(rewards.periodMask(id, 0), 0, "still open");
        assertEq(paidOut(), 0, "nothing paid");
    }

    /// Property: the fewest cycles an 80 % swing in a day allows (0.4 cycles, 400 milli)
    /// are consistent and meet a 400-milli limit.
    function test_CyclesAtTheDepthBoundRelease() public {
        BatteryRewards.Terms memory t = terms(7000);
        t.conditions.maxCyclesPerDayMilli = 400;
        vm.prank(sponsor);
        uint256 id = rewards.create(t);
        warpPastPeriod(0);
        BatteryRewards.Summary memory s = goodSummary();
        s.socMinBps = 1000;
        s.socMaxBps = 9000;
        s.maxDodBps = 8000;
        s.cyclesPerDayMilli = 400;
        assertEq(rewards.release(id, 0, s, signed(id, 0, s, 3)), 6 * AMOUNT, "all met");
    }

    // ------------------------------------------------------------ calldata and encoding

    /// Attack: the honest signed call, with high bits set in a uint16 field of the summary,
    /// an int32 temperature that is not sign-extended, or the signature's uint32 epoch.
    /// The ABI decoder refuses each (no release under a value other than the signed one);
    /// the clean call then releases.
    function test_RevertIf_DirtyCalldata() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.Summary memory s = goodSummary();
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, s, 3);
        bytes memory clean = abi.encodeCall(BatteryRewards.release, (id, 0, s, sigs));
        // Words after the selector: id, period, the 10 summary fields, the offset of sigs.
        assertEq(_word(clean, 2), bytes32(uint256(s.socMinBps)), "socMinBps word");
        assertEq(_word(clean, 6), bytes32(uint256(uint32(s.tempMinDeciC))), "tempMinDeciC word");
        _refuseDirty(clean, 2, bytes32(uint256(1) << 16)); // socMinBps + 65,536
        _refuseDirty(clean, 6, bytes32(uint256(1) << 255)); // tempMinDeciC: a sign bit only above bit 31
        _refuseDirty(clean, 1, bytes32(uint256(1) << 32)); // period + 2^32
        // sigs[0].epoch: offset of sigs -> length, offsets, then the first tuple (validator, epoch, ...).
        uint256 sigsAt = 4 + uint256(_word(clean, 12));
        uint256 firstAt = sigsAt + 32 + uint256(_word(clean, (sigsAt + 32 - 4) / 32));
        uint256 epochWord = (firstAt + 32 - 4) / 32;
        assertEq(_word(clean, epochWord), bytes32(uint256(sigs[0].epoch)), "epoch word found");
        assertEq(_word(clean, epochWord - 1), bytes32(uint256(uint160(sigs[0].validator))), "validator word");
        _refuseDirty(clean, epochWord, bytes32(uint256(1) << 40));
        assertEq(rewards.periodMask(id, 0), 0, "still open");
        (bool ok,) = address(rewards).call(clean);
        assertTrue(ok, "the clean call releases");
        assertEq(paidOut(), 6 * AMOUNT, "paid once");
    }

    function _word(bytes memory data, uint256 index) internal pure returns (bytes32 w) {
        uint256 pos = 4 + 32 * index;
        assembly ("memory-safe") {
            w := mload(add(add(data, 32), pos))
        }
    }

    function _refuseDirty(bytes memory clean, uint256 index, bytes32 bits) internal {
        bytes memory dirty = bytes.concat(clean); // a copy
        uint256 pos = 4 + 32 * index;
        bytes32 w = _word(dirty, index) | bits;
        assembly ("memory-safe") {
            mstore(add(add(dirty, 32), pos), w)
        }
        (bool ok,) = address(rewards).call(dirty);
        assertFalse(ok, "dirty calldata accepted");
    }

    /// Property: the digest is EIP-712 with every field encoded by hand (ints sign-extended
    /// to 256 bits), so off-chain signers (settlement/battery_rewards.py) and the contract
    /// agree on negative temperatures; a winter band below 0 C releases.
    function test_DigestNegativeTemperatureByHand() public {
        BatteryRewards.Terms memory t = terms(7000);
        t.conditions.tempMinDeciC = -200;
        t.conditions.tempMaxDeciC = 100;
        vm.prank(sponsor);
        uint256 id = rewards.create(t);
        BatteryRewards.Summary memory s = goodSummary();
        s.tempMinDeciC = -155;
        s.tempMaxDeciC = -1;
        uint32 epoch = 2;
        bytes memory head = abi.encodePacked(
            rewards.SUMMARY_TYPEHASH(), id, keccak256("battery-1"), uint256(START), uint256(DAY), uint256(0)
        );
        bytes memory fields = abi.encodePacked(
            head,
            uint256(s.socMinBps),
            uint256(s.socMaxBps),
            uint256(s.maxDodBps),
            uint256(s.maxCRateMilli),
            bytes32(type(uint256).max - 154), // -155 as a 256-bit two's complement word
            bytes32(type(uint256).max), // -1
            uint256(s.cyclesPerDayMilli),
            uint256(s.sohBps),
            uint256(s.coverageBps),
            uint256(s.maxGapSeconds),
            uint256(epoch)
        );
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("gridmatch BatteryRewards"),
                keccak256("1"),
                block.chainid,
                address(rewards)
            )
        );
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", domain, keccak256(fields)));
        assertEq(rewards.summaryHash(id, 0, s, epoch), digest, "hand-encoded digest");
        warpPastPeriod(0);
        assertEq(rewards.release(id, 0, s, signed(id, 0, s, 3)), 6 * AMOUNT, "below-zero band met");
    }

    // ------------------------------------------------------------ funding

    /// Attack: mallory front-runs the sponsor's create, relying on the sponsor's open
    /// approval to fund her own agreement (paying herself). `create` pulls only from its
    /// caller: her call fails, the sponsor's tokens stay put, and the sponsor's create
    /// still works (a changed id does not matter: validators sign after the period).
    function test_RevertIf_FrontRunCreateSpendsSponsorApproval() public {
        BatteryRewards.Terms memory t = terms(7000);
        t.participants[0] = mallory;
        t.participants[1] = mallory;
        uint256 before = payment.balanceOf(sponsor);
        vm.prank(mallory);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(rewards), 0, 18 * AMOUNT)
        );
        rewards.create(t);
        assertEq(payment.balanceOf(sponsor), before, "sponsor untouched");
        assertEq(rewards.agreementCount(), 0, "nothing created");
        uint256 id = createAgreement();
        (address who,,,,,) = rewards.agreementOf(id);
        assertEq(who, sponsor, "sponsor's agreement");
        assertEq(before - payment.balanceOf(sponsor), 18 * AMOUNT, "funded by the sponsor");
    }

    // ------------------------------------------------------------ quorum vs a changing set

    /// Attack: signatures gathered when 3 validators were registered, submitted after the
    /// set grew to 6: the quorum is the current set's (5), so 3 no longer suffice; the
    /// new validators' signatures complete it. Also: a set with more signatures than
    /// validators (the 3 new ones twice under another name is impossible: duplicates revert).
    function test_RevertIf_QuorumOfAnOlderSmallerSet() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.Summary memory s = goodSummary();
        BatteryRewards.SignedSummary[] memory old = signed(id, 0, s, 3);
        for (uint256 k = 4; k <= 6; ++k) {
            registerValidator(0xA000 + k);
        }
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsNoQuorum.selector, 3, 5));
        rewards.release(id, 0, s, old);
        BatteryRewards.SignedSummary[] memory five = signed(id, 0, s, 5);
        assertEq(rewards.release(id, 0, s, five), 6 * AMOUNT, "current quorum");
    }

    /// Attack: a quorum's summary for one period with a second, disjoint quorum's
    /// signatures of another summary mixed in (a validator that signed both only once):
    /// each signature must be of the submitted summary.
    function test_RevertIf_MixedSummariesInOneSet() public {
        registerValidator(0xA004); // 4 validators: quorum 3
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.Summary memory a = goodSummary();
        BatteryRewards.Summary memory b = goodSummary();
        b.sohBps = 9400;
        BatteryRewards.SignedSummary[] memory sa = signed(id, 0, a, 2);
        BatteryRewards.SignedSummary[] memory sb = signed(id, 0, b, 4);
        BatteryRewards.SignedSummary[] memory mixed = new BatteryRewards.SignedSummary[](3);
        mixed[0] = sa[0];
        mixed[1] = sa[1];
        mixed[2] = sb[2]; // validator C signed b, not a
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsInvalidSignature.selector, sb[2].validator));
        rewards.release(id, 0, a, mixed);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsInvalidSignature.selector, sa[0].validator));
        rewards.release(id, 0, b, mixed);
        assertEq(rewards.periodMask(id, 0), 0, "still open");
    }

    // ------------------------------------------------------------ agreements share one pool

    /// Attack: a tiny agreement released in full cannot reach a large agreement's funds;
    /// the contract holds exactly the large one's money afterwards, which its sponsor
    /// alone reclaims.
    function test_SmallAgreementCannotDrainPool() public {
        uint256 big = createAgreement();
        BatteryRewards.Terms memory t = terms(5000);
        for (uint256 c; c < 6; ++c) {
            t.amounts[c] = c == 0 ? 1 : 0;
        }
        t.periods = 1;
        t.expiry = START + 2 * uint64(DAY);
        vm.prank(sponsor);
        uint256 small = rewards.create(t);
        warpPastPeriod(0);
        assertEq(rewards.release(small, 0, goodSummary(), signed(small, 0, goodSummary(), 3)), 1, "one unit");
        BatteryRewards.SignedSummary[] memory beyond = signed(small, 1, goodSummary(), 3);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsBadPeriod.selector, small, 1));
        rewards.release(small, 1, goodSummary(), beyond);
        assertEq(payment.balanceOf(address(rewards)), 18 * AMOUNT + 1, "big agreement intact, one unit owed");
        withdrawAll();
        assertEq(payment.balanceOf(address(rewards)), 18 * AMOUNT, "big agreement intact");
        vm.warp(EXPIRY + 1);
        vm.startPrank(sponsor);
        assertEq(rewards.reclaim(small), 0, "small: nothing left");
        assertEq(rewards.reclaim(big), 18 * AMOUNT, "big: all");
        vm.stopPrank();
        assertEq(withdrawSponsor(), 18 * AMOUNT, "the sponsor withdraws the big one's money");
        assertEq(payment.balanceOf(address(rewards)), 0, "empty");
    }
}
