// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TestBase} from "./Vm.sol";
import {PaymentToken} from "../src/PaymentToken.sol";
import {ValidatorRegistry} from "../src/ValidatorRegistry.sol";
import {BatteryRewards} from "../src/BatteryRewards.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// Deployment, keys, signing, error encodings and bookkeeping checks shared by every
/// battery reward test that uses the standard deployment (BatteryRewards*.t.sol but the
/// invariant campaign, whose handler owns its own).
abstract contract BatteryRewardsFixture is TestBase {
    uint64 internal constant START = 1_767_225_600; // 2026-01-01T00:00:00Z
    uint32 internal constant DAY = 86_400;
    uint32 internal constant PERIODS = 3;
    uint64 internal constant EXPIRY = START + 5 * uint64(DAY);
    uint256 internal constant AMOUNT = 1_000_001; // micro-EUR per condition: odd, to test rounding

    address internal admin = address(0xAD);
    address internal sponsor = address(0x5B0);
    address internal owner = address(0x0A1);
    address internal aggregator = address(0x0A2);
    address internal mallory = address(0xBAD);

    PaymentToken internal payment;
    ValidatorRegistry internal registry;
    BatteryRewards internal rewards;
    uint256[] internal validatorKeys;

    function setUp() public virtual {
        vm.warp(START);
        payment = new PaymentToken(admin);
        registry = new ValidatorRegistry(admin);
        rewards = new BatteryRewards(payment, registry);
        for (uint256 k = 1; k <= 3; ++k) {
            registerValidator(0xA000 + k);
        }
        vm.prank(admin);
        payment.mint(sponsor, 1e15);
        vm.prank(sponsor);
        payment.approve(address(rewards), type(uint256).max);
    }

    function registerValidator(uint256 key) internal {
        validatorKeys.push(key);
        vm.prank(admin);
        registry.register(vm.addr(key));
    }

    function conditions() internal pure returns (BatteryRewards.Conditions memory) {
        return BatteryRewards.Conditions({
            socMinBps: 1000,
            socMaxBps: 9000,
            maxDodBps: 8000,
            maxCRateMilli: 500,
            tempMinDeciC: 0,
            tempMaxDeciC: 400,
            maxCyclesPerDayMilli: 1500,
            minSohBps: 8000,
            minCoverageBps: 9000,
            maxGapSeconds: 3600
        });
    }

    /// A summary that meets every condition of {conditions}.
    function goodSummary() internal pure returns (BatteryRewards.Summary memory) {
        return BatteryRewards.Summary({
            socMinBps: 2000,
            socMaxBps: 8500,
            maxDodBps: 6500, // its deepest cycle spans the SoC range
            maxCRateMilli: 400,
            tempMinDeciC: 150,
            tempMaxDeciC: 300,
            cyclesPerDayMilli: 900,
            sohBps: 9500,
            coverageBps: 10_000,
            maxGapSeconds: 300
        });
    }

    function terms(uint16 ownerShare) internal view returns (BatteryRewards.Terms memory t) {
        address[] memory participants = new address[](2);
        participants[0] = owner;
        participants[1] = aggregator;
        uint16[] memory shares = new uint16[](2);
        shares[0] = ownerShare;
        shares[1] = uint16(10_000 - ownerShare);
        uint256[6] memory amounts;
        for (uint256 c; c < 6; ++c) {
            amounts[c] = AMOUNT;
        }
        t = BatteryRewards.Terms({
            batteryId: keccak256("battery-1"),
            periodStart: START,
            periodSeconds: DAY,
            periods: PERIODS,
            expiry: EXPIRY,
            conditions: conditions(),
            amounts: amounts,
            participants: participants,
            sharesBps: shares
        });
    }

    function createAgreement() internal returns (uint256 id) {
        vm.prank(sponsor);
        id = rewards.create(terms(7000));
    }

    /// A BatteryRewards of its own on `token` (a mock the test mints itself) and the
    /// fixture's registry, the sponsor's allowance given.
    function deployOn(IERC20 token) internal returns (BatteryRewards r) {
        r = new BatteryRewards(token, registry);
        vm.prank(sponsor);
        token.approve(address(r), type(uint256).max);
    }

    function createWith(BatteryRewards.Terms memory t) internal returns (uint256 id) {
        vm.prank(sponsor);
        id = rewards.create(t);
    }

    function sign(uint256 key, uint256 id, uint32 period, BatteryRewards.Summary memory s, uint32 epoch)
        internal
        view
        returns (bytes memory)
    {
        return signFor(rewards, key, id, period, s, epoch);
    }

    /// `key`'s signature of a summary for contract `r` under `epoch`.
    function signFor(
        BatteryRewards r,
        uint256 key,
        uint256 id,
        uint32 period,
        BatteryRewards.Summary memory s,
        uint32 epoch
    ) internal view returns (bytes memory) {
        (uint8 v, bytes32 rr, bytes32 sig) = vm.sign(key, r.summaryHash(id, period, s, epoch));
        return abi.encodePacked(rr, sig, v);
    }

    /// `key`'s signed summary for contract `r`, under its validator's current epoch.
    function signWith(BatteryRewards r, uint256 key, uint256 id, uint32 period, BatteryRewards.Summary memory s)
        internal
        view
        returns (BatteryRewards.SignedSummary memory)
    {
        address v = vm.addr(key);
        uint32 epoch = registry.epochOf(v);
        return BatteryRewards.SignedSummary(v, epoch, signFor(r, key, id, period, s, epoch));
    }

    /// Signatures of the first `n` validators under their current epochs.
    function signed(uint256 id, uint32 period, BatteryRewards.Summary memory s, uint256 n)
        internal
        view
        returns (BatteryRewards.SignedSummary[] memory sigs)
    {
        sigs = new BatteryRewards.SignedSummary[](n);
        for (uint256 k; k < n; ++k) {
            sigs[k] = signWith(rewards, validatorKeys[k], id, period, s);
        }
    }

    /// The three validators' signatures for contract `r` (one deployed by {deployOn}).
    function signedBy(BatteryRewards r, uint256 id, uint32 period, BatteryRewards.Summary memory s)
        internal
        view
        returns (BatteryRewards.SignedSummary[] memory sigs)
    {
        sigs = new BatteryRewards.SignedSummary[](3);
        for (uint256 k; k < 3; ++k) {
            sigs[k] = signWith(r, validatorKeys[k], id, period, s);
        }
    }

    function invalidSig(address validator) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(BatteryRewards.BatteryRewardsInvalidSignature.selector, validator);
    }

    function noQuorum(uint256 agreeing, uint256 q) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(BatteryRewards.BatteryRewardsNoQuorum.selector, agreeing, q);
    }

    /// Released to the participants: credited and not withdrawn, or withdrawn.
    function paidOut() internal view returns (uint256) {
        return credited() + payment.balanceOf(owner) + payment.balanceOf(aggregator);
    }

    function assertConserved(uint256 id) internal view {
        assertConserved(rewards, id);
    }

    function assertConserved(BatteryRewards r, uint256 id) internal view {
        (uint256 funded, uint256 released, uint256 held, uint256 reclaimed) = r.balancesOf(id);
        assertEq(funded, released + held + reclaimed, "funded == released + held + reclaimed");
    }

    /// What the participants were credited and have not withdrawn yet (pull payments).
    function credited() internal view returns (uint256) {
        return rewards.owedOf(owner) + rewards.owedOf(aggregator);
    }

    /// Both participants withdraw whatever they are owed, each to its own address.
    function withdrawAll() internal {
        if (rewards.owedOf(owner) != 0) {
            vm.prank(owner);
            rewards.withdraw(owner);
        }
        if (rewards.owedOf(aggregator) != 0) rewards.claim(aggregator);
    }

    /// The sponsor withdraws what its reclaims credited it, to its own address.
    function withdrawSponsor() internal returns (uint256 amount) {
        vm.prank(sponsor);
        amount = rewards.withdraw(sponsor);
    }

    function warpPastPeriod(uint32 period) internal {
        vm.warp(START + uint64(period + 1) * DAY);
    }

    /// The r, s and v of a 65-byte signature, for tests that re-encode or malleate it.
    function splitSignature(bytes memory sig) internal pure returns (bytes32 r, bytes32 s, uint8 v) {
        assembly ("memory-safe") {
            r := mload(add(sig, 32))
            s := mload(add(sig, 64))
            v := byte(0, mload(add(sig, 96)))
        }
    }
}
