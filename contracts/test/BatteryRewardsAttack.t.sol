// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {BatteryRewardsFixture} from "./BatteryRewardsFixture.sol";
import {BatteryRewards} from "../src/BatteryRewards.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// Cheatcodes the shared Vm.sol does not declare (same forge cheatcode address).
interface VmChain {
    function chainId(uint256 newChainId) external;
}

/// A payment token that calls back into the rewards contract while it moves money.
contract ReentrantToken {
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;
    uint256 public totalSupply;

    address public target;
    bytes public payload;
    bool public armed;
    bool public tried;
    bool public succeeded;
    bytes public returned;

    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
        totalSupply += amount;
    }

    function arm(address target_, bytes calldata payload_) external {
        target = target_;
        payload = payload_;
        armed = true;
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        return true;
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        _move(msg.sender, to, amount);
        _reenter();
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        allowance[from][msg.sender] -= amount;
        _move(from, to, amount);
        _reenter();
        return true;
    }

    function _move(address from, address to, uint256 amount) private {
        balanceOf[from] -= amount;
        balanceOf[to] += amount;
    }

    function _reenter() private {
        if (!armed) return;
        armed = false;
        tried = true;
        (bool ok, bytes memory ret) = target.call(payload);
        succeeded = ok;
        returned = ret;
    }
}

/// Attacks on BatteryRewards: each test passes iff the contract defends.
contract BatteryRewardsAttackTest is BatteryRewardsFixture {
    bytes4 internal constant REENTRANT = bytes4(keccak256("ReentrancyGuardReentrantCall()"));
    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");

    // ------------------------------------------------------------ signatures

    /// Attack: a signature by a foreign key under a registered validator's name.
    function test_RevertIf_ForgedUnderValidatorName() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        sigs[0].signature = sign(0xBEEF, id, 0, goodSummary(), sigs[0].epoch);
        vm.expectRevert(invalidSig(sigs[0].validator));
        rewards.release(id, 0, goodSummary(), sigs);
        assertEq(rewards.periodMask(id, 0), 0, "still open");
    }

    /// Attack: a valid signature under one epoch, presented under another (the epoch is signed).
    function test_RevertIf_EpochFieldRewritten() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        sigs[1].epoch = sigs[1].epoch + 7;
        vm.expectRevert(invalidSig(sigs[1].validator));
        rewards.release(id, 0, goodSummary(), sigs);
    }

    /// Attack: the same validator twice, not adjacent, to make up a 3-of-4 quorum.
    function test_RevertIf_DuplicateNotAdjacent() public {
        registerValidator(0xA004);
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        sigs[2] = sigs[0]; // [A, B, A]
        vm.expectRevert(invalidSig(sigs[0].validator));
        rewards.release(id, 0, goodSummary(), sigs);
        BatteryRewards.SignedSummary[] memory four = new BatteryRewards.SignedSummary[](4);
        BatteryRewards.SignedSummary[] memory honest = signed(id, 0, goodSummary(), 2);
        four[0] = honest[1];
        four[1] = honest[0];
        four[2] = signWith(rewards, 0xE001, id, 0, goodSummary()); // not a validator
        four[3] = honest[1];
        vm.expectRevert(invalidSig(honest[1].validator));
        rewards.release(id, 0, goodSummary(), four);
    }

    /// Property: the order of the signatures does not matter (no sorting needed, no duplicate).
    function test_UnsortedSignaturesRelease() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        (sigs[0], sigs[2]) = (sigs[2], sigs[0]);
        assertEq(rewards.release(id, 0, goodSummary(), sigs), 6 * AMOUNT, "released");
    }

    /// Attack: compact (EIP-2098, 64 bytes), empty, over-long and zero-validator signatures.
    function test_RevertIf_BadSignatureEncodings() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        bytes memory sig = sigs[0].signature;
        (bytes32 r, bytes32 s, uint8 v) = splitSignature(sig);
        bytes32 vs = bytes32(uint256(s) | (uint256(v - 27) << 255));
        sigs[0].signature = abi.encodePacked(r, vs);
        vm.expectRevert(invalidSig(sigs[0].validator));
        rewards.release(id, 0, goodSummary(), sigs);
        sigs[0].signature = "";
        vm.expectRevert(invalidSig(sigs[0].validator));
        rewards.release(id, 0, goodSummary(), sigs);
        sigs[0].signature = abi.encodePacked(sig, uint8(0));
        vm.expectRevert(invalidSig(sigs[0].validator));
        rewards.release(id, 0, goodSummary(), sigs);
        sigs[0].signature = abi.encodePacked(r, s, uint8(29));
        vm.expectRevert(invalidSig(sigs[0].validator));
        rewards.release(id, 0, goodSummary(), sigs);
        sigs[0] = BatteryRewards.SignedSummary(address(0), 0, new bytes(65));
        vm.expectRevert(invalidSig(address(0)));
        rewards.release(id, 0, goodSummary(), sigs);
    }

    /// Attack: a revoked validator's (otherwise valid) signature to reach 3 of 3.
    function test_RevertIf_RevokedValidatorCounts() public {
        registerValidator(0xA004);
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        vm.prank(admin);
        registry.revoke(sigs[2].validator); // now 3 validators (A, B, D): quorum 3
        vm.expectRevert(noQuorum(2, 3));
        rewards.release(id, 0, goodSummary(), sigs);
        sigs[2] = signWith(rewards, 0xA004, id, 0, goodSummary());
        assertEq(rewards.release(id, 0, goodSummary(), sigs), 6 * AMOUNT, "with the current set");
    }

    /// Attack: a re-registered validator's old-epoch signature; its new-epoch one counts.
    function test_RevertIf_ReRegisteredOldEpoch() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        vm.startPrank(admin);
        registry.revoke(sigs[0].validator);
        registry.register(sigs[0].validator);
        vm.stopPrank();
        assertTrue(registry.epochOf(sigs[0].validator) != sigs[0].epoch, "new epoch");
        vm.expectRevert(noQuorum(2, 3));
        rewards.release(id, 0, goodSummary(), sigs);
        sigs[0] = signWith(rewards, validatorKeys[0], id, 0, goodSummary());
        assertEq(rewards.release(id, 0, goodSummary(), sigs), 6 * AMOUNT, "new epoch counts");
    }

    /// Attack: an unregistered key signing under epoch 0, or under a validator's epoch.
    function test_RevertIf_EpochZeroOrBorrowedEpoch() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        uint256 key = 0xE0E0;
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, rewards.summaryHash(id, 0, goodSummary(), 0));
        sigs[2] = BatteryRewards.SignedSummary(vm.addr(key), 0, abi.encodePacked(r, s, v));
        vm.expectRevert(noQuorum(2, 3));
        rewards.release(id, 0, goodSummary(), sigs);
        uint32 borrowed = registry.epochOf(vm.addr(validatorKeys[2]));
        (v, r, s) = vm.sign(key, rewards.summaryHash(id, 0, goodSummary(), borrowed));
        sigs[2] = BatteryRewards.SignedSummary(vm.addr(key), borrowed, abi.encodePacked(r, s, v));
        vm.expectRevert(noQuorum(2, 3));
        rewards.release(id, 0, goodSummary(), sigs);
        // Validator B signing under validator C's epoch does not count either.
        (v, r, s) = vm.sign(validatorKeys[1], rewards.summaryHash(id, 0, goodSummary(), borrowed));
        sigs[1] = BatteryRewards.SignedSummary(vm.addr(validatorKeys[1]), borrowed, abi.encodePacked(r, s, v));
        sigs[2] = signWith(rewards, validatorKeys[2], id, 0, goodSummary());
        vm.expectRevert(noQuorum(2, 3));
        rewards.release(id, 0, goodSummary(), sigs);
    }

    /// Attack: with every validator revoked, nothing is a quorum (not even an empty set).
    function test_RevertIf_NoValidatorsAtAll() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        vm.startPrank(admin);
        for (uint256 k; k < 3; ++k) {
            registry.revoke(vm.addr(validatorKeys[k]));
        }
        vm.stopPrank();
        vm.expectRevert(noQuorum(3 - 3, type(uint256).max));
        rewards.release(id, 0, goodSummary(), sigs);
        vm.expectRevert(noQuorum(0, type(uint256).max));
        rewards.release(id, 0, goodSummary(), new BatteryRewards.SignedSummary[](0));
    }

    // ------------------------------------------------------------ domain separation

    /// Property: the digest is EIP-712 over this contract's address and the chain id.
    function test_DomainBindsChainAndContract() public {
        bytes32 domain = keccak256(
            abi.encode(
                DOMAIN_TYPEHASH, keccak256("gridmatch BatteryRewards"), keccak256("1"), block.chainid, address(rewards)
            )
        );
        BatteryRewards.Summary memory s = goodSummary();
        uint256 id = createAgreement();
        bytes32 structHash = keccak256(
            abi.encode(rewards.SUMMARY_TYPEHASH(), id, keccak256("battery-1"), START, DAY, uint32(0), s, uint32(1))
        );
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", domain, structHash));
        assertEq(rewards.summaryHash(id, 0, s, 1), digest, "digest");
    }

    /// Attack: signatures made on another chain id are refused after a fork / on this chain.
    function test_RevertIf_OtherChainId() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        uint256 here = block.chainid;
        VmChain(VM_ADDRESS).chainId(here + 1);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        VmChain(VM_ADDRESS).chainId(here);
        vm.expectRevert(invalidSig(sigs[0].validator));
        rewards.release(id, 0, goodSummary(), sigs);
        // And the other way round: signed here, submitted on the fork.
        sigs = signed(id, 0, goodSummary(), 3);
        VmChain(VM_ADDRESS).chainId(here + 1);
        vm.expectRevert(invalidSig(sigs[0].validator));
        rewards.release(id, 0, goodSummary(), sigs);
        VmChain(VM_ADDRESS).chainId(here);
        assertEq(rewards.release(id, 0, goodSummary(), sigs), 6 * AMOUNT, "valid here");
    }

    /// Attack: a second BatteryRewards on the same registry and token, same agreement id:
    /// the signatures of one do not release the other.
    function test_RevertIf_OtherContract() public {
        BatteryRewards other = deployOn(payment);
        uint256 id = createAgreement();
        vm.prank(sponsor);
        uint256 otherId = other.create(terms(7000));
        assertEq(id, otherId, "same id in both");
        warpPastPeriod(0);
        BatteryRewards.SignedSummary[] memory sigs = signedBy(rewards, id, 0, goodSummary());
        vm.expectRevert(invalidSig(sigs[0].validator));
        other.release(otherId, 0, goodSummary(), sigs);
        sigs = signedBy(other, otherId, 0, goodSummary());
        vm.expectRevert(invalidSig(sigs[0].validator));
        rewards.release(id, 0, goodSummary(), sigs);
        assertEq(other.release(otherId, 0, goodSummary(), sigs), 6 * AMOUNT, "own contract");
    }

    // ------------------------------------------------------------ replay

    /// Attack: a summary for agreement 1 replayed for agreement 2 (same battery, and another
    /// battery), and for another period of the same agreement.
    function test_RevertIf_ReplayAcrossAgreementsBatteriesPeriods() public {
        uint256 id = createAgreement();
        uint256 sameBattery = createAgreement();
        BatteryRewards.Terms memory t = terms(7000);
        t.batteryId = keccak256("battery-2");
        uint256 otherBattery = createWith(t);
        warpPastPeriod(1);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        vm.expectRevert(invalidSig(sigs[0].validator));
        rewards.release(sameBattery, 0, goodSummary(), sigs);
        vm.expectRevert(invalidSig(sigs[0].validator));
        rewards.release(otherBattery, 0, goodSummary(), sigs);
        vm.expectRevert(invalidSig(sigs[0].validator));
        rewards.release(id, 1, goodSummary(), sigs);
        rewards.release(id, 0, goodSummary(), sigs);
        assertEq(rewards.periodMask(sameBattery, 0), 0, "other agreement untouched");
        assertEq(rewards.periodMask(otherBattery, 0), 0, "other battery untouched");
        assertEq(rewards.periodMask(id, 1), 0, "other period untouched");
    }

    // ------------------------------------------------------------ time

    /// Attack: a period one second before it ends; exactly at its end it releases.
    function test_RevertIf_PeriodNotEnded() public {
        uint256 id = createAgreement();
        uint32 period = 1;
        uint64 endsAt = START + 2 * uint64(DAY);
        vm.warp(endsAt - 1);
        BatteryRewards.SignedSummary[] memory sigs = signed(id, period, goodSummary(), 3);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsPeriodNotOver.selector, id, period, endsAt));
        rewards.release(id, period, goodSummary(), sigs);
        vm.warp(endsAt);
        assertEq(rewards.release(id, period, goodSummary(), sigs), 6 * AMOUNT, "at the end");
    }

    /// Attack: a release one second after expiry; exactly at expiry it still releases.
    function test_RevertIf_AfterExpiry() public {
        uint256 id = createAgreement();
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 2, goodSummary(), 3);
        vm.warp(EXPIRY + 1);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsExpired.selector, id, EXPIRY));
        rewards.release(id, 2, goodSummary(), sigs);
        vm.warp(EXPIRY);
        assertEq(rewards.release(id, 2, goodSummary(), sigs), 6 * AMOUNT, "at expiry");
    }

    /// Attack: period indexes at and far beyond the agreement's periods, and an unknown id.
    function test_RevertIf_PeriodOutOfRange() public {
        uint256 id = createAgreement();
        vm.warp(EXPIRY);
        uint32[2] memory bad = [PERIODS, type(uint32).max];
        for (uint256 i; i < 2; ++i) {
            BatteryRewards.SignedSummary[] memory sigs = signed(id, bad[i], goodSummary(), 3);
            vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsBadPeriod.selector, id, bad[i]));
            rewards.release(id, bad[i], goodSummary(), sigs);
        }
        BatteryRewards.SignedSummary[] memory unknown = signed(0, 0, goodSummary(), 3);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsUnknownAgreement.selector, 0));
        rewards.release(0, 0, goodSummary(), unknown);
    }

    // ------------------------------------------------------------ once per period

    /// Attack: a first summary that meets none of the agreed conditions closes the period;
    /// a second, better quorum summary cannot release it.
    function test_RevertIf_SecondSummaryAfterNothingMet() public {
        uint256 id = createAgreement();
        BatteryRewards.Summary memory bad = goodSummary();
        bad.socMinBps = 0;
        bad.socMaxBps = 10_000; // a full-range cycle is possible
        bad.maxDodBps = 10_000;
        bad.maxCRateMilli = 10_000;
        bad.tempMaxDeciC = 900;
        bad.cyclesPerDayMilli = 9000;
        bad.sohBps = 0;
        warpPastPeriod(0);
        assertEq(rewards.release(id, 0, bad, signed(id, 0, bad, 3)), 0, "nothing met");
        assertEq(rewards.periodMask(id, 0), 0x80, "attested");
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, goodSummary(), 3);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsPeriodAttested.selector, id, 0));
        rewards.release(id, 0, goodSummary(), sigs);
        assertEq(paidOut(), 0, "nothing paid");
        assertConserved(id);
    }

    // ------------------------------------------------------------ coverage

    /// Attack: coverage one bps below the minimum, gap one second over; at the boundaries it releases.
    function test_CoverageAndGapBoundaries() public {
        uint256 id = createAgreement();
        warpPastPeriod(2);
        BatteryRewards.Conditions memory c = conditions();
        BatteryRewards.Summary memory s = goodSummary();
        s.coverageBps = c.minCoverageBps - 1;
        s.maxGapSeconds = c.maxGapSeconds;
        _refuseCoverage(id, 0, s);
        s.coverageBps = c.minCoverageBps;
        s.maxGapSeconds = c.maxGapSeconds + 1;
        _refuseCoverage(id, 0, s);
        s.coverageBps = 0;
        s.maxGapSeconds = type(uint32).max;
        _refuseCoverage(id, 0, s);
        assertEq(rewards.periodMask(id, 0), 0, "still open");
        s.coverageBps = c.minCoverageBps;
        s.maxGapSeconds = c.maxGapSeconds;
        assertEq(rewards.release(id, 0, s, signed(id, 0, s, 3)), 6 * AMOUNT, "at both boundaries");
        s.maxGapSeconds = 0; // no gap at all is fine
        s.coverageBps = 10_000;
        assertEq(rewards.release(id, 1, s, signed(id, 1, s, 3)), 6 * AMOUNT, "full coverage");
    }

    /// Property: a 100 % coverage minimum accepts only 100 %; a 0 % minimum accepts 0 % (the
    /// gap rule still applies).
    function test_CoverageExtremes() public {
        BatteryRewards.Terms memory t = terms(7000);
        t.conditions.minCoverageBps = 10_000;
        t.conditions.maxGapSeconds = 1;
        uint256 strict = createWith(t);
        t.conditions.minCoverageBps = 0;
        t.conditions.maxGapSeconds = type(uint32).max;
        uint256 lax = createWith(t);
        warpPastPeriod(0);
        BatteryRewards.Summary memory s = goodSummary();
        s.coverageBps = 9999;
        s.maxGapSeconds = 1;
        _refuseCoverage(strict, 0, s);
        s.coverageBps = 10_000;
        s.maxGapSeconds = 2;
        _refuseCoverage(strict, 0, s);
        s.maxGapSeconds = 1;
        assertEq(rewards.release(strict, 0, s, signed(strict, 0, s, 3)), 6 * AMOUNT, "strict met");
        s.coverageBps = 0;
        s.maxGapSeconds = type(uint32).max;
        assertEq(rewards.release(lax, 0, s, signed(lax, 0, s, 3)), 6 * AMOUNT, "lax met");
    }

    function _refuseCoverage(uint256 id, uint32 period, BatteryRewards.Summary memory s) internal {
        BatteryRewards.SignedSummary[] memory sigs = signed(id, period, s, 3);
        vm.expectRevert(
            abi.encodeWithSelector(
                BatteryRewards.BatteryRewardsInsufficientCoverage.selector, id, period, s.coverageBps, s.maxGapSeconds
            )
        );
        rewards.release(id, period, s, sigs);
    }

    // ------------------------------------------------------------ summaries no telemetry gives

    /// Attack: the whole quorum signs a summary that contradicts itself (each kind in
    /// turn): refused with its reason, nothing paid, the period open; the honest summary
    /// then releases it.
    function test_RevertIf_QuorumSignsInconsistentSummary() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.Summary memory s = goodSummary();
        s.socMinBps = s.socMaxBps + 1;
        _refuseInconsistent(id, s, "soc range");
        s = goodSummary();
        s.socMaxBps = 10_001;
        _refuseInconsistent(id, s, "soc range");
        s = goodSummary();
        // A shallow cycle in a wide SoC range would meet MAX_DOD falsely; a cycle deeper
        // than the range is as impossible.
        s.maxDodBps = s.socMaxBps - s.socMinBps - 2;
        _refuseInconsistent(id, s, "depth of discharge is not the soc range");
        s.maxDodBps = 100;
        _refuseInconsistent(id, s, "depth of discharge is not the soc range");
        s.maxDodBps = s.socMaxBps - s.socMinBps + 2;
        _refuseInconsistent(id, s, "depth of discharge is not the soc range");
        s = goodSummary();
        // A 65 % swing in a day is at least 0.325 cycles (325 milli, with 1 bps of slack).
        s.cyclesPerDayMilli = 0;
        _refuseInconsistent(id, s, "cycles below the deepest cycle");
        s.cyclesPerDayMilli = 324;
        _refuseInconsistent(id, s, "cycles below the deepest cycle");
        s = goodSummary();
        s.tempMinDeciC = s.tempMaxDeciC + 1;
        _refuseInconsistent(id, s, "temperature range");
        s = goodSummary();
        s.sohBps = 10_001;
        _refuseInconsistent(id, s, "state of health");
        s = goodSummary();
        s.coverageBps = 10_001;
        _refuseInconsistent(id, s, "coverage");
        assertEq(rewards.periodMask(id, 0), 0, "still open");
        assertEq(paidOut(), 0, "nothing paid");
        assertEq(rewards.release(id, 0, goodSummary(), signed(id, 0, goodSummary(), 3)), 6 * AMOUNT, "honest");
        assertConserved(id);
    }

    /// Property: the consistency rules' boundaries pass (a flat SoC with a 1 bps cycle, the
    /// full range with the fewest cycles it allows, equal temperatures, 100 % SoH and
    /// coverage).
    function test_ConsistentSummaryBoundaries() public {
        BatteryRewards.Terms memory t = terms(7000);
        t.conditions.socMinBps = 0;
        t.conditions.socMaxBps = 10_000;
        t.conditions.maxDodBps = 10_000;
        uint256 id = createWith(t);
        warpPastPeriod(2);
        BatteryRewards.Summary memory s = goodSummary();
        s.socMinBps = 5000;
        s.socMaxBps = 5000;
        s.maxDodBps = 1; // three numbers rounded each on its own
        s.tempMinDeciC = s.tempMaxDeciC;
        s.sohBps = 10_000;
        s.coverageBps = 10_000;
        assertEq(rewards.release(id, 0, s, signed(id, 0, s, 3)), 6 * AMOUNT, "flat period");
        s.socMinBps = 0;
        s.socMaxBps = 10_000;
        s.maxDodBps = 10_000;
        s.cyclesPerDayMilli = 500; // the fewest a full swing in a day allows (1 bps of slack)
        assertEq(rewards.release(id, 1, s, signed(id, 1, s, 3)), 6 * AMOUNT, "full range");
        s.maxDodBps = 9999; // the range less 1 bps of rounding
        assertEq(rewards.release(id, 2, s, signed(id, 2, s, 3)), 6 * AMOUNT, "1 bps shallower");
    }

    /// Property: `checkSummary` refuses exactly what a model of the rules, written out
    /// again here, calls inconsistent, for any period length.
    function testFuzz_CheckSummaryMatchesModel(
        uint16 socMin,
        uint16 socMax,
        uint16 dod,
        int32 tempMin,
        int32 tempMax,
        uint16 soh,
        uint16 coverage,
        uint32 cycles,
        uint32 period
    ) public view {
        BatteryRewards.Summary memory s = goodSummary();
        // Near the boundaries half the time, anywhere otherwise.
        s.socMinBps = socMin % 2 == 0 ? uint16(bound(socMin, 0, 10_002)) : socMin;
        s.socMaxBps = socMax % 2 == 0 ? uint16(bound(socMax, 0, 10_002)) : socMax;
        s.maxDodBps = dod % 2 == 0 ? uint16(bound(dod, 0, 10_002)) : dod;
        s.tempMinDeciC = int32(int256(bound(uint32(tempMin), 0, 6)) - 3);
        s.tempMaxDeciC = int32(int256(bound(uint32(tempMax), 0, 6)) - 3);
        s.sohBps = uint16(bound(soh, 9998, 10_002));
        s.coverageBps = uint16(bound(coverage, 9998, 10_002));
        period = uint32(bound(period, 1, 864_000));
        // Cycles near the fewest the depth allows half the time: (d - 1) x 4,320 / period.
        uint256 near = (uint256(s.maxDodBps) * 4320) / period;
        s.cyclesPerDayMilli = cycles % 2 == 0 ? uint32(bound(cycles, near > 2 ? near - 2 : 0, near + 2)) : cycles;
        bool consistent = s.socMinBps <= s.socMaxBps && s.socMaxBps <= 10_000
            && int256(uint256(s.maxDodBps)) <= int256(uint256(s.socMaxBps)) - int256(uint256(s.socMinBps)) + 1
            && int256(uint256(s.maxDodBps)) >= int256(uint256(s.socMaxBps)) - int256(uint256(s.socMinBps)) - 1
            && int256(uint256(s.cyclesPerDayMilli)) * int256(uint256(period))
                >= (int256(uint256(s.maxDodBps)) - 1) * 4320 && s.tempMinDeciC <= s.tempMaxDeciC && s.sohBps <= 10_000
            && s.coverageBps <= 10_000;
        try rewards.checkSummary(s, period) {
            assertTrue(consistent, "an inconsistent summary passed");
        } catch {
            assertFalse(consistent, "a consistent summary was refused");
        }
    }

    function _refuseInconsistent(uint256 id, BatteryRewards.Summary memory s, string memory reason) internal {
        BatteryRewards.SignedSummary[] memory sigs = signed(id, 0, s, 3);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsInconsistentSummary.selector, reason));
        rewards.release(id, 0, s, sigs);
    }

    // ------------------------------------------------------------ terms: overflow, shares

    /// Attack: amounts whose sum, or sum x periods, overflows: refused (checked arithmetic),
    /// nothing pulled.
    function test_RevertIf_FundingOverflows() public {
        BatteryRewards.Terms memory t = terms(7000);
        t.amounts[0] = type(uint256).max;
        t.amounts[1] = 1;
        uint256 before = payment.balanceOf(sponsor);
        vm.prank(sponsor);
        vm.expectRevert(abi.encodeWithSignature("Panic(uint256)", 0x11));
        rewards.create(t);
        t = terms(7000);
        for (uint256 c; c < 6; ++c) {
            t.amounts[c] = c == 0 ? type(uint256).max / 2 : 0;
        }
        t.periods = 3;
        // A period's amount too large for the split by basis points is refused by name.
        vm.prank(sponsor);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsBadTerms.selector, "amounts too large"));
        rewards.create(t);
        assertEq(payment.balanceOf(sponsor), before, "nothing pulled");
        assertEq(rewards.agreementCount(), 0, "no agreement");
    }

    /// Attack: more periods than allowed, a zero period length, expiry in the past.
    function test_RevertIf_BadScheduleTerms() public {
        BatteryRewards.Terms memory t = terms(7000);
        t.periods = rewards.MAX_PERIODS() + 1;
        t.expiry = type(uint64).max;
        vm.prank(sponsor);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsBadTerms.selector, "periods"));
        rewards.create(t);
        t = terms(7000);
        t.periods = 0;
        vm.prank(sponsor);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsBadTerms.selector, "periods"));
        rewards.create(t);
        t = terms(7000);
        t.periodSeconds = 0;
        vm.prank(sponsor);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsBadTerms.selector, "period length 0"));
        rewards.create(t);
        // A schedule whose end does not fit in uint64 cannot be covered by any expiry.
        t = terms(7000);
        t.periodStart = type(uint64).max - DAY;
        t.expiry = type(uint64).max;
        vm.prank(sponsor);
        vm.expectRevert(
            abi.encodeWithSelector(BatteryRewards.BatteryRewardsBadTerms.selector, "expiry before the last period ends")
        );
        rewards.create(t);
        t = terms(7000);
        t.periodStart = START - 10 * uint64(DAY);
        t.expiry = START - 1;
        vm.prank(sponsor);
        vm.expectRevert(
            abi.encodeWithSelector(BatteryRewards.BatteryRewardsBadTerms.selector, "expiry before the last period ends")
        );
        rewards.create(t);
    }

    /// Attack: shares summing to 10,001 / 9,999, a uint16 share above 10,000 with others,
    /// 17 participants, mismatched lengths, the zero address.
    function test_RevertIf_BadParticipants() public {
        BatteryRewards.Terms memory t = terms(7000);
        t.sharesBps[1] = 3001;
        _refuseTerms(t, "shares do not add up to 10000");
        t.sharesBps[1] = 2999;
        _refuseTerms(t, "shares do not add up to 10000");
        t.sharesBps[0] = type(uint16).max;
        t.sharesBps[1] = 1;
        _refuseTerms(t, "shares do not add up to 10000");
        t = terms(7000);
        t.participants[1] = address(0);
        _refuseTerms(t, "participant");
        t = terms(7000);
        t.sharesBps = new uint16[](1);
        t.sharesBps[0] = 10_000;
        _refuseTerms(t, "participants");
        t = terms(7000);
        t.participants = new address[](17);
        t.sharesBps = new uint16[](17);
        for (uint256 i; i < 17; ++i) {
            t.participants[i] = address(uint160(0x1000 + i));
            t.sharesBps[i] = i == 0 ? 10_000 - 16 * 588 : 588;
        }
        _refuseTerms(t, "participants");
    }

    function _refuseTerms(BatteryRewards.Terms memory t, string memory reason) internal {
        vm.prank(sponsor);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsBadTerms.selector, reason));
        rewards.create(t);
    }

    /// Property: 16 participants with uneven shares (and a duplicated address) are paid
    /// exactly the released amount, the contract's balance drops by it.
    function testFuzz_SixteenParticipantsPaidExactly(uint256 seed) public {
        BatteryRewards.Terms memory t = terms(7000);
        t.participants = new address[](16);
        t.sharesBps = new uint16[](16);
        uint256 left = 10_000;
        for (uint256 i; i < 16; ++i) {
            t.participants[i] = address(uint160(0x1000 + (i % 15)));
            uint256 share = i == 15 ? left : bound(uint256(keccak256(abi.encode(seed, i))), 1, left - (15 - i));
            t.sharesBps[i] = uint16(share);
            left -= share;
        }
        uint256 id = createWith(t);
        warpPastPeriod(0);
        uint256 held = payment.balanceOf(address(rewards));
        uint256 amount = rewards.release(id, 0, goodSummary(), signed(id, 0, goodSummary(), 3));
        assertEq(payment.balanceOf(address(rewards)), held, "credited, not sent");
        uint256 total;
        for (uint256 i; i < 15; ++i) {
            address p = address(uint160(0x1000 + i));
            uint256 owed = rewards.owedOf(p);
            total += owed;
            if (owed != 0) assertEq(rewards.claim(p), owed, "claimed");
            assertEq(payment.balanceOf(p), owed, "paid its credit");
        }
        assertEq(total, amount, "credited exactly");
        assertEq(held - payment.balanceOf(address(rewards)), amount, "balance drop");
        assertConserved(id);
    }

    // ------------------------------------------------------------ zero amounts

    /// Property: a met condition with amount 0 releases nothing and is not marked; only SoH
    /// agreed: a period failing it is attested with 0 and moves no token.
    function test_ZeroAmountConditions() public {
        BatteryRewards.Terms memory t = terms(7000);
        for (uint256 c; c < 5; ++c) {
            t.amounts[c] = 0;
        }
        uint256 id = createWith(t);
        (uint256 funded,,,) = rewards.balancesOf(id);
        assertEq(funded, AMOUNT * PERIODS, "only SoH funded");
        warpPastPeriod(1);
        assertEq(rewards.release(id, 0, goodSummary(), signed(id, 0, goodSummary(), 3)), AMOUNT, "SoH only");
        assertEq(rewards.periodMask(id, 0), 0x80 | 0x20, "only SoH bit");
        BatteryRewards.Summary memory s = goodSummary();
        s.sohBps = 0;
        uint256 before = payment.balanceOf(address(rewards));
        assertEq(rewards.release(id, 1, s, signed(id, 1, s, 3)), 0, "SoH not met");
        assertEq(rewards.periodMask(id, 1), 0x80, "attested, nothing");
        assertEq(payment.balanceOf(address(rewards)), before, "no token moved");
        for (uint256 c; c < 6; ++c) {
            t.amounts[c] = 0;
        }
        _refuseTerms(t, "nothing to fund");
        assertConserved(id);
    }

    // ------------------------------------------------------------ reentrancy

    /// Attack: a token that re-enters release / reclaim / create while the contract moves it.
    /// (The deployed contract's token is immutable, PaymentToken has no hooks; this checks
    /// the guard itself.)
    function test_RevertIf_ReentrantToken() public {
        ReentrantToken evil = new ReentrantToken();
        BatteryRewards r = deployOn(IERC20(address(evil)));
        evil.mint(sponsor, 1e15);
        // create -> create
        evil.arm(address(r), abi.encodeCall(BatteryRewards.create, (terms(7000))));
        vm.prank(sponsor);
        uint256 id = r.create(terms(7000));
        _assertBlocked(evil);
        assertEq(r.agreementCount(), 1, "one agreement");
        // release -> release of the next period (already over)
        warpPastPeriod(1);
        evil.arm(
            address(r),
            abi.encodeCall(BatteryRewards.release, (id, 1, goodSummary(), signedBy(r, id, 1, goodSummary())))
        );
        r.release(id, 0, goodSummary(), signedBy(r, id, 0, goodSummary()));
        assertFalse(evil.succeeded(), "a release calls no token");
        // withdraw -> release of the next period
        vm.prank(owner);
        r.withdraw(owner);
        _assertBlocked(evil);
        assertEq(r.periodMask(id, 1), 0, "period 1 not released inside");
        // claim -> withdraw of the other participant's credit
        evil.arm(address(r), abi.encodeCall(BatteryRewards.claim, (owner)));
        r.claim(aggregator);
        _assertBlocked(evil);
        assertEq(r.owedOf(aggregator), 0, "aggregator paid once");
        // A reclaim calls no token (it credits the sponsor): the armed re-entry waits.
        vm.warp(EXPIRY + 1);
        evil.arm(address(r), abi.encodeCall(BatteryRewards.reclaim, (id)));
        vm.prank(sponsor);
        uint256 back = r.reclaim(id);
        assertTrue(evil.armed(), "a reclaim calls no token");
        // the sponsor's withdraw -> reclaim (by the token: not the sponsor, but the guard
        // comes first)
        vm.prank(sponsor);
        assertEq(r.withdraw(sponsor), back, "the reclaim withdrawn");
        _assertBlocked(evil);
        assertEq(back, 12 * AMOUNT, "reclaimed once");
        assertEq(evil.balanceOf(address(r)), 0, "empty");
    }

    function _assertBlocked(ReentrantToken evil) internal view {
        assertTrue(evil.tried(), "re-entry attempted");
        assertFalse(evil.succeeded(), "re-entry succeeded");
        assertEq(bytes32(bytes4(evil.returned())), bytes32(REENTRANT), "guard selector");
    }

    // ------------------------------------------------------------ reclaim

    /// Attack: reclaim by mallory, a participant, a validator, another agreement's sponsor,
    /// before expiry, twice, and of an unknown agreement.
    function test_RevertIf_ReclaimAbuse() public {
        uint256 id = createAgreement();
        address otherSponsor = address(0x5B1);
        vm.prank(admin);
        payment.mint(otherSponsor, 1e12);
        vm.prank(otherSponsor);
        payment.approve(address(rewards), type(uint256).max);
        vm.prank(otherSponsor);
        rewards.create(terms(5000));
        vm.warp(EXPIRY);
        vm.prank(sponsor);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsNotExpired.selector, id, EXPIRY));
        rewards.reclaim(id);
        vm.warp(EXPIRY + 1);
        address[4] memory intruders = [mallory, owner, vm.addr(validatorKeys[0]), otherSponsor];
        for (uint256 i; i < 4; ++i) {
            vm.prank(intruders[i]);
            vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsNotSponsor.selector, intruders[i]));
            rewards.reclaim(id);
        }
        vm.prank(sponsor);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsUnknownAgreement.selector, 3));
        rewards.reclaim(3);
        uint256 before = payment.balanceOf(sponsor);
        vm.prank(sponsor);
        assertEq(rewards.reclaim(id), 18 * AMOUNT, "all");
        vm.prank(sponsor);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsReclaimed.selector, id));
        rewards.reclaim(id);
        assertEq(rewards.owedOf(sponsor), 18 * AMOUNT, "credited once");
        for (uint256 i; i < 4; ++i) {
            vm.prank(intruders[i]);
            vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsNothingOwed.selector, intruders[i]));
            rewards.withdraw(intruders[i]);
        }
        assertEq(withdrawSponsor(), 18 * AMOUNT, "withdrawn by the sponsor");
        assertEq(payment.balanceOf(sponsor) - before, 18 * AMOUNT, "paid once");
        assertEq(payment.balanceOf(address(rewards)), 18 * AMOUNT, "other agreement still held");
        assertConserved(id);
    }

    /// Attack: the sponsor reclaims while periods are still releasable (before expiry, after
    /// the periods ended), then a pending period is released at expiry: both amounts are kept apart.
    function test_ReclaimWhilePending() public {
        uint256 id = createAgreement();
        warpPastPeriod(2);
        rewards.release(id, 0, goodSummary(), signed(id, 0, goodSummary(), 3));
        BatteryRewards.SignedSummary[] memory pending = signed(id, 1, goodSummary(), 3);
        vm.prank(sponsor);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsNotExpired.selector, id, EXPIRY));
        rewards.reclaim(id);
        vm.warp(EXPIRY);
        rewards.release(id, 1, goodSummary(), pending);
        vm.warp(EXPIRY + 1);
        vm.prank(sponsor);
        assertEq(rewards.reclaim(id), 6 * AMOUNT, "only period 2");
        assertEq(paidOut(), 12 * AMOUNT, "two periods paid");
        withdrawAll();
        assertEq(withdrawSponsor(), 6 * AMOUNT, "the sponsor's reclaim withdrawn");
        assertEq(payment.balanceOf(address(rewards)), 0, "empty");
        BatteryRewards.SignedSummary[] memory late = signed(id, 2, goodSummary(), 3);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsExpired.selector, id, EXPIRY));
        rewards.release(id, 2, goodSummary(), late);
        assertConserved(id);
    }

    /// Property: after any sequence of releases (random periods, broken conditions, coverage
    /// refusals) and a reclaim, funded == released + held + reclaimed per agreement and in
    /// tokens, and the contract holds exactly what is still held.
    function testFuzz_ConservationAnySequence(uint256 seed) public {
        uint256 a = createAgreement();
        uint256 b = createWith(terms(uint16(bound(seed, 1, 9999))));
        uint256 funded = 2 * 18 * AMOUNT;
        for (uint256 step; step < 6; ++step) {
            uint256 r = uint256(keccak256(abi.encode(seed, step)));
            uint256 id = r & 1 == 0 ? a : b;
            uint32 period = uint32((r >> 1) % PERIODS);
            vm.warp(START + uint64(period + 1) * DAY + ((r >> 8) % DAY));
            BatteryRewards.Summary memory s = goodSummary();
            if ((r >> 20) & 1 != 0) s.socMaxBps = 9500;
            s.maxDodBps = s.socMaxBps - s.socMinBps; // the deepest cycle spans the range
            if ((r >> 21) & 1 != 0) s.sohBps = 0;
            if ((r >> 22) & 1 != 0) s.maxCRateMilli = 501;
            if ((r >> 23) % 5 == 0) s.coverageBps = 8999;
            BatteryRewards.SignedSummary[] memory sigs = signed(id, period, s, 3);
            try rewards.release(id, period, s, sigs) {} catch {}
        }
        vm.warp(EXPIRY + 1);
        vm.startPrank(sponsor);
        uint256 back = rewards.reclaim(a) + rewards.reclaim(b);
        vm.stopPrank();
        assertConserved(a);
        assertConserved(b);
        (, uint256 ra,,) = rewards.balancesOf(a);
        (, uint256 rb,,) = rewards.balancesOf(b);
        assertEq(paidOut(), ra + rb, "released == paid");
        assertEq(funded, ra + rb + back, "funded == released + reclaimed");
        assertEq(rewards.owedOf(sponsor), back, "reclaims credited to the sponsor");
        assertEq(payment.balanceOf(address(rewards)), credited() + back, "only the credits left");
        withdrawAll();
        if (back != 0) assertEq(withdrawSponsor(), back, "the sponsor's credit withdrawn");
        assertEq(payment.balanceOf(owner) + payment.balanceOf(aggregator), ra + rb, "withdrawn == released");
        assertEq(payment.balanceOf(address(rewards)), 0, "nothing left");
    }

    // ------------------------------------------------------------ griefing

    /// Attack: mallory front-runs the honest release with a short quorum, a forged set, a
    /// thin-coverage quorum summary and an honest set plus a junk signature: every attempt
    /// reverts and leaves the period open; the honest release then pays in full. Mallory
    /// submitting the honest set herself pays the participants, not her.
    function test_GriefingCannotBlockPeriod() public {
        uint256 id = createAgreement();
        warpPastPeriod(0);
        BatteryRewards.Summary memory bad = goodSummary();
        bad.sohBps = 1;
        BatteryRewards.SignedSummary[] memory short = signed(id, 0, bad, 2);
        vm.startPrank(mallory);
        vm.expectRevert(noQuorum(2, 3));
        rewards.release(id, 0, bad, short);
        BatteryRewards.SignedSummary[] memory forged = signed(id, 0, bad, 3);
        forged[2].signature = sign(0xBAD, id, 0, bad, forged[2].epoch);
        vm.expectRevert(invalidSig(forged[2].validator));
        rewards.release(id, 0, bad, forged);
        BatteryRewards.Summary memory thin = bad;
        thin.coverageBps = 100;
        BatteryRewards.SignedSummary[] memory thinSigs = signed(id, 0, thin, 3);
        vm.expectRevert(
            abi.encodeWithSelector(
                BatteryRewards.BatteryRewardsInsufficientCoverage.selector, id, 0, thin.coverageBps, thin.maxGapSeconds
            )
        );
        rewards.release(id, 0, thin, thinSigs);
        BatteryRewards.SignedSummary[] memory honest = signed(id, 0, goodSummary(), 3);
        BatteryRewards.SignedSummary[] memory padded = new BatteryRewards.SignedSummary[](4);
        for (uint256 k; k < 3; ++k) {
            padded[k] = honest[k];
        }
        padded[3] = BatteryRewards.SignedSummary(mallory, 1, new bytes(65));
        vm.expectRevert(invalidSig(mallory));
        rewards.release(id, 0, goodSummary(), padded);
        assertEq(rewards.periodMask(id, 0), 0, "still open");
        uint256 amount = rewards.release(id, 0, goodSummary(), honest);
        vm.stopPrank();
        assertEq(amount, 6 * AMOUNT, "full release");
        assertEq(paidOut(), 6 * AMOUNT, "participants paid");
        assertEq(payment.balanceOf(mallory), 0, "mallory gets nothing");
        // Nor does she get their credit: she is owed nothing, a claim pays the participant.
        vm.startPrank(mallory);
        vm.expectRevert(abi.encodeWithSelector(BatteryRewards.BatteryRewardsNothingOwed.selector, mallory));
        rewards.withdraw(mallory);
        uint256 ownerOwed = rewards.owedOf(owner);
        rewards.claim(owner);
        vm.stopPrank();
        assertEq(payment.balanceOf(owner), ownerOwed, "the owner is paid");
        assertEq(payment.balanceOf(mallory), 0, "mallory still gets nothing");
    }
}
